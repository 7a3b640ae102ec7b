// AdamW over a whole ModelWeights: fp32 moments (category optimizer), fp32 master weights when the
// model's weights are bf16 (the bf16 working copy is re-rounded from the master after each step),
// and the weights themselves as masters when they are f32. Each tensor is one kernels::adamw_step.
#pragma once

#include <cstdint>
#include <optional>

#include "tsp/kernels/adamw.h"
#include "tsp/model/model_weights.h"

namespace tsp::train {

// beta1 0.9, beta2 0.95, eps 1e-8, weight_decay 0.1 (matrices only: kernels::adamw_options).
using AdamWConfig = kernels::AdamWConfig;

class AdamW {
 public:
  // Moments start at zero; masters (bf16 weights only) start as the f32 values of `weights`.
  AdamW(const model::ModelWeights& weights, const AdamWConfig& config);

  // One update of every tensor with learning rate lr: step() becomes step() + 1 and is the
  // 1-based t of the bias corrections. grads: f32, same config as weights.
  void step(model::ModelWeights& weights, const model::ModelWeights& grads, double lr);

  int64_t steps() const { return steps_; }
  void set_steps(int64_t steps);  // restoring a checkpoint
  const AdamWConfig& config() const { return config_; }
  // kernels options of one tensor (its weight decay depends on the tensor's rank).
  kernels::AdamWOptions options_for(const Tensor& param, double lr) const;

  model::ModelWeights& exp_avg() { return exp_avg_; }
  model::ModelWeights& exp_avg_sq() { return exp_avg_sq_; }
  const model::ModelWeights& exp_avg() const { return exp_avg_; }
  const model::ModelWeights& exp_avg_sq() const { return exp_avg_sq_; }
  // fp32 masters; present only for bf16 weights.
  bool has_masters() const { return masters_.has_value(); }
  model::ModelWeights& masters() { return *masters_; }
  const model::ModelWeights& masters() const { return *masters_; }
  // After masters were restored: re-round the working copy from them.
  void sync_weights_from_masters(model::ModelWeights& weights) const;

 private:
  AdamWConfig config_;
  int64_t steps_ = 0;
  model::ModelWeights exp_avg_;
  model::ModelWeights exp_avg_sq_;
  std::optional<model::ModelWeights> masters_;
};

}  // namespace tsp::train
