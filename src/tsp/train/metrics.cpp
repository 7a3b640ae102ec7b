#include "tsp/train/metrics.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>

#include <omp.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "tsp/core/check.h"
#include "tsp/core/format.h"
#include "tsp/core/file_io.h"
#include "tsp/kernels/peak.h"
#include "tsp/plan/time_model.h"

namespace tsp::train {

using nlohmann::json;

namespace {
std::string printf_string(const char* fmt, auto... args) { return format_printf(fmt, args...); }
double mib(int64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }
}  // namespace

std::string format_loss(double loss) { return printf_string("%.6f", loss); }

double MfuBasis::peak_flops() const {
  return static_cast<double>(ranks) * static_cast<double>(threads_per_rank) * peak_gflops_per_core * 1e9;
}

double MfuBasis::mfu(double step_seconds) const {
  if (!enabled() || !(step_seconds > 0)) return -1;
  return model_flops_per_step / (step_seconds * peak_flops());
}

std::string MfuBasis::describe() const {
  if (!enabled()) return "peak: not measured (no MFU)";
  return printf_string("peak %s (x %lld thread%s x %lld rank%s = %.1f GFLOP/s); model %.4g GFLOP per step "
                       "(forward + backward, recompute not counted)",
                       peak_description.c_str(), static_cast<long long>(threads_per_rank),
                       threads_per_rank == 1 ? "" : "s", static_cast<long long>(ranks), ranks == 1 ? "" : "s",
                       peak_flops() * 1e-9, model_flops_per_step * 1e-9);
}

MfuBasis measure_mfu_basis(const model::ModelConfig& config, const RunConfig& run, int64_t ranks) {
  const kernels::MathPeak peak = kernels::measure_math_peak(run.model_dtype(), kernels::kQuickPeakRuns);
  MfuBasis b;
  b.model_flops_per_step = plan::model_flops(config, plan::Workload{.batch = run.batch, .seq = run.seq});
  b.ranks = ranks;
  b.threads_per_rank = std::max(1, omp_get_max_threads());
  b.peak_gflops_per_core = peak.gflops_per_core;
  b.peak_description = peak.describe();
  return b;
}

namespace {
double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

double unix_time_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

RunClock::RunClock() : start_steady_(steady_seconds()) {}

void RunClock::stamp(StepMetrics& m) {
  step_seconds_sum_ += m.seconds;
  ++steps_;
  m.wall_time = unix_time_now();
  m.elapsed_s = steady_seconds() - start_steady_;
  const int64_t left = std::max<int64_t>(0, m.total_steps - m.step);
  m.eta_s = step_seconds_sum_ / static_cast<double>(steps_) * static_cast<double>(left);
}

void RunClock::stamp(EvalMetrics& m) const {
  m.wall_time = unix_time_now();
  m.elapsed_s = steady_seconds() - start_steady_;
}

std::string format_utc_clock(double unix_seconds) {
  const auto t = static_cast<std::time_t>(std::floor(unix_seconds));
  std::tm tm{};
  gmtime_r(&t, &tm);
  return printf_string("%02d:%02d:%02d", tm.tm_hour, tm.tm_min, tm.tm_sec);
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<long long>(std::llround(seconds));
  const long long d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60, sec = s % 60;
  if (d > 0) return printf_string("%lld d %02lld:%02lld:%02lld", d, h, m, sec);
  if (h > 0) return printf_string("%lld:%02lld:%02lld", h, m, sec);
  return printf_string("%lld:%02lld", m, sec);
}

std::string format_progress_line(const StepMetrics& m) {
  std::string line = printf_string("step %lld/%lld | loss %s | lr %.3e | gnorm %.4f%s | %.0f tok/s",
                       static_cast<long long>(m.step), static_cast<long long>(m.total_steps),
                       format_loss(m.loss).c_str(), m.lr, m.grad_norm, m.clipped ? " clipped" : "",
                       m.tokens_per_second());
  if (m.mfu >= 0) line += printf_string(" | MFU %.1f%%", 100 * m.mfu);
  line += printf_string(" | peak %.1f MiB (rss %.1f MiB)", mib(m.peak_bytes), mib(m.peak_rss_bytes));
  if (m.comm_bytes_sent > 0)
    line += printf_string(" | sent %.2f MiB, comm wait %.3f s", mib(m.comm_bytes_sent),
                          m.comm_wait_seconds);
  if (m.wall_time > 0)
    line += " | " + format_utc_clock(m.wall_time) + " UTC, elapsed " + format_duration(m.elapsed_s) +
            ", ETA " + format_duration(m.eta_s);
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
  if (m.wall_time > 0) {
    j["wall_time"] = m.wall_time;
    j["elapsed_s"] = m.elapsed_s;
    j["eta_s"] = m.eta_s;
  }
  if (m.mfu >= 0) j["mfu"] = m.mfu;
  return j.dump();
}

std::string metrics_json(const EvalMetrics& m) {
  json j = {{"type", "val"},     {"step", m.step},       {"val_loss", m.loss},
            {"tokens", m.tokens}, {"batches", m.batches}, {"seconds", m.seconds}};
  if (m.wall_time > 0) {
    j["wall_time"] = m.wall_time;
    j["elapsed_s"] = m.elapsed_s;
  }
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
