#include "tsp/train/optimizer.h"

#include "tsp/core/check.h"

namespace tsp::train {

AdamW::AdamW(const model::ModelWeights& weights, const AdamWConfig& config)
    : config_(config),
      exp_avg_(weights.config(), DType::f32, MemCategory::optimizer),
      exp_avg_sq_(weights.config(), DType::f32, MemCategory::optimizer) {
  TSP_CHECK(weights.dtype() == DType::f32 || weights.dtype() == DType::bf16,
            "AdamW: weights must be f32 or bf16, got ", weights.dtype());
  if (weights.dtype() != DType::f32) {
    masters_.emplace(weights.config(), DType::f32, MemCategory::optimizer);
    masters_->copy_from(weights);
  }
}

void AdamW::set_steps(int64_t steps) {
  TSP_CHECK_GE(steps, int64_t{0}, "AdamW::set_steps");
  steps_ = steps;
}

kernels::AdamWOptions AdamW::options_for(const Tensor& param, double lr) const {
  return kernels::adamw_options(config_, param.rank(), lr);
}

void AdamW::step(model::ModelWeights& weights, const model::ModelWeights& grads, double lr) {
  TSP_CHECK(grads.dtype() == DType::f32, "AdamW::step: gradients must be f32, got ", grads.dtype());
  const auto w = weights.named();
  const auto g = grads.named();
  const auto m = exp_avg_.named();
  const auto v = exp_avg_sq_.named();
  TSP_CHECK(w.size() == g.size() && w.size() == m.size(), "AdamW::step: weights have ", w.size(),
            " tensors, gradients ", g.size(), ", moments ", m.size());
  std::vector<std::pair<std::string, Tensor>> p;
  if (masters_) p = masters_->named();
  ++steps_;
  for (size_t i = 0; i < w.size(); ++i) {
    TSP_ASSERT(w[i].first == g[i].first && w[i].first == m[i].first, "AdamW: tensor order differs: ",
               w[i].first, " vs ", g[i].first);
    const kernels::AdamWOptions o = options_for(w[i].second, lr);
    if (masters_) {
      kernels::adamw_step(p[i].second, m[i].second, v[i].second, g[i].second, steps_, o, w[i].second);
    } else {
      kernels::adamw_step(w[i].second, m[i].second, v[i].second, g[i].second, steps_, o);
    }
  }
}

void AdamW::sync_weights_from_masters(model::ModelWeights& weights) const {
  if (masters_) weights.copy_from(*masters_);
}

}  // namespace tsp::train
