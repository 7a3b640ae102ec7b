// The baselines of TSP.md §8 behind the Layout interface, as ONE layout over the tp and sp axes
// of a comm::Mesh: Megatron tensor parallelism over tp (TP), context parallelism over sp (SP),
// both at once (TP+SP), and with tp = sp = 1 the replicated model of data parallelism (DP; the
// trainer's dp axis sums the gradients). docs/baselines.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "tsp/comm/mesh.h"
#include "tsp/parallel/sharded_layout.h"
#include "tsp/parallel/tp_sp_block.h"
#include "tsp/parallel/tp_weights.h"

namespace tsp::parallel {

// Activations (MemCategory::activations) of TpSpLayout::forward_backward on [batch, seq] replica
// rows, per rank: the residual stream [B S / sp, h] x (L+1) (replicated over tp), every block's
// saved tensors of its head group and MLP shard (tp_sp_block_activation_bytes; one block with
// recompute) and the head's [B S / sp] f32 lse. Validates first.
int64_t tp_sp_predicted_activation_peak_bytes(const model::ModelConfig& config,
                                              const model::TransformerOptions& options, int tp,
                                              int sp, int64_t batch, int64_t seq);

class TpSpLayout final : public ShardedLayout<TpWeights> {
 public:
  // mesh: degrees dp x pp x sp x tp (tsp = 1); this rank's coordinates pick its pipeline stage's
  // layers (PipelineStage::on: pp must divide the layers), its tp shard and its
  // sp tokens. The model's sizes are validated for the tp degree (validate_tp_sp) on every rank
  // before anything is allocated. Weights: exactly model::ModelWeights::initialize(config,
  // options.dtype, seed), generated one tensor at a time (TpWeights::initialize at degree tp).
  TpSpLayout(comm::Mesh& mesh, const model::ModelConfig& config,
             const model::TransformerOptions& options, uint64_t seed);
  // The same, weights read from a Hugging Face checkpoint directory (each rank reads its pieces:
  // load_shards_from_hf).
  TpSpLayout(comm::Mesh& mesh, const model::ModelConfig& config,
             const model::TransformerOptions& options, const std::filesystem::path& hf_dir);

  // "tp T=2 (rank 1)", "sp S=4 (rank 3)", "tp+sp T=2 x S=2 (tp 1, sp 0)", "dp (replicated model)".
  std::string describe() const override;
  // The replica group is the tp axis (its ranks hold every parameter once: tp pieces, norm gains
  // on each, counted once; across pipeline stages pp x tp of this (dp, sp) coordinate). The sp
  // ranks hold identical copies (after reduce_grads), so they are outside it. The primary replica
  // is dp coordinate 0 and sp coordinate 0.
  // Every rank computes its sp zigzag columns; the loss share is the local tokens' on tp rank 0
  // (of the last pipeline stage) and zero on the other tp ranks.
  // Every gradient summed over sp (packed all-reduces, sum_over_replicas): weights are replicated
  // over sp and each sp rank saw different tokens. Nothing over tp (see docs/baselines.md).
  void reduce_grads() override;
  const CommClock& comm_wait() const override { return clock_; }
  int64_t predicted_activation_peak_bytes(int64_t batch, int64_t seq) const override;

  int tp_degree() const { return inner_->size(); }
  int sp_degree() const { return sp_->size(); }
  const TpWeights& shard_weights() const { return weights_; }  // TSP's partition at degree tp

 protected:
  void check_batch(const Tensor& tokens, const Tensor& targets) const override;
  std::unique_ptr<model::StepStrategy> make_step(const Tensor& tokens, const Tensor& targets,
                                                 bool backward) override;
  bool recompute() const override { return options_.recompute; }

 private:
  TpSpLayout(comm::Mesh& mesh, const model::TransformerOptions& options, TpWeights weights);

  comm::Communicator* sp_;
  model::TransformerOptions options_;
  CommClock clock_;
};

}  // namespace tsp::parallel
