// Byte-level encoding and decoding with the BOS/EOS/PAD special ids.
#include "tsp/data/byte_tokenizer.h"

#include <cstdio>

#include "tsp/core/check.h"

namespace tsp::data {

std::vector<int32_t> ByteTokenizer::encode(std::string_view text, const EncodeOptions& options) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() + 2);
  if (options.add_bos) ids.push_back(kBosId);
  for (char c : text) ids.push_back(static_cast<int32_t>(static_cast<unsigned char>(c)));
  if (options.add_eos) ids.push_back(kEosId);
  return ids;
}

std::string ByteTokenizer::decode(std::span<const int32_t> ids, const DecodeOptions& options) const {
  std::string out;
  out.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    TSP_CHECK(id >= 0, "byte tokenizer: negative token id ", id, " at position ", i);
    if (is_byte(id)) {
      out.push_back(static_cast<char>(static_cast<unsigned char>(id)));
    } else if (options.special == SpecialTokens::render) {
      out += token_repr(id);
    }
  }
  return out;
}

std::string ByteTokenizer::token_repr(int32_t id) {
  switch (id) {
    case kBosId: return "<bos>";
    case kEosId: return "<eos>";
    case kPadId: return "<pad>";
    case '\n': return "\\n";
    case '\t': return "\\t";
    default: break;
  }
  char buf[32];
  if (id < 0 || id >= kNumIds) {
    std::snprintf(buf, sizeof buf, "<unused:%d>", static_cast<int>(id));
  } else if (id >= 0x20 && id < 0x7f) {
    return std::string(1, static_cast<char>(id));
  } else {
    std::snprintf(buf, sizeof buf, "<0x%02x>", static_cast<unsigned>(id));
  }
  return buf;
}

}  // namespace tsp::data
