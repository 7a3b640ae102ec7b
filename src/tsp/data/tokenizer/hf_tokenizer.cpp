// The tokenizer.json pipeline: added tokens are split out of the raw text, each remaining span is
// normalised, pre-tokenised and run through the BPE model; the post-processor adds BOS/EOS; decoding
// runs the decoder chain over the pieces. Semantics follow the tokenizers crate (Rust); byte-level
// and byte-fallback decoding keep the exact bytes (no U+FFFD for invalid UTF-8).
#include "tsp/data/tokenizer/hf_tokenizer.h"

#include <algorithm>
#include <map>

#include <nlohmann/json.hpp>

#include "tsp/core/check.h"
#include "tsp/data/tokenizer/bpe_model.h"
#include "tsp/data/tokenizer/byte_level.h"
#include "tsp/data/tokenizer/regex.h"
#include "tsp/data/tokenizer/unicode_normalize.h"
#include "tsp/data/tokenizer/utf8.h"

namespace tsp::data {

namespace {

using json = nlohmann::json;

// GPT-2's split regex: the ByteLevel pre-tokenizer's own when use_regex is true.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  if (from.empty()) return std::string(s);
  std::string out;
  size_t i = 0;
  while (true) {
    const size_t at = s.find(from, i);
    if (at == std::string_view::npos) break;
    out.append(s, i, at - i);
    out += to;
    i = at + from.size();
  }
  out.append(s, i);
  return out;
}

std::string type_of(const json& j, const std::string& what) {
  TSP_CHECK(j.is_object() && j.contains("type") && j["type"].is_string(), "tokenizer.json: ", what,
            " has no \"type\"");
  return j["type"].get<std::string>();
}

// Whether a component, or one of a Sequence's, has this type.
bool has_type(const json& j, const std::string& type) {
  if (j.is_object()) {
    if (j.value("type", std::string()) == type) return true;
    for (const auto& [key, value] : j.items())
      if (value.is_array() && has_type(value, type)) return true;
  } else if (j.is_array()) {
    for (const json& x : j)
      if (has_type(x, type)) return true;
  }
  return false;
}

// A {"String": s} or {"Regex": r} pattern.
struct Pattern {
  std::string literal;
  std::unique_ptr<Regex> regex;

  explicit Pattern(const json& j) {
    if (j.contains("String")) {
      literal = j["String"].get<std::string>();
      TSP_CHECK(!literal.empty(), "tokenizer.json: an empty String pattern");
    } else {
      TSP_CHECK(j.contains("Regex"), "tokenizer.json: a pattern is neither String nor Regex: ", j.dump());
      regex = std::make_unique<Regex>(j["Regex"].get<std::string>());
    }
  }
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view s) const {
    if (regex) return regex->find_all(s);
    std::vector<std::pair<size_t, size_t>> out;
    for (size_t at = s.find(literal); at != std::string_view::npos; at = s.find(literal, at + literal.size()))
      out.emplace_back(at, at + literal.size());
    return out;
  }
};

// ---- normalizers: text span -> text ----

struct Normalizer {
  virtual ~Normalizer() = default;
  virtual std::string apply(std::string s) const = 0;
};

struct PrependNormalizer : Normalizer {
  std::string prefix;
  std::string apply(std::string s) const override { return s.empty() ? s : prefix + s; }
};

struct ReplaceNormalizer : Normalizer {
  std::unique_ptr<Pattern> pattern;
  std::string content;
  std::string apply(std::string s) const override {
    std::string out;
    size_t last = 0;
    for (const auto& [b, e] : pattern->find_all(s)) {
      out.append(s, last, b - last);
      out += content;
      last = e;
    }
    out.append(s, last);
    return out;
  }
};

struct UnicodeNormalizer : Normalizer {
  NormalForm form;
  explicit UnicodeNormalizer(NormalForm f) : form(f) {}
  std::string apply(std::string s) const override { return unicode_normalize(s, form); }
};

