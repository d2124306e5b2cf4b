#include "runtime/token_counts.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace kestrel {
namespace {

namespace fs = std::filesystem;

std::vector<fs::path> corpus_files(std::span<const std::string> paths) {
  std::vector<fs::path> out;
  for (const std::string& p : paths) {
    std::error_code ec;
    const fs::file_status st = fs::status(p, ec);
    if (ec || !fs::exists(st)) fail("corpus: ", p, " does not exist");
    if (fs::is_directory(st)) {
      std::vector<fs::path> files;
      for (auto it = fs::recursive_directory_iterator(p, fs::directory_options::skip_permission_denied, ec);
           !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
        if (it->is_regular_file(ec)) files.push_back(it->path());
      if (ec) fail("corpus: cannot read directory ", p, ": ", ec.message());
      std::sort(files.begin(), files.end());
      out.insert(out.end(), files.begin(), files.end());
    } else {
      out.emplace_back(p);
    }
  }
  return out;
}

}  // namespace

CorpusCount count_corpus_tokens(const Tokenizer& tokenizer, std::span<const std::string> paths, int64_t max_bytes,
                                const std::function<void(const std::string&)>& progress) {
  CorpusCount c;
  c.counts.assign(static_cast<size_t>(tokenizer.n_vocab()), 0);
  int64_t next_report = 0;
  for (const fs::path& path : corpus_files(paths)) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("corpus: cannot open ", path.string());
    std::ostringstream os;
    os << in.rdbuf();
    const std::string text = os.str();
    if (text.find('\0') < std::min<size_t>(text.size(), 8192)) {
      ++c.skipped;
      continue;
    }
    if (c.bytes + static_cast<int64_t>(text.size()) > max_bytes) break;
    for (int32_t id : tokenizer.encode(text, false, false)) ++c.counts[static_cast<size_t>(id)];
    c.bytes += static_cast<int64_t>(text.size());
    ++c.files;
    if (progress && c.bytes >= next_report) {
      std::ostringstream line;
      line << "counted " << c.files << " files, " << c.bytes / (1 << 20) << " MiB";
      progress(line.str());
      next_report = c.bytes + (int64_t{16} << 20);
    }
  }
  if (c.bytes == 0) fail("corpus: no text counted (", c.files, " files, ", c.skipped, " binary ones left out)");
  return c;
}

}  // namespace kestrel
