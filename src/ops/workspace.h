#pragma once
// Reusable scratch memory for ops, grown on demand and 64-byte aligned so SIMD
// loads of quantized activation rows never straddle a cache line needlessly.
#include <cstddef>
#include <cstdlib>
#include <memory>

namespace kestrel {

class Workspace {
 public:
  // Returns at least `bytes` of scratch; previous contents are not kept.
  void* get(size_t bytes) {
    if (bytes > capacity_) {
      capacity_ = (bytes + 63) & ~size_t{63};
      buffer_.reset(static_cast<unsigned char*>(std::aligned_alloc(64, capacity_)));
    }
    return buffer_.get();
  }

 private:
  struct Free {
    void operator()(unsigned char* p) const { std::free(p); }
  };
  std::unique_ptr<unsigned char, Free> buffer_;
  size_t capacity_ = 0;
};

}  // namespace kestrel
