#include "tsp/train/data_source.h"

#include <xxhash.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "tsp/core/check.h"
#include "tsp/core/memory.h"
#include "tsp/core/tensor.h"
#include "tsp/data/byte_tokenizer.h"
#include "tsp/data/corpus.h"
#include "tsp/data/prepare/manifest.h"
#include "tsp/data/token_file.h"
#include "tsp/data/token_streams.h"
#include "tsp/data/tokenizer/model_dir_tokenizer.h"
#include "tsp/train/train_state.h"

namespace tsp::train {

namespace {

TrainData fortunes(int64_t vocab_size, const data::Tokenizer* tokenizer) {
  const data::Corpus corpus = data::read_fortune_corpus();
  std::vector<int32_t> tokens;
  std::string kind;
  if (tokenizer != nullptr && tokenizer->describe() != "byte") {
    data::check_tokenizer_fits(*tokenizer, vocab_size, "");
    tokens = tokenizer->encode(corpus.text, false);
    kind = tokenizer->describe();
  } else {
    TSP_CHECK(vocab_size >= data::ByteTokenizer::kNumIds, "the byte tokenizer needs vocab_size >= ",
              data::ByteTokenizer::kNumIds, ", the model has ", vocab_size);
    tokens = data::ByteTokenizer().encode(corpus.text);
    kind = "byte";
  }
  return TrainData::in_memory(std::move(tokens), "fortunes corpus (" + std::to_string(corpus.files) + " files, " +
                                                     std::to_string(corpus.records) + " records, " + kind +
                                                     " tokenizer)");
}

// TSPTOK1 headers carry vocab_size: refuse a file made for a larger vocabulary before any reading.
void check_header_vocab(const data::TokenSource& s, int64_t vocab_size) {
  if (const auto* f = dynamic_cast<const data::MappedTokenFile*>(&s)) {
    TSP_CHECK(f->format() != data::TokenFileFormat::tsp || f->vocab_limit() <= vocab_size, "token file ",
              f->path().string(), " has vocab_size ", f->vocab_limit(), ", larger than the model's vocab_size ",
              vocab_size);
  } else if (const auto* c = dynamic_cast<const data::ConcatTokens*>(&s)) {
    for (const auto& p : c->parts()) check_header_vocab(*p, vocab_size);
  }
}

data::TokenStreams open_item(const data::DataSpecItem& item) {
  std::vector<data::TokenStreams> streams;
  for (const std::string& p : item.paths) streams.push_back(data::open_token_path(p));
  return data::concat_streams(streams);
}

std::string item_name(const data::DataSpecItem& item) {
  std::string s;
  for (const std::string& p : item.paths) s += (s.empty() ? "" : "+") + p;
  return s;
}

std::string describe_streams(const data::TokenStreams& s) {
  std::string d = s.train->describe();
  if (s.val) d += " with validation " + s.val->describe();
  return d;
}

// One streaming pass over `source`: xxh3 of its int32 tokens, per-id counts, range check.
struct Scan {
  XXH3_state_t* hash = nullptr;
  Tensor counts;  // i64 [vocab_size]
  int64_t total = 0;
};

void scan(const data::TokenSource& source, int64_t vocab_size, Scan& sc) {
  constexpr int64_t kChunk = int64_t{1} << 16;  // tokens per read: 256 KiB of int32
  Tensor buf = Tensor::empty(Shape{kChunk}, DType::i32, MemCategory::workspace);
  int32_t* b = buf.data<int32_t>();
  int64_t* counts = sc.counts.data<int64_t>();
  for (int64_t at = 0; at < source.size(); at += kChunk) {
    const int64_t n = std::min(kChunk, source.size() - at);
    source.stream(at, n, b);
    for (int64_t i = 0; i < n; ++i) {
      TSP_CHECK(b[i] >= 0 && b[i] < vocab_size, source.describe(), ": token ", b[i], " at position ", at + i,
                " is outside the model's vocabulary [0, ", vocab_size, ")");
      ++counts[b[i]];
    }
    if (sc.hash) XXH3_64bits_update(sc.hash, b, static_cast<size_t>(n) * sizeof(int32_t));
    sc.total += n;
  }
}

}  // namespace

int64_t TrainData::total_tokens() const {
  int64_t n = 0;
  for (const Part& p : parts) n += p.tokens->size() + (p.val ? p.val->size() : 0);
  return n;
}

std::string TrainData::summary_line() const {
  std::string line = "data: " + description + ", " + std::to_string(total_tokens()) + " tokens";
  if (mapped) line += " (memory-mapped: page cache shared by the ranks, not in the memory table)";
  return line;
}

TrainData TrainData::in_memory(std::vector<int32_t> tokens, std::string description) {
  TrainData d;
  Part p;
  p.name = description;
  p.tokens = std::make_shared<data::InMemoryTokens>(std::move(tokens), description);
  d.parts.push_back(std::move(p));
  d.description = std::move(description);
  return d;
}

TrainData open_train_data(const std::string& spec, int64_t vocab_size, const data::Tokenizer* tokenizer) {
  if (spec == kFortunesData) return fortunes(vocab_size, tokenizer);
  const std::vector<data::DataSpecItem> items = data::parse_data_spec(spec);
  TrainData d;
  d.mapped = true;
  if (!items[0].weight.has_value()) {  // one stream: the items one after another
    std::vector<data::TokenStreams> streams;
    for (const auto& item : items) streams.push_back(open_item(item));
    const data::TokenStreams s = data::concat_streams(streams);
    d.parts.push_back({spec, 1.0, s.train, s.val});
    d.description = describe_streams(s);
  } else {
    d.description = "blend of " + std::to_string(items.size()) + ":";
    for (const auto& item : items) {
      const data::TokenStreams s = open_item(item);
      d.parts.push_back({item_name(item), *item.weight, s.train, s.val});
      std::ostringstream w;
      w << *item.weight;
      d.description += " " + w.str() + " x " + describe_streams(s) + ";";
    }
    d.description.pop_back();
  }
  for (const TrainData::Part& p : d.parts) {
    check_header_vocab(*p.tokens, vocab_size);
    if (p.val) check_header_vocab(*p.val, vocab_size);
  }
  return d;
}

TokenData load_token_data(const std::string& spec, int64_t vocab_size, const data::Tokenizer* tokenizer) {
  const TrainData d = open_train_data(spec, vocab_size, tokenizer);
  TSP_CHECK(d.parts.size() == 1 && d.parts[0].val == nullptr, "load_token_data reads one stream, not ",
            d.description);
  TokenData out;
  out.tokens = data::read_all(*d.parts[0].tokens);
  out.description = d.description;
  return out;
}

RunData prepare_run_data(const TrainData& data, double val_fraction, int64_t seq, int64_t vocab_size) {
  TSP_CHECK(!data.parts.empty(), "no training data");
  RunData r;
  std::vector<data::TokenSourcePtr> vals;
  Scan sc;
  sc.counts = Tensor::zeros(Shape{vocab_size}, DType::i64, MemCategory::workspace);
  XXH3_state_t* state = XXH3_createState();
  TSP_CHECK(state != nullptr, "XXH3_createState: out of memory");
  const auto need = seq + 1;
  try {
    for (const TrainData::Part& p : data.parts) {
      data::TokenSourcePtr train = p.tokens, val = p.val;
      const int64_t whole = p.tokens->size() + (p.val ? p.val->size() : 0);
      if (!val) {
        const data::SplitSources s = data::split_train_val(p.tokens, {.val_fraction = val_fraction});
        train = s.train;
        val = s.val;
      }
      const std::string of = data.parts.size() > 1 ? " of blend part " + p.name : "";
      TSP_CHECK(train->size() >= need, "the training split", of, " has ", train->size(), " tokens of ", whole,
                ", fewer than --seq + 1 = ", need, ": use more data or a shorter --seq");
      TSP_CHECK(val->size() >= need, "the validation split", of, " has ", val->size(), " tokens of ", whole,
                ", fewer than --seq + 1 = ", need,
                p.val ? ": use more validation shards or a shorter --seq"
                      : ": use more data, a larger --val-fraction or a shorter --seq");
      r.train.push_back({train, p.weight});
      vals.push_back(val);
      r.tokens += whole;
      r.train_tokens += train->size();
      XXH3_64bits_reset(state);
      sc.hash = state;
      const int64_t before = sc.total;
      scan(*p.tokens, vocab_size, sc);
      if (p.val) scan(*p.val, vocab_size, sc);
      std::string fp = std::to_string(sc.total - before) + " tokens, xxh3 " +
                       detail::checksum_hex(XXH3_64bits_digest(state));
      if (data.parts.size() > 1) {
        std::ostringstream w;
        w << p.weight;
        fp = w.str() + " * [" + fp + "]";
      }
      r.fingerprint += (r.fingerprint.empty() ? "" : " + ") + fp;
    }
  } catch (...) {
    XXH3_freeState(state);
    throw;
  }
  XXH3_freeState(state);
  r.val = vals.size() == 1 ? vals[0] : std::make_shared<data::ConcatTokens>(std::move(vals));
  r.unigram_nats = data::unigram_entropy_from_counts(
                       std::span<const int64_t>(sc.counts.data<int64_t>(), static_cast<size_t>(vocab_size)), sc.total)
                       .nats;
  return r;
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
