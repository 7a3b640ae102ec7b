// The training loop around any trainer, validation windows, and the run-level checks and helpers
// (data, config, checkpoint destination) that every run shares.
#include "tsp/train/training_loop.h"

#include "tsp/train/data_source.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "tsp/core/check.h"
#include "tsp/core/checkpoint_dir.h"
#include "tsp/core/checkpoint_history.h"
#include "tsp/core/memory.h"
#include "tsp/data/corpus.h"
#include "tsp/model/hf_checkpoint.h"
#include "tsp/train/preemption.h"

namespace tsp::train {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

uint64_t checkpoint_bytes(const model::ModelConfig& config, DType dtype) {
  const auto params = static_cast<uint64_t>(config.total_params());
  const uint64_t per_param = dtype_size(dtype) + 2 * sizeof(float) + (dtype == DType::f32 ? 0 : sizeof(float));
  const auto tensors = static_cast<uint64_t>(model::weight_specs(config).size());
  return params * per_param + (uint64_t{1} << 20) + tensors * 3 * 512;  // headers, config, marker
}

void check_checkpoint_dir_for_run(const model::ModelConfig& config, const RunConfig& run) {
  if (run.checkpoint_dir.empty()) return;
  if (run.keep_checkpoints > 0) {
    check_checkpoint_run_dir(run.checkpoint_dir, checkpoint_step_dir_name(run.steps),
                             checkpoint_bytes(config, run.model_dtype()), "--checkpoint-dir");
    return;
  }
  TSP_CHECK(!is_checkpoint_run_dir(run.checkpoint_dir), "--checkpoint-dir ", run.checkpoint_dir,
            " is a run directory (it has a '", kLatestFileName, "' file and step directories): pass "
            "--keep-checkpoints K to continue its history, or choose another directory for a single checkpoint");
  check_checkpoint_destination(run.checkpoint_dir, checkpoint_bytes(config, run.model_dtype()),
                               "--checkpoint-dir");
}

RunData run_data_for(const TrainData& data, const RunConfig& run, const model::ModelConfig& config) {
  run.validate();
  return prepare_run_data(data, run.val_fraction, run.seq, config.vocab_size());
}

data::BatchLoader loader_for_run(const RunData& data, const RunConfig& run) {
  return data::BatchLoader(data.train, {.batch_size = run.batch, .seq_len = run.seq,
                                        .seed = static_cast<uint64_t>(run.seed),
                                        .order = data::WindowOrder::shuffled});
}

namespace {

// The config a run starts from, as its source stores it, and the source's name.
std::pair<model::ModelConfigFields, std::string> source_config(const RunConfig& run) {
  if (!run.resume.empty())
    return {model::HfCheckpoint(resolve_checkpoint_dir(run.resume)).config().fields(),
            "the --resume checkpoint's config.json"};
  if (!run.init.empty())
    return {model::HfCheckpoint(resolve_checkpoint_dir(run.init)).config().fields(),
            "the --init checkpoint's config.json"};
  if (!run.config.empty()) return {model::load_config(run.config).fields(), "--config " + run.config};
  return {model::preset(run.preset).fields(), "preset " + run.preset};
}

}  // namespace

model::ModelConfig model_config_for_run(const RunConfig& run) {
  model::ModelConfigFields f = source_config(run).first;
  f.torch_dtype = run.model_dtype();
  return model::ModelConfig(f);
}

std::string run_dtype_origin(const RunConfig& run) {
  const auto [f, source] = source_config(run);
  if (run.resume.empty() && run.init.empty() && run.config.empty())
    return run.dtype + " (--dtype; " + source + ")";
  return run.dtype + " (--dtype; " + source + " stores " + model::torch_dtype_name(f.torch_dtype) + ")";
}

EvalMetrics evaluate_loss(const BatchLoss& forward, const data::TokenSource& val_tokens, int64_t batch,
                          int64_t seq, int64_t max_batches) {
  const auto t0 = Clock::now();
  const int64_t n = val_tokens.size();
  TSP_CHECK(n >= seq + 1, "validation data has ", n, " tokens, fewer than seq + 1 = ", seq + 1);
  TSP_CHECK(batch > 0 && seq > 0 && max_batches > 0, "evaluate_loss: batch ", batch, ", seq ", seq,
            ", batches ", max_batches, " must be > 0");
  // Windows [k S, k S + S + 1) as in WindowOrder::sequential; `count` of them spread evenly over
  // the whole split (window j * W / count), so the loss represents every part of the corpus.
  const int64_t windows = (n - seq - 1) / seq + 1;
  const int64_t rows = std::min(batch, windows);
  const int64_t batches = std::max<int64_t>(1, std::min(max_batches, windows / rows));
  const int64_t count = rows * batches;
  model::LossSum total;
  Tensor window = Tensor::empty(Shape{seq + 1}, DType::i32, MemCategory::activations);
  int32_t* src = window.data<int32_t>();
  for (int64_t b = 0; b < batches; ++b) {
    Tensor in = Tensor::empty(Shape{rows, seq}, DType::i32, MemCategory::activations);
    Tensor tg = Tensor::empty(Shape{rows, seq}, DType::i32, MemCategory::activations);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t j = b * rows + r;
      const int64_t start = (j * windows / count) * seq;
      val_tokens.read(start, seq + 1, src);
      std::copy(src, src + seq, in.data<int32_t>() + r * seq);
      std::copy(src + 1, src + seq + 1, tg.data<int32_t>() + r * seq);
    }
    const model::LossSum l = forward(in, tg);
    total.loss_sum += l.loss_sum;
    total.n_valid += l.n_valid;
  }
  EvalMetrics m;
  m.loss = total.mean();
  m.tokens = total.n_valid;
  m.batches = batches;
  m.seconds = seconds_since(t0);
  return m;
}

