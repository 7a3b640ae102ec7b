// Naive double-precision softmax cross-entropy reference that materialises the full [N, V] logits.
// The chunked kernels (cross_entropy.h) are tested against it; never on a hot path.
#pragma once

#include <cstdint>
#include <vector>

#include "tsp/kernels/reference/pointwise_ref.h"

namespace tsp::kernels::reference {

struct CrossEntropyRef {
  Vec lse;              // [N]
  Vec loss;             // [N], 0 for ignored tokens
  double loss_sum = 0;  // over valid tokens
  int64_t n_valid = 0;
};

// x [n, h], w [v, h] (logits = x w^T), targets [n] in [0, v) or ignore_index.
CrossEntropyRef cross_entropy_forward(const Vec& x, const Vec& w, int64_t n, int64_t h, int64_t v,
                                      const std::vector<int64_t>& targets, int64_t ignore_index);

// Gradient of scale * sum_valid loss: dx [n, h], dw [v, h] (overwritten).
void cross_entropy_backward(const Vec& x, const Vec& w, int64_t n, int64_t h, int64_t v,
                            const std::vector<int64_t>& targets, int64_t ignore_index, double scale,
                            Vec& dx, Vec& dw);

}  // namespace tsp::kernels::reference
