// Where the training tokens come from: the fortunes demo corpus through the byte tokenizer, or a
// pre-tokenised token file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tsp::train {

inline constexpr const char* kFortunesData = "fortunes";

struct TokenData {
  std::vector<int32_t> tokens;
  std::string description;  // "fortunes corpus (431 files, ...)" or "token file x.tok"
};

// spec "fortunes": read_fortune_corpus() encoded by ByteTokenizer; anything else: a token file
// path. Tokens must be < vocab_size (else InvalidArgument naming the file and both sizes).
TokenData load_token_data(const std::string& spec, int64_t vocab_size);

}  // namespace tsp::train
