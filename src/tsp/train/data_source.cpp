#include "tsp/train/data_source.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "tsp/core/check.h"
#include "tsp/data/byte_tokenizer.h"
#include "tsp/data/corpus.h"
#include "tsp/data/prepare/manifest.h"
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

std::map<std::string, std::string> tokenizer_files_of(const std::string& init_dir, const std::string& data_spec) {
  namespace fs = std::filesystem;
  std::map<std::string, std::string> files;
  const auto read = [](const fs::path& p) -> std::optional<std::string> {
    std::ifstream in(p, std::ios::binary);
    if (!in) return std::nullopt;
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  if (!init_dir.empty()) {
    for (const std::string& name : data::tokenizer_file_names())
      if (auto text = read(fs::path(init_dir) / name)) files[name] = std::move(*text);
    return files;
  }
  // The first data entry of "a,b" or "a:0.7,b:0.3"; a manifest or a directory holding one.
  std::string first = data_spec.substr(0, data_spec.find(','));
  if (const size_t colon = first.rfind(':'); colon != std::string::npos && !fs::exists(first)) first.resize(colon);
  fs::path manifest = first;
  if (fs::is_directory(manifest)) manifest /= data::kShardManifestName;
  const bool shard_file = manifest.filename() != data::kShardManifestName;  // a .tok of a prepared directory?
  if (shard_file) manifest = manifest.parent_path() / data::kShardManifestName;
  if (first.empty() || !fs::is_regular_file(manifest)) return files;
  const data::ShardManifest m = data::read_manifest(manifest);
  if (shard_file) {
    const std::string name = fs::path(first).filename().string();
    const auto listed = [&](const std::vector<data::ShardEntry>& v) {
      return std::any_of(v.begin(), v.end(), [&](const data::ShardEntry& e) { return e.file == name; });
    };
    if (!listed(m.train) && !listed(m.val)) return files;
  }
  const data::TokenizerIdentity& t = m.tokenizer;
  if (t.kind == "byte") return files;
  const fs::path source = t.source;
  auto text = read(source);
  TSP_CHECK(text.has_value(), "the tokenizer ", t.source, " that ", manifest.string(),
            " was prepared with is gone: checkpoints would lack their tokenizer");
  TSP_CHECK(data::xxh64_hex(*text) == t.xxh64, "the tokenizer ", t.source, " changed since ", manifest.string(),
            " was prepared (xxh64 ", data::xxh64_hex(*text), ", manifest ", t.xxh64, ")");
  files[t.kind == "tokenizer.json" ? "tokenizer.json" : "tokenizer.model"] = std::move(*text);
  for (const std::string& name : data::tokenizer_file_names()) {
    if (name == "tokenizer.json" || name == "tokenizer.model") continue;
    if (auto extra = read(source.parent_path() / name)) files[name] = std::move(*extra);
  }
  return files;
}

}  // namespace tsp::train
