// HF checkpoint directories: opening (config, index, shard headers, checks against the config),
// reading tensors by name across shards, and the sharding writer.
#include "tsp/model/hf_checkpoint.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <set>

#include <nlohmann/json.hpp>

#include "tsp/core/atomic_file.h"
#include "tsp/core/checkpoint_dir.h"
#include "tsp/core/check.h"
#include "tsp/core/file_io.h"

namespace tsp::model {

using nlohmann::json;
namespace fs = std::filesystem;

std::string shard_file_name(int64_t index, int64_t count) {
  TSP_CHECK(count >= 1 && count <= 99999 && index >= 0 && index < count, "shard ", index, " of ", count);
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05lld-of-%05lld.safetensors", static_cast<long long>(index + 1),
                static_cast<long long>(count));
  return buf;
}

namespace {

ModelConfig open_config(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    TSP_THROW(IoError, "checkpoint directory ", dir.string(), " does not exist or is not a directory");
  if (!fs::exists(dir / kConfigFileName, ec))
    TSP_THROW(IoError, "checkpoint directory ", dir.string(), " has no ", kConfigFileName);
  return load_config(dir / kConfigFileName);
}

// weight_map of model.safetensors.index.json: tensor name -> shard file name.
std::map<std::string, std::string> read_index(const fs::path& index_path) {
  const std::string file = index_path.string();
  const std::string text = read_whole_file(index_path, "checkpoint index");
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) TSP_THROW(IoError, "checkpoint index ", file, " is not valid JSON");
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    TSP_THROW(IoError, "checkpoint index ", file, " has no \"weight_map\" object");
  std::map<std::string, std::string> map;
  for (const auto& [name, v] : j["weight_map"].items()) {
    if (!v.is_string())
      TSP_THROW(IoError, "checkpoint index ", file, ": weight_map[\"", name, "\"] must be a file name, got ",
                v.dump());
    const std::string shard = v.get<std::string>();
    if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..")
      TSP_THROW(IoError, "checkpoint index ", file, ": weight_map[\"", name, "\"] = \"", shard,
                "\" is not a plain file name in the checkpoint directory");
    map[name] = shard;
  }
  return map;
}

}  // namespace

HfCheckpoint::HfCheckpoint(fs::path dir) : dir_(std::move(dir)), config_(open_config(dir_)) {
  std::error_code ec;
  const fs::path single = dir_ / kSingleWeightsFileName;
  const fs::path index = dir_ / kWeightsIndexFileName;
  const bool has_single = fs::exists(single, ec);
  const bool has_index = fs::exists(index, ec);
  // transformers would silently prefer model.safetensors; a directory holding both layouts is a
  // mix of two saves (not something save_hf_checkpoint produces), so refuse to guess.
  if (has_single && has_index)
    TSP_THROW(IoError, "checkpoint directory ", dir_.string(), " is ambiguous: it holds both ",
              kSingleWeightsFileName, " and ", kWeightsIndexFileName,
              " (weights of two different saves?); remove the one that does not belong");
  if (has_single) {
    readers_.emplace_back(single);
    for (const TensorInfo& t : readers_.back().tensors()) location_[t.name] = 0;
  } else if (has_index) {
    sharded_ = true;
    std::map<std::string, size_t> reader_of_file;
    for (const auto& [name, shard] : read_index(index)) {
      auto it = reader_of_file.find(shard);
      if (it == reader_of_file.end()) {
        if (!fs::exists(dir_ / shard, ec))
          TSP_THROW(IoError, "checkpoint index ", index.string(), " lists shard ", shard, " (for \"", name,
                    "\") but ", (dir_ / shard).string(), " does not exist");
        readers_.emplace_back(dir_ / shard);
        it = reader_of_file.emplace(shard, readers_.size() - 1).first;
      }
      if (!readers_[it->second].contains(name))
        TSP_THROW(IoError, "checkpoint index ", index.string(), " maps \"", name, "\" to ", shard,
                  " but that file has no such tensor");
      location_[name] = it->second;
    }
  } else {
    TSP_THROW(IoError, "checkpoint directory ", dir_.string(), " has neither ", kSingleWeightsFileName,
              " nor ", kWeightsIndexFileName);
  }

  for (const WeightSpec& spec : weight_specs(config_)) {
    if (!contains(spec.name))
      TSP_THROW(IoError, "checkpoint ", dir_.string(), " is missing tensor \"", spec.name, "\" (expected shape ",
                spec.shape, " from ", kConfigFileName, ")");
    const TensorInfo& ti = info(spec.name);
    if (!(ti.shape == spec.shape))
      TSP_THROW(IoError, "checkpoint ", dir_.string(), ": tensor \"", spec.name, "\" has shape ", ti.shape,
                " in ", file_of(spec.name).string(), " but ", kConfigFileName, " implies ", spec.shape);
    if (ti.dtype != DType::f32 && ti.dtype != DType::bf16 && ti.dtype != DType::f16)
      TSP_THROW(IoError, "checkpoint ", dir_.string(), ": weight \"", spec.name, "\" has integer dtype ",
                ti.dtype, " in ", file_of(spec.name).string());
  }
  // A bias the config has no place for would be dropped silently (e.g. a Qwen2 checkpoint whose
  // config.json lost its model_type): refused. Other extra tensors (an old export's
  // rotary_emb.inv_freq buffers) are derived from the config and ignored.
  std::set<std::string> expected;
  for (const WeightSpec& spec : weight_specs(config_)) expected.insert(spec.name);
  for (const std::string& name : tensor_names()) {
    if (name.ends_with(".bias") && !expected.contains(name))
      TSP_THROW(InvalidArgument, "checkpoint ", dir_.string(), " holds \"", name, "\", a bias its ",
                kConfigFileName, " (model_type ", model_type_name(config_.model_type()),
                ") has no place for: the model would be computed without it (Qwen2's q/k/v biases "
                "need model_type \"qwen2\"; other biases are not supported)");
  }
}