struct SequenceNormalizer : Normalizer {
  std::vector<std::unique_ptr<Normalizer>> steps;
  std::string apply(std::string s) const override {
    for (const auto& n : steps) s = n->apply(std::move(s));
    return s;
  }
};

std::unique_ptr<Normalizer> make_normalizer(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j, "normalizer");
  if (type == "Sequence") {
    auto seq = std::make_unique<SequenceNormalizer>();
    for (const json& n : j["normalizers"])
      if (auto step = make_normalizer(n)) seq->steps.push_back(std::move(step));
    return seq;
  }
  if (type == "Prepend") {
    auto p = std::make_unique<PrependNormalizer>();
    p->prefix = j["prepend"].get<std::string>();
    return p;
  }
  if (type == "Replace") {
    auto r = std::make_unique<ReplaceNormalizer>();
    r->pattern = std::make_unique<Pattern>(j["pattern"]);
    r->content = j["content"].get<std::string>();
    return r;
  }
  if (type == "NFC") return std::make_unique<UnicodeNormalizer>(NormalForm::nfc);
  if (type == "NFD") return std::make_unique<UnicodeNormalizer>(NormalForm::nfd);
  if (type == "NFKC") return std::make_unique<UnicodeNormalizer>(NormalForm::nfkc);
  if (type == "NFKD") return std::make_unique<UnicodeNormalizer>(NormalForm::nfkd);
  TSP_THROW(InvalidArgument, "tokenizer.json: the ", type,
            " normalizer is not supported (supported: NFC, NFD, NFKC, NFKD, Prepend, Replace, Sequence)");
}

// ---- pre-tokenizers: pieces -> pieces ----

struct Piece {
  std::string text;
  bool at_start;  // begins at byte 0 of the input (Metaspace's prepend_scheme "first")
};

enum class SplitBehavior { removed, isolated, merged_with_previous, merged_with_next };

std::vector<Piece> split_piece(const Piece& p, const std::vector<std::pair<size_t, size_t>>& matches,
                               SplitBehavior behavior) {
  std::vector<Piece> out;
  const auto emit = [&](size_t b, size_t e) {
    if (e > b) out.push_back({p.text.substr(b, e - b), p.at_start && b == 0});
  };
  size_t last = 0;
  size_t pending = 0;  // merged_with_next: start of the piece the next gap extends
  for (const auto& [b, e] : matches) {
    switch (behavior) {
      case SplitBehavior::removed: emit(last, b); break;
      case SplitBehavior::isolated: emit(last, b); emit(b, e); break;
      case SplitBehavior::merged_with_previous: emit(last, e); break;
      case SplitBehavior::merged_with_next: emit(pending, b); pending = b; break;
    }
    last = e;
  }
  emit(behavior == SplitBehavior::merged_with_next ? pending : last, p.text.size());
  return out;
}

struct PreTokenizer {
  virtual ~PreTokenizer() = default;
  virtual std::vector<Piece> apply(std::vector<Piece> pieces) const = 0;
};

struct SplitPreTokenizer : PreTokenizer {
  std::unique_ptr<Pattern> pattern;
  SplitBehavior behavior = SplitBehavior::isolated;
  std::vector<Piece> apply(std::vector<Piece> pieces) const override {
    std::vector<Piece> out;
    for (const Piece& p : pieces)
      for (Piece& q : split_piece(p, pattern->find_all(p.text), behavior)) out.push_back(std::move(q));
    return out;
  }
};

struct ByteLevelPreTokenizer : PreTokenizer {
  bool add_prefix_space = false;
  std::unique_ptr<Regex> regex;  // null: use_regex false
  std::vector<Piece> apply(std::vector<Piece> pieces) const override {
    std::vector<Piece> out;
    for (Piece& p : pieces) {
      if (add_prefix_space && (p.text.empty() || p.text[0] != ' ')) p.text = " " + p.text;
      std::vector<Piece> split = regex ? split_piece(p, regex->find_all(p.text), SplitBehavior::isolated)
                                       : std::vector<Piece>{p};
      for (Piece& q : split) out.push_back({byte_level::encode(q.text), q.at_start});
    }
    return out;
  }
};

