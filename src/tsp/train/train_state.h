// The training state saved next to the weights in a checkpoint directory, so that a run resumes
// bit for bit: step, optimizer moments, fp32 masters (bf16 runs), the data position (the loader
// state is the whole RNG state: the data order is a pure function of (seed, epoch)), the run
// config, the model config and the data's fingerprint. One safetensors file; XXH3 checksums of
// every tensor (in chunks, so a rank verifies only what it reads) and of the metadata.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "tsp/core/dtype.h"
#include "tsp/data/batch_loader.h"
#include "tsp/train/run_config.h"

namespace tsp::train {

inline constexpr const char* kTrainStateFileName = "train_state.safetensors";
inline constexpr const char* kTrainStateFormat = "tsp-train-state-v2";
// The format before v2 (one FNV-1a checksum over the tensor data, metadata unprotected):
// read_train_state_info still reads its scalars, loading refuses it.
inline constexpr const char* kTrainStateFormatV1 = "tsp-train-state-v1";
// Each tensor's bytes are checksummed in chunks of this size (the last one shorter).
inline constexpr uint64_t kTrainStateChecksumChunkBytes = uint64_t{16} << 20;

struct TrainStateInfo {
  int64_t step = 0;         // optimizer steps taken (= ShardedAdamW::steps())
  int64_t tokens_seen = 0;  // training target tokens consumed
  DType model_dtype = DType::f32;
  data::LoaderState loader;
  RunConfig run;
  std::string model_config;      // config.json text of the model trained (empty in v1 files)
  std::string data_fingerprint;  // data_fingerprint() of the run's token stream (empty in v1 files)
};

// The file train_state.safetensors (written and read by sharded_train_state.h, at any layout and
// degree, one process included): tensors "exp_avg.<hf name>", "exp_avg_sq.<hf name>" and, for bf16
// models, "master.<hf name>" (all f32, whole logical tensors), and __metadata__ {"format":
// kTrainStateFormat, "state": JSON of TrainStateInfo, "tensor_checksums": JSON {name: [XXH3-64 of
// each chunk, 16 hex digits]}, "checksum": XXH3-64 of the other metadata entries
// (metadata_checksum_hex)}.

// The scalar part only (no tensors are read); the metadata checksum is verified (v2). A v1 file's
// scalars are returned when `allow_v1` (tsp eval's defaults), else refused as resuming refuses it.
TrainStateInfo read_train_state_info(const std::filesystem::path& path, bool allow_v1 = true);

namespace detail {
// The pieces of the file format shared with sharded_train_state.cpp, so that a sharded run writes
// and checks exactly the same bytes.
std::string train_state_json(const TrainStateInfo& info);
std::string checksum_hex(uint64_t v);
// XXH3-64 of each kTrainStateChecksumChunkBytes chunk of `bytes` bytes at `data`.
std::vector<std::string> chunk_checksums(const void* data, uint64_t bytes);
// The "tensor_checksums" entry from name -> chunk checksums, and back (IoError via `path`).
std::string tensor_checksums_json(const std::map<std::string, std::vector<std::string>>& sums);
std::map<std::string, std::vector<std::string>> parse_tensor_checksums(const std::filesystem::path& path,
                                                                       const std::string& json_text);
// XXH3-64 (hex) over every metadata entry but "checksum": key, NUL, value, NUL, in key order.
std::string metadata_checksum_hex(const std::map<std::string, std::string>& metadata);
// The complete metadata of a v2 file from its parts (adds "format" and "checksum").
std::map<std::string, std::string> train_state_metadata(const TrainStateInfo& info,
                                                        const std::map<std::string, std::vector<std::string>>& sums);
// Format and metadata checksum checks, then the parsed info (v2); a v1 file's info when
// `allow_v1` (read_train_state_info), else the "written by an older tsp" refusal.
TrainStateInfo parse_train_state_info(const std::filesystem::path& path,
                                      const std::map<std::string, std::string>& metadata, bool allow_v1);
[[noreturn]] void throw_corrupt_train_state(const std::filesystem::path& path, const std::string& why);
}  // namespace detail

// XXH3-64 of a byte range (the training state's checksum function).
uint64_t xxh3_64(const void* data, size_t bytes);

}  // namespace tsp::train
