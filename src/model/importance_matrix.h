#pragma once
// llama.cpp's importance matrix (`llama-imatrix -o FILE.gguf`): for every
// matrix, each input column's mean square over the calibration text, the
// weights `llama-quantize --imatrix` rounds with. kestrel reads it so that a
// user's existing imatrix serves `kestrel quantize --imatrix` as it serves
// llama-quantize. The file is a GGUF (general.type "imatrix") holding, per
// matrix NAME, `NAME.in_sum2` (F32, the column sums of x², one row per
// expert) and `NAME.counts` (F32, the rows summed, one per expert).
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace kestrel {

struct ImportanceMatrix {
  // By weight name ("blk.0.attn_q.weight"): each column's mean square; a
  // matrix with no rows counted gets 1 for every column, as llama-quantize does.
  std::map<std::string, std::vector<float>> mean_squares;
  std::vector<std::string> datasets;  // imatrix.datasets, the calibration files named
  int64_t chunks = 0;                 // imatrix.chunk_count (0 when absent)

  // The columns' importance for `name`, or nullptr when the file has none for it.
  // Throws when it has them for another width (a file made for another model).
  const std::vector<float>* find(const std::string& name, int64_t cols) const;
};

// Reads and checks a file: not a GGUF, not an imatrix, a sum without its
// count (or the other way round), another type or shape than the format's,
// several experts (kestrel quantizes dense models), negative or non-finite
// values: a clear error naming the file and the tensor, never a crash.
ImportanceMatrix read_importance_matrix(const std::string& path);

}  // namespace kestrel
