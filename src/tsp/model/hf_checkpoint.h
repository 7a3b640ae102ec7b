// Hugging Face checkpoint directories: config.json plus model.safetensors, or shards
// model-0000i-of-0000n.safetensors listed in model.safetensors.index.json; load by name, save with sharding.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "tsp/model/model_config.h"
#include "tsp/model/safetensors.h"
#include "tsp/model/weight_names.h"

namespace tsp::model {

inline constexpr const char* kConfigFileName = "config.json";
inline constexpr const char* kSingleWeightsFileName = "model.safetensors";
inline constexpr const char* kWeightsIndexFileName = "model.safetensors.index.json";

// An opened checkpoint directory. Construction reads config.json, the index (if present) and
// every shard header, and checks that every weight of weight_specs(config) is present with the
// config's shape; problems throw IoError naming the directory/file and the tensor. A directory
// holding both model.safetensors and model.safetensors.index.json is ambiguous (a mix of two
// saves) and refused with IoError rather than silently preferring one. Tensors the config does
// not list (e.g. an lm_head.weight next to tied embeddings, or rotary inv_freq buffers of old
// exports) are allowed and can still be read by name. Data is read on demand.
class HfCheckpoint {
 public:
  explicit HfCheckpoint(std::filesystem::path dir);

  const std::filesystem::path& dir() const { return dir_; }
  const ModelConfig& config() const { return config_; }
  bool sharded() const { return sharded_; }
  std::vector<std::string> tensor_names() const;  // sorted
  bool contains(const std::string& name) const { return location_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;
  // The shard file holding `name`.
  const std::filesystem::path& file_of(const std::string& name) const;

  Tensor read(const std::string& name, MemCategory category) const;
  Tensor read_rows(const std::string& name, RowRange rows, MemCategory category) const;
  void read_into(const std::string& name, const Tensor& dst) const;  // converts f32 <-> bf16, f16 -> f32/bf16
  void read_rows_into(const std::string& name, RowRange rows, const Tensor& dst) const;

 private:
  const SafetensorsReader& reader_of(const std::string& name) const;
  std::filesystem::path dir_;
  ModelConfig config_;
  bool sharded_ = false;
  std::vector<SafetensorsReader> readers_;
  std::map<std::string, size_t> location_;  // tensor name -> index into readers_
};

struct HfCheckpointWriteOptions {
  // Start a new shard when adding a tensor would push the current one past this many data bytes
  // (a tensor larger than the limit gets a shard of its own). 0: one model.safetensors file.
  uint64_t max_shard_bytes = 0;
  // safetensors "__metadata__" of every file; transformers requires format = "pt".
  std::map<std::string, std::string> metadata = {{"format", "pt"}};
  // Further files (plain name -> contents) saved in the directory together with the weights and
  // replaced with them atomically, e.g. a trainer's optimizer or data-loader state. Names must not
  // collide with the checkpoint's own files.
  std::map<std::string, std::string> extra_files = {};
};

// Writes the checkpoint directory `dir`: config.json, the weights and options.extra_files. `tensors`
// must contain exactly the names of weight_specs(config) with those shapes (any order, any float
// dtype; written as given), else InvalidArgument before anything is written.
//
// save_hf_checkpoint owns the whole directory: every file is written (and fsynced) into a fresh
// sibling directory ".<name>.tmp.XXXXXX", which then replaces `dir` as a whole, and the old
// directory is deleted. The first file written into the temporary is the marker
// tsp_checkpoint.txt (tsp/core/checkpoint_dir.h, docs/formats.md) listing every file of the save:
// it is how the engine recognises a directory it wrote. The swap is one atomic
// renameat2(RENAME_EXCHANGE) where the file system supports it (ext4, xfs, btrfs, tmpfs, ...): a
// reader, or a crash at any point, sees either the complete old checkpoint or the complete new
// one, never a mix. Elsewhere it falls back to two renames (old -> ".<name>.old.XXXXXX", new ->
// `dir`): the only other state is a moment in which `dir` is absent (opening it fails with
// IoError; a crash then leaves both complete copies as hidden siblings). A failed save leaves
// `dir` untouched and removes its temporary; the ".<name>.tmp.*" / ".<name>.old.*" siblings a
// crash leaves are removed by the next save (before writing when `dir` holds a complete
// checkpoint of ours, else after it), only when they carry our marker and hold nothing else.
// To protect the user's data, an existing `dir` must be empty or a checkpoint directory this
// engine wrote that holds only the files its marker lists (or, from before the marker, only
// checkpoint files and a train_state.safetensors of this engine); anything else, e.g. a
// downloaded Hugging Face model or a directory with the user's notes, is refused with
// InvalidArgument saying why, before anything is written. A symbolic link `dir` is resolved and
// its target replaced. Concurrent saves into the same `dir` are not supported.
void save_hf_checkpoint(const std::filesystem::path& dir, const ModelConfig& config,
                        const std::vector<NamedTensor>& tensors, const HfCheckpointWriteOptions& options = {});

// "model-00002-of-00005.safetensors" for shard index 1 of 5.
std::string shard_file_name(int64_t index, int64_t count);

namespace detail {
// Replaces the directory `target` by `fresh` (a sibling) as described for save_hf_checkpoint
// (tsp::replace_checkpoint_directory); `allow_exchange` = false forces the two-rename fallback.
void replace_directory(const std::filesystem::path& fresh, const std::filesystem::path& target,
                       bool allow_exchange);
}  // namespace detail

}  // namespace tsp::model
