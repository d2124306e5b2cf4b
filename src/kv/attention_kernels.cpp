#include "kv/attention_kernels.h"

namespace kestrel::kv {

const AttentionKernels& attention_kernels(Isa isa) {
  static const AttentionKernels kRef{ref::attend_f16, ref::attend_f32};
  static const AttentionKernels kAvx512{avx512::attend_f16, avx512::attend_f32};
  if (isa >= Isa::Avx512 && isa_supported(Isa::Avx512)) return kAvx512;
  return kRef;
}

}  // namespace kestrel::kv
