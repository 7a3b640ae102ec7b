// cache_attention: one decode_attention call per sequence and slot range (the cache read in place),
// partials merged with kernels::merge_partials, the engine's one online-softmax merge.
#include "tsp/infer/cache_attention.h"

#include <algorithm>

#include "tsp/core/check.h"
#include "tsp/kernels/decode_attention.h"
#include "tsp/kernels/softmax_merge.h"

namespace tsp::infer {

namespace {

void validate(const Tensor& q, const Tensor& q_pos, const KvCache& cache, const Tensor& o,
              const Tensor& lse, int64_t parts) {
  const int64_t B = cache.batch(), H = cache.config().num_attention_heads();
  const int64_t d = cache.config().head_dim();
  TSP_CHECK_SHAPE(q.rank() == 4 && q.shape() == Shape({B, 1, H, d}),
                  "cache_attention: q must be [", B, ", 1, ", H, ", ", d, "], got ", q.describe());
  TSP_CHECK_SHAPE(o.defined() && o.shape() == q.shape(), "cache_attention: o must be ", q.shape(),
                  ", got ", o.defined() ? o.describe() : std::string("undefined"));
  TSP_CHECK_SHAPE(lse.defined() && lse.shape() == Shape({B, H, 1}), "cache_attention: lse must be [",
                  B, ", ", H, ", 1], got ", lse.defined() ? lse.describe() : std::string("undefined"));
  TSP_CHECK_SHAPE(q_pos.defined() && q_pos.rank() == 1 && q_pos.dim(0) == B,
                  "cache_attention: q_pos must be [", B, "], got ",
                  q_pos.defined() ? q_pos.describe() : std::string("undefined"));
  TSP_CHECK(parts >= 1, "cache_attention: parts must be >= 1, got ", parts);
}

// Attention of q_b [1, 1, H, d] to slots [first, first + count) of sequence b.
void attend_range(const Tensor& q_b, const Tensor& q_pos_b, const KvCache& cache, int64_t layer,
                  int64_t b, int64_t first, int64_t count, Tensor& o_b, Tensor& lse_b) {
  const Tensor k = cache.k_filled(layer, b).slice(1, first, count);
  const Tensor v = cache.v_filled(layer, b).slice(1, first, count);
  const Tensor k_pos = cache.positions_filled(b).slice(0, first, count);
  kernels::decode_attention(q_b, k, v, q_pos_b, k_pos, o_b, lse_b, cache.config().sliding_window());
}

}  // namespace

void cache_attention(const Tensor& q, const Tensor& q_pos, const KvCache& cache, int64_t layer,
                     Tensor& o, Tensor& lse, int64_t parts) {
  validate(q, q_pos, cache, o, lse, parts);
  for (int64_t b = 0; b < cache.batch(); ++b) {
    const Tensor q_b = q.slice(0, b, 1), q_pos_b = q_pos.slice(0, b, 1);
    Tensor o_b = o.slice(0, b, 1), lse_b = lse.slice(0, b, 1);
    const int64_t n = cache.length(b);
    if (n == 0) {  // nothing cached: the empty partial
      o_b.zero();
      lse_b.fill(kernels::kNegInf);
      continue;
    }
    const int64_t chunk = (n + std::min(parts, n) - 1) / std::min(parts, n);
    attend_range(q_b, q_pos_b, cache, layer, b, 0, std::min(chunk, n), o_b, lse_b);
    if (chunk >= n) continue;
    Tensor o_part = Tensor::empty(o_b.shape(), o.dtype(), MemCategory::workspace);
    Tensor lse_part = Tensor::empty(lse_b.shape(), DType::f32, MemCategory::workspace);
    for (int64_t first = chunk; first < n; first += chunk) {
      attend_range(q_b, q_pos_b, cache, layer, b, first, std::min(chunk, n - first), o_part, lse_part);
      kernels::merge_partials(o_b, lse_b, o_part, lse_part, o_b, lse_b);
    }
  }
}

}  // namespace tsp::infer
