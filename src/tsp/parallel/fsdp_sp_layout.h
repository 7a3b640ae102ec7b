// The FSDP/ZeRO-3-over-SP baseline (TSP.md §8; docs/fsdp_sp.md) behind the Layout interface:
// tokens zigzag-sharded over the mesh's sp axis as in SP; parameters, gradients and optimizer
// state split 1/D by rows (FsdpSpWeights); each layer's full weights all-gathered (one packed
// call, the next layer's prefetched) before its forward and again before its backward, its f32
// gradient reduce-scattered to the owners; embedding and LM head tables all-gathered when used.
// This is what users of existing frameworks compare TSP against.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "tsp/comm/mesh.h"
#include "tsp/kernels/cross_entropy.h"
#include "tsp/parallel/comm_clock.h"
#include "tsp/parallel/fsdp_sp_block.h"
#include "tsp/parallel/fsdp_sp_weights.h"
#include "tsp/parallel/sharded_layout.h"

namespace tsp::parallel {

struct FsdpSpOptions {
  // Post the next layer's all-gather (iall_gather) before computing the current layer: two
  // full-layer buffers in flight instead of one (the standard FSDP forward/backward prefetch).
  bool prefetch = true;
};

class FsdpSpLayout final : public ShardedLayout<FsdpSpWeights> {
 public:
  // mesh: dp x pp x sp (tp = tsp = 1); the layout runs on mesh.axis(sp) over this rank's
  // pipeline stage's layers (PipelineStage::on), the trainer sums gradients over dp. options.dtype must equal dtype. Weights are exactly this rank's rows
  // of model::ModelWeights::initialize(config, dtype, seed). Validates the mesh, the config
  // against the degree and the options on every rank before allocating anything.
  FsdpSpLayout(comm::Mesh& mesh, const model::TransformerOptions& options,
               const model::ModelConfig& config, DType dtype, uint64_t seed,
               const FsdpSpOptions& fsdp = {});
  // The same layout with its weights read from the HF checkpoint directory `dir` (each rank reads
  // only its rows: zeros, then load_shards_from_hf(dir, weights())).
  static std::unique_ptr<FsdpSpLayout> from_hf(comm::Mesh& mesh,
                                               const model::TransformerOptions& options,
                                               const model::ModelConfig& config, DType dtype,
                                               const std::filesystem::path& dir,
                                               const FsdpSpOptions& fsdp = {});

  std::string describe() const override;
  // The loss share is that of THIS rank's zigzag tokens. Every gradient is already
  // reduce-scattered to its owner when forward_backward returns, so nothing is left to reduce
  // inside the replica (no replicated parameter): a no-op.
  void reduce_grads() override {}
  const CommClock& comm_wait() const override { return clock_; }
  // Exactly model::predicted_activation_peak_bytes(config, options, batch, seq / D).
  int64_t predicted_activation_peak_bytes(int64_t batch, int64_t seq) const override;

  const FsdpSpWeights& fsdp_weights() const { return weights_; }
  const FsdpSpWeights& fsdp_grads() const { return grads_; }
  const model::TransformerOptions& options() const { return options_; }
  const FsdpSpOptions& fsdp_options() const { return fsdp_; }

 protected:
  void check_batch(const Tensor& tokens, const Tensor& targets) const override;
  std::unique_ptr<model::StepStrategy> make_step(const Tensor& tokens, const Tensor& targets,
                                                 bool backward) override;
  bool recompute() const override { return options_.recompute; }

 private:
  struct Zeros {};
  FsdpSpLayout(Zeros, comm::Mesh& mesh, const model::TransformerOptions& options,
               const model::ModelConfig& config, DType dtype, const FsdpSpOptions& fsdp);
  FsdpSpLayout(comm::Mesh& mesh, const model::TransformerOptions& options, FsdpSpWeights weights,
               const FsdpSpOptions& fsdp);

  model::TransformerOptions options_;
  FsdpSpOptions fsdp_;
  CommClock clock_;
};

}  // namespace tsp::parallel
