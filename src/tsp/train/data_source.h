// Where the training tokens come from: the fortunes demo corpus through a tokenizer (in memory), or
// token files read in place (memory-mapped: TSPTOK1, llm.c and nanoGPT .bin, manifests of shards,
// comma lists and weighted blends; tsp/data/token_streams.h), and the run's view of them: train
// and validation sources, the data fingerprint and the unigram entropy from one streaming pass.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tsp/data/batch_loader.h"
#include "tsp/data/token_source.h"
#include "tsp/data/tokenizer/tokenizer.h"

namespace tsp::train {

inline constexpr const char* kFortunesData = "fortunes";

// --data opened, nothing read yet (beyond headers).
struct TrainData {
  struct Part {
    std::string name;                // the --data item
    double weight = 1.0;             // blend weight (1 for a single stream)
    data::TokenSourcePtr tokens;     // the stream (a manifest's training shards)
    data::TokenSourcePtr val;        // separate validation shards, or nullptr: the split rule applies
  };
  std::vector<Part> parts;  // one, unless --data is a blend
  std::string description;  // "fortunes corpus (431 files, ...)", "token file x.tok", "blend of 2: ..."
  bool mapped = false;      // files read in place (their bytes are page cache, not allocations)
  // Tokens of every part, validation shards included.
  int64_t total_tokens() const;
  // "data: <description>, <n> tokens" plus, for mapped files, where their bytes live.
  std::string summary_line() const;
  // A single in-memory stream (tests, the trainer's vector constructor).
  static TrainData in_memory(std::vector<int32_t> tokens, std::string description = "token stream");
};

// spec "fortunes": read_fortune_corpus() encoded by `tokenizer` (nullptr: the byte tokenizer; no
// BOS/EOS added), in memory. Anything else: parse_data_spec items, each a token file, manifest or
// directory ('+'-joined paths and comma lists concatenate; weights make a blend). A TSPTOK1 file
// whose header vocab_size exceeds `vocab_size` -> InvalidArgument naming the file and both sizes
// (ids of header-less formats are checked by prepare_run_data's scan).
TrainData open_train_data(const std::string& spec, int64_t vocab_size, const data::Tokenizer* tokenizer = nullptr);

// The whole stream in memory (small data only: `tsp bench` reads fortunes with it).
struct TokenData {
  std::vector<int32_t> tokens;
  std::string description;
};
TokenData load_token_data(const std::string& spec, int64_t vocab_size, const data::Tokenizer* tokenizer = nullptr);

// What a run trains and validates on.
struct RunData {
  std::vector<data::BlendPart> train;  // one part unless a blend
  data::TokenSourcePtr val;            // the parts' validation streams, concatenated
  int64_t tokens = 0;                  // every token of --data
  int64_t train_tokens = 0;
  // "<n> tokens, xxh3 <16 hex>" of the int32 stream (as data_fingerprint of a vector); a manifest
  // with validation shards hashes train then val; a blend joins its parts' as "w * fp + ...".
  std::string fingerprint;
  double unigram_nats = 0;  // over every token of every part
};

// Splits each part (split_train_val's rule as views, unless it has validation shards), checks that
// every train and validation stream holds seq + 1 tokens, and makes one streaming pass over the
// data (pread, in chunks through the accounting allocator) for the fingerprint, the unigram
// entropy and the largest id (>= vocab_size -> InvalidArgument naming the source).
RunData prepare_run_data(const TrainData& data, double val_fraction, int64_t seq, int64_t vocab_size);

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
