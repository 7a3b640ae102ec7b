// Opening --data: manifests, token files, comma lists and blend specs.
#include "tsp/data/token_streams.h"

#include <cmath>
#include <cstdlib>

#include <nlohmann/json.hpp>

#include "tsp/core/check.h"
#include "tsp/core/file_io.h"

namespace tsp::data {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

TokenSourcePtr open_shards(const fs::path& manifest, const fs::path& dir, const json& list, const char* key,
                           uint64_t vocab) {
  auto fail = [&](auto... what) { TSP_THROW(IoError, "manifest ", manifest.string(), ": ", what...); };
  if (!list.is_array()) fail("\"", key, "\" must be a list of shards");
  std::vector<TokenSourcePtr> shards;
  for (size_t i = 0; i < list.size(); ++i) {
    const json& e = list[i];
    if (!e.is_object() || !e.contains("file") || !e["file"].is_string() || !e.contains("tokens") ||
        !e["tokens"].is_number_unsigned())
      fail("\"", key, "\"[", i, "] needs \"file\" (a string) and \"tokens\" (a count)");
    const fs::path file = dir / e["file"].get<std::string>();
    auto shard = std::make_shared<MappedTokenFile>(file);
    const auto tokens = e["tokens"].get<uint64_t>();
    if (static_cast<uint64_t>(shard->size()) != tokens)
      fail("\"", key, "\"[", i, "] ", file.string(), " holds ", shard->size(), " tokens, the manifest says ",
           tokens);
    if (static_cast<uint64_t>(shard->vocab_limit()) > vocab && shard->format() == TokenFileFormat::tsp)
      fail(file.string(), " has vocab_size ", shard->vocab_limit(), ", larger than the manifest's ", vocab);
    shards.push_back(std::move(shard));
  }
  if (shards.empty()) return nullptr;
  return std::make_shared<ConcatTokens>(std::move(shards));
}

}  // namespace

TokenStreams open_token_manifest(const fs::path& manifest) {
  const std::string text = read_whole_file(manifest, "manifest");
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    TSP_THROW(IoError, "manifest ", manifest.string(), ": not valid JSON: ", e.what());
  }
  auto fail = [&](auto... what) { TSP_THROW(IoError, "manifest ", manifest.string(), ": ", what...); };
  if (!j.is_object() || !j.contains("format") || j["format"] != kManifestFormat)
    fail("\"format\" must be \"", kManifestFormat, "\"");
  if (!j.contains("vocab_size") || !j["vocab_size"].is_number_unsigned() || j["vocab_size"].get<uint64_t>() == 0)
    fail("\"vocab_size\" must be a positive integer");
  const auto vocab = j["vocab_size"].get<uint64_t>();
  const fs::path dir = manifest.parent_path();
  TokenStreams s;
  s.train = open_shards(manifest, dir, j.value("train", json::array()), "train", vocab);
  if (s.train == nullptr) fail("no training shards");
  s.val = open_shards(manifest, dir, j.value("val", json::array()), "val", vocab);
  return s;
}

TokenStreams open_token_path(const fs::path& path) {
  if (fs::is_directory(path)) {
    const fs::path m = path / kManifestFileName;
    if (!fs::exists(m))
      TSP_THROW(IoError, "token file ", path.string(), " is a directory, not a regular file, and has no ",
                kManifestFileName, " (a directory of shards needs the manifest `tsp data prepare` writes)");
    return open_token_manifest(m);
  }
  if (path.extension() == ".json") return open_token_manifest(path);
  return TokenStreams{std::make_shared<MappedTokenFile>(path), nullptr};
}

std::vector<DataSpecItem> parse_data_spec(std::string_view spec) {
  std::vector<DataSpecItem> items;
  size_t begin = 0;
  while (true) {
    const size_t comma = spec.find(',', begin);
    const std::string item(spec.substr(begin, comma == std::string_view::npos ? std::string_view::npos : comma - begin));
    TSP_CHECK(!item.empty(), "--data \"", spec, "\" has an empty item");
    DataSpecItem d;
    std::string paths = item;
    const size_t colon = item.rfind(':');
    if (colon != std::string::npos && colon + 1 < item.size()) {
      const std::string w = item.substr(colon + 1);
      char* end = nullptr;
      const double v = std::strtod(w.c_str(), &end);
      if (end == w.c_str() + w.size()) {
        TSP_CHECK(std::isfinite(v) && v > 0, "--data \"", spec, "\": weight ", w, " of ", item.substr(0, colon),
                  " must be positive");
        d.weight = v;
        paths = item.substr(0, colon);
      }
    }
    size_t p = 0;
    while (true) {
      const size_t plus = paths.find('+', p);
      const std::string one = paths.substr(p, plus == std::string::npos ? std::string::npos : plus - p);
      TSP_CHECK(!one.empty(), "--data \"", spec, "\": empty path in \"", item, "\"");
      d.paths.push_back(one);
      if (plus == std::string::npos) break;
      p = plus + 1;
    }
    items.push_back(std::move(d));
    if (comma == std::string_view::npos) break;
    begin = comma + 1;
  }
  size_t weighted = 0;
  for (const DataSpecItem& d : items) weighted += d.weight.has_value() ? 1 : 0;
  TSP_CHECK(weighted == 0 || weighted == items.size(), "--data \"", spec,
            "\": give every item a weight (a blend, \"a:0.7,b:0.3\") or none (one stream, \"a,b\")");
  return items;
}

TokenStreams concat_streams(const std::vector<TokenStreams>& streams) {
  TSP_CHECK(!streams.empty(), "no token streams to concatenate");
  if (streams.size() == 1) return streams[0];
  std::vector<TokenSourcePtr> train, val;
  for (const TokenStreams& s : streams) {
    train.push_back(s.train);
    if (s.val) val.push_back(s.val);
  }
  TSP_CHECK(val.empty() || val.size() == streams.size(),
            "a list of --data items must all have separate validation shards (manifests with \"val\") or none; ",
            val.size(), " of ", streams.size(), " have");
  TokenStreams out;
  out.train = std::make_shared<ConcatTokens>(std::move(train));
  if (!val.empty()) out.val = std::make_shared<ConcatTokens>(std::move(val));
  return out;
}

}  // namespace tsp::data
