// `tsp plot`: training and validation loss against tokens, and tokens/s, of one or more runs read
// from their --metrics files, drawn as one SVG figure (svg_chart.h). docs/training.md.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace tsp::cli {

struct PlotArgs {
  std::vector<std::string> runs;  // "[NAME=]metrics.jsonl"; NAME defaults to the file's stem
  std::string svg_path;
};

CLI::App* add_plot_command(CLI::App& app, PlotArgs& args);

// Writes the figure to args.svg_path and one line per run to `out`. A file that cannot be read or
// holds no train records throws tsp::Error.
int run_plot(const PlotArgs& args, std::ostream& out);

}  // namespace tsp::cli
