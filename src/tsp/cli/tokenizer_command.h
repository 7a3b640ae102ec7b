// `tsp tokenizer encode|decode --tokenizer DIR`: a model directory's tokenizer on stdin or --text /
// --ids, for users and for the agreement checks against other implementations; `tsp tokenizer
// train`: a SentencePiece vocabulary trained on a corpus (tsp/data/tokenizer/sentencepiece_trainer.h).
#pragma once

#include <istream>
#include <ostream>
#include <cstdint>
#include <string>
#include <vector>

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
  bool train = false;         // set by the subcommand chosen
  // train
  std::vector<std::string> inputs;
  std::string out;
  std::string type = "bpe";
  int64_t vocab_size = 8000;
  int64_t max_sentences = 0;
  int64_t threads = 1;
  int64_t seed = 1234;
  std::string format = "auto", field = "text", doc_sep = "file";
};

// Adds `tokenizer` with its `encode` and `decode` subcommands; returns the parent.
CLI::App* add_tokenizer_command(CLI::App& app, TokenizerArgs& args);

// Ids separated by single spaces and a newline; decode: the exact text (no newline added).
// --jsonl: one output line per input line. train: one summary line.
int run_tokenizer(TokenizerArgs& args, std::istream& in, std::ostream& out);

}  // namespace tsp::cli
