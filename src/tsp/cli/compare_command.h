// `tsp compare`: side by side, runs of the same model under different layouts, read from their
// metrics files: losses per step and their largest difference, tokens/s, per-rank memory, traffic.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace tsp::cli {

struct CompareArgs {
  std::vector<std::string> runs;  // "[NAME=]metrics.jsonl", the first is the reference
};

// Adds the `compare` subcommand and its flags to `app`, bound to `args`.
CLI::App* add_compare_command(CLI::App& app, CompareArgs& args);

// Prints the comparison table to `out`. A file that cannot be read, holds no train records, or a
// run whose steps differ from the reference's throws tsp::Error.
int run_compare(const CompareArgs& args, std::ostream& out);

}  // namespace tsp::cli
