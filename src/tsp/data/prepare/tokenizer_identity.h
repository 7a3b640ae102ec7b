// The tokenizer `tsp data prepare` encodes with, and its identity for the manifest: the kind, the
// file it was loaded from, the xxh64 of that file's bytes, its vocabulary size and EOS id.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "tsp/data/tokenizer/tokenizer.h"

namespace tsp::data {

struct TokenizerIdentity {
  std::string kind;    // "byte", "tokenizer.json" or "sentencepiece"
  std::string source;  // the absolute path of the tokenizer file, or "byte"
  std::string xxh64;   // 16 hex digits of the file's bytes (of the string "byte" for the byte tokenizer)
  int64_t vocab_size = 0;
  int32_t eos_id = 0;
};

struct LoadedTokenizer {
  std::unique_ptr<Tokenizer> tokenizer;
  TokenizerIdentity identity;
};

// spec "" or "byte": the byte tokenizer (EOS 257). A directory: its tokenizer files as a model
// directory's (model_dir_tokenizer.h: tokenizer.json first, then tokenizer.model, BOS/EOS from its
// tokenizer_config.json / generation_config.json / config.json). A file named *.json: a
// tokenizer.json; any other file: a SentencePiece model; a file with the standard name loads with
// its directory's configuration. EOS: the configured one (the first of several), else the
// vocabulary's "</s>", "<|endoftext|>", "<eos>" or "<|end_of_text|>"; none -> InvalidArgument.
LoadedTokenizer load_tokenizer_for_prepare(const std::string& spec);

// 16 lower-case hex digits of XXH64 (seed 0) of `bytes`.
std::string xxh64_hex(std::string_view bytes);
// The same of a file's bytes, read in 4 MiB blocks.
std::string xxh64_file_hex(const std::string& path);

}  // namespace tsp::data
