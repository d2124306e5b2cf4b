#include "runtime/memory.h"

#include <fstream>
#include <string>

namespace kestrel {
namespace {

// Lines look like "VmHWM:\t  123456 kB".
size_t status_kib(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, key.size(), key) != 0 || line.size() <= key.size() || line[key.size()] != ':') continue;
    size_t value = 0;
    for (size_t i = key.size() + 1; i < line.size(); ++i) {
      const char ch = line[i];
      if (ch >= '0' && ch <= '9') {
        value = value * 10 + static_cast<size_t>(ch - '0');
      } else if (value != 0) {
        break;
      }
    }
    return value;
  }
  return 0;
}

}  // namespace

size_t peak_rss_bytes() { return status_kib("VmHWM") * 1024; }

size_t current_rss_bytes() { return status_kib("VmRSS") * 1024; }

bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  if (!out) return false;
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

}  // namespace kestrel
