#include "tsp/train/metrics.h"

#include <cstdio>

#include <nlohmann/json.hpp>

#include "tsp/core/check.h"
#include "tsp/core/file_io.h"

namespace tsp::train {

using nlohmann::json;

namespace {
std::string printf_string(const char* fmt, auto... args) {
  char buf[512];
  std::snprintf(buf, sizeof buf, fmt, args...);
  return buf;
}
double mib(int64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }
}  // namespace

std::string format_loss(double loss) { return printf_string("%.6f", loss); }

std::string format_progress_line(const StepMetrics& m) {
  std::string line = printf_string("step %lld/%lld | loss %s | lr %.3e | gnorm %.4f%s | %.0f tok/s | peak %.1f MiB (rss %.1f MiB)",
                       static_cast<long long>(m.step), static_cast<long long>(m.total_steps),
                       format_loss(m.loss).c_str(), m.lr, m.grad_norm, m.clipped ? " clipped" : "",
                       m.tokens_per_second(), mib(m.peak_bytes), mib(m.peak_rss_bytes));
  if (m.comm_bytes_sent > 0)
    line += printf_string(" | sent %.2f MiB, comm wait %.3f s", mib(m.comm_bytes_sent),
                          m.comm_wait_seconds);
  return line;
}

std::string format_eval_line(const EvalMetrics& m, std::optional<double> unigram_nats) {
  std::string s = printf_string("val step %lld | val_loss %s | %lld tokens | %.2f s", static_cast<long long>(m.step),
                                format_loss(m.loss).c_str(), static_cast<long long>(m.tokens), m.seconds);
  if (unigram_nats) s += printf_string(" | unigram %.4f nats", *unigram_nats);
  return s;
}

std::string metrics_json(const StepMetrics& m) {
  json j = {{"type", "train"},       {"step", m.step},
            {"loss", m.loss},        {"lr", m.lr},
            {"grad_norm", m.grad_norm}, {"clipped", m.clipped},
            {"tokens", m.tokens},    {"seconds", m.seconds},
            {"tokens_per_s", m.tokens_per_second()}, {"peak_bytes", m.peak_bytes},
            {"peak_rss_bytes", m.peak_rss_bytes}, {"comm_bytes_sent", m.comm_bytes_sent},
            {"comm_wait_seconds", m.comm_wait_seconds}};
  return j.dump();
}

std::string metrics_json(const EvalMetrics& m) {
  json j = {{"type", "val"},     {"step", m.step},       {"val_loss", m.loss},
            {"tokens", m.tokens}, {"batches", m.batches}, {"seconds", m.seconds}};
  return j.dump();
}

RankMemory this_process_memory(int rank, int world_size, std::string coords, int64_t bytes_sent_per_step) {
  RankMemory m;
  m.rank = rank;
  m.world_size = world_size;
  m.coords = std::move(coords);
  for (int c = 0; c < kNumMemCategories; ++c)
    m.peak_bytes[c] = MemoryLedger::process().stats(static_cast<MemCategory>(c)).peak_bytes;
  m.peak_rss_bytes = process_peak_rss_bytes();
  m.bytes_sent_per_step = bytes_sent_per_step;
  return m;
}

std::string metrics_json(const RankMemory& m) {
  json peaks = json::object();
  for (int c = 0; c < kNumMemCategories; ++c)
    peaks[std::string(mem_category_name(static_cast<MemCategory>(c)))] = m.peak_bytes[c];
  json j = {{"type", "memory"},         {"rank", m.rank},
            {"world_size", m.world_size}, {"coords", m.coords},
            {"peak_bytes", peaks},      {"peak_rss_bytes", m.peak_rss_bytes},
            {"bytes_sent_per_step", m.bytes_sent_per_step}};
  return j.dump();
}

MetricsFile::MetricsFile(const std::filesystem::path& path) : path_(path) {
  out_.open(path, std::ios::out | std::ios::app);
  if (!out_.is_open()) {
    TSP_THROW(IoError, "cannot open metrics file ", path.string(), " for appending: ", errno_text(errno));
  }
}

void MetricsFile::write(const std::string& line) {
  if (!out_.is_open()) return;
  out_ << line << '\n';
  out_.flush();
  if (!out_) TSP_THROW(IoError, "error writing metrics file ", path_.string());
}

}  // namespace tsp::train
