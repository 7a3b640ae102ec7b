// The one trainer, for one process and for a mesh alike (TSP.md §7): every rank draws the same
// global batch, each data-parallel replica takes its rows, the layout runs forward/backward
// inside the replica (a single process: parallel::SingleLayout, the plain model), gradients are
// summed over dp, clipped by the global norm over all shards and updated by one sharded AdamW.
// Checkpoints are the single-rank Hugging Face files, written and read shard by shard, so any
// layout resumes any. docs/training.md, docs/tsp.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <vector>

#include "tsp/comm/mesh.h"
#include "tsp/data/batch_loader.h"
#include "tsp/parallel/layout.h"
#include "tsp/parallel/sharded_adamw.h"
#include "tsp/train/training_loop.h"

namespace tsp::train {

// The mesh a run needs: dp x pp x sp x tp x tsp from --dp, --pp, --sp, --tp, --tsp; all ones for
// --layout single.
comm::MeshDegrees mesh_degrees_for(const RunConfig& run);

// Checks the run against the mesh and the model before anything is allocated (on every rank):
// the layout's degrees against the mesh, and the layout's divisibility rules (S, H, H_kv, F, V;
// pp must divide the layers).
// --layout single runs only on a mesh of one rank.
void validate_distributed_run(const model::ModelConfig& config, const RunConfig& run,
                              const comm::MeshDegrees& degrees);

// The layout of `run` on this rank (--layout single, tsp, tp, sp, tp+sp, dp or fsdp-sp): its
// weights initialised (--seed, the same values as single-rank) or read from --init.
std::unique_ptr<parallel::Layout> make_layout(comm::Mesh& mesh, const model::ModelConfig& config,
                                              const RunConfig& run);

class Trainer final : public TrainLoopHost {
 public:
  // Collective over the mesh. output.log should be set on world rank 0 only. run.checkpoint_dir
  // is checked (check_checkpoint_dir_for_run) on the rank that writes (world rank 0) before
  // anything is allocated; a refusal is thrown on every rank with the same message. `data` is
  // --data opened (open_train_data): streams without validation shards are split into train and
  // validation views (split_train_val's rule, run.val_fraction). If run.resume is set, the
  // weights and the training state are restored from that checkpoint (load_checkpoint).
  Trainer(comm::Mesh& mesh, const model::ModelConfig& config, const RunConfig& run,
          const TrainData& data, TrainerOutput output = {});
  // The same for one in-memory stream.
  Trainer(comm::Mesh& mesh, const model::ModelConfig& config, const RunConfig& run,
          std::vector<int32_t> tokens, TrainerOutput output = {});
  // One process, no MPI: the trainer owns a mesh of one rank over comm's self transport
  // (--layout single, or any layout at degree 1).
  Trainer(const model::ModelConfig& config, const RunConfig& run, const TrainData& data,
          TrainerOutput output = {});
  Trainer(const model::ModelConfig& config, const RunConfig& run, std::vector<int32_t> tokens,
          TrainerOutput output = {});
  ~Trainer() override;

  // One optimizer step on the next global batch.
  StepMetrics train_step() override;
  // Validation loss on the held-out split (run.eval_batches batches); the same on every rank.
  EvalMetrics validate() override;
  // Writes the checkpoint directory: config.json, model.safetensors (weights in the model dtype),
  // train_state.safetensors; replaces `dir` atomically as a whole. Collective.
  void save_checkpoint(const std::filesystem::path& dir) const override;
  int64_t step() const override { return optimizer_.steps(); }
  // All-reduce MAX of `mine` over the world communicator (one int): every rank stops together.
  int agree_stop_signal(int mine) override;
  // Rank 0 of the primary replica group (world rank 0), the rank that writes the checkpoint's files.
  bool writes_checkpoint_files() const override;
  // measure_mfu_basis over the world's ranks, on world rank 0 (the one that prints and writes
  // metrics) when it has a log or a metrics file; none elsewhere.
  MfuBasis mfu_basis() override;
  // Header lines, the loop, then the memory report (one process: the ledger by category; a mesh:
  // the per-rank table). Collective. Returns the final validation.
  EvalMetrics run();
  // The signal that stopped the last run() early (0: it ran to the end); the same on all ranks.
  int preempted_signal() const { return preempted_signal_; }
  // Restores weights, optimizer, step and data position from a directory written by
  // save_checkpoint by any layout (or a run directory: its latest); the saved model config, data
  // fingerprint and fixed run settings must equal this run's (check_resume_matches:
  // InvalidArgument listing the differences).
  void load_checkpoint(const std::filesystem::path& dir);

  parallel::Layout& layout() { return *layout_; }
  const parallel::Layout& layout() const { return *layout_; }
  // This rank's weight shards and their last step's gradients (f32, after clipping).
  const std::vector<parallel::ParamShard>& weights() const { return layout_->weights(); }
  const std::vector<parallel::ParamShard>& grads() const { return layout_->grads(); }
  const parallel::ShardedAdamW& optimizer() const { return optimizer_; }
  const comm::Mesh& mesh() const { return mesh_; }
  const model::ModelConfig& config() const { return config_; }
  const RunConfig& run_config() const { return run_; }
  data::LoaderState loader_state() const { return loader_.state(); }
  int64_t train_tokens() const { return loader_.num_tokens(); }
  const data::TokenSource& val_tokens() const { return *data_.val; }
  double unigram_nats() const { return data_.unigram_nats; }
  double lr_for_step(int64_t step) const;
  // Collective: one line per rank with peak bytes per memory category and the bytes it sent in
  // the last step, gathered to world rank 0 (the returned text is empty elsewhere).
  std::string per_rank_report();

 private:
  void say(const std::string& line) const;
  // The constructors' common end: dtype check, --resume, the metrics file.
  void finish_construction();

  std::unique_ptr<comm::Mesh> own_mesh_;  // the one-process constructors' mesh
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
