#pragma once
// Read-only memory mapping of a whole file. The GGUF reader hands out pointers
// into the mapping, so weights are paged in by the kernel on first touch and
// never copied.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace kestrel {

// Drops the pages of [p, p + n) inside a read-only file mapping from this
// process's memory (whole pages only); reading them again re-reads the file.
// Never call it on memory that is not such a mapping: anonymous pages would
// read back as zeros.
void drop_mapped_pages(const void* p, size_t n);

// The page size a ZeroedPages buffer asks the OS for.
//  - Base: the OS's base pages (4 KiB on x86-64): memory is committed a page
//    at a time as it is written, which a KV pool sized for the whole context
//    relies on.
//  - Huge: the buffer starts on a 2 MiB boundary and is advised as huge pages
//    (MADV_HUGEPAGE, honoured when transparent huge pages are "madvise" or
//    "always"; otherwise base pages, still correct). For buffers written whole
//    and then streamed, such as packed weights: one TLB entry covers 512 times
//    the bytes: Qwen2.5-1.5B decodes 2-6 % faster on an AMD Zen 4 VM, and one
//    thread reads DRAM at 25-27 GB/s instead of 16 (roofline/read_huge)
//    (docs/benchmarks.md "Session 35").
enum class PageSize { Base, Huge };

// Anonymous, zero-filled memory whose pages the OS commits on first write: a
// buffer sized for the worst case (a KV pool for the whole context) costs
// resident memory only for what is used. Throws kestrel::Error when the
// address space cannot be reserved.
class ZeroedPages {
 public:
  ZeroedPages() = default;
  explicit ZeroedPages(size_t bytes, PageSize pages = PageSize::Base);
  ZeroedPages(ZeroedPages&& other) noexcept;
  ZeroedPages& operator=(ZeroedPages&& other) noexcept;
  ZeroedPages(const ZeroedPages&) = delete;
  ZeroedPages& operator=(const ZeroedPages&) = delete;
  ~ZeroedPages();

  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  // Bytes of its pages in RAM now (mincore): what writing has committed.
  size_t resident_bytes() const;

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

class MappedFile {
 public:
  // Maps `path` read-only (private, shared pages). Throws kestrel::Error naming
  // the path and the OS reason when the file cannot be opened, is not a regular
  // file, or cannot be mapped. An empty file maps to an empty span.
  static MappedFile open(const std::string& path);

  MappedFile() = default;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }

  // Copies bytes [offset, offset + dst.size()) of the file into dst without
  // touching the mapping (pread): a read that must not make the mapping's pages
  // resident in this process again, such as an embedding row of a weight whose
  // pages were dropped (ops/embedding.h). Throws kestrel::Error for a range past
  // the end or an I/O error.
  void read(size_t offset, std::span<uint8_t> dst) const;

 private:
  void reset() noexcept;

  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  int fd_ = -1;  // kept open for read()
  std::string path_;
};

}  // namespace kestrel
