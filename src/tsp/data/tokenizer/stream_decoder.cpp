// Incremental decoding by re-decoding: exact for every decoder chain (no per-token assumptions);
// the cost is linear in the text so far per token, negligible beside a decode step.
#include "tsp/data/tokenizer/stream_decoder.h"

#include "tsp/data/tokenizer/utf8.h"

namespace tsp::data {

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, std::vector<int32_t> context)
    : tokenizer_(tokenizer), ids_(std::move(context)) {
  context_bytes_ = tokenizer_.decode(ids_, true).size();
}

std::string StreamDecoder::push(int32_t id) {
  // A model may have embedding rows beyond its tokenizer's ids (padding): they have no text.
  if (id < 0 || id >= tokenizer_.vocab_size()) return "";
  ids_.push_back(id);
  text_ = tokenizer_.decode(ids_, true);
  if (text_.size() < context_bytes_ + emitted_) return "";  // a decoder rewrote earlier text: nothing new
  const std::string_view fresh = std::string_view(text_).substr(context_bytes_ + emitted_);
  const size_t ready = fresh.size() - utf8::incomplete_tail(fresh);
  emitted_ += ready;
  return std::string(fresh.substr(0, ready));
}

std::string StreamDecoder::finish() {
  if (text_.size() <= context_bytes_ + emitted_) return "";
  std::string rest = text_.substr(context_bytes_ + emitted_);
  emitted_ += rest.size();
  return rest;
}

}  // namespace tsp::data
