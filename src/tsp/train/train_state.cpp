// The training state file: its metadata (state JSON, per-chunk tensor checksums, metadata
// checksum), writing, and the single-rank reader that verifies every chunk it reads.
#include "tsp/train/train_state.h"

#include <xxhash.h>

#include <algorithm>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "tsp/core/check.h"
#include "tsp/model/safetensors.h"

namespace tsp::train {

using nlohmann::json;

uint64_t xxh3_64(const void* data, size_t bytes) { return XXH3_64bits(data, bytes); }

namespace detail {

std::string checksum_hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::vector<std::string> chunk_checksums(const void* data, uint64_t bytes) {
  std::vector<std::string> out;
  const auto* p = static_cast<const unsigned char*>(data);
  for (uint64_t at = 0; at < bytes; at += kTrainStateChecksumChunkBytes) {
    const uint64_t n = std::min(kTrainStateChecksumChunkBytes, bytes - at);
    out.push_back(checksum_hex(xxh3_64(p + at, static_cast<size_t>(n))));
  }
  return out;
}

std::string tensor_checksums_json(const std::map<std::string, std::vector<std::string>>& sums) {
  json j = json::object();
  for (const auto& [name, chunks] : sums) j[name] = chunks;
  return j.dump();
}

std::map<std::string, std::vector<std::string>> parse_tensor_checksums(const std::filesystem::path& path,
                                                                       const std::string& text) {
  std::map<std::string, std::vector<std::string>> sums;
  try {
    const json j = json::parse(text);
    if (!j.is_object()) throw_corrupt_train_state(path, "\"tensor_checksums\" is not a JSON object");
    for (const auto& [name, chunks] : j.items()) sums[name] = chunks.get<std::vector<std::string>>();
  } catch (const json::exception& e) {
    throw_corrupt_train_state(path, std::string("bad \"tensor_checksums\" metadata: ") + e.what());
  }
  return sums;
}

std::string metadata_checksum_hex(const std::map<std::string, std::string>& metadata) {
  XXH3_state_t* state = XXH3_createState();
  TSP_CHECK(state != nullptr, "XXH3_createState: out of memory");
  XXH3_64bits_reset(state);
  const char nul = '\0';
  for (const auto& [key, value] : metadata) {
    if (key == "checksum") continue;
    XXH3_64bits_update(state, key.data(), key.size());
    XXH3_64bits_update(state, &nul, 1);
    XXH3_64bits_update(state, value.data(), value.size());
    XXH3_64bits_update(state, &nul, 1);
  }
  const uint64_t h = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return checksum_hex(h);
}

std::string train_state_json(const TrainStateInfo& info) {
  json j = {{"step", info.step},
            {"tokens_seen", info.tokens_seen},
            {"model_dtype", std::string(dtype_name(info.model_dtype))},
            {"loader", info.loader.to_string()},
            {"run", json::parse(run_config_to_json(info.run))},
            {"model_config", info.model_config.empty() ? json::object() : json::parse(info.model_config)},
            {"data_fingerprint", info.data_fingerprint}};
  return j.dump();
}

std::map<std::string, std::string> train_state_metadata(const TrainStateInfo& info,
                                                        const std::map<std::string, std::vector<std::string>>& sums) {
  std::map<std::string, std::string> meta = {{"format", kTrainStateFormat},
                                             {"state", train_state_json(info)},
                                             {"tensor_checksums", tensor_checksums_json(sums)}};
  meta["checksum"] = metadata_checksum_hex(meta);
  return meta;
}

void throw_corrupt_train_state(const std::filesystem::path& path, const std::string& why) {
  TSP_THROW(IoError, "corrupt or incompatible training state ", path.string(), ": ", why);
}

TrainStateInfo parse_train_state_info(const std::filesystem::path& path, const std::map<std::string, std::string>& meta,
                                      bool allow_v1) {
  auto get = [&](const char* key) -> const std::string& {
    auto it = meta.find(key);
    if (it == meta.end()) throw_corrupt_train_state(path, std::string("metadata has no \"") + key + "\" entry");
    return it->second;
  };
  const std::string& format = get("format");
  const bool v1 = format == kTrainStateFormatV1;
  if (v1 && !allow_v1) {
    throw_corrupt_train_state(path, std::string("it was written by an older tsp (format \"") + kTrainStateFormatV1 +
                                        "\", whose checksum does not cover the step, data position and settings), "
                                        "so this tsp cannot verify it: resume with the tsp that wrote it, or start "
                                        "a new run from its weights with --init <checkpoint directory>");
  }
  if (!v1 && format != kTrainStateFormat) {
    throw_corrupt_train_state(path, "format is \"" + format + "\", expected \"" + kTrainStateFormat + "\"");
  }
  const std::string& stored = get("checksum");
  if (!v1) {
    get("tensor_checksums");
    const std::string actual = metadata_checksum_hex(meta);
    if (actual != stored) {
      throw_corrupt_train_state(path, "checksum mismatch in the metadata (stored " + stored + ", metadata " + actual +
                                          "): the step, data position or settings were modified or damaged");
    }
  }
  TrainStateInfo info;
  try {
    const json j = json::parse(get("state"));
    info.step = j.at("step").get<int64_t>();
    info.tokens_seen = j.at("tokens_seen").get<int64_t>();
    info.model_dtype = parse_dtype(j.at("model_dtype").get<std::string>());
    info.loader = data::LoaderState::parse(j.at("loader").get<std::string>());
    info.run = run_config_from_json(j.at("run").dump());
    if (!v1) {
      info.model_config = j.at("model_config").dump();
      info.data_fingerprint = j.at("data_fingerprint").get<std::string>();
    }
  } catch (const json::exception& e) {
    throw_corrupt_train_state(path, std::string("bad \"state\" metadata: ") + e.what());
  } catch (const InvalidArgument& e) {
    throw_corrupt_train_state(path, std::string("bad \"state\" metadata: ") + e.what());
  }
  if (info.step < 0 || info.tokens_seen < 0) throw_corrupt_train_state(path, "negative step or token count");
  return info;
}

}  // namespace detail

TrainStateInfo read_train_state_info(const std::filesystem::path& path, bool allow_v1) {
  std::map<std::string, std::string> meta;
  try {
    meta = model::SafetensorsReader(path).metadata();
  } catch (const IoError& e) {
    detail::throw_corrupt_train_state(path, e.what());
  }
  return detail::parse_train_state_info(path, meta, allow_v1);
}

}  // namespace tsp::train
