// Where the training tokens come from: the fortunes demo corpus through the byte tokenizer, or a
// pre-tokenised token file.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tsp/data/tokenizer/tokenizer.h"

namespace tsp::train {

inline constexpr const char* kFortunesData = "fortunes";

struct TokenData {
  std::vector<int32_t> tokens;
  std::string description;  // "fortunes corpus (431 files, ...)" or "token file x.tok"
};

// spec "fortunes": read_fortune_corpus() encoded by `tokenizer` (nullptr: the byte tokenizer; no
// BOS/EOS added); anything else: a token file path. Tokens must be < vocab_size (else
// InvalidArgument naming the file and both sizes).
TokenData load_token_data(const std::string& spec, int64_t vocab_size, const data::Tokenizer* tokenizer = nullptr);

// The tokenizer text data is encoded with for a model from `model_dir` ("" : none, a built model):
// the directory's own (refused when it does not fit vocab_size, tsp/data/tokenizer/
// model_dir_tokenizer.h), or nullptr (the byte tokenizer) for token files, which are already ids.
std::unique_ptr<data::Tokenizer> tokenizer_for_data(const std::string& spec, const std::string& model_dir,
                                                    int64_t vocab_size);

// The tokenizer files saved with every checkpoint of the run (name -> contents), so that a trained
// model's directory is complete: an --init directory's own; else, when `data_spec` (its first entry
// of a list or blend) is a `tsp data prepare` manifest, its directory or a shard it lists, the
// tokenizer it was prepared with (its file under the standard name, with the tokenizer_config.json
// etc. beside it). That file gone or changed since (xxh64 differs from the manifest's) ->
// InvalidArgument; `tsp train` calls this once before training so that a save never fails on it.
std::map<std::string, std::string> tokenizer_files_of(const std::string& init_dir, const std::string& data_spec = "");

}  // namespace tsp::train
