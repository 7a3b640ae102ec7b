// tsp plot: per run, the train records' losses at the tokens trained so far (the sum of the
// records' "tokens" through that step: the x axis), the validation losses at the tokens of their
// step, and the train records' tokens/s; overlaid runs share the axes, one color per run.
#include "tsp/cli/plot_command.h"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tsp/cli/svg_chart.h"
#include "tsp/core/check.h"
#include "tsp/core/file_io.h"

namespace tsp::cli {

namespace {

using nlohmann::json;

struct TrainPoint {
  double loss = 0, tokens = 0, tokens_per_s = 0;
};

struct PlotRun {
  std::string name, path;
  std::map<int64_t, TrainPoint> train;  // by step; the last record of a step wins (resumed runs)
  std::map<int64_t, double> val;        // val_loss by step
};

PlotRun read_plot_run(const std::string& spec) {
  PlotRun run;
  const size_t eq = spec.find('=');
  run.path = eq == std::string::npos ? spec : spec.substr(eq + 1);
  run.name = eq == std::string::npos ? std::filesystem::path(run.path).stem().string() : spec.substr(0, eq);
  std::istringstream in(read_whole_file(run.path, "metrics file"));
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    try {
      const json j = json::parse(line);
      const std::string type = j.value("type", "");
      if (type == "train") {
        TrainPoint& p = run.train[j.at("step").get<int64_t>()];
        p.loss = j.at("loss").get<double>();
        p.tokens = j.at("tokens").get<double>();
        p.tokens_per_s = j.at("tokens_per_s").get<double>();
      } else if (type == "val") {
        run.val[j.at("step").get<int64_t>()] = j.at("val_loss").get<double>();
      }
    } catch (const json::exception& e) {
      TSP_THROW(InvalidArgument, run.path, ":", line_no, ": not a metrics record: ", e.what());
    }
  }
  if (run.train.empty()) TSP_THROW(InvalidArgument, run.path, " holds no \"train\" records (a tsp train --metrics file?)");
  return run;
}

// Tokens trained through each step: the running sum of the steps' tokens.
std::map<int64_t, double> cumulative_tokens(const PlotRun& r) {
  std::map<int64_t, double> out;
  double sum = 0;
  for (const auto& [step, p] : r.train) out[step] = (sum += p.tokens);
  return out;
}

std::string fmt(const char* f, auto... v) {
  char buf[256];
  std::snprintf(buf, sizeof buf, f, v...);
  return buf;
}

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
    train.markers = rate.markers = r.train.size() <= 60;
    val.dashed = true;
    for (const auto& [step, p] : r.train) {
      train.points.push_back({tokens.at(step), p.loss});
      rate.points.push_back({tokens.at(step), p.tokens_per_s});
    }
    for (const auto& [step, v] : r.val) {
      auto it = tokens.upper_bound(step);  // the last train step at or before this validation
      if (it == tokens.begin()) continue;
      val.points.push_back({std::prev(it)->second, v});
    }
    std::string line = fmt("%s: %s, %zu steps, %.0f tokens, final train loss %.6f", r.name.c_str(), r.path.c_str(),
                           r.train.size(), tokens.rbegin()->second, r.train.rbegin()->second.loss);
    if (!r.val.empty()) line += fmt(", final val_loss %.6f", r.val.rbegin()->second);
    f.subtitle.push_back(line);
    out << line << "\n";
    loss.series.push_back(std::move(train));
    if (!val.points.empty()) loss.series.push_back(std::move(val));
    speed.series.push_back(std::move(rate));
  }
  f.rows.push_back({panel(loss), panel(speed)});
  std::ofstream file(args.svg_path);
  TSP_CHECK_T(IoError, file.good(), "cannot write --svg ", args.svg_path);
  file << render_svg(f);
  file.close();
  TSP_CHECK_T(IoError, !file.fail(), "error writing --svg ", args.svg_path);
  out << "wrote " << args.svg_path << "\n";
  return 0;
}

}  // namespace tsp::cli