enum class PrependScheme { always, first, never };

PrependScheme prepend_scheme_of(const json& j) {
  if (j.contains("prepend_scheme")) {
    const std::string s = j["prepend_scheme"].get<std::string>();
    if (s == "always") return PrependScheme::always;
    if (s == "first") return PrependScheme::first;
    if (s == "never") return PrependScheme::never;
    TSP_THROW(InvalidArgument, "tokenizer.json: Metaspace prepend_scheme '", s, "' is unknown");
  }
  // Older files: add_prefix_space (default true).
  return j.value("add_prefix_space", true) ? PrependScheme::always : PrependScheme::never;
}

struct MetaspacePreTokenizer : PreTokenizer {
  std::string replacement;
  PrependScheme scheme = PrependScheme::always;
  bool split = true;
  std::vector<Piece> apply(std::vector<Piece> pieces) const override {
    std::vector<Piece> out;
    for (Piece& p : pieces) {
      p.text = replace_all(p.text, " ", replacement);
      const bool prepend = scheme == PrependScheme::always || (scheme == PrependScheme::first && p.at_start);
      if (prepend && p.text.compare(0, replacement.size(), replacement) != 0) p.text = replacement + p.text;
      if (!split) {
        out.push_back(std::move(p));
        continue;
      }
      std::vector<std::pair<size_t, size_t>> at;
      for (size_t i = p.text.find(replacement); i != std::string::npos; i = p.text.find(replacement, i + replacement.size()))
        at.emplace_back(i, i + replacement.size());
      for (Piece& q : split_piece(p, at, SplitBehavior::merged_with_next)) out.push_back(std::move(q));
    }
    return out;
  }
};

struct SequencePreTokenizer : PreTokenizer {
  std::vector<std::unique_ptr<PreTokenizer>> steps;
  std::vector<Piece> apply(std::vector<Piece> pieces) const override {
    for (const auto& s : steps) pieces = s->apply(std::move(pieces));
    return pieces;
  }
};

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j, "pre_tokenizer");
  if (type == "Sequence") {
    auto seq = std::make_unique<SequencePreTokenizer>();
    for (const json& p : j["pretokenizers"])
      if (auto step = make_pre_tokenizer(p)) seq->steps.push_back(std::move(step));
    return seq;
  }
  if (type == "Split") {
    TSP_CHECK(!j.value("invert", false), "tokenizer.json: a Split pre-tokenizer with invert = true is not supported");
    auto s = std::make_unique<SplitPreTokenizer>();
    s->pattern = std::make_unique<Pattern>(j["pattern"]);
    const std::string b = j.value("behavior", "Isolated");
    if (b == "Isolated") s->behavior = SplitBehavior::isolated;
    else if (b == "Removed") s->behavior = SplitBehavior::removed;
    else if (b == "MergedWithPrevious") s->behavior = SplitBehavior::merged_with_previous;
    else if (b == "MergedWithNext") s->behavior = SplitBehavior::merged_with_next;
    else TSP_THROW(InvalidArgument, "tokenizer.json: Split behavior '", b, "' is not supported");
    return s;
  }
  if (type == "ByteLevel") {
    auto b = std::make_unique<ByteLevelPreTokenizer>();
    b->add_prefix_space = j.value("add_prefix_space", false);
    if (j.value("use_regex", true)) b->regex = std::make_unique<Regex>(kGpt2Pattern);
    return b;
  }
  if (type == "Metaspace") {
    auto m = std::make_unique<MetaspacePreTokenizer>();
    m->replacement = j.value("replacement", std::string("\xE2\x96\x81"));
    m->scheme = prepend_scheme_of(j);
    m->split = j.value("split", true);
    return m;
  }
  TSP_THROW(InvalidArgument, "tokenizer.json: the ", type,
            " pre-tokenizer is not supported (supported: ByteLevel, Split, Metaspace, Sequence)");
}

// ---- decoders: pieces -> pieces (joined at the end) ----

