// Choosing and configuring a model directory's tokenizer.
#include "tsp/data/tokenizer/model_dir_tokenizer.h"

#include <fstream>
#include <functional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tsp/core/check.h"
#include "tsp/data/byte_tokenizer.h"
#include "tsp/data/tokenizer/hf_tokenizer.h"
#include "tsp/data/tokenizer/sentencepiece_tokenizer.h"

namespace tsp::data {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

class ByteTokenizerAdapter final : public Tokenizer {
 public:
  ByteTokenizerAdapter() { set_special_ids(ByteTokenizer::kBosId, {ByteTokenizer::kEosId}); }
  std::vector<int32_t> encode(std::string_view text, bool add_special) const override {
    return ByteTokenizer().encode(text, {.add_bos = add_special});
  }
  std::string decode(std::span<const int32_t> ids, bool skip_special) const override {
    for (size_t i = 0; i < ids.size(); ++i)
      TSP_CHECK(ids[i] >= 0 && ids[i] < ByteTokenizer::kNumIds, "byte tokenizer: token id ", ids[i],
                " at position ", i, " is outside the vocabulary (0..", ByteTokenizer::kNumIds - 1, ")");
    return ByteTokenizer().decode(ids, {.special = skip_special ? SpecialTokens::skip : SpecialTokens::render});
  }
  int64_t vocab_size() const override { return ByteTokenizer::kNumIds; }
  bool is_special(int32_t id) const override { return ByteTokenizer::is_special(id); }
  std::string describe() const override { return "byte"; }
};

std::optional<json> read_json(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return json::parse(ss.str());
  } catch (const json::exception& e) {
    TSP_THROW(InvalidArgument, path.string(), " is not valid JSON: ", e.what());
  }
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  TSP_CHECK_T(IoError, static_cast<bool>(in), "cannot read ", path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// "<s>" or {"content": "<s>", ...} (tokenizer_config.json's two spellings).
std::optional<std::string> token_text(const json& cfg, const char* key) {
  if (!cfg.contains(key)) return std::nullopt;
  const json& v = cfg[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return std::nullopt;
}

std::vector<int32_t> ids_of(const json& v) {
  std::vector<int32_t> out;
  if (v.is_number_integer()) out.push_back(v.get<int32_t>());
  if (v.is_array())
    for (const json& x : v)
      if (x.is_number_integer()) out.push_back(x.get<int32_t>());
  return out;
}

// BOS/EOS: generation_config.json, then config.json, then tokenizer_config.json's token strings.
void configure_special_ids(Tokenizer& t, const fs::path& dir,
                           const std::function<std::optional<int32_t>(const std::string&)>& lookup) {
  std::optional<int32_t> bos = t.bos_id();
  std::vector<int32_t> eos = t.eos_ids();
  if (const auto tc = read_json(dir / "tokenizer_config.json")) {
    if (const auto s = token_text(*tc, "bos_token")) bos = lookup(*s);
    if (const auto s = token_text(*tc, "eos_token"))
      if (const auto id = lookup(*s)) eos = {*id};
  }
  for (const char* file : {"config.json", "generation_config.json"}) {
    if (const auto c = read_json(dir / file)) {
      if (c->contains("bos_token_id") && (*c)["bos_token_id"].is_number_integer()) bos = (*c)["bos_token_id"].get<int32_t>();
      if (c->contains("eos_token_id")) {
        const std::vector<int32_t> e = ids_of((*c)["eos_token_id"]);
        if (!e.empty()) eos = e;
      }
    }
  }
  t.set_special_ids(bos, eos);
}

}  // namespace

std::unique_ptr<Tokenizer> make_byte_tokenizer() { return std::make_unique<ByteTokenizerAdapter>(); }

std::unique_ptr<Tokenizer> load_tokenizer_dir(const fs::path& dir) {
  TSP_CHECK_T(IoError, fs::is_directory(dir), "tokenizer directory ", dir.string(), " does not exist");
  if (fs::exists(dir / "tokenizer.json")) {
    auto t = std::make_unique<HfTokenizer>(read_text(dir / "tokenizer.json"), (dir / "tokenizer.json").string());
    const HfTokenizer& h = *t;
    configure_special_ids(*t, dir, [&](const std::string& s) { return h.id_of(s); });
    return t;
  }
  if (fs::exists(dir / "tokenizer.model")) {
    SentencePieceOptions o;
    if (const auto tc = read_json(dir / "tokenizer_config.json")) {
      o.add_bos = tc->value("add_bos_token", true);
      o.add_eos = tc->value("add_eos_token", false);
    }
    auto t = std::make_unique<SentencePieceTokenizer>(dir / "tokenizer.model", o);
    const SentencePieceTokenizer& s = *t;
    configure_special_ids(*t, dir, [&](const std::string& p) { return s.id_of(p); });
    return t;
  }
  TSP_THROW(InvalidArgument, "no tokenizer in ", dir.string(),
            ": it has neither tokenizer.json nor tokenizer.model (supported: tokenizer.json with a BPE "
            "model, SentencePiece tokenizer.model)");
}

void check_tokenizer_fits(const Tokenizer& t, int64_t model_vocab_size, const std::string& where) {
  const int64_t n = t.vocab_size();
  TSP_CHECK(n <= model_vocab_size, "the checkpoint's vocab_size ", model_vocab_size, " is smaller than the ",
            t.describe(), " tokenizer's ", n, " ids", where);
  TSP_CHECK(model_vocab_size - n <= kMaxVocabPadding, "the ", t.describe(), " tokenizer", where, " has ", n,
            " ids but the model's vocab_size is ", model_vocab_size,
            ": they do not belong together (refusing to generate or train with a mismatched tokenizer; "
            "give the model's own tokenizer with --tokenizer DIR)");
}

std::unique_ptr<Tokenizer> tokenizer_for_model(const std::string& spec, const fs::path& model_dir,
                                               int64_t model_vocab_size) {
  std::unique_ptr<Tokenizer> t;
  std::string where;
  if (spec == "byte") {
    t = make_byte_tokenizer();
  } else if (!spec.empty()) {
    t = load_tokenizer_dir(spec);
    where = " (from " + spec + ")";
  } else if (fs::exists(model_dir / "tokenizer.json") || fs::exists(model_dir / "tokenizer.model")) {
    t = load_tokenizer_dir(model_dir);
    where = " (from " + model_dir.string() + ")";
  } else {
    t = make_byte_tokenizer();
    if (model_vocab_size - t->vocab_size() > kMaxVocabPadding) {
      TSP_THROW(InvalidArgument, "no tokenizer in ", model_dir.string(),
                " (neither tokenizer.json nor tokenizer.model), and its vocab_size ", model_vocab_size,
                " is not the byte tokenizer's (", t->vocab_size(), " ids): give the model's tokenizer with "
                "--tokenizer DIR");
    }
  }
  check_tokenizer_fits(*t, model_vocab_size, where);
  return t;
}

GenerationDefaults read_generation_defaults(const fs::path& dir) {
  GenerationDefaults g;
  const auto c = read_json(dir / "generation_config.json");
  if (!c) return g;
  if (c->contains("do_sample") && (*c)["do_sample"].is_boolean()) g.do_sample = (*c)["do_sample"].get<bool>();
  if (c->contains("temperature") && (*c)["temperature"].is_number()) g.temperature = (*c)["temperature"].get<double>();
  if (c->contains("top_p") && (*c)["top_p"].is_number()) g.top_p = (*c)["top_p"].get<double>();
  if (c->contains("top_k") && (*c)["top_k"].is_number_integer()) g.top_k = (*c)["top_k"].get<int64_t>();
  return g;
}

const std::vector<std::string>& tokenizer_file_names() {
  static const std::vector<std::string> names = {"tokenizer.json", "tokenizer.model", "tokenizer_config.json",
                                                 "special_tokens_map.json", "generation_config.json"};
  return names;
}

}  // namespace tsp::data
