// The training state saved next to the weights in a checkpoint directory, so that a run resumes
// bit for bit: step, optimizer moments, fp32 masters (bf16 runs), the data position (the loader
// state is the whole RNG state: the data order is a pure function of (seed, epoch)) and the run
// config. One safetensors file; a checksum of the tensor data detects corruption.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "tsp/core/dtype.h"
#include "tsp/data/batch_loader.h"
#include "tsp/train/optimizer.h"
#include "tsp/train/run_config.h"

namespace tsp::train {

inline constexpr const char* kTrainStateFileName = "train_state.safetensors";
inline constexpr const char* kTrainStateFormat = "tsp-train-state-v1";

struct TrainStateInfo {
  int64_t step = 0;         // optimizer steps taken (= AdamW::steps())
  int64_t tokens_seen = 0;  // training target tokens consumed
  DType model_dtype = DType::f32;
  data::LoaderState loader;
  RunConfig run;
};

// The bytes of train_state.safetensors: tensors "exp_avg.<hf name>", "exp_avg_sq.<hf name>" and,
// for bf16 models, "master.<hf name>" (all f32), and __metadata__ {"format": kTrainStateFormat,
// "state": JSON of TrainStateInfo, "checksum": FNV-1a 64 of the data section, 16 hex digits}.
std::string train_state_bytes(const TrainStateInfo& info, const AdamW& optimizer);

// The scalar part only (no tensors are read).
TrainStateInfo read_train_state_info(const std::filesystem::path& path);

// Reads the whole state into `optimizer` (built for the same model config and dtype): moments,
// masters and the step count. Every problem throws IoError starting with
// "corrupt or incompatible training state <path>: ": truncated or corrupt file, wrong format,
// checksum mismatch, missing tensors, shapes that disagree, another model dtype. The optimizer
// may be partly overwritten on a throw.
TrainStateInfo load_train_state(const std::filesystem::path& path, AdamW& optimizer);

namespace detail {
// The pieces of the file format shared with sharded_train_state.cpp, so that a sharded run writes
// and checks exactly the same bytes: the "state" metadata JSON, the checksum's 16 hex digits, and
// the IoError "corrupt or incompatible training state <path>: <why>".
std::string train_state_json(const TrainStateInfo& info);
std::string train_state_checksum_hex(uint64_t fnv);
[[noreturn]] void throw_corrupt_train_state(const std::filesystem::path& path, const std::string& why);
}  // namespace detail

// FNV-1a 64 over bytes, continuing from `hash` (start: kFnvOffset).
inline constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ull;
uint64_t fnv1a64(const void* data, size_t bytes, uint64_t hash = kFnvOffset);

}  // namespace tsp::train
