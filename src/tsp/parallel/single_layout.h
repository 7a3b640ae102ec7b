// The degree-1 layout: the plain single-rank model (model::Transformer over whole ModelWeights)
// behind the Layout interface, so one trainer, optimizer, clipping and checkpoint writer serve a
// single process and every parallel layout alike (train/trainer.h).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "tsp/comm/communicator.h"
#include "tsp/model/model_weights.h"
#include "tsp/model/transformer.h"
#include "tsp/parallel/layout.h"

namespace tsp::parallel {

// Every tensor of `w` as a whole (ShardKind::replicated) shard viewing it, in weight_specs order:
// the degree-1 case of every layout's shard list (optimizer, clipping, checkpoints).
std::vector<ParamShard> whole_shards(const model::ModelWeights& w);

class SingleLayout final : public Layout {
 public:
  // `group`: a communicator of size 1 (the one-process mesh's world); it is the replica group
  // (clipping and checkpoints run over it). Weights: ModelWeights::initialize(config,
  // options.dtype, seed), or read from a Hugging Face checkpoint directory.
  SingleLayout(comm::Communicator& group, const model::ModelConfig& config,
               const model::TransformerOptions& options, uint64_t seed);
  SingleLayout(comm::Communicator& group, const model::ModelConfig& config,
               const model::TransformerOptions& options, const std::filesystem::path& hf_dir);

  std::string describe() const override { return "single (one rank, the whole model)"; }
  // Every tensor whole (ShardKind::replicated), views of model_weights() / model_grads().
  const std::vector<ParamShard>& weights() const override { return weight_shards_; }
  const std::vector<ParamShard>& grads() const override { return grad_shards_; }
  comm::Communicator& replica_group() override { return *group_; }
  bool primary() const override { return true; }
  void zero_grads() override { grads_.zero(); }
  void reduce_grads() override {}
  const CommClock& comm_wait() const override { return clock_; }
  // model::predicted_activation_peak_bytes on the whole [batch, seq].
  int64_t predicted_activation_peak_bytes(int64_t batch, int64_t seq) const override;
  const model::ModelConfig& model_config() const override { return weights_.config(); }

  // The same tensors as the whole model's weights and (f32) gradients.
  const model::ModelWeights& model_weights() const { return weights_; }
  const model::ModelWeights& model_grads() const { return grads_; }

 protected:
  void check_batch(const Tensor& tokens, const Tensor& targets) const override;
  std::unique_ptr<model::StepStrategy> make_step(const Tensor& tokens, const Tensor& targets,
                                                 bool backward) override;
  bool recompute() const override { return model_.options().recompute; }

 private:
  SingleLayout(comm::Communicator& group, const model::ModelConfig& config,
               const model::TransformerOptions& options, model::ModelWeights weights);

  comm::Communicator* group_;
  model::ModelWeights weights_, grads_;
  model::Transformer model_;
  std::vector<ParamShard> weight_shards_, grad_shards_;
  CommClock clock_;  // never advances: nothing is communicated
};

}  // namespace tsp::parallel
