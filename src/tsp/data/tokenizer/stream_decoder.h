// StreamDecoder: the text of generated ids as they arrive. Decodes the context and every id so far
// and hands out what is new, holding back an unfinished UTF-8 character (a byte-level or
// byte-fallback token may carry part of one) and keeping the leading space a SentencePiece
// decoder strips only at the very start of a text.
#pragma once

#include <string>
#include <vector>

#include "tsp/data/tokenizer/tokenizer.h"

namespace tsp::data {

class StreamDecoder {
 public:
  // `context`: the prompt's ids (not printed). Special tokens produce no text.
  StreamDecoder(const Tokenizer& tokenizer, std::vector<int32_t> context);
  // The text the id adds (possibly empty until a character is complete; empty for an id outside
  // the tokenizer's vocabulary, a padding row of the model's embedding).
  std::string push(int32_t id);
  // What is still held back (an incomplete character at the end of the output).
  std::string finish();

 private:
  const Tokenizer& tokenizer_;
  std::vector<int32_t> ids_;
  size_t context_bytes_ = 0;
  size_t emitted_ = 0;  // bytes of the decoded text (after the context) handed out
  std::string text_;    // the last full decode
};

}  // namespace tsp::data
