// The tokenizer of a model directory: tokenizer.json (preferred, as transformers' fast tokenizers)
// or tokenizer.model, BOS/EOS and sampling defaults from tokenizer_config.json,
// generation_config.json and config.json; the byte tokenizer where the directory has none and the
// vocabulary is byte-sized. A tokenizer that does not fit the model's vocab_size is refused.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tsp/data/tokenizer/tokenizer.h"

namespace tsp::data {

// generation_config.json's sampling settings (absent fields: nullopt).
struct GenerationDefaults {
  std::optional<bool> do_sample;  // false: greedy
  std::optional<double> temperature;
  std::optional<double> top_p;
  std::optional<int64_t> top_k;
};

// The byte tokenizer (tsp/data/byte_tokenizer.h) behind the Tokenizer interface: BOS 256, EOS 257.
std::unique_ptr<Tokenizer> make_byte_tokenizer();

// The tokenizer files of `dir`: tokenizer.json, else tokenizer.model. Throws InvalidArgument when
// there is neither (naming the directory and what was looked for) or the file is unsupported.
std::unique_ptr<Tokenizer> load_tokenizer_dir(const std::filesystem::path& dir);

// Embedding rows a model may have beyond its tokenizer's ids (rounded-up vocabularies: Qwen2.5 has
// 151936 rows for 151665 ids); a larger gap means the tokenizer belongs to another model.
inline constexpr int64_t kMaxVocabPadding = 1024;

// The tokenizer a command uses with a model of `model_vocab_size` ids from `model_dir`:
//   spec "byte": the byte tokenizer; spec a directory: its tokenizer files;
//   spec "": the model directory's tokenizer files, or the byte tokenizer when it has none.
// Refuses (InvalidArgument, one line) when the tokenizer's ids exceed vocab_size or fall short of
// it by more than kMaxVocabPadding: never generate or fine-tune with a mismatched tokenizer.
std::unique_ptr<Tokenizer> tokenizer_for_model(const std::string& spec, const std::filesystem::path& model_dir,
                                               int64_t model_vocab_size);

// Throws the refusal above when `t` does not fit `model_vocab_size`.
void check_tokenizer_fits(const Tokenizer& t, int64_t model_vocab_size, const std::string& where);

GenerationDefaults read_generation_defaults(const std::filesystem::path& dir);

// The files a fine-tuned checkpoint carries over from its --init directory, where present.
const std::vector<std::string>& tokenizer_file_names();

}  // namespace tsp::data
