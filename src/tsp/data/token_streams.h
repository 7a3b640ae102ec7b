// What `--data` names, opened as token sources: a token file of any accepted format, a manifest of
// shards (`tsp data prepare`'s manifest.json, or its directory), comma lists of these (one stream)
// and weighted blends ("a:0.7,b:0.3"). docs/training.md ("Reading at scale").
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tsp/data/token_source.h"

namespace tsp::data {

inline constexpr std::string_view kManifestFormat = "tsp-token-shards-v1";
inline constexpr std::string_view kManifestFileName = "manifest.json";

// One opened stream: its training tokens and, when the data has separate validation shards
// (a manifest's "val"), those; val == nullptr means the split rule (split_train_val) applies.
struct TokenStreams {
  TokenSourcePtr train;
  TokenSourcePtr val;
};

// A manifest (data-contract: "format" tsp-token-shards-v1, "vocab_size", "train" and "val" lists
// of {"file", "tokens"} relative to the manifest's directory). Every shard is mapped and checked:
// its token count must equal the manifest's and its vocab_size must not exceed the manifest's.
// The shards' xxh64 is not recomputed here (it would read every byte at start-up). Errors ->
// IoError naming the manifest and the entry.
TokenStreams open_token_manifest(const std::filesystem::path& manifest);

// A directory (its manifest.json), a *.json manifest, or one token file (MappedTokenFile).
TokenStreams open_token_path(const std::filesystem::path& path);

// One comma-separated item of --data: paths joined by '+' form one stream; ":W" after the last
// path is a blend weight.
struct DataSpecItem {
  std::vector<std::string> paths;
  std::optional<double> weight;
};

// "a.tok" -> one item; "a,b" -> two items without weights (one concatenated stream);
// "a:0.7,b+c:0.3" -> a blend. ":W" is a weight when W parses entirely as a number, so a path that
// contains ':' still works unless it ends in ':<number>'. Either every item has a weight or none;
// empty items, and weights that are not positive and finite -> InvalidArgument.
std::vector<DataSpecItem> parse_data_spec(std::string_view spec);

// The items' streams one after another: train shards concatenated, validation likewise (all items
// have separate validation or none, else InvalidArgument).
TokenStreams concat_streams(const std::vector<TokenStreams>& streams);

}  // namespace tsp::data
