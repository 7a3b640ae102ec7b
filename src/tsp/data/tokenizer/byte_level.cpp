// The bytes_to_unicode table of GPT-2 (openai/gpt-2 encoder.py), built once.
#include "tsp/data/tokenizer/byte_level.h"

#include <array>

#include "tsp/data/tokenizer/utf8.h"

namespace tsp::data::byte_level {

namespace {

struct Table {
  std::array<std::string, 256> chars;
  std::array<int32_t, 256> cps;
  std::array<int16_t, 256 + 68> bytes;  // inverse of cps; the largest code point is 255 + 68
  Table() {
    bytes.fill(-1);
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      cps[b] = printable ? b : next++;
      utf8::append(chars[b], static_cast<uint32_t>(cps[b]));
      bytes[static_cast<size_t>(cps[b])] = static_cast<int16_t>(b);
    }
  }
};

const Table& table() {
  static const Table t;
  return t;
}

}  // namespace

const std::string& char_of(uint8_t b) { return table().chars[b]; }

std::string encode(std::string_view text) {
  std::string out;
  out.reserve(text.size() * 2);
  for (char c : text) out += char_of(static_cast<uint8_t>(c));
  return out;
}

int byte_of(int32_t cp) {
  if (cp < 0 || cp >= 256 + 68) return -1;
  return table().bytes[static_cast<size_t>(cp)];
}

}  // namespace tsp::data::byte_level
