// SentencePieceTokenizer: a SentencePiece tokenizer.model through libsentencepiece (Debian's
// libsentencepiece-dev): the processor's own encoding, BOS/EOS added as tokenizer_config says.
#pragma once

#include <filesystem>
#include <memory>

#include "tsp/data/tokenizer/tokenizer.h"

namespace tsp::data {

struct SentencePieceOptions {
  bool add_bos = true;   // tokenizer_config.json add_bos_token (LlamaTokenizer's default: true)
  bool add_eos = false;  // add_eos_token
};

class SentencePieceTokenizer final : public Tokenizer {
 public:
  // Throws IoError / InvalidArgument with libsentencepiece's message when the file does not load.
  explicit SentencePieceTokenizer(const std::filesystem::path& model_file, SentencePieceOptions options = {});
  ~SentencePieceTokenizer() override;

  std::vector<int32_t> encode(std::string_view text, bool add_special = true) const override;
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const override;
  int64_t vocab_size() const override;
  bool is_special(int32_t id) const override;
  std::string describe() const override;
  std::optional<int32_t> id_of(std::string_view piece) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tsp::data
