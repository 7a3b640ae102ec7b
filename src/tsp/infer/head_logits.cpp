// head_logits: rmsnorm(x) * model.norm, then x @ lm_head^T (decode_linear) with the tied or untied head.
#include "tsp/infer/head_logits.h"

#include "tsp/core/check.h"
#include "tsp/kernels/decode_linear.h"
#include "tsp/kernels/rmsnorm.h"

namespace tsp::infer {

Tensor head_logits(const model::ModelWeights& w, const Tensor& x) {
  const model::ModelConfig& c = w.config();
  TSP_CHECK_SHAPE(x.rank() == 2 && x.dim(1) == c.hidden_size(), "head_logits: x must be [N, ",
                  c.hidden_size(), "], got ", x.describe());
  TSP_CHECK_DTYPE(x.dtype() == w.dtype(), "head_logits: x is ", x.dtype(), " but the weights are ",
                  w.dtype());
  const int64_t n = x.dim(0);
  Tensor normed = Tensor::empty({n, c.hidden_size()}, x.dtype(), MemCategory::workspace);
  kernels::rmsnorm_forward(x, w.final_norm(), normed, Tensor(),
                           {.eps = static_cast<float>(c.rms_norm_eps())});
  Tensor logits = Tensor::empty({n, c.vocab_size()}, DType::f32, MemCategory::activations);
  kernels::decode_linear(normed, w.lm_head(), logits);
  return logits;
}

}  // namespace tsp::infer
