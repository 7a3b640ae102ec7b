// Tokenizer: the interface of every tokenizer (the byte tokenizer, Hugging Face tokenizer.json,
// SentencePiece tokenizer.model): text <-> ids, the special ids a model starts and stops with.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tsp::data {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // add_special: the tokenizer's own template around the text (BOS for Llama: the post-processor
  // of tokenizer.json, add_bos_token/add_eos_token of a SentencePiece model's tokenizer_config).
  // Special tokens written in the text ("<|eot_id|>") become their ids.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_special = true) const = 0;
  // The text of the ids. skip_special: special tokens (BOS, EOS, control) produce nothing.
  // Ids outside 0..vocab_size()-1 throw InvalidArgument naming the id and its position.
  virtual std::string decode(std::span<const int32_t> ids, bool skip_special = false) const = 0;
  // Every id the tokenizer can produce or decode is < vocab_size().
  virtual int64_t vocab_size() const = 0;
  virtual bool is_special(int32_t id) const = 0;
  // "tokenizer.json (BPE, byte-level)", for logs and refusals.
  virtual std::string describe() const = 0;

  // BOS/EOS as the model directory states them (tokenizer_config.json, generation_config.json,
  // config.json); EOS may be several ids (Llama-3.1 stops at any of three).
  std::optional<int32_t> bos_id() const { return bos_id_; }
  const std::vector<int32_t>& eos_ids() const { return eos_ids_; }
  void set_special_ids(std::optional<int32_t> bos, std::vector<int32_t> eos) {
    bos_id_ = bos;
    eos_ids_ = std::move(eos);
  }

 private:
  std::optional<int32_t> bos_id_;
  std::vector<int32_t> eos_ids_;
};

}  // namespace tsp::data