std::vector<std::string> HfCheckpoint::tensor_names() const {
  std::vector<std::string> names;
  for (const auto& [name, _] : location_) names.push_back(name);
  return names;
}

const SafetensorsReader& HfCheckpoint::reader_of(const std::string& name) const {
  auto it = location_.find(name);
  if (it == location_.end())
    TSP_THROW(IoError, "checkpoint ", dir_.string(), " has no tensor \"", name, "\"");
  return readers_[it->second];
}

const TensorInfo& HfCheckpoint::info(const std::string& name) const { return reader_of(name).info(name); }

const fs::path& HfCheckpoint::file_of(const std::string& name) const { return reader_of(name).path(); }

Tensor HfCheckpoint::read(const std::string& name, MemCategory category) const {
  return reader_of(name).read(name, category);
}

Tensor HfCheckpoint::read_rows(const std::string& name, RowRange rows, MemCategory category) const {
  return reader_of(name).read_rows(name, rows, category);
}

void HfCheckpoint::read_into(const std::string& name, const Tensor& dst) const {
  reader_of(name).read_into(name, dst);
}

void HfCheckpoint::read_rows_into(const std::string& name, RowRange rows, const Tensor& dst) const {
  reader_of(name).read_rows_into(name, rows, dst);
}

namespace detail {

void replace_directory(const fs::path& fresh, const fs::path& target, bool allow_exchange) {
  replace_checkpoint_directory(fresh, target, allow_exchange);
}

}  // namespace detail

namespace {

bool is_plain_file_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}


}  // namespace

