// UTF-8 decoding that never fails: invalid bytes are characters of their own.
#include "tsp/data/tokenizer/utf8.h"

namespace tsp::data::utf8 {

namespace {

bool cont(unsigned char c) { return (c & 0xC0) == 0x80; }

// Length and code point of a valid sequence at s[i], or {1, -1}.
std::pair<size_t, int32_t> decode_at(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = b(0);
  const size_t left = s.size() - i;
  if (c < 0x80) return {1, c};
  if (c >= 0xC2 && c <= 0xDF && left >= 2 && cont(b(1))) return {2, ((c & 0x1F) << 6) | (b(1) & 0x3F)};
  if (c >= 0xE0 && c <= 0xEF && left >= 3 && cont(b(1)) && cont(b(2))) {
    const int32_t cp = ((c & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
    if (cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF)) return {3, cp};
  }
  if (c >= 0xF0 && c <= 0xF4 && left >= 4 && cont(b(1)) && cont(b(2)) && cont(b(3))) {
    const int32_t cp = ((c & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
    if (cp >= 0x10000 && cp <= 0x10FFFF) return {4, cp};
  }
  return {1, -1};
}

}  // namespace

size_t char_length(std::string_view s, size_t i) { return decode_at(s, i).first; }
int32_t code_point(std::string_view s, size_t i) { return decode_at(s, i).second; }

void append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool is_whitespace(int32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

size_t incomplete_tail(std::string_view s) {
  // Look back at most 3 bytes for a lead byte whose sequence runs past the end.
  for (size_t k = 1; k <= 3 && k <= s.size(); ++k) {
    const auto c = static_cast<unsigned char>(s[s.size() - k]);
    if (cont(c)) continue;
    const size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return need > k ? k : 0;
  }
  return 0;
}

}  // namespace tsp::data::utf8
