// Checkpoints of sharded runs in the single-rank files' exact bytes (any layout/degree reads any
// other's): rank 0 streams one assembled tensor at a time; every rank loads its own pieces.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "tsp/comm/communicator.h"
#include "tsp/model/model_config.h"
#include "tsp/model/safetensors.h"
#include "tsp/parallel/param_shard.h"

namespace tsp::parallel {

// Tag of the point-to-point messages that carry pieces to group rank 0 (a user tag, below
// comm::kReservedTagBase); no other traffic may be in flight on the group during a save.
inline constexpr int kCheckpointGatherTag = 0x5C47;

// Collective over `group`. Calls visit(index, full) on group rank 0 for every tensor of
// `tensors` in order, `full` being the logical tensor (full_shape, the pieces' dtype; a
// contiguous read-only tensor, valid only during the call) assembled from every rank's piece:
// row and column pieces are sent to rank 0 (column pieces re-interleaved there), replicated
// tensors are rank 0's copy. Rank 0 holds at most one full tensor plus one column piece at a
// time; the other ranks allocate nothing. First the layout is exchanged (one all-gather) and
// checked on every rank: the same names and shapes everywhere, the same kinds and dtypes on every
// rank that holds a piece (an empty row piece, a rank of another pipeline stage, holds none:
// replica_view), pieces that tile each tensor exactly, locals of the shard's shape; otherwise
// every rank throws InvalidArgument before any piece moves. An exception from `visit` on rank 0 does not strand the others: rank 0
// keeps receiving the remaining pieces (without visiting), then every rank throws it (rank 0 the
// original, the others an exception of the same type and message).
void for_each_assembled_tensor(comm::Communicator& group, const std::vector<ParamShard>& tensors,
                               const std::function<void(size_t index, const Tensor& full)>& visit);

// A safetensors file whose tensors are sharded over a group.
struct ShardedFile {
  std::vector<ParamShard> tensors;               // file order; ParamShard::name = tensor name in the file
  std::map<std::string, std::string> metadata;  // "__metadata__"
};

// Collective: writes `file` to `path` (only group rank 0 touches the file system), byte-identical
// to model::write_safetensors of the assembled tensors, with the same atomic protocol. An error on
// rank 0 (unwritable directory, full disk) is thrown on every rank.
void save_sharded_safetensors(comm::Communicator& group, const std::filesystem::path& path,
                              const ShardedFile& file);

// Collective: the checkpoint directory `dir` exactly as model::save_hf_checkpoint(dir, config,
// full weights, {extra_files}) writes it (one model.safetensors, {"format": "pt"}, config.json),
// streamed by group rank 0 one tensor at a time through for_each_assembled_tensor.
// `weights`: this rank's shards in weight_specs(config) order (names and full shapes checked on
// every rank before anything is written). `sharded_files` are further safetensors files of the
// directory (plain name -> ShardedFile, e.g. the training state), streamed the same way, so that
// weights and state are replaced together. Same directory guarantees as save_hf_checkpoint
// (tsp/core/checkpoint_dir.h: a fresh hidden sibling with the marker, then the swap; an existing
// `dir` must be empty or a checkpoint directory this engine wrote, holding only its own files;
// our own stale temporaries are removed). Every error on rank 0 is thrown on every rank, and no rank hangs.
// With a dp x tsp mesh call it on one tsp group (e.g. dp coordinate 0): the replicas hold the same
// values and must not write the same directory.
void save_sharded_hf_checkpoint(comm::Communicator& group, const model::ModelConfig& config,
                                const std::vector<ParamShard>& weights, const std::filesystem::path& dir,
                                const std::map<std::string, std::string>& extra_files = {},
                                const std::map<std::string, ShardedFile>& sharded_files = {});

// Not collective: every rank reads its own pieces of an HF checkpoint directory (one
// model.safetensors or an index with shards): rows with positioned row reads, column and
// replicated tensors by reading the tensor (one at a time), converted to each local's dtype.
// Missing or corrupt files: IoError naming the file. A checkpoint of another model (a shard's name
// absent, or another full shape) or a local that does not have its shard's shape: InvalidArgument.
void load_shards_from_hf(const std::filesystem::path& dir, const std::vector<ParamShard>& shards);

// Reads every shard's piece of tensor `name_prefix + shard.name` of an open safetensors file, as
// load_shards_from_hf does (dtype converted). Absent tensor: IoError; another full shape:
// InvalidArgument.
void read_shards(const model::SafetensorsReader& file, const std::vector<ParamShard>& shards,
                 std::string_view name_prefix = {});

}  // namespace tsp::parallel
