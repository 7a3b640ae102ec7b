// tsp plot: per run, the train records' losses at the tokens trained so far (the sum of the
// records' "tokens" through that step: the x axis), the validation losses at the tokens of their
// step, and the train records' tokens/s; overlaid runs share the axes, one color per run.
#include "tsp/cli/plot_command.h"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <iterator>
#include <map>


#include "tsp/cli/svg_chart.h"
#include "tsp/core/atomic_file.h"
#include "tsp/core/check.h"
#include "tsp/core/format.h"
#include "tsp/core/output_file.h"
#include "tsp/core/file_io.h"
#include "tsp/train/metrics_log.h"

namespace tsp::cli {

namespace {


struct PlotRun {
  std::string name, path;
  train::MetricsLog log;
};

PlotRun read_plot_run(const std::string& spec) {
  PlotRun run;
  const size_t eq = spec.find('=');
  run.path = eq == std::string::npos ? spec : spec.substr(eq + 1);
  run.name = eq == std::string::npos ? std::filesystem::path(run.path).stem().string() : spec.substr(0, eq);
  run.log = train::read_metrics_log(run.path);
  for (const auto& [step, p] : run.log.steps)
    TSP_CHECK(p.tokens > 0, run.path, ": the train record of step ", step, " has no \"tokens\" (the x axis)");
  return run;
}

// Tokens trained through each step: the running sum of the steps' tokens.
std::map<int64_t, double> cumulative_tokens(const PlotRun& r) {
  std::map<int64_t, double> out;
  double sum = 0;
  for (const auto& [step, p] : r.log.steps) out[step] = (sum += p.tokens);
  return out;
}

std::string fmt(const char* f, auto... v) { return format_printf(f, v...); }

}  // namespace

CLI::App* add_plot_command(CLI::App& app, PlotArgs& args) {
  CLI::App* cmd = app.add_subcommand("plot", "SVG chart of train/validation loss and tokens/s against tokens (--metrics files)");
  cmd->add_option("runs", args.runs, "[NAME=]metrics.jsonl of each run (overlaid; NAME: the file's stem)")
      ->required()
      ->expected(1, 16);
  cmd->add_option("--svg", args.svg_path, "the SVG file to write")->required();
  return cmd;
}

int run_plot(const PlotArgs& args, std::ostream& out) {
  check_output_file(args.svg_path, "--svg", has_generator_marker);
  std::vector<PlotRun> runs;
  for (const std::string& spec : args.runs) runs.push_back(read_plot_run(spec));
  LineChart loss;
  loss.title = "loss against tokens trained";
  loss.x = {.label = "tokens", .include_zero = true};
  loss.y = {.label = "loss (nats/token)"};
  loss.style_keys = {{"train", false}, {"validation", true}};
  LineChart speed;
  speed.title = "training throughput";
  speed.x = {.label = "tokens", .include_zero = true};
  speed.y = {.label = "tokens/s", .include_zero = true};
  Figure f;
  f.title = runs.size() == 1 ? "training run " + runs[0].name : "training runs compared";
  for (const PlotRun& r : runs) {
    const std::map<int64_t, double> tokens = cumulative_tokens(r);
    Series train, rate, val;
    train.name = rate.name = val.name = r.name;
    train.markers = rate.markers = r.log.steps.size() <= 60;
    val.dashed = true;
    for (const auto& [step, p] : r.log.steps) {
      train.points.push_back({tokens.at(step), p.loss});
      rate.points.push_back({tokens.at(step), p.tokens_per_s});
    }
    for (const auto& [step, v] : r.log.val_loss) {
      auto it = tokens.upper_bound(step);  // the last train step at or before this validation
      if (it == tokens.begin()) continue;
      val.points.push_back({std::prev(it)->second, v});
    }
    std::string line = fmt("%s: %s, %zu steps, %.0f tokens, final train loss %.6f", r.name.c_str(), r.path.c_str(),
                           r.log.steps.size(), tokens.rbegin()->second, r.log.steps.rbegin()->second.loss);
    if (!r.log.val_loss.empty()) line += fmt(", final val_loss %.6f", r.log.val_loss.rbegin()->second);
    f.subtitle.push_back(line);
    out << line << "\n";
    loss.series.push_back(std::move(train));
    if (!val.points.empty()) loss.series.push_back(std::move(val));
    speed.series.push_back(std::move(rate));
  }
  f.rows.push_back({panel(loss), panel(speed)});
  write_file_atomically(args.svg_path, render_svg(f));
  out << "wrote " << args.svg_path << "\n";
  return 0;
}

}  // namespace tsp::cli
