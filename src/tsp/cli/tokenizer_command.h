// `tsp tokenizer encode|decode --tokenizer DIR`: a model directory's tokenizer on stdin or --text /
// --ids, for users and for the agreement checks against other implementations.
#pragma once

#include <istream>
#include <ostream>
#include <string>

namespace CLI {
class App;
}

namespace tsp::cli {

struct TokenizerArgs {
  std::string tokenizer;      // a directory with tokenizer.json / tokenizer.model, or "byte"
  std::string text;           // encode: the text (default: all of stdin)
  std::string ids;            // decode: the ids (default: all of stdin), separated by spaces or commas
  bool no_special = false;    // encode: no BOS/EOS template
  bool skip_special = false;  // decode: special tokens produce no text
  bool jsonl = false;         // one JSON string (encode) / JSON array of ids (decode) per input line
  bool encode = false;        // set by the subcommand chosen
};

// Adds `tokenizer` with its `encode` and `decode` subcommands; returns the parent.
CLI::App* add_tokenizer_command(CLI::App& app, TokenizerArgs& args);

// Ids separated by single spaces and a newline; decode: the exact text (no newline added).
// --jsonl: one output line per input line.
int run_tokenizer(TokenizerArgs& args, std::istream& in, std::ostream& out);

}  // namespace tsp::cli
