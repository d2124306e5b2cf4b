#include "runtime/ngram_drafter.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace kestrel {

NgramDrafter::NgramDrafter(int n, int m) : n_(n), m_(m) {
  if (n < 1) fail("ngram-simple: the n-gram needs at least one token (--spec-ngram-simple-size-n ", n, ")");
  if (m < 1) fail("ngram-simple: the draft needs at least one token (--spec-ngram-simple-size-m ", m, ")");
}

void NgramDrafter::draft(std::span<const int32_t> context, int n_max, std::vector<int32_t>& out) {
  out.clear();
  const int64_t len = static_cast<int64_t>(context.size());
  const int64_t n = n_;
  const int64_t want = std::min<int64_t>(m_, n_max);
  if (want <= 0 || len <= n) return;
  const int32_t* pattern = context.data() + (len - n);
  // Latest earlier occurrence first: it is the likeliest to continue as the
  // text does now (the line being edited, the last quoted block).
  for (int64_t j = len - n - 1; j >= 0; --j) {
    if (context[j] != pattern[0] || std::memcmp(context.data() + j, pattern, n * sizeof(int32_t)) != 0) continue;
    const int64_t from = j + n;  // < len: j + n <= len - 1
    const int64_t take = std::min(want, len - from);
    out.assign(context.begin() + from, context.begin() + from + take);
    return;
  }
}

}  // namespace kestrel
