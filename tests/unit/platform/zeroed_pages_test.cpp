// ZeroedPages: base pages start on a page, huge-page buffers on a 2 MiB
// boundary; both are zero-filled, writable over their whole size, and count
// only what has been written as resident.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>

#include "platform/mmap.h"

namespace kestrel {
namespace {

constexpr size_t kHuge = size_t{2} << 20;

bool all_zero(const ZeroedPages& pages) {
  return std::all_of(pages.data(), pages.data() + pages.size(), [](uint8_t b) { return b == 0; });
}

TEST(ZeroedPages, HugeBuffersStartOnA2MiBBoundaryAndAreZeroed) {
  // Sizes below, at and past a huge page, not multiples of the base page.
  for (size_t bytes : {size_t{100}, kHuge - 1, kHuge, 3 * kHuge + 4097}) {
    SCOPED_TRACE(bytes);
    ZeroedPages pages(bytes, PageSize::Huge);
    ASSERT_NE(pages.data(), nullptr);
    EXPECT_EQ(pages.size(), bytes);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(pages.data()) % kHuge, 0u);
    EXPECT_TRUE(all_zero(pages));
    // The last byte is inside the mapping (the tail was trimmed after it, not before).
    pages.data()[0] = 1;
    pages.data()[bytes - 1] = 2;
    EXPECT_EQ(pages.data()[bytes - 1], 2);
  }
}

TEST(ZeroedPages, BasePagesCommitOnlyWhatIsWritten) {
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  ZeroedPages pages(64 * page + 1);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(pages.data()) % page, 0u);
  pages.data()[3 * page] = 7;
  EXPECT_EQ(pages.resident_bytes(), page);
  pages.data()[3 * page] = 0;
  EXPECT_TRUE(all_zero(pages));
}

TEST(ZeroedPages, MovesOwnership) {
  ZeroedPages a(kHuge + 1, PageSize::Huge);
  uint8_t* p = a.data();
  p[kHuge] = 9;
  ZeroedPages b(std::move(a));
  EXPECT_EQ(a.data(), nullptr);
  EXPECT_EQ(b.data(), p);
  EXPECT_EQ(b.data()[kHuge], 9);
  ZeroedPages c;
  c = std::move(b);
  EXPECT_EQ(c.data(), p);
  EXPECT_EQ(c.size(), kHuge + 1);
}

}  // namespace
}  // namespace kestrel
