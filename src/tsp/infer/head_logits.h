// The language-model head for a few positions: final RMSNorm, then logits = n @ lm_head^T in fp32.
// Inference materialises logits only for the positions it samples from (one per sequence).
#pragma once

#include "tsp/core/tensor.h"
#include "tsp/model/model_weights.h"

namespace tsp::infer {

// x: [N, h] last residual stream of N positions, in the weights' dtype (unit inner stride).
// Returns logits [N, V] f32 (category activations: the caller owns them).
Tensor head_logits(const model::ModelWeights& w, const Tensor& x);

}  // namespace tsp::infer
