// The training state (train_state.h's file format) written and read shard by shard: the one
// writer and reader, so a state saved at any layout or degree resumes at any other, one process
// included.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <vector>

#include "tsp/comm/communicator.h"
#include "tsp/parallel/sharded_adamw.h"
#include "tsp/parallel/sharded_checkpoint.h"
#include "tsp/train/train_state.h"

namespace tsp::train {

// Collective over `group`: the state file as a ShardedFile (exp_avg.<name>, exp_avg_sq.<name>,
// master.<name> for bf16 weights, all f32; metadata format, state JSON and checksums). The
// per-chunk XXH3 checksums precede the data in the file (in the header), so they are computed here
// in a first pass over the assembled tensors (rank 0 hashes them; the state's pieces travel twice
// per save). Pass the result to save_sharded_hf_checkpoint's sharded_files under
// kTrainStateFileName to replace weights and state together. info.step must equal opt.steps().
// `view`, when given, maps each of the optimizer's shard lists (weight-named, e.g. exp_avg())
// to the list the group writes (Layout::replica_shards across pipeline stages).
using ShardView = std::function<std::vector<parallel::ParamShard>(const std::vector<parallel::ParamShard>&)>;
parallel::ShardedFile sharded_train_state_file(comm::Communicator& group, const TrainStateInfo& info,
                                               const parallel::ShardedAdamW& opt, const ShardView& view = {});

// Collective: writes the state alone to `path` (atomically, by rank 0; the same bytes whatever the
// layout and degree holding the same logical values). Errors on rank 0 are thrown on every rank.
void save_sharded_train_state(comm::Communicator& group, const std::filesystem::path& path,
                              const TrainStateInfo& info, const parallel::ShardedAdamW& opt);

// Not collective: every rank verifies the metadata checksum and the XXH3 checksum of every chunk
// of the bytes it reads (its rows of row-sharded tensors, whole column/replicated tensors; one
// chunk-sized buffer), checks the format, model dtype, tensor names and shapes, then reads its own
// pieces of the moments (and masters) into `opt` and sets its step count. Every problem throws
// IoError "corrupt or incompatible training state <path>: ..."; the
// optimizer is untouched when the checks fail. Call opt.sync_weights_from_masters(weights) after.
// `model_tensors`: how many model tensors the file holds the state of, when this rank holds only
// some of them (a pipeline stage: weight_specs(config).size()); by default the optimizer's.
TrainStateInfo load_sharded_train_state(const std::filesystem::path& path, parallel::ShardedAdamW& opt,
                                        int64_t model_tensors = -1);

}  // namespace tsp::train
