#include "runtime/token_counts.h"

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "core/error.h"
#include "platform/mmap.h"
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
    // Mapped, not read: a binary file costs its first page, a text file no copy.
    const MappedFile file = MappedFile::open(path.string());
    const std::string_view text(reinterpret_cast<const char*>(file.data()), file.size());
    if (text.substr(0, 8192).find('\0') != std::string_view::npos) {
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
