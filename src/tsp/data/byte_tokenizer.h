// ByteTokenizer: the default tokenizer. Ids 0..255 are the bytes of the (UTF-8) text; 256, 257,
// 258 are BOS, EOS and PAD. A model using it needs vocab_size >= 259 (the presets use 320).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tsp::data {

struct EncodeOptions {
  bool add_bos = false;  // prepend kBosId
  bool add_eos = false;  // append kEosId
};

enum class SpecialTokens : uint8_t {
  skip,    // decode drops BOS/EOS/PAD and unused ids (>= 259): the plain text
  render,  // decode writes "<bos>", "<eos>", "<pad>", "<unused:300>"
};

struct DecodeOptions {
  SpecialTokens special = SpecialTokens::skip;
};

class ByteTokenizer {
 public:
  static constexpr int32_t kBosId = 256;
  static constexpr int32_t kEosId = 257;
  static constexpr int32_t kPadId = 258;
  static constexpr int32_t kNumIds = 259;  // smallest vocab_size a model needs for this tokenizer

  // Every byte maps to its value; never fails.
  std::vector<int32_t> encode(std::string_view text, const EncodeOptions& options = {}) const;
  // Inverse of encode for ids 0..255 (the exact original bytes, including invalid UTF-8).
  // Negative ids throw InvalidArgument naming the id and its position.
  std::string decode(std::span<const int32_t> ids, const DecodeOptions& options = {}) const;

  static bool is_byte(int32_t id) { return id >= 0 && id < 256; }
  static bool is_special(int32_t id) { return id >= 256; }
  // "a", "\n" as "\\n", "<bos>", "<0xff>" for non-printable bytes: for logs and tests.
  static std::string token_repr(int32_t id);
};

}  // namespace tsp::data
