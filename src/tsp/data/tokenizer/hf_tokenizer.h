// HfTokenizer: a Hugging Face tokenizer.json with a BPE model: byte-level (GPT-2, Llama-3, Qwen2:
// split regex + ByteLevel) and SentencePiece-style (Llama-2, Mistral: Prepend/Replace or Metaspace,
// <0xNN> byte fallback); added tokens, the post-processor's BOS/EOS, the decoder chain.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "tsp/data/tokenizer/tokenizer.h"

namespace tsp::data {

class HfTokenizer final : public Tokenizer {
 public:
  // Parses the text of a tokenizer.json; `source` names it in messages. A component this
  // implementation does not have (a WordPiece or Unigram model, an NFC normalizer, ...) throws
  // InvalidArgument naming it: nothing is silently approximated.
  HfTokenizer(std::string_view json_text, std::string source);
  ~HfTokenizer() override;

  std::vector<int32_t> encode(std::string_view text, bool add_special = true) const override;
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const override;
  int64_t vocab_size() const override;
  bool is_special(int32_t id) const override;
  std::string describe() const override;
  // The id of a vocabulary piece or added token ("<s>", "<|eot_id|>"), if any.
  std::optional<int32_t> id_of(std::string_view token) const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace tsp::data
