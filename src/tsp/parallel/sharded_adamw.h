// AdamW over one rank's parameter shards (any layout): fp32 moments the size of each local piece,
// fp32 masters for bf16 weights; per element the kernels::adamw update of the logical tensor. The
// one optimizer: a single process runs it over whole-tensor shards (single_layout.h).
#pragma once

#include <cstdint>
#include <vector>

#include "tsp/kernels/adamw.h"
#include "tsp/parallel/param_shard.h"

namespace tsp::parallel {

// The hyperparameters (kernels::AdamWConfig; weight decay on tensors whose LOGICAL shape has
// rank >= 2).
using ShardedAdamWConfig = kernels::AdamWConfig;

class ShardedAdamW {
 public:
  // weights: this rank's shards, all f32 or all bf16, contiguous locals (validated before any
  // allocation). Moments start at zero; masters (bf16 weights only) start as the f32 values of
  // the weights. Every state tensor is contiguous f32 under MemCategory::optimizer.
  ShardedAdamW(const std::vector<ParamShard>& weights, const ShardedAdamWConfig& config);

  // One update of every local piece with learning rate lr; steps() becomes steps() + 1 and is
  // the 1-based t of the bias corrections. grads: f32 shards of the same layout (same names,
  // kinds, offsets and local shapes), contiguous. bf16 weights are re-rounded from the masters.
  void step(const std::vector<ParamShard>& weights, const std::vector<ParamShard>& grads, double lr);

  int64_t steps() const { return steps_; }
  void set_steps(int64_t steps);  // restoring a checkpoint
  const ShardedAdamWConfig& config() const { return config_; }
  // The kernel options of one shard: weight decay iff its logical tensor has rank >= 2.
  kernels::AdamWOptions options_for(const ParamShard& param, double lr) const;

  // The optimizer state as shard lists of the weights' layout (same names, kinds, offsets;
  // `local` = the state tensor), so it is checkpointed with the same code as the weights.
  const std::vector<ParamShard>& exp_avg() const { return exp_avg_; }
  const std::vector<ParamShard>& exp_avg_sq() const { return exp_avg_sq_; }
  bool has_masters() const { return !masters_.empty(); }
  const std::vector<ParamShard>& masters() const { return masters_; }  // empty for f32 weights
  DType weight_dtype() const { return weight_dtype_; }
  // After masters were restored: re-round the working copy from them (no-op for f32 weights).
  void sync_weights_from_masters(const std::vector<ParamShard>& weights) const;

  // Bytes of moments and masters on this rank.
  int64_t bytes() const;

 private:
  // Throws unless `other` has the layout of the state (names, kinds, offsets, local shapes).
  void check_layout(const std::vector<ParamShard>& other, const char* what) const;

  ShardedAdamWConfig config_;
  DType weight_dtype_ = DType::f32;
  int64_t steps_ = 0;
  std::vector<ParamShard> exp_avg_;
  std::vector<ParamShard> exp_avg_sq_;
  std::vector<ParamShard> masters_;
};

// A shard list with the same names, kinds and offsets as `like`, each local a fresh zero-filled
// contiguous tensor of the local shape, `dtype` and `category` (gradients, optimizer state).
std::vector<ParamShard> zeros_like_shards(const std::vector<ParamShard>& like, DType dtype,
                                          MemCategory category);

}  // namespace tsp::parallel