struct Decoder {
  virtual ~Decoder() = default;
  virtual std::vector<std::string> apply(std::vector<std::string> tokens) const = 0;
};

struct ByteLevelDecoder : Decoder {
  std::vector<std::string> apply(std::vector<std::string> tokens) const override {
    std::string out;
    for (const std::string& t : tokens) {
      std::string bytes;
      bool all = true;
      for (size_t i = 0; i < t.size() && all;) {
        const int b = byte_level::byte_of(utf8::code_point(t, i));
        if (b < 0) all = false;
        else bytes.push_back(static_cast<char>(b));
        i += utf8::char_length(t, i);
      }
      out += all ? bytes : t;  // a piece outside the alphabet (an added token) stays as it is
    }
    return {out};
  }
};

struct ReplaceDecoder : Decoder {
  std::string from, to;
  std::vector<std::string> apply(std::vector<std::string> tokens) const override {
    for (std::string& t : tokens) t = replace_all(t, from, to);
    return tokens;
  }
};

struct ByteFallbackDecoder : Decoder {
  std::vector<std::string> apply(std::vector<std::string> tokens) const override {
    for (std::string& t : tokens) {
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') {
        const std::string hex = t.substr(3, 2);
        if (std::isxdigit(static_cast<unsigned char>(hex[0])) && std::isxdigit(static_cast<unsigned char>(hex[1])))
          t = std::string(1, static_cast<char>(std::stoi(hex, nullptr, 16)));
      }
    }
    return tokens;
  }
};

struct FuseDecoder : Decoder {
  std::vector<std::string> apply(std::vector<std::string> tokens) const override {
    std::string out;
    for (const std::string& t : tokens) out += t;
    return {out};
  }
};

struct StripDecoder : Decoder {
  std::string content;
  int64_t start = 0, stop = 0;
  std::vector<std::string> apply(std::vector<std::string> tokens) const override {
    for (std::string& t : tokens) {
      for (int64_t k = 0; k < start && t.compare(0, content.size(), content) == 0; ++k) t.erase(0, content.size());
      for (int64_t k = 0; k < stop && t.size() >= content.size() &&
                          t.compare(t.size() - content.size(), content.size(), content) == 0; ++k)
        t.erase(t.size() - content.size());
    }
    return tokens;
  }
};

struct MetaspaceDecoder : Decoder {
  std::string replacement;
  PrependScheme scheme = PrependScheme::always;
  std::vector<std::string> apply(std::vector<std::string> tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      tokens[i] = replace_all(tokens[i], replacement, " ");
      if (i == 0 && scheme != PrependScheme::never && !tokens[i].empty() && tokens[i][0] == ' ')
        tokens[i].erase(0, 1);
    }
    return tokens;
  }
};

struct SequenceDecoder : Decoder {
  std::vector<std::unique_ptr<Decoder>> steps;
  std::vector<std::string> apply(std::vector<std::string> tokens) const override {
    for (const auto& s : steps) tokens = s->apply(std::move(tokens));
    return tokens;
  }
};

std::unique_ptr<Decoder> make_decoder(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j, "decoder");
  if (type == "Sequence") {
    auto seq = std::make_unique<SequenceDecoder>();
    for (const json& d : j["decoders"])
      if (auto step = make_decoder(d)) seq->steps.push_back(std::move(step));
    return seq;
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Replace") {
    TSP_CHECK(j["pattern"].contains("String"), "tokenizer.json: a Replace decoder with a Regex pattern is not supported");
    auto r = std::make_unique<ReplaceDecoder>();
    r->from = j["pattern"]["String"].get<std::string>();
    r->to = j["content"].get<std::string>();
    return r;
  }
  if (type == "Strip") {
    auto s = std::make_unique<StripDecoder>();
    s->content = j["content"].get<std::string>();
    s->start = j.value("start", int64_t{0});
    s->stop = j.value("stop", int64_t{0});
    return s;
  }
  if (type == "Metaspace") {
    auto m = std::make_unique<MetaspaceDecoder>();
    m->replacement = j.value("replacement", std::string("\xE2\x96\x81"));
    m->scheme = prepend_scheme_of(j);
    return m;
  }
  TSP_THROW(InvalidArgument, "tokenizer.json: the ", type,
            " decoder is not supported (supported: ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence)");
}

