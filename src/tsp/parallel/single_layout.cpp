// SingleLayout: the whole model on one rank, its tensors exposed as replicated shards.
#include "tsp/parallel/single_layout.h"

#include "tsp/core/check.h"
#include "tsp/model/hf_checkpoint.h"
#include "tsp/model/token_batch.h"

namespace tsp::parallel {

std::vector<ParamShard> whole_shards(const model::ModelWeights& w) {
  std::vector<ParamShard> shards;
  for (const auto& [name, t] : w.named()) {
    ParamShard s;
    s.name = name;
    s.full_shape = t.shape();
    s.kind = ShardKind::replicated;
    s.offset = 0;
    s.extent = t.shape()[0];
    s.local = t;
    shards.push_back(std::move(s));
  }
  return shards;
}

namespace {

// Checked before any weight is allocated (the weights argument evaluates it first).
void check_one_rank(const comm::Communicator& group) {
  TSP_CHECK(group.size() == 1, "the single layout runs on one rank, not ", group.size());
}

model::ModelWeights read_weights(const model::ModelConfig& config, DType dtype,
                                 const std::filesystem::path& hf_dir) {
  const model::HfCheckpoint ckpt(hf_dir);
  model::ModelWeights w(config, dtype, MemCategory::weights);
  for (const auto& [name, t] : w.named()) ckpt.read_into(name, t);
  return w;
}

}  // namespace

SingleLayout::SingleLayout(comm::Communicator& group, const model::ModelConfig& config,
                           const model::TransformerOptions& options, model::ModelWeights weights)
    : Layout(PipelineStage::whole_model(config.num_hidden_layers())),
      group_(&group),
      weights_(std::move(weights)),
      grads_(config, DType::f32, MemCategory::grads),
      model_(config, options),
      weight_shards_(whole_shards(weights_)),
      grad_shards_(whole_shards(grads_)) {
  check_one_rank(group);  // callers passing their own weights
}

SingleLayout::SingleLayout(comm::Communicator& group, const model::ModelConfig& config,
                           const model::TransformerOptions& options, uint64_t seed)
    : SingleLayout(group, config, options,
                   (check_one_rank(group), model::ModelWeights::initialize(config, options.dtype, seed))) {}

SingleLayout::SingleLayout(comm::Communicator& group, const model::ModelConfig& config,
                           const model::TransformerOptions& options, const std::filesystem::path& hf_dir)
    : SingleLayout(group, config, options,
                   (check_one_rank(group), read_weights(config, options.dtype, hf_dir))) {}

void SingleLayout::check_batch(const Tensor& tokens, const Tensor& targets) const {
  model::check_token_batch(model_.config(), tokens, targets, "single layout");
}

std::unique_ptr<model::StepStrategy> SingleLayout::make_step(const Tensor& tokens, const Tensor& targets,
                                                             bool backward) {
  return model_.step(weights_, tokens, targets, backward ? &grads_ : nullptr);
}

int64_t SingleLayout::predicted_activation_peak_bytes(int64_t batch, int64_t seq) const {
  return model::predicted_activation_peak_bytes(model_.config(), model_.options(), batch, seq);
}

}  // namespace tsp::parallel
