// Regex: the Oniguruma patterns of tokenizer.json (split regexes with \p{L}, \p{N}, lookahead)
// compiled with PCRE2 in UTF + Unicode-property mode; finds every match in a text.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tsp::data {

class Regex {
 public:
  // Throws InvalidArgument naming the pattern and PCRE2's message when it does not compile.
  explicit Regex(const std::string& oniguruma_pattern);
  ~Regex();
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;

  // [begin, end) byte ranges of the successive non-overlapping matches (empty matches skipped).
  // Invalid UTF-8 bytes never match (they fall into the gaps).
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;

  // The pattern as given to PCRE2: \s and \S spelled out as Oniguruma's Unicode White_Space.
  static std::string translate(const std::string& oniguruma_pattern);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tsp::data