void save_hf_checkpoint(const fs::path& dir, const ModelConfig& config, const std::vector<NamedTensor>& tensors,
                        const HfCheckpointWriteOptions& options) {
  // Validate everything before touching the file system.
  std::map<std::string, const NamedTensor*> by_name;
  for (const NamedTensor& nt : tensors) {
    TSP_CHECK(by_name.emplace(nt.name, &nt).second, "save_hf_checkpoint(", dir.string(),
              "): duplicate tensor \"", nt.name, "\"");
  }
  const std::vector<WeightSpec> specs = weight_specs(config);
  for (const WeightSpec& spec : specs) {
    auto it = by_name.find(spec.name);
    TSP_CHECK(it != by_name.end(), "save_hf_checkpoint(", dir.string(), "): missing tensor \"", spec.name,
              "\" of shape ", spec.shape);
    const Tensor& t = it->second->tensor;
    TSP_CHECK(t.defined(), "save_hf_checkpoint(", dir.string(), "): tensor \"", spec.name, "\" is undefined");
    TSP_CHECK_SHAPE(t.shape() == spec.shape, "save_hf_checkpoint(", dir.string(), "): tensor \"", spec.name,
                    "\" has shape ", t.shape(), " but the config implies ", spec.shape);
    TSP_CHECK_DTYPE(t.dtype() == DType::f32 || t.dtype() == DType::bf16, "save_hf_checkpoint(",
                    dir.string(), "): weight \"", spec.name, "\" has dtype ", t.dtype());
  }
  TSP_CHECK(by_name.size() == specs.size(), "save_hf_checkpoint(", dir.string(), "): got ", by_name.size(),
            " tensors but the config has ", specs.size(), " weights (extra names are not allowed)");
  for (const auto& [name, _] : options.extra_files) {
    TSP_CHECK(is_plain_file_name(name), "save_hf_checkpoint(", dir.string(), "): extra file name \"", name,
              "\" is not a plain file name");
    TSP_CHECK(name != kConfigFileName && name != kSingleWeightsFileName && name != kWeightsIndexFileName &&
                  name != kCheckpointMarkerFileName && !(name.starts_with("model-") && name.ends_with(".safetensors")),
              "save_hf_checkpoint(", dir.string(), "): extra file \"", name,
              "\" would collide with a checkpoint file");
  }
  const std::string what = "save_hf_checkpoint(" + dir.string() + ")";
  const fs::path target = checkpoint_target(dir, what);
  check_replaceable(target, what);

  // Greedy partition in the given order.
  std::vector<std::vector<NamedTensor>> shards(1);
  uint64_t current = 0, total = 0;
  for (const NamedTensor& nt : tensors) {
    const uint64_t bytes = nt.tensor.nbytes();
    if (options.max_shard_bytes > 0 && !shards.back().empty() && current + bytes > options.max_shard_bytes) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().push_back(nt);
    current += bytes;
    total += bytes;
  }

  // Everything goes into a fresh sibling directory first (its marker listing every file written
  // first), then replaces `target` as a whole.
  std::vector<std::string> files{kConfigFileName};
  if (options.max_shard_bytes == 0) {
    files.push_back(kSingleWeightsFileName);
  } else {
    files.push_back(kWeightsIndexFileName);
    for (size_t i = 0; i < shards.size(); ++i)
      files.push_back(shard_file_name(static_cast<int64_t>(i), static_cast<int64_t>(shards.size())));
  }
  for (const auto& [name, _] : options.extra_files) files.push_back(name);
  remove_stale_checkpoint_temporaries(target);
  const fs::path fresh = make_checkpoint_temporary(target, files, what);
  RemoveTreeOnExit cleanup{fresh};  // on any failure below, the new files vanish

  const SafetensorsWriteOptions st_options{options.metadata};
  if (options.max_shard_bytes == 0) {
    write_safetensors(fresh / kSingleWeightsFileName, tensors, st_options);
  } else {
    json weight_map = json::object();
    const int64_t count = static_cast<int64_t>(shards.size());
    for (int64_t i = 0; i < count; ++i) {
      const std::string name = shard_file_name(i, count);
      write_safetensors(fresh / name, shards[static_cast<size_t>(i)], st_options);
      for (const NamedTensor& nt : shards[static_cast<size_t>(i)]) weight_map[nt.name] = name;
    }
    json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    write_file_atomically(fresh / kWeightsIndexFileName, index.dump(2) + "\n");
  }
  for (const auto& [name, bytes] : options.extra_files) write_file_atomically(fresh / name, bytes);
  save_config(config, fresh / kConfigFileName);  // every file fsynced, and `fresh` itself

  replace_checkpoint_directory(fresh, target, /*allow_exchange=*/true);
  cleanup.path.clear();
  remove_stale_checkpoint_temporaries(target);
}

}  // namespace tsp::model
