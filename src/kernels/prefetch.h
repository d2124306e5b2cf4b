#pragma once
// Software prefetch that the compiler keeps. GCC treats _mm_prefetch
// (__builtin_prefetch) as free of side effects, so a loop doing nothing but
// prefetch is an empty loop it may delete: GCC 12 at -O3 removed every
// prefetch of the KV-cache attention kernels (objdump showed none), and decode
// at depth paid DRAM latency on every paged block (a decode step over 8192
// keys of q8_0, bench attn_decode: 44 ms with the loops deleted, 29 ms with
// them). An asm volatile statement is never deleted.
namespace kestrel::kernels {

// The cache line holding p, towards L1 (prefetcht0).
inline void prefetch_l1(const void* p) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  asm volatile("prefetcht0 %0" : : "m"(*static_cast<const char*>(p)));
#else
  (void)p;
#endif
}

// Every cache line of [p, p + bytes) towards L1.
inline void prefetch_l1_range(const void* p, long bytes) {
  const char* c = static_cast<const char*>(p);
  for (long o = 0; o < bytes; o += 64) prefetch_l1(c + o);
}

}  // namespace kestrel::kernels
