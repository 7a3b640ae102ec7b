#include "tsp/cli/compare_command.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>


#include "tsp/core/check.h"
#include "tsp/core/format.h"
#include "tsp/core/error.h"
#include "tsp/core/file_io.h"
#include "tsp/core/memory.h"
#include "tsp/train/metrics_log.h"

namespace tsp::cli {

namespace {


// A run's metrics file as read back (steps, validation losses, per-rank memory) and its name.
struct Run : train::MetricsLog {
  std::string name, path;
};

Run read_run(const std::string& spec, size_t index) {
  Run run;
  const size_t eq = spec.find('=');
  run.path = eq == std::string::npos ? spec : spec.substr(eq + 1);
  run.name = eq == std::string::npos ? "run" + std::to_string(index + 1) : spec.substr(0, eq);
  static_cast<train::MetricsLog&>(run) = train::read_metrics_log(run.path);
  return run;
}

std::string fmt(const char* f, auto... v) { return format_printf(f, v...); }

double mib(int64_t b) { return static_cast<double>(b) / (1 << 20); }

// The median over steps 2.. (step 1 includes first-touch page faults and primitive creation).
double median_tokens_per_s(const Run& r) {
  std::vector<double> v;
  for (const auto& [step, s] : r.steps)
    if (step > r.steps.begin()->first || r.steps.size() == 1) v.push_back(s.tokens_per_s);
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

int64_t max_over_ranks(const Run& r, auto get) {
  int64_t m = 0;
  for (const train::LoggedRankMemory& k : r.ranks) m = std::max(m, get(k));
  return m;
}

}  // namespace

CLI::App* add_compare_command(CLI::App& app, CompareArgs& args) {
  CLI::App* cmd = app.add_subcommand(
      "compare", "side by side: losses, tokens/s, per-rank memory and traffic of runs (--metrics files)");
  cmd->add_option("runs", args.runs, "[NAME=]metrics.jsonl of each run; the first is the reference")
      ->required()
      ->expected(2, 16);
  return cmd;
}

int run_compare(const CompareArgs& args, std::ostream& out) {
  std::vector<Run> runs;
  for (size_t i = 0; i < args.runs.size(); ++i) runs.push_back(read_run(args.runs[i], i));
  const Run& ref = runs.front();
  for (const Run& r : runs)
    TSP_CHECK(r.steps.size() == ref.steps.size() && r.steps.begin()->first == ref.steps.begin()->first,
              r.name, " has steps ", r.steps.begin()->first, "..", r.steps.rbegin()->first, ", the reference ",
              ref.name, " has ", ref.steps.begin()->first, "..", ref.steps.rbegin()->first,
              ": compare runs of the same steps");
  const size_t width = 14;
  auto row = [&](const std::string& label, const std::vector<std::string>& cells) {
    std::string s = fmt("  %-30s", label.c_str());
    for (const auto& c : cells) s += std::string(c.size() < width ? width - c.size() : 1, ' ') + c;
    out << s << "\n";
  };
  std::vector<std::string> names;
  for (const Run& r : runs) names.push_back(r.name);

  out << "runs (the first is the reference):\n";
  for (const Run& r : runs)
    out << fmt("  %-12s %s, %zu rank%s\n", r.name.c_str(), r.path.c_str(), std::max<size_t>(r.ranks.size(), 1),
               r.ranks.size() > 1 ? "s" : "");

  out << "\nloss (mean cross-entropy of the global batch, nats/token) and |difference| to " << ref.name << ":\n";
  std::vector<std::string> header{names.front()};
  for (size_t k = 1; k < runs.size(); ++k) {
    header.push_back(names[k]);
    header.push_back("|diff|");
  }
  row("", header);
  std::vector<int64_t> step_ids;
  for (const auto& [step, s] : ref.steps) step_ids.push_back(step);
  for (size_t k = 1; k < runs.size(); ++k)
    for (int64_t step : step_ids)
      TSP_CHECK(runs[k].steps.count(step), runs[k].name, " has no step ", step, " (the reference has)");
  auto diff = [&](size_t k, int64_t step) { return std::fabs(runs[k].steps.at(step).loss - ref.steps.at(step).loss); };
  // Steps 1, 2, 5, 10, 20, 50, ... (from the first step on) and the last: how the runs drift apart.
  std::vector<int64_t> shown;
  for (int64_t m = 1; m <= step_ids.back(); m *= 10)
    for (int64_t f : {1, 2, 5})
      if (step_ids.front() - 1 + f * m <= step_ids.back()) shown.push_back(step_ids.front() - 1 + f * m);
  if (shown.empty() || shown.back() != step_ids.back()) shown.push_back(step_ids.back());
  for (int64_t step : shown) {
    if (!ref.steps.count(step)) continue;
    std::vector<std::string> cells{fmt("%.6f", ref.steps.at(step).loss)};
    for (size_t k = 1; k < runs.size(); ++k) {
      cells.push_back(fmt("%.6f", runs[k].steps.at(step).loss));
      cells.push_back(fmt("%.1e", diff(k, step)));
    }
    row("step " + std::to_string(step), cells);
  }
  // fp32 rounding alone: the mean of N per-token log-probabilities differs between two summation
  // orders by ~1e-7 relative; 1e-5 relative is far above that and far below a real mismatch.
  if (!ref.val_loss.empty()) {
    const int64_t vstep = ref.val_loss.rbegin()->first;
    std::vector<std::string> cells;
    for (const Run& r : runs) {
      const auto it = r.val_loss.find(vstep);
      cells.push_back(it == r.val_loss.end() ? "-" : fmt("%.6f", it->second));
    }
    row("val_loss at step " + std::to_string(vstep), cells);
  }

  for (size_t k = 1; k < runs.size(); ++k) {
    int64_t agree_until = step_ids.front() - 1;
    for (int64_t step : step_ids) {
      if (diff(k, step) > 1e-5 * std::fabs(ref.steps.at(step).loss)) break;
      agree_until = step;
    }
    out << "  " << runs[k].name << ": equal to " << ref.name << " within 1e-5 relative through step " << agree_until;
    if (agree_until < step_ids.back())
      out << ";\n    then the last-bit differences of fp32 summation orders grow with each optimizer step, so the\n"
             "    losses drift apart (more at a high learning rate), as one rank's run does from itself with\n"
             "    --grad-accum 2 or ONEDNN_MAX_CPU_ISA=AVX2. The tests check parity of the loss, every\n"
             "    gradient and the weights after AdamW steps (docs/tsp.md)";
    out << "\n";
  }
  out << "\nspeed:\n";
  row("", names);
  const double ref_tps = median_tokens_per_s(ref);
  std::vector<std::string> tps, ratio;
  for (const Run& r : runs) {
    const double t = median_tokens_per_s(r);
    tps.push_back(fmt("%.0f", t));
    ratio.push_back(fmt("%.2fx", t / ref_tps));
  }
  row("tokens/s (median, steps 2..)", tps);
  row("vs " + ref.name, ratio);
  std::vector<std::string> sent;
  for (const Run& r : runs) sent.push_back(fmt("%.2f", mib(max_over_ranks(r, [](const train::LoggedRankMemory& k) { return k.bytes_sent_per_step; }))));
  row("MiB sent per step (largest rank)", sent);

  bool have_memory = true;
  for (const Run& r : runs) have_memory = have_memory && !r.ranks.empty();
  if (!have_memory) {
    out << "\n(no \"memory\" records in every file: per-rank memory not compared)\n";
    return 0;
  }
  out << "\npeak memory per rank, MiB (largest rank; ratio to " << ref.name << "):\n";
  row("", names);
  for (int c = 0; c < kNumMemCategories; ++c) {
    const std::string cat(mem_category_name(static_cast<MemCategory>(c)));
    const auto get = [&](const train::LoggedRankMemory& k) { const auto it = k.peak_bytes.find(cat); return it == k.peak_bytes.end() ? int64_t{0} : it->second; };
    const int64_t base = max_over_ranks(ref, get);
    if (base == 0) {
      bool any = false;
      for (const Run& r : runs) any = any || max_over_ranks(r, get) > 0;
      if (!any) continue;
    }
    std::vector<std::string> cells;
    for (const Run& r : runs) {
      const int64_t v = max_over_ranks(r, get);
      cells.push_back(&r == &ref || base == 0 ? fmt("%.2f", mib(v)) : fmt("%.2f (%.2f)", mib(v), static_cast<double>(v) / base));
    }
    row(cat, cells);
  }
  std::vector<std::string> total, rss;
  const auto ledger_peak = [](const Run& r) {
    int64_t m = 0;
    for (const auto& [step, s] : r.steps) m = std::max(m, s.peak_bytes);
    return m;
  };
  for (const Run& r : runs) {
    total.push_back(&r == &ref ? fmt("%.2f", mib(ledger_peak(r)))
                               : fmt("%.2f (%.2f)", mib(ledger_peak(r)), static_cast<double>(ledger_peak(r)) / ledger_peak(ref)));
    rss.push_back(fmt("%.1f", mib(max_over_ranks(r, [](const train::LoggedRankMemory& k) { return k.peak_rss_bytes; }))));
  }
  row("all categories at once (rank 0)", total);
  row("process peak RSS", rss);
  return 0;
}

}  // namespace tsp::cli
