// `tsp data prepare`: text, directories, JSONL or stdin to sharded token files and manifest.json
// (tsp/data/prepare/prepare.h); the summary on stdout, progress on stderr.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace tsp::cli {

struct DataArgs {
  std::vector<std::string> inputs;
  std::vector<std::string> val_inputs;
  std::string out;
  std::string tokenizer = "byte";
  std::string format = "auto";    // auto, text, jsonl
  std::string field = "text";
  std::string doc_sep = "file";   // file, blankline, percent
  int64_t shard_tokens = 100'000'000;
  double val_fraction = 0.0;
  int64_t threads = 0;
  bool overwrite = false;
  std::string progress = "auto";  // auto (bar on a terminal, else lines), bar, lines, none
};

// Adds `data` with its `prepare` subcommand; returns the parent.
CLI::App* add_data_command(CLI::App& app, DataArgs& args);

int run_data(const DataArgs& args, std::ostream& out, std::ostream& err);

}  // namespace tsp::cli
