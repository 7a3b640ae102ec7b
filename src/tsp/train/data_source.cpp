#include "tsp/train/data_source.h"

#include <algorithm>

#include "tsp/core/check.h"
#include "tsp/data/byte_tokenizer.h"
#include "tsp/data/corpus.h"
#include "tsp/data/token_file.h"

namespace tsp::train {

TokenData load_token_data(const std::string& spec, int64_t vocab_size) {
  TokenData out;
  if (spec == kFortunesData) {
    const data::Corpus corpus = data::read_fortune_corpus();
    out.tokens = data::ByteTokenizer().encode(corpus.text);
    out.description = "fortunes corpus (" + std::to_string(corpus.files) + " files, " +
                      std::to_string(corpus.records) + " records, byte tokenizer)";
    TSP_CHECK(vocab_size >= data::ByteTokenizer::kNumIds, "the byte tokenizer needs vocab_size >= ",
              data::ByteTokenizer::kNumIds, ", the model has ", vocab_size);
    return out;
  }
  const data::TokenFileReader reader(spec);
  TSP_CHECK(reader.header().vocab_size <= static_cast<uint64_t>(vocab_size), "token file ", spec,
            " has vocab_size ", reader.header().vocab_size, ", larger than the model's vocab_size ", vocab_size);
  out.tokens = reader.read_all();
  out.description = "token file " + spec;
  return out;
}

}  // namespace tsp::train
