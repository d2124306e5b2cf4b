#pragma once
// Scale searches behind the K-quant reference quantizers. They reproduce the
// decisions of ggml's reference quantizer (same candidates, same float
// arithmetic in the same order), since quantized files are judged against
// llama.cpp's by perplexity.
#include <cstdint>

namespace kestrel::kernels::ref {

// Asymmetric fit x ~ scale * L - min_out, L in [0, nmax], weighted least squares.
// Tries nstep+1 inverse scales (nmax + rmin + rdelta*k) / (max - min) and keeps
// the candidate whose least-squares (scale, min) has the lowest weighted error;
// as in ggml, an accepted candidate's min becomes the grid origin of later ones.
// Writes L[n]; uses aux[n] as scratch; returns the scale, stores the (positive) min.
float fit_scale_min(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                    float* min_out, uint8_t* aux, float rmin, float rdelta, int nstep);

// Symmetric fit x ~ scale * (L - nmax), L in [0, 2*nmax), weights x^2 (or
// `weights` when given: an importance matrix's). Tries the inverse scales
// -(nmax + 0.1*k)/max for k in -9..9 and keeps the one with the best weighted
// least-squares projection. Returns the (signed) scale.
float fit_scale_symmetric(int n, int nmax, const float* x, int8_t* L, const float* weights = nullptr);

// Non-negative fit x ~ scale * L, L in [0, nmax], weighted squared error: the
// plain grid nmax/max, then the inverse scales (nmax + 0.1*k)/max for k in
// -4..4, then up to 5 passes moving single codes while the weighted
// projection improves. For a super-block's sub-scales and mins (weighted by
// their groups' summed weights). Returns the scale.
float fit_scale_positive(int n, int nmax, const float* x, uint8_t* L, const float* weights);

}  // namespace kestrel::kernels::ref