struct AddedToken {
  int32_t id;
  std::string content;
  bool special, lstrip, rstrip, normalized;
};

// Leftmost-longest matching of a set of strings (the added tokens).
class Splitter {
 public:
  void add(const std::string& s, int32_t token) {
    if (!s.empty()) by_first_[static_cast<unsigned char>(s[0])].push_back({s, token});
  }
  void finish() {
    for (auto& v : by_first_)
      std::stable_sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  }
  bool empty() const {
    return std::all_of(std::begin(by_first_), std::end(by_first_), [](const auto& v) { return v.empty(); });
  }
  // (begin, end, token index) of each match.
  std::vector<std::tuple<size_t, size_t, int32_t>> find_all(std::string_view s) const {
    std::vector<std::tuple<size_t, size_t, int32_t>> out;
    for (size_t i = 0; i < s.size();) {
      bool hit = false;
      for (const auto& [c, t] : by_first_[static_cast<unsigned char>(s[i])]) {
        if (s.compare(i, c.size(), c) == 0) {
          out.emplace_back(i, i + c.size(), t);
          i += c.size();
          hit = true;
          break;
        }
      }
      if (!hit) ++i;
    }
    return out;
  }

 private:
  std::vector<std::pair<std::string, int32_t>> by_first_[256];
};

// A span of the input: text, or an added token (index into added).
struct Section {
  std::string text;
  int32_t added = -1;
  bool at_start = false;
};

size_t trimmed_front(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && utf8::is_whitespace(utf8::code_point(s, i))) i += utf8::char_length(s, i);
  return i;
}

size_t trimmed_back(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    size_t b = end - 1;
    while (b > 0 && (static_cast<unsigned char>(s[b]) & 0xC0) == 0x80 && end - b < 4) --b;
    if (utf8::char_length(s, b) != end - b || !utf8::is_whitespace(utf8::code_point(s, b))) break;
    end = b;
  }
  return end;
}

// Splits each text section at the splitter's matches and applies lstrip/rstrip to the neighbours.
std::vector<Section> split_added(std::vector<Section> in, const Splitter& splitter,
                                 const std::vector<AddedToken>& added) {
  if (splitter.empty()) return in;
  std::vector<Section> out;
  for (Section& s : in) {
    if (s.added >= 0) {
      out.push_back(std::move(s));
      continue;
    }
    size_t last = 0;
    for (const auto& [b, e, t] : splitter.find_all(s.text)) {
      if (b > last) out.push_back({s.text.substr(last, b - last), -1, s.at_start && last == 0});
      out.push_back({s.text.substr(b, e - b), t, false});
      last = e;
    }
    if (last < s.text.size()) out.push_back({s.text.substr(last), -1, s.at_start && last == 0});
  }
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i].added < 0) continue;
    const AddedToken& a = added[static_cast<size_t>(out[i].added)];
    if (a.lstrip && i > 0 && out[i - 1].added < 0) out[i - 1].text.resize(trimmed_back(out[i - 1].text));
    if (a.rstrip && i + 1 < out.size() && out[i + 1].added < 0) out[i + 1].text.erase(0, trimmed_front(out[i + 1].text));
  }
  return out;
}

}  // namespace

struct HfTokenizer::Impl {
  std::string source;
  std::unique_ptr<BpeModel> model;
  std::unique_ptr<Normalizer> normalizer;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  std::unique_ptr<Decoder> decoder;
  std::vector<AddedToken> added;
  std::map<int32_t, size_t> added_by_id;
  Splitter raw_splitter, normalized_splitter;
  std::vector<int32_t> prefix, suffix;  // the post-processor's template around a single sequence
  int64_t vocab_size = 0;
  std::string kind;

