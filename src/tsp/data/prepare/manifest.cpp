// manifest.json as ordered JSON (nlohmann::ordered_json keeps the documented key order).
#include "tsp/data/prepare/manifest.h"

#include <nlohmann/json.hpp>

#include "tsp/core/atomic_file.h"
#include "tsp/core/check.h"
#include "tsp/core/file_io.h"

namespace tsp::data {

namespace {

using ojson = nlohmann::ordered_json;

ojson shards_json(const std::vector<ShardEntry>& shards) {
  ojson a = ojson::array();
  for (const ShardEntry& s : shards) a.push_back({{"file", s.file}, {"tokens", s.tokens}, {"xxh64", s.xxh64}});
  return a;
}

}  // namespace

std::string manifest_json(const ShardManifest& m) {
  ojson j;
  j["format"] = kShardManifestFormat;
  j["tokenizer"] = {{"kind", m.tokenizer.kind},
                    {"source", m.tokenizer.source},
                    {"xxh64", m.tokenizer.xxh64},
                    {"vocab_size", m.tokenizer.vocab_size},
                    {"eos_id", m.tokenizer.eos_id}};
  j["vocab_size"] = m.vocab_size;
  j["train"] = shards_json(m.train);
  j["val"] = shards_json(m.val);
  j["documents"] = m.documents;
  ojson sources = ojson::array();
  for (const SourceEntry& s : m.sources) sources.push_back({{"path", s.path}, {"bytes", s.bytes}});
  j["sources"] = sources;
  j["eos_between_documents"] = m.eos_between_documents;
  return j.dump(2, ' ', false, ojson::error_handler_t::replace) + "\n";
}

void write_manifest(const std::filesystem::path& path, const ShardManifest& m) {
  write_file_atomically(path, manifest_json(m));
}

ShardManifest read_manifest(const std::filesystem::path& path) {
  const std::string where = "manifest " + path.string();
  const std::string text = read_whole_file(path, "manifest");
  ojson j;
  try {
    j = ojson::parse(text);
  } catch (const ojson::exception& e) {
    TSP_THROW(InvalidArgument, where, " is not valid JSON: ", e.what());
  }
  TSP_CHECK(j.is_object() && j.value("format", "") == kShardManifestFormat, where, ": \"format\" is not \"",
            kShardManifestFormat, "\"");
  const auto field = [&](const ojson& o, const char* key, auto check, const char* type) -> const ojson& {
    TSP_CHECK(o.contains(key) && check(o[key]), where, ": field \"", key, "\" missing or not ", type);
    return o[key];
  };
  const auto is_int = [](const ojson& v) { return v.is_number_integer(); };
  const auto is_str = [](const ojson& v) { return v.is_string(); };
  const auto is_arr = [](const ojson& v) { return v.is_array(); };
  ShardManifest m;
  const ojson& t = field(j, "tokenizer", [](const ojson& v) { return v.is_object(); }, "an object");
  m.tokenizer.kind = field(t, "kind", is_str, "a string").get<std::string>();
  m.tokenizer.source = field(t, "source", is_str, "a string").get<std::string>();
  m.tokenizer.xxh64 = field(t, "xxh64", is_str, "a string").get<std::string>();
  m.tokenizer.vocab_size = field(t, "vocab_size", is_int, "an integer").get<int64_t>();
  m.tokenizer.eos_id = field(t, "eos_id", is_int, "an integer").get<int32_t>();
  m.vocab_size = field(j, "vocab_size", is_int, "an integer").get<int64_t>();
  for (const char* split : {"train", "val"}) {
    std::vector<ShardEntry>& out = std::string(split) == "train" ? m.train : m.val;
    for (const ojson& s : field(j, split, is_arr, "an array")) {
      TSP_CHECK(s.is_object(), where, ": an entry of \"", split, "\" is not an object");
      out.push_back({.file = field(s, "file", is_str, "a string").get<std::string>(),
                     .tokens = field(s, "tokens", is_int, "an integer").get<uint64_t>(),
                     .xxh64 = field(s, "xxh64", is_str, "a string").get<std::string>()});
    }
  }
  m.documents = field(j, "documents", is_int, "an integer").get<int64_t>();
  for (const ojson& s : field(j, "sources", is_arr, "an array")) {
    TSP_CHECK(s.is_object(), where, ": an entry of \"sources\" is not an object");
    m.sources.push_back({.path = field(s, "path", is_str, "a string").get<std::string>(),
                         .bytes = field(s, "bytes", is_int, "an integer").get<uint64_t>()});
  }
  m.eos_between_documents = j.value("eos_between_documents", true);
  return m;
}

}  // namespace tsp::data
