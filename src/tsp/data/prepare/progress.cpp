// Formatting of the progress bar and the plain progress lines.
#include "tsp/data/prepare/progress.h"

#include <algorithm>
#include <cstdio>

namespace tsp::data {

namespace {

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string count_text(uint64_t n) {
  if (n >= 1'000'000'000) return fmt("%.2fG", static_cast<double>(n) / 1e9);
  if (n >= 1'000'000) return fmt("%.2fM", static_cast<double>(n) / 1e6);
  if (n >= 10'000) return fmt("%.1fk", static_cast<double>(n) / 1e3);
  return std::to_string(n);
}

std::string clock_text(double s) {
  const long t = static_cast<long>(s + 0.5);
  char buf[32];
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
  return buf;
}

double mb_per_s(uint64_t bytes, double seconds) { return seconds > 0 ? static_cast<double>(bytes) / 1e6 / seconds : 0; }

}  // namespace

ProgressReporter::ProgressReporter(std::ostream& out, bool terminal, uint64_t total_bytes, std::string what,
                                   double plain_interval_s)
    : out_(out), terminal_(terminal), total_(total_bytes), what_(std::move(what)), interval_(plain_interval_s),
      start_(std::chrono::steady_clock::now()), last_draw_(terminal ? -1e9 : 0.0) {}

double ProgressReporter::elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

std::string ProgressReporter::bar_line(uint64_t bytes, uint64_t total, uint64_t tokens, double seconds) {
  std::string s;
  if (total > 0) {
    constexpr int kWidth = 30;
    const double frac = std::min(1.0, static_cast<double>(bytes) / static_cast<double>(total));
    const int full = static_cast<int>(frac * kWidth);
    s += '[';
    s.append(static_cast<size_t>(full), '=');
    if (full < kWidth) s += '>';
    s.append(static_cast<size_t>(std::max(0, kWidth - full - 1)), ' ');
    s += "] ";
    s += fmt("%3.0f%%", frac * 100);
  }
  s += "  " + fmt("%.1f MB/s", mb_per_s(bytes, seconds)) + "  " + count_text(tokens) + " tokens";
  if (total > 0 && bytes > 0 && bytes < total) {
    s += "  ETA " + clock_text(seconds * static_cast<double>(total - bytes) / static_cast<double>(bytes));
  } else {
    s += "  " + clock_text(seconds);
  }
  return s;
}

std::string ProgressReporter::plain_line(const std::string& what, uint64_t bytes, uint64_t total, uint64_t tokens,
                                         double seconds) {
  std::string s = what + ": " + fmt("%.1f", static_cast<double>(bytes) / 1e6);
  if (total > 0)
    s += " of " + fmt("%.1f", static_cast<double>(total) / 1e6) + " MB (" +
         fmt("%.0f%%", 100.0 * static_cast<double>(bytes) / static_cast<double>(total)) + ")";
  else
    s += " MB";
  s += ", " + std::to_string(tokens) + " tokens, " + fmt("%.1f MB/s", mb_per_s(bytes, seconds));
  if (total > 0 && bytes > 0 && bytes < total)
    s += ", ETA " + fmt("%.0f s", seconds * static_cast<double>(total - bytes) / static_cast<double>(bytes));
  return s;
}

void ProgressReporter::update(uint64_t bytes, uint64_t tokens) {
  const double t = elapsed();
  if (t - last_draw_ < (terminal_ ? 0.2 : interval_)) return;
  last_draw_ = t;
  if (terminal_) out_ << "\r" << bar_line(bytes, total_, tokens, t) << "\033[K" << std::flush;
  else out_ << plain_line(what_, bytes, total_, tokens, t) << std::endl;
}

void ProgressReporter::finish(uint64_t bytes, uint64_t tokens) {
  const double t = elapsed();
  if (terminal_) out_ << "\r" << bar_line(bytes, total_ > 0 ? bytes : 0, tokens, t) << "\033[K" << std::endl;
  // Plain output: the caller's summary line follows; a last progress line would repeat it.
}

}  // namespace tsp::data