  void post_processor(const json& j) {
    if (j.is_null()) return;
    const std::string type = type_of(j, "post_processor");
    if (type == "Sequence") {
      for (const json& p : j["processors"]) post_processor(p);
    } else if (type == "ByteLevel") {
      // Offsets only: the ids are unchanged.
    } else if (type == "TemplateProcessing") {
      const json& special = j["special_tokens"];
      bool seen_a = false;
      for (const json& item : j["single"]) {
        if (item.contains("Sequence")) {
          TSP_CHECK(item["Sequence"]["id"] == "A", "tokenizer.json: TemplateProcessing single refers to sequence ",
                    item["Sequence"]["id"].dump());
          seen_a = true;
        } else {
          const std::string name = item["SpecialToken"]["id"].get<std::string>();
          TSP_CHECK(special.contains(name), "tokenizer.json: TemplateProcessing names special token ", name,
                    " missing from its special_tokens");
          for (const json& id : special[name]["ids"]) (seen_a ? suffix : prefix).push_back(id.get<int32_t>());
        }
      }
    } else if (type == "RobertaProcessing" || type == "BertProcessing") {
      prefix.push_back(j["cls"][1].get<int32_t>());
      suffix.push_back(j["sep"][1].get<int32_t>());
    } else {
      TSP_THROW(InvalidArgument, "tokenizer.json: the ", type, " post-processor is not supported");
    }
  }
};

HfTokenizer::HfTokenizer(std::string_view json_text, std::string source) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.source = std::move(source);
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    TSP_THROW(InvalidArgument, m.source, " is not valid JSON: ", e.what());
  }
  try {
    TSP_CHECK(j.is_object() && j.contains("model"), m.source, " has no \"model\"");
    const json& mj = j["model"];
    const std::string mtype = mj.value("type", std::string("BPE"));
    TSP_CHECK(mtype == "BPE", m.source, ": the ", mtype, " model is not supported (only BPE)");
    TSP_CHECK(mj.value("continuing_subword_prefix", json()).is_null() && mj.value("end_of_word_suffix", json()).is_null(),
              m.source, ": BPE continuing_subword_prefix / end_of_word_suffix are not supported");
    TSP_CHECK(mj.value("dropout", json()).is_null() || mj["dropout"].get<double>() == 0.0, m.source,
              ": BPE dropout is not supported");
    BpeModelSpec spec;
    for (const auto& [piece, id] : mj["vocab"].items()) spec.vocab.emplace_back(piece, id.get<int32_t>());
    for (const json& mg : mj["merges"]) {
      if (mg.is_array()) {
        spec.merges.emplace_back(mg[0].get<std::string>(), mg[1].get<std::string>());
      } else {
        const std::string s = mg.get<std::string>();
        const size_t sp = s.find(' ');
        TSP_CHECK(sp != std::string::npos, m.source, ": merge '", s, "' has no space");
        spec.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      }
    }
    if (mj.contains("unk_token") && mj["unk_token"].is_string()) spec.unk_token = mj["unk_token"].get<std::string>();
    spec.byte_fallback = mj.value("byte_fallback", false);
    spec.fuse_unk = mj.value("fuse_unk", false);
    spec.ignore_merges = mj.value("ignore_merges", false);
    m.model = std::make_unique<BpeModel>(spec);

    m.normalizer = make_normalizer(j.value("normalizer", json()));
    m.pre_tokenizer = make_pre_tokenizer(j.value("pre_tokenizer", json()));
    m.decoder = make_decoder(j.value("decoder", json()));
    m.vocab_size = static_cast<int64_t>(m.model->pieces().size());
    for (const json& a : j.value("added_tokens", json::array())) {
      TSP_CHECK(!a.value("single_word", false), m.source, ": added token ", a["content"].dump(),
                " has single_word = true, which is not supported");
      AddedToken t{a["id"].get<int32_t>(), a["content"].get<std::string>(), a.value("special", false),
                   a.value("lstrip", false), a.value("rstrip", false), a.value("normalized", false)};
      TSP_CHECK(t.id >= 0 && t.id <= kMaxTokenId, m.source, ": added token ", t.content, " has id ", t.id,
                ", outside 0..", kMaxTokenId);
      const auto index = static_cast<int32_t>(m.added.size());
      // Normalized added tokens are found in the normalized text (as the reference does).
      if (t.normalized && m.normalizer) m.normalized_splitter.add(m.normalizer->apply(t.content), index);
      else m.raw_splitter.add(t.content, index);
      m.added_by_id[t.id] = m.added.size();
      m.vocab_size = std::max(m.vocab_size, int64_t{t.id} + 1);
      m.added.push_back(std::move(t));
    }
    m.raw_splitter.finish();
    m.normalized_splitter.finish();
    m.post_processor(j.value("post_processor", json()));
    for (const auto* ids : {&m.prefix, &m.suffix})
      for (int32_t id : *ids)
        TSP_CHECK(id >= 0 && id < m.vocab_size, m.source, ": the post-processor's special id ", id,
                  " is outside the vocabulary (0..", m.vocab_size - 1, ")");
    const bool byte_level = has_type(j.value("pre_tokenizer", json()), "ByteLevel");
    m.kind = std::string("tokenizer.json (BPE, ") + (byte_level ? "byte-level" : spec.byte_fallback ? "SentencePiece-style, byte fallback" : "no byte fallback") + ")";
  } catch (const json::exception& e) {
    TSP_THROW(InvalidArgument, m.source, ": unexpected structure: ", e.what());
  }
}

