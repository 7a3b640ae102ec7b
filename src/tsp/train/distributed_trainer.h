// The training loop over a mesh dp x tsp (TSP.md §7): every rank draws the same global batch, each
// data-parallel replica takes its rows, the layout (TSP) runs forward/backward inside the
// replica, gradients are summed over dp, clipped by the global norm over all shards and updated
// by a sharded AdamW. Checkpoints are the single-rank files, written and read shard by shard.
// docs/training.md, docs/tsp.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <vector>

#include "tsp/comm/mesh.h"
#include "tsp/data/batch_loader.h"
#include "tsp/parallel/layout.h"
#include "tsp/parallel/sharded_adamw.h"
#include "tsp/train/trainer.h"

namespace tsp::train {

// The mesh a run needs: dp x sp x tp x tsp from --dp, --sp, --tp, --tsp (pp = 1).
comm::MeshDegrees mesh_degrees_for(const RunConfig& run);

// Checks the run against the mesh and the model before anything is allocated (on every rank):
// the layout's degrees against the mesh, and the layout's divisibility rules (S, H, H_kv, F, V).
void validate_distributed_run(const model::ModelConfig& config, const RunConfig& run,
                              const comm::MeshDegrees& degrees);

// The layout of `run` (--layout tsp, tp, sp, tp+sp, dp or fsdp-sp) on this rank: its weights
// initialised (--seed, the same values as single-rank) or read from --init.
std::unique_ptr<parallel::Layout> make_layout(comm::Mesh& mesh, const model::ModelConfig& config,
                                              const RunConfig& run);

class DistributedTrainer final : public TrainLoopHost {
 public:
  // Collective over the mesh. output.log should be set on world rank 0 only. run.checkpoint_dir
  // is checked (check_checkpoint_dir_for_run) on the rank that writes, before any step; a refusal
  // is thrown on every rank with the same message.
  DistributedTrainer(comm::Mesh& mesh, const model::ModelConfig& config, const RunConfig& run,
                     const TrainData& data, TrainerOutput output = {});
  // The same for one in-memory stream.
  DistributedTrainer(comm::Mesh& mesh, const model::ModelConfig& config, const RunConfig& run,
                     std::vector<int32_t> tokens, TrainerOutput output = {});
  ~DistributedTrainer() override;

  StepMetrics train_step() override;
  EvalMetrics validate() override;
  void save_checkpoint(const std::filesystem::path& dir) const override;
  int64_t step() const override { return optimizer_.steps(); }
  // All-reduce MAX of `mine` over the world communicator (one int): every rank stops together.
  int agree_stop_signal(int mine) override;
  // Rank 0 of the primary replica group, the rank that writes the checkpoint's files.
  bool writes_checkpoint_files() const override;
  // measure_mfu_basis over the world's ranks, on world rank 0 (the one that prints and writes
  // metrics) when it has a log or a metrics file; none elsewhere.
  MfuBasis mfu_basis() override;
  // The signal that stopped the last run() early (0: it ran to the end); the same on all ranks.
  int preempted_signal() const { return preempted_signal_; }
  // Header lines, the loop, then the per-rank memory and traffic table. Collective.
  EvalMetrics run();
  void load_checkpoint(const std::filesystem::path& dir);

  parallel::Layout& layout() { return *layout_; }
  const parallel::ShardedAdamW& optimizer() const { return optimizer_; }
  // Collective: one line per rank with peak bytes per memory category and the bytes it sent in
  // the last step, gathered to world rank 0 (the returned text is empty elsewhere).
  std::string per_rank_report();

 private:
  void say(const std::string& line) const;

  comm::Mesh& mesh_;
  model::ModelConfig config_;
  RunConfig run_;
  TrainerOutput out_;
  RunData data_;
  data::BatchLoader loader_;
  std::unique_ptr<parallel::Layout> layout_;
  parallel::ShardedAdamW optimizer_;
  int64_t tokens_seen_ = 0;
  int64_t last_step_bytes_sent_ = 0;
  int preempted_signal_ = 0;
  std::unique_ptr<MetricsFile> metrics_;
};

}  // namespace tsp::train
