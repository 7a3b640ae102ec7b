// ByteLevel alphabet of GPT-2 style tokenizers: each byte is one printable Unicode character
// (printable Latin-1 bytes stand for themselves, the others map to U+0100 and up).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tsp::data::byte_level {

// The UTF-8 of the character standing for byte b.
const std::string& char_of(uint8_t b);
// Each byte of text as its character.
std::string encode(std::string_view text);
// The byte a code point stands for, or -1 if it stands for none.
int byte_of(int32_t cp);

}  // namespace tsp::data::byte_level
