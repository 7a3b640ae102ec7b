// Training metrics: the human progress line printed per step and the JSON-lines metrics file
// (one object per line, "type": "train" | "val" | "memory"). Format: docs/training.md.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "tsp/core/memory.h"
#include "tsp/model/model_config.h"
#include "tsp/train/run_config.h"

namespace tsp::train {

struct StepMetrics {
  int64_t step = 0;          // 1-based optimizer step just taken
  int64_t total_steps = 0;
  double loss = 0;           // mean cross-entropy (nats/token) over the global batch
  double lr = 0;
  double grad_norm = 0;      // before clipping
  bool clipped = false;
  int64_t tokens = 0;        // target tokens of this step
  double seconds = 0;        // wall time of this step
  int64_t peak_bytes = 0;    // MemoryLedger peak of all categories since the start
  int64_t peak_rss_bytes = 0;
  // Distributed runs (this rank): bytes sent over every mesh axis during the step, and the wall
  // time spent waiting for communication. 0 for single-rank runs (then not printed).
  int64_t comm_bytes_sent = 0;
  double comm_wait_seconds = 0;
  // Set by RunClock::stamp (the training loop): unix time at the end of the step (0: unset, then
  // neither printed nor written), seconds since the loop started, and the estimated seconds left.
  double wall_time = 0;
  double elapsed_s = 0;
  double eta_s = 0;
  // Model FLOPs utilisation of this step (MfuBasis::mfu); < 0 when unknown (then not printed).
  double mfu = -1;
  double tokens_per_second() const { return seconds > 0 ? static_cast<double>(tokens) / seconds : 0; }
};

struct EvalMetrics {
  int64_t step = 0;
  double loss = 0;      // mean cross-entropy over the evaluated validation tokens
  int64_t tokens = 0;
  int64_t batches = 0;
  double seconds = 0;
  double wall_time = 0;  // as StepMetrics (0: unset, not written)
  double elapsed_s = 0;
};

// MFU = the model FLOPs of a step / (its seconds x ranks x threads per rank x the measured
// per-core peak). The FLOPs are plan::model_flops over the global batch (recomputation not
// counted); the peak is kernels::measure_math_peak for the run's dtype. docs/training.md.
struct MfuBasis {
  double model_flops_per_step = 0;  // 0: unknown, MFU is not computed
  int64_t ranks = 1;
  int64_t threads_per_rank = 1;
  double peak_gflops_per_core = 0;
  std::string peak_description;  // kernels::MathPeak::describe(), "170.2 GFLOP/s/core fp32 avx512"

  bool enabled() const { return model_flops_per_step > 0 && peak_gflops_per_core > 0; }
  // FLOP/s of all ranks' threads at the per-core peak.
  double peak_flops() const;
  // model_flops_per_step / (seconds x peak_flops()); -1 when !enabled() or seconds <= 0.
  double mfu(double step_seconds) const;
  // "peak 170.2 GFLOP/s/core fp32 avx512 (x 2 threads x 1 rank = 340.4 GFLOP/s); model 1.23
  // GFLOP per step (forward + backward, recompute not counted)"
  std::string describe() const;
};

// A run's basis, measured now (~25 ms: kernels::kQuickPeakRuns): plan::model_flops over the
// global batch (run.batch sequences of run.seq tokens, every replica and micro-batch), the
// per-core peak of run's dtype (kernels::measure_math_peak), omp_get_max_threads() per rank.
MfuBasis measure_mfu_basis(const model::ModelConfig& config, const RunConfig& run, int64_t ranks);

// The loop's clock: wall time, elapsed and ETA for each record. ETA = the mean step time so far
// (the steps' own seconds, validation and checkpoints excluded) x the steps left.
class RunClock {
 public:
  RunClock();  // starts now
  void stamp(StepMetrics& m);
  void stamp(EvalMetrics& m) const;

 private:
  double start_steady_ = 0;
  double step_seconds_sum_ = 0;
  int64_t steps_ = 0;
};

// Unix time now (seconds, fractional).
double unix_time_now();
// "17:58:03" for a unix time, in UTC.
std::string format_utc_clock(double unix_seconds);
// A duration as "M:SS" below an hour, "H:MM:SS" from one hour ("1:02:03"), "D d HH:MM:SS" from a
// day; negative or non-finite as "?".
std::string format_duration(double seconds);

// One rank's peaks over a whole run, written once per rank at its end (by rank 0 for all ranks),
// so that runs of different layouts can be compared after the fact (`tsp compare`).
struct RankMemory {
  int rank = 0;
  int world_size = 1;
  std::string coords;                                // mesh coordinates, e.g. "dp=0,tsp=1"; "" single-rank
  std::array<int64_t, kNumMemCategories> peak_bytes{};  // MemoryLedger peak per category
  int64_t peak_rss_bytes = 0;
  int64_t bytes_sent_per_step = 0;                   // of the last step
};

// This process's RankMemory (ledger peaks, peak RSS) as rank `rank` of `world_size`.
RankMemory this_process_memory(int rank, int world_size, std::string coords, int64_t bytes_sent_per_step);

// A loss as printed everywhere (progress, eval, tsp eval): fixed 6 decimals.
std::string format_loss(double loss);

// "step 12/200 | loss 2.345678 | lr 1.000e-03 | gnorm 0.8123 | 12345 tok/s | peak 45.2 MiB (rss 80.1 MiB)"
// with " clipped" after the norm when the gradient was clipped, " | MFU 12.3%" after tok/s when
// m.mfu >= 0, for distributed runs " | sent 12.3 MiB, comm wait 0.012 s" (rank 0's numbers), and
// when m.wall_time is set " | 17:58:03 UTC, elapsed 1:23, ETA 10:00".
std::string format_progress_line(const StepMetrics& m);
// "val step 12 | val_loss 2.345678 | 4096 tokens | 0.12 s" plus, when given,
// " | unigram 3.3100 nats".
std::string format_eval_line(const EvalMetrics& m, std::optional<double> unigram_nats = std::nullopt);

// One JSON object (no newline): {"type":"train","step":..,"loss":..,"lr":..,"grad_norm":..,
// "clipped":..,"tokens":..,"seconds":..,"tokens_per_s":..,"peak_bytes":..,"peak_rss_bytes":..,
// "comm_bytes_sent":..,"comm_wait_seconds":..} plus "wall_time", "elapsed_s" and "eta_s" when
// m.wall_time is set, and "mfu" (a fraction) when m.mfu >= 0.
std::string metrics_json(const StepMetrics& m);
// {"type":"val","step":..,"val_loss":..,"tokens":..,"batches":..,"seconds":..} plus "wall_time"
// and "elapsed_s" when m.wall_time is set.
std::string metrics_json(const EvalMetrics& m);
// {"type":"memory","rank":..,"world_size":..,"coords":"..","peak_bytes":{"weights":..,...},
//  "peak_rss_bytes":..,"bytes_sent_per_step":..}
std::string metrics_json(const RankMemory& m);

// Appends lines to a JSON-lines file, flushing each (a crash loses at most the line being written).
class MetricsFile {
 public:
  MetricsFile() = default;                    // disabled: write() does nothing
  explicit MetricsFile(const std::filesystem::path& path);  // appends; IoError if it cannot open
  bool enabled() const { return out_.is_open(); }
  void write(const std::string& json_line);

 private:
  std::filesystem::path path_;
  std::ofstream out_;
};

}  // namespace tsp::train
