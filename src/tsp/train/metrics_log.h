// Reading back a `tsp train --metrics` JSON-lines file (the writer is metrics.h): the train steps,
// validation losses and per-rank memory records that `tsp compare` and `tsp plot` show.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace tsp::train {

struct LoggedStep {
  double loss = 0, tokens = 0, tokens_per_s = 0;  // tokens: 0 when the record has none
  int64_t peak_bytes = 0, comm_bytes_sent = 0;
};

struct LoggedRankMemory {
  std::map<std::string, int64_t> peak_bytes;  // by category name
  int64_t peak_rss_bytes = 0, bytes_sent_per_step = 0;
};

struct MetricsLog {
  std::map<int64_t, LoggedStep> steps;  // by step; the last record of a step wins (a resumed run appends)
  std::map<int64_t, double> val_loss;   // by step
  std::vector<LoggedRankMemory> ranks;  // of the last run in the file that wrote "memory" records
};

// Throws InvalidArgument "PATH:LINE: ..." for a line that is not JSON or a malformed record, and
// "PATH holds no "train" records" when there is none; IoError when the file cannot be read.
// Records of other types are skipped (the format may grow).
MetricsLog read_metrics_log(const std::filesystem::path& path);

}  // namespace tsp::train
