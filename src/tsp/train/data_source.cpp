#include "tsp/train/data_source.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tsp/core/check.h"
#include "tsp/data/byte_tokenizer.h"
#include "tsp/data/corpus.h"
#include "tsp/data/token_file.h"
#include "tsp/data/tokenizer/model_dir_tokenizer.h"

namespace tsp::train {

TokenData load_token_data(const std::string& spec, int64_t vocab_size, const data::Tokenizer* tokenizer) {
  TokenData out;
  if (spec == kFortunesData && tokenizer != nullptr && tokenizer->describe() != "byte") {
    data::check_tokenizer_fits(*tokenizer, vocab_size, "");
    const data::Corpus corpus = data::read_fortune_corpus();
    out.tokens = tokenizer->encode(corpus.text, false);
    out.description = "fortunes corpus (" + std::to_string(corpus.files) + " files, " +
                      std::to_string(corpus.records) + " records, " + tokenizer->describe() + " tokenizer)";
    return out;
  }
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

std::unique_ptr<data::Tokenizer> tokenizer_for_data(const std::string& spec, const std::string& model_dir,
                                                    int64_t vocab_size) {
  if (spec != kFortunesData || model_dir.empty()) return nullptr;
  return data::tokenizer_for_model("", model_dir, vocab_size);
}

std::map<std::string, std::string> tokenizer_files_of(const std::string& init_dir) {
  std::map<std::string, std::string> files;
  if (init_dir.empty()) return files;
  for (const std::string& name : data::tokenizer_file_names()) {
    const std::filesystem::path p = std::filesystem::path(init_dir) / name;
    std::ifstream in(p, std::ios::binary);
    if (!in) continue;
    std::stringstream ss;
    ss << in.rdbuf();
    files[name] = ss.str();
  }
  return files;
}

}  // namespace tsp::train