HfTokenizer::~HfTokenizer() = default;

std::vector<int32_t> HfTokenizer::encode(std::string_view text, bool add_special) const {
  const Impl& m = *impl_;
  std::vector<int32_t> ids;
  if (add_special) ids = m.prefix;
  std::vector<Section> sections = split_added({{std::string(text), -1, true}}, m.raw_splitter, m.added);
  for (Section& s : sections) {
    if (s.added >= 0) {
      ids.push_back(m.added[static_cast<size_t>(s.added)].id);
      continue;
    }
    if (s.text.empty()) continue;
    if (m.normalizer) s.text = m.normalizer->apply(std::move(s.text));
    for (Section& n : split_added({std::move(s)}, m.normalized_splitter, m.added)) {
      if (n.added >= 0) {
        ids.push_back(m.added[static_cast<size_t>(n.added)].id);
        continue;
      }
      if (n.text.empty()) continue;
      std::vector<Piece> pieces{{std::move(n.text), n.at_start}};
      if (m.pre_tokenizer) pieces = m.pre_tokenizer->apply(std::move(pieces));
      for (const Piece& p : pieces) m.model->tokenize(p.text, ids);
    }
  }
  if (add_special) ids.insert(ids.end(), m.suffix.begin(), m.suffix.end());
  return ids;
}

std::string HfTokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  const Impl& m = *impl_;
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    TSP_CHECK(id >= 0 && id < m.vocab_size, m.source, ": token id ", id, " at position ", i,
              " is outside the vocabulary (0..", m.vocab_size - 1, ")");
    const auto a = m.added_by_id.find(id);
    if (a != m.added_by_id.end()) {
      if (skip_special && m.added[a->second].special) continue;
      tokens.push_back(m.added[a->second].content);
    } else {
      tokens.push_back(m.model->pieces()[static_cast<size_t>(id)]);
    }
  }
  if (!m.decoder) {
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) out += (i ? " " : "") + tokens[i];
    return out;
  }
  std::string out;
  for (const std::string& t : m.decoder->apply(std::move(tokens))) out += t;
  return out;
}

int64_t HfTokenizer::vocab_size() const { return impl_->vocab_size; }

bool HfTokenizer::is_special(int32_t id) const {
  const auto a = impl_->added_by_id.find(id);
  return a != impl_->added_by_id.end() && impl_->added[a->second].special;
}

std::string HfTokenizer::describe() const { return impl_->kind; }

std::optional<int32_t> HfTokenizer::id_of(std::string_view token) const {
  for (const AddedToken& a : impl_->added)
    if (a.content == token) return a.id;
  return impl_->model->id_of(token);
}

}  // namespace tsp::data
