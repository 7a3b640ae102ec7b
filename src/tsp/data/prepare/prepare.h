// `tsp data prepare`: documents (document_source.h) encoded by a tokenizer on worker threads and
// written in input order as sharded token files with EOS after every document, plus manifest.json.
// The bytes written depend on the inputs and the tokenizer only, never on the thread count.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "tsp/data/prepare/document_source.h"
#include "tsp/data/prepare/manifest.h"
#include "tsp/data/prepare/progress.h"

namespace tsp::data {

inline constexpr uint64_t kDefaultShardTokens = 100'000'000;

struct PrepareOptions {
  std::vector<std::string> inputs;      // training documents (files, directories, "-")
  std::vector<std::string> val_inputs;  // validation documents (--val); excludes val_fraction
  InputOptions input;
  std::string tokenizer;  // load_tokenizer_for_prepare's spec ("" : byte)
  std::filesystem::path out_dir;
  uint64_t shard_tokens = kDefaultShardTokens;  // tokens per shard at most
  // Document i (0-based, input order) of `inputs` is held out when floor((i+1)*f) > floor(i*f):
  // evenly spread, exactly floor(n*f) of n documents (f = 0.1: documents 9, 19, 29, ...).
  double val_fraction = 0.0;
  int threads = 0;         // encoding threads; 0: the hardware's
  // Text per encoding task (whole pieces, so the output does not depend on it either).
  size_t batch_bytes = size_t{1} << 20;
  bool overwrite = false;  // replace an earlier prepare's output in out_dir
};

struct PrepareResult {
  ShardManifest manifest;
  uint64_t bytes = 0;  // input bytes read
  uint64_t train_tokens = 0, val_tokens = 0;
  double seconds = 0;  // wall time of reading, encoding and writing
  int threads = 0;
};

// True when document `index` belongs to the validation split under `fraction`.
bool is_val_document(int64_t index, double fraction);

// Refuses (before any input is read) an out_dir that is a file, or holds files an earlier prepare
// did not write (InvalidArgument naming one), or holds an earlier prepare's output without
// `overwrite`.
void check_output_dir(const std::filesystem::path& out_dir, bool overwrite);

// Runs the whole job; `progress` may be nullptr. Errors (unreadable input, bad JSON line, a token
// outside the vocabulary) throw with one clear message after removing the shards this run wrote;
// no manifest is written, so the directory is never mistaken for a complete output. Files inside
// out_dir are never inputs (an earlier output under an input directory).
PrepareResult prepare_token_shards(const PrepareOptions& options, std::ostream* progress_out = nullptr,
                                   bool progress_terminal = false);

}  // namespace tsp::data
