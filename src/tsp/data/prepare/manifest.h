// manifest.json of a directory of token shards (`tsp data prepare`): format "tsp-token-shards-v1",
// the tokenizer's identity, the train and validation shards with token counts and xxh64, the
// sources. Field by field: docs/formats.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "tsp/data/prepare/tokenizer_identity.h"

namespace tsp::data {

inline constexpr const char* kShardManifestFormat = "tsp-token-shards-v1";
inline constexpr const char* kShardManifestName = "manifest.json";

struct ShardEntry {
  std::string file;  // relative to the manifest's directory
  uint64_t tokens = 0;
  std::string xxh64;  // of the file's bytes
};

struct SourceEntry {
  std::string path;
  uint64_t bytes = 0;
};

struct ShardManifest {
  TokenizerIdentity tokenizer;
  int64_t vocab_size = 0;
  std::vector<ShardEntry> train, val;
  int64_t documents = 0;
  std::vector<SourceEntry> sources;
  bool eos_between_documents = true;
};

// The JSON text (keys in the documented order, two-space indent, trailing newline).
std::string manifest_json(const ShardManifest& m);
// Written atomically (core/atomic_file.h).
void write_manifest(const std::filesystem::path& path, const ShardManifest& m);
// Parses and checks a manifest: format, every field present with its type -> else InvalidArgument
// naming the file and the field. Shard files are not opened.
ShardManifest read_manifest(const std::filesystem::path& path);

}  // namespace tsp::data
