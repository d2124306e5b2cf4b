#pragma once
// Scalar twin of the panel GEMM kernels (kernels/packed_gemm.h): same signature,
// same summation order written out with std::fma, so the SIMD and AMX versions
// must agree with it bit for bit.
#include "kernels/panel_types.h"

namespace kestrel::kernels::ref {

void panel_gemm(const PanelFormat& f, const PanelGemmArgs& args);

}  // namespace kestrel::kernels::ref