EvalMetrics evaluate_loss(const BatchLoss& forward, const std::vector<int32_t>& val_tokens, int64_t batch,
                          int64_t seq, int64_t max_batches) {
  // A view of the caller's vector would do; the copy keeps TokenSource's ownership simple (tests).
  const data::InMemoryTokens source(val_tokens, "validation tokens");
  return evaluate_loss(forward, source, batch, seq, max_batches);
}

EvalMetrics evaluate_loss(model::Transformer& model, const model::ModelWeights& weights,
                          const data::TokenSource& val_tokens, int64_t batch, int64_t seq, int64_t max_batches) {
  return evaluate_loss(
      [&](const Tensor& in, const Tensor& tg) { return model.forward(weights, in, tg); },
      val_tokens, batch, seq, max_batches);
}

EvalMetrics evaluate_loss(model::Transformer& model, const model::ModelWeights& weights,
                          const std::vector<int32_t>& val_tokens, int64_t batch, int64_t seq,
                          int64_t max_batches) {
  return evaluate_loss(
      [&](const Tensor& in, const Tensor& tg) { return model.forward(weights, in, tg); },
      val_tokens, batch, seq, max_batches);
}

std::filesystem::path save_run_checkpoint(TrainLoopHost& host, const RunConfig& run) {
  TSP_CHECK(!run.checkpoint_dir.empty(), "save_run_checkpoint: no --checkpoint-dir");
  if (run.keep_checkpoints == 0) {
    host.save_checkpoint(run.checkpoint_dir);
    return run.checkpoint_dir;
  }
  // The step directory is complete (atomic swap) before "latest" names it, and "latest" names it
  // before anything older is pruned: a crash at any point leaves "latest" at a complete checkpoint.
  const std::filesystem::path run_dir = run.checkpoint_dir;
  const std::string name = checkpoint_step_dir_name(host.step());
  host.save_checkpoint(run_dir / name);
  if (host.writes_checkpoint_files()) {
    commit_latest_checkpoint(run_dir, name);
    prune_checkpoint_history(run_dir, run.keep_checkpoints);
  }
  return run_dir / name;
}

EvalMetrics run_training_loop(TrainLoopHost& host, const RunConfig& run, double unigram_nats,
                              MetricsFile* metrics,
                              const std::function<void(const std::string&)>& say,
                              bool print_every_step, int* preempted_by) {
  if (preempted_by) *preempted_by = 0;
  const auto t0 = Clock::now();
  const int64_t first = host.step();
  double last_loss = 0;
  const MfuBasis mfu = host.mfu_basis();
  if (mfu.enabled()) say(mfu.describe());
  RunClock clock;
  while (host.step() < run.steps) {
    StepMetrics m = host.train_step();
    clock.stamp(m);
    m.mfu = mfu.mfu(m.seconds);
    last_loss = m.loss;
    if ((print_every_step && m.step % run.log_every == 0) || m.step == run.steps) say(format_progress_line(m));
    if (metrics) metrics->write(metrics_json(m));
    const bool last = host.step() == run.steps;
    if (!last) {
      const int sig = host.agree_stop_signal(preemption_signal());
      if (sig != 0) {
        std::string line = "preempted: " + signal_name(sig) + " after step " + std::to_string(host.step()) +
                           " of " + std::to_string(run.steps) + "; ";
        if (!run.checkpoint_dir.empty()) {
          const std::filesystem::path saved = save_run_checkpoint(host, run);
          line += "checkpoint saved to " + saved.string() + " (continue with --resume " + run.checkpoint_dir + ")";
        } else {
          line += "nothing saved (no --checkpoint-dir)";
        }
        say(line + "; exit code " + std::to_string(kPreemptedExitCode));
        if (preempted_by) *preempted_by = sig;
        return EvalMetrics{};
      }
    }
    if (!last && run.eval_every > 0 && host.step() % run.eval_every == 0) {
      EvalMetrics e = host.validate();
      clock.stamp(e);
      say(format_eval_line(e, unigram_nats));
      if (metrics) metrics->write(metrics_json(e));
    }
    if (!last && run.save_every > 0 && host.step() % run.save_every == 0 &&
        !run.checkpoint_dir.empty()) {
      const std::filesystem::path saved = save_run_checkpoint(host, run);
      say("checkpoint: step " + std::to_string(host.step()) + " -> " + saved.string());
    }
  }
  const double train_seconds = seconds_since(t0);
  EvalMetrics e = host.validate();
  clock.stamp(e);
  say(format_eval_line(e, unigram_nats));
  if (metrics) metrics->write(metrics_json(e));
  if (!run.checkpoint_dir.empty()) {
    const std::filesystem::path saved = save_run_checkpoint(host, run);
    say("checkpoint: step " + std::to_string(host.step()) + " -> " + saved.string());
  }
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "done: %lld steps in %.1f s; final train loss %s, val_loss %s, unigram entropy %s "
                "nats/token",
                static_cast<long long>(host.step() - first), train_seconds,
                format_loss(last_loss).c_str(), format_loss(e.loss).c_str(),
                format_loss(unigram_nats).c_str());
  say(buf);
  return e;
}

}  // namespace tsp::train
