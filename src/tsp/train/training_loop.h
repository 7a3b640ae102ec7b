// What every training run shares around its steps: the loop (progress lines, metrics, periodic
// validation, checkpoints, preemption), validation windows, the run's data, config and checkpoint
// destination checks. The trainer (trainer.h) is the one TrainLoopHost. docs/training.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "tsp/data/batch_loader.h"
#include "tsp/model/model_config.h"
#include "tsp/model/transformer.h"
#include "tsp/train/data_source.h"
#include "tsp/train/metrics.h"
#include "tsp/train/run_config.h"

namespace tsp::train {

// Mean validation loss of `weights` over min(max_batches, W / rows) batches of rows = min(batch, W)
// windows of `val_tokens`, where the W windows [k seq, k seq + seq + 1) tile the split and the
// windows used are spread evenly over it (window j * W / count). Deterministic: tsp eval and the
// trainer get the same number.
// Only the windows used are read from the source.
EvalMetrics evaluate_loss(model::Transformer& model, const model::ModelWeights& weights,
                          const data::TokenSource& val_tokens, int64_t batch, int64_t seq, int64_t max_batches);
EvalMetrics evaluate_loss(model::Transformer& model, const model::ModelWeights& weights,
                          const std::vector<int32_t>& val_tokens, int64_t batch, int64_t seq,
                          int64_t max_batches);
// The same windows, for any engine: forward(inputs, targets) on [rows, seq] i32 batches returns
// the batch's loss sums (a distributed engine returns the sums over all its ranks).
using BatchLoss = std::function<model::LossSum(const Tensor& inputs, const Tensor& targets)>;
EvalMetrics evaluate_loss(const BatchLoss& forward, const data::TokenSource& val_tokens, int64_t batch,
                          int64_t seq, int64_t max_batches);
EvalMetrics evaluate_loss(const BatchLoss& forward, const std::vector<int32_t>& val_tokens,
                          int64_t batch, int64_t seq, int64_t max_batches);

// What the training loop needs from a trainer (train::Trainer; tests drive the loop with fakes).
class TrainLoopHost {
 public:
  virtual ~TrainLoopHost() = default;
  virtual StepMetrics train_step() = 0;
  virtual EvalMetrics validate() = 0;
  virtual void save_checkpoint(const std::filesystem::path& dir) const = 0;
  virtual int64_t step() const = 0;
  // The stop signal all ranks act on, from this rank's `mine` (0: none): alone, `mine`; the
  // trainer takes the maximum over the world (collective, one int per step).
  virtual int agree_stop_signal(int mine) { return mine; }
  // Whether this rank writes the checkpoint's files (and so updates a run directory's "latest"
  // and prunes its history): a single rank always; under mpirun one rank.
  virtual bool writes_checkpoint_files() const { return true; }
  // What the progress line's MFU divides by (metrics.h); none by default (no MFU printed). Asked
  // once, at the start of run_training_loop.
  virtual MfuBasis mfu_basis() { return {}; }
};

// Saves a checkpoint at host.step() and returns the directory written: run.checkpoint_dir itself,
// or with --keep-checkpoints K its step directory checkpoint_step_dir_name(step), after which the
// writing rank points "latest" at it and prunes the history to K (core/checkpoint_history.h).
std::filesystem::path save_run_checkpoint(TrainLoopHost& host, const RunConfig& run);

// The loop from host.step() to run.steps: progress lines (say), metrics file, periodic validation
// and checkpoints, then a final validation, checkpoint and the "done:" line. Returns the final
// validation. `say` and `metrics` may be no-ops on all but one rank; every rank runs the loop.
// Preemption (preemption.h): after each step but the last, the ranks agree on
// host.agree_stop_signal(preemption_signal()); when it is non-zero the loop saves a checkpoint
// (when run.checkpoint_dir is set), says one "preempted:" line, stores the signal in
// *preempted_by (when given) and returns an empty EvalMetrics without the final validation.
EvalMetrics run_training_loop(TrainLoopHost& host, const RunConfig& run, double unigram_nats,
                              MetricsFile* metrics,
                              const std::function<void(const std::string&)>& say,
                              bool print_every_step, int* preempted_by = nullptr);

// The run's training and validation sources of `data` (prepare_run_data with run.val_fraction
// and run.seq, after run.validate()); InvalidArgument when either part is shorter than --seq + 1.
RunData run_data_for(const TrainData& data, const RunConfig& run, const model::ModelConfig& config);

// The batch loader of a run: its parts' training sources, --batch, --seq, --seed, shuffled.
data::BatchLoader loader_for_run(const RunData& data, const RunConfig& run);

// The model config a run trains: the preset, --config file or --init checkpoint, with
// torch_dtype set to --dtype. (--resume: the checkpoint's config.json.) --init and --resume may
// name a run directory (its latest checkpoint) or a step directory.
model::ModelConfig model_config_for_run(const RunConfig& run);
// The model line's dtype: --dtype and what the source stores, e.g. "f32 (--dtype; the --init
// checkpoint's config.json stores float16)" or "bf16 (--dtype; preset tiny)".
std::string run_dtype_origin(const RunConfig& run);

// Bytes a checkpoint of `config` in `dtype` takes on disk: the weights, the optimizer moments
// (2 x f32 per parameter), the f32 masters of bf16 runs, plus headers and config (an upper bound).
uint64_t checkpoint_bytes(const model::ModelConfig& config, DType dtype);

// The pre-flight check of run.checkpoint_dir (nothing when it is empty), before any training
// step: tsp::check_checkpoint_destination with checkpoint_bytes(config, run.model_dtype())
// (--keep-checkpoints: tsp::check_checkpoint_run_dir of the run directory):
// refused are a regular file, `/`, a non-empty directory this engine did not write, an unwritable
// or uncreatable location, a target on another file system than its parent, too little free space.
void check_checkpoint_dir_for_run(const model::ModelConfig& config, const RunConfig& run);

struct TrainerOutput {
  std::ostream* log = nullptr;  // progress lines and messages; nullptr: silent
  bool print_every_step = true;
};

}  // namespace tsp::train
