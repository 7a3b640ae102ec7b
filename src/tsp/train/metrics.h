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
  double tokens_per_second() const { return seconds > 0 ? static_cast<double>(tokens) / seconds : 0; }
};

struct EvalMetrics {
  int64_t step = 0;
  double loss = 0;      // mean cross-entropy over the evaluated validation tokens
  int64_t tokens = 0;
  int64_t batches = 0;
  double seconds = 0;
};

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
// with " clipped" after the norm when the gradient was clipped, and for distributed runs
// " | sent 12.3 MiB, comm wait 0.012 s" (rank 0's numbers).
std::string format_progress_line(const StepMetrics& m);
// "val step 12 | val_loss 2.345678 | 4096 tokens | 0.12 s" plus, when given,
// " | unigram 3.3100 nats".
std::string format_eval_line(const EvalMetrics& m, std::optional<double> unigram_nats = std::nullopt);

// One JSON object (no newline): {"type":"train","step":..,"loss":..,"lr":..,"grad_norm":..,
// "clipped":..,"tokens":..,"seconds":..,"tokens_per_s":..,"peak_bytes":..,"peak_rss_bytes":..,
// "comm_bytes_sent":..,"comm_wait_seconds":..}
std::string metrics_json(const StepMetrics& m);
// {"type":"val","step":..,"val_loss":..,"tokens":..,"batches":..,"seconds":..}
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
