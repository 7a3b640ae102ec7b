// Progress of a long data job: on a terminal one redrawn bar (percent, MB/s, tokens, ETA); elsewhere
// (a log, a pipe) one plain line every few seconds. Totals unknown (stdin): no percent, no ETA.
#pragma once

#include <chrono>
#include <cstdint>
#include <ostream>
#include <string>

namespace tsp::data {

class ProgressReporter {
 public:
  // `total_bytes` 0: unknown. `what` starts every line ("prepare").
  ProgressReporter(std::ostream& out, bool terminal, uint64_t total_bytes, std::string what,
                   double plain_interval_s = 5.0);
  void update(uint64_t bytes, uint64_t tokens);  // drawn at most every 0.2 s (bar) / interval (plain)
  void finish(uint64_t bytes, uint64_t tokens);  // the final state, then a newline on a terminal

  // "[=====>    ]  42%  12.3 MB/s  1.23M tokens  ETA 0:07" (no bar or ETA without a total).
  static std::string bar_line(uint64_t bytes, uint64_t total, uint64_t tokens, double seconds);
  // "prepare: 12.3 of 40.0 MB (31%), 1234567 tokens, 12.3 MB/s, ETA 3 s"
  static std::string plain_line(const std::string& what, uint64_t bytes, uint64_t total, uint64_t tokens,
                                double seconds);

 private:
  double elapsed() const;
  std::ostream& out_;
  bool terminal_;
  uint64_t total_;
  std::string what_;
  double interval_;
  std::chrono::steady_clock::time_point start_;
  double last_draw_;  // elapsed seconds at the last line drawn
};

}  // namespace tsp::data
