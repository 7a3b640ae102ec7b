// The single-rank training loop: deterministic batches from a seed, micro-batch gradient
// accumulation normalised by the valid targets of the whole global batch, global-norm clipping,
// warmup + cosine AdamW, periodic validation on the held-out split, and checkpoints (HF weights +
// training state) from which a run resumes bit for bit. docs/training.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <vector>

#include "tsp/data/batch_loader.h"
#include "tsp/model/model_config.h"
#include "tsp/model/model_weights.h"
#include "tsp/model/transformer.h"
#include "tsp/train/data_source.h"
#include "tsp/train/grad_clip.h"
#include "tsp/train/lr_schedule.h"
#include "tsp/train/metrics.h"
#include "tsp/train/optimizer.h"
#include "tsp/train/run_config.h"
#include "tsp/train/train_state.h"

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

// What the training loop needs from a trainer (single-rank or distributed).
class TrainLoopHost {
 public:
  virtual ~TrainLoopHost() = default;
  virtual StepMetrics train_step() = 0;
  virtual EvalMetrics validate() = 0;
  virtual void save_checkpoint(const std::filesystem::path& dir) const = 0;
  virtual int64_t step() const = 0;
  // The stop signal all ranks act on, from this rank's `mine` (0: none): a single rank returns
  // it; a distributed trainer takes the maximum over the world (collective, one int per step).
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

class Trainer final : public TrainLoopHost {
 public:
  // A new run: weights from ModelWeights::initialize(seed) or, when run.init is set, read from
  // that HF checkpoint. `data` is --data opened (open_train_data): streams without validation
  // shards are split into train and validation views (split_train_val's rule, run.val_fraction).
  // If run.resume is set, the weights and the training state are restored from that checkpoint (see load_checkpoint). run.checkpoint_dir is checked
  // first (check_checkpoint_dir_for_run), before anything is allocated.
  Trainer(const model::ModelConfig& config, const RunConfig& run, const TrainData& data,
          TrainerOutput output = {});
  // The same for one in-memory stream.
  Trainer(const model::ModelConfig& config, const RunConfig& run, std::vector<int32_t> tokens,
          TrainerOutput output = {});
  ~Trainer();

  // One optimizer step on the next global batch.
  StepMetrics train_step() override;
  // Validation loss on the held-out split (run.eval_batches batches).
  EvalMetrics validate() override;
  // The whole loop from the current step to run.steps: progress lines, metrics file, periodic
  // validation and checkpoints, a final validation and checkpoint. Returns the final validation.
  EvalMetrics run();
  // The signal that stopped the last run() early (0: it ran to the end).
  int preempted_signal() const { return preempted_signal_; }

  // Writes the checkpoint directory: config.json, model.safetensors (weights in the model dtype),
  // train_state.safetensors. Replaces `dir` atomically as a whole.
  void save_checkpoint(const std::filesystem::path& dir) const override;
  // measure_mfu_basis on this process (one rank) when something shows it (a log or a metrics file).
  MfuBasis mfu_basis() override;
  // Restores weights, optimizer, step and data position from a directory written by
  // save_checkpoint (or a run directory: its latest); the saved model config, data fingerprint
  // and fixed run settings must equal this run's (check_resume_matches: InvalidArgument listing
  // the differences).
  void load_checkpoint(const std::filesystem::path& dir);

  int64_t step() const override { return optimizer_.steps(); }
  const model::ModelConfig& config() const { return config_; }
  const RunConfig& run_config() const { return run_; }
  const model::ModelWeights& weights() const { return weights_; }
  // The last step's gradients (after clipping), f32.
  const model::ModelWeights& grads() const { return grads_; }
  const AdamW& optimizer() const { return optimizer_; }
  data::LoaderState loader_state() const { return loader_.state(); }
  int64_t train_tokens() const { return loader_.num_tokens(); }
  const data::TokenSource& val_tokens() const { return *data_.val; }
  double unigram_nats() const { return data_.unigram_nats; }
  double lr_for_step(int64_t step) const;

 private:
  void say(const std::string& line) const;
  model::ModelConfig config_;
  RunConfig run_;
  TrainerOutput out_;
  RunData data_;  // training parts, the held-out validation, fingerprint (resume_check.h), entropy
  data::BatchLoader loader_;
  model::ModelWeights weights_;
  model::ModelWeights grads_;
  AdamW optimizer_;
  model::Transformer model_;
  int64_t tokens_seen_ = 0;
  int preempted_signal_ = 0;
  std::unique_ptr<MetricsFile> metrics_;
};

}  // namespace tsp::train
