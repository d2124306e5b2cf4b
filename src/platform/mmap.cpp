#include "platform/mmap.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "core/error.h"

namespace kestrel {
namespace {

// Closes the descriptor on every path out of open(); the mapping outlives it.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

MappedFile MappedFile::open(const std::string& path) {
  Fd fd;
  fd.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd.fd < 0) fail("cannot open '", path, "': ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd.fd, &st) != 0) fail("cannot stat '", path, "': ", std::strerror(errno));
  if (!S_ISREG(st.st_mode)) fail("'", path, "' is not a regular file");

  MappedFile m;
  m.path_ = path;
  m.size_ = static_cast<size_t>(st.st_size);
  if (m.size_ == 0) return m;  // mmap rejects length 0; an empty span is the honest answer
  void* p = ::mmap(nullptr, m.size_, PROT_READ, MAP_PRIVATE, fd.fd, 0);
  if (p == MAP_FAILED) fail("cannot map '", path, "' (", m.size_, " bytes): ", std::strerror(errno));
  m.data_ = static_cast<const uint8_t*>(p);
  m.fd_ = std::exchange(fd.fd, -1);
  return m;
}

void MappedFile::read(size_t offset, std::span<uint8_t> dst) const {
  if (offset > size_ || dst.size() > size_ - offset)
    fail("cannot read ", dst.size(), " bytes at offset ", offset, " of '", path_, "' (", size_, " bytes)");
  size_t done = 0;
  while (done < dst.size()) {
    const ssize_t n = ::pread(fd_, dst.data() + done, dst.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      fail("cannot read '", path_, "' at offset ", offset + done, ": ", n < 0 ? std::strerror(errno) : "end of file");
    done += static_cast<size_t>(n);
  }
}

void drop_mapped_pages(const void* p, size_t n) {
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + page - 1) & ~(page - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + n) & ~(page - 1);
  // Advice only: a failure leaves the pages resident, which is still correct.
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

size_t ZeroedPages::resident_bytes() const {
  if (data_ == nullptr) return 0;
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> vec((size_ + page - 1) / page);  // mmap's address is page-aligned
  if (::mincore(data_, size_, vec.data()) != 0) fail("mincore: ", std::strerror(errno));
  size_t n = 0;
  for (unsigned char c : vec) n += c & 1;
  return n * page;
}

ZeroedPages::ZeroedPages(size_t bytes, PageSize pages) : size_(bytes) {
  if (bytes == 0) return;
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const size_t length = (bytes + page - 1) / page * page;
  // A huge page needs a 2 MiB-aligned start: reserve 2 MiB more and give back
  // the slack before and after the aligned range.
  const size_t reserve = pages == PageSize::Huge ? length + kHuge : length;
  // MAP_NORESERVE: no swap is set aside for pages never written.
  void* p = ::mmap(nullptr, reserve, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) fail("cannot reserve ", bytes, " bytes of memory: ", std::strerror(errno));
  auto* base = static_cast<uint8_t*>(p);
  data_ = base;
  if (pages == PageSize::Huge) {
    const uintptr_t start = reinterpret_cast<uintptr_t>(base);
    data_ = reinterpret_cast<uint8_t*>((start + kHuge - 1) & ~(kHuge - 1));
    const size_t head = static_cast<size_t>(data_ - base);
    if (head > 0) ::munmap(base, head);
    const size_t tail = reserve - head - length;
    if (tail > 0) ::munmap(data_ + length, tail);
    // Advice only: without transparent huge pages the buffer keeps base pages.
    ::madvise(data_, length, MADV_HUGEPAGE);
  }
}

ZeroedPages::ZeroedPages(ZeroedPages&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

ZeroedPages& ZeroedPages::operator=(ZeroedPages&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) ::munmap(data_, size_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

ZeroedPages::~ZeroedPages() {
  if (data_ != nullptr) ::munmap(data_, size_);
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      fd_(std::exchange(other.fd_, -1)),
      path_(std::move(other.path_)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    reset();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    fd_ = std::exchange(other.fd_, -1);
    path_ = std::move(other.path_);
  }
  return *this;
}

MappedFile::~MappedFile() { reset(); }

void MappedFile::reset() noexcept {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
  if (fd_ >= 0) ::close(fd_);
  data_ = nullptr;
  size_ = 0;
  fd_ = -1;
}

}  // namespace kestrel
