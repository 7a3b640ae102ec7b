// UTF-8 helpers of the tokenizers: code points of (possibly invalid) UTF-8 text, and back.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tsp::data::utf8 {

// Bytes of the character starting at s[i]: its sequence length when s[i..] begins a valid UTF-8
// sequence (shortest form, no surrogates), else 1 (an invalid byte stands for itself).
size_t char_length(std::string_view s, size_t i);
// The code point starting at s[i] (as char_length), or -1 for an invalid byte.
int32_t code_point(std::string_view s, size_t i);
void append(std::string& out, uint32_t cp);
// Unicode White_Space (what Rust's char::is_whitespace and Oniguruma's \s match).
bool is_whitespace(int32_t cp);
// Bytes at the end of s that begin a UTF-8 sequence still missing continuation bytes (0..3).
size_t incomplete_tail(std::string_view s);

}  // namespace tsp::data::utf8
