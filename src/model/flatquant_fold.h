#pragma once
// `kestrel quantize --flatquant FILE`: folds FlatQuant's trained transforms
// (model/flat_transform.h; tools/flatquant/train.py writes FILE) into a
// decoder's float weights before quantize_model writes them.
#include <string>
#include <vector>

#include "core/dtype.h"
#include "gguf/gguf.h"
#include "model/float_decoder.h"

namespace kestrel {

class ThreadPool;

struct FlatQuantFold {
  std::vector<FloatTensor> transforms;  // blk.N.flat_<site>.scale/.p1/.p2, for the model file
  std::string trained_for;              // the model file name the trainer read
  std::string note;                     // the trainer's note (data, epochs, per-layer error ratios)
};

// Every matrix reading a transformed input becomes (W ⊘ s)(P1 ⊗ P2)^-T and is
// renamed flat_matrix_name(...) (its `replaces` set). The clipping ratios were
// trained on Q4_0's grid: for a Q4_0 `target` each 32-block of a row is
// clamped to that grid at ratio × its largest magnitude (so that Q4_0's own
// quantizer gives the trained codes); a float target (F32, F16, BF16) gets the
// folded weights unclipped (the same function: for checks); other types are
// refused. Throws for a file of another shape than d, a missing tensor, or a
// singular transform.
FlatQuantFold fold_flatquant(FloatDecoder& d, const gguf::File& transforms, DType target, ThreadPool& pool);

// One row's Q4_0 clipping: each block of 32 clamped to the codes Q4_0 would
// give it if its largest magnitude m were ratio * m (the grid's -8 end on m's
// side, 7/8 of it on the other).
void clip_row_q4_0(float* row, int64_t n, float ratio);

}  // namespace kestrel
