// Sharded training state: the state's tensors as shard lists, the checksum pass, and loading with
// a streamed checksum check before any piece is read.
#include "tsp/train/sharded_train_state.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tsp/comm/collectives.h"
#include "tsp/core/check.h"
#include "tsp/core/file_io.h"
#include "tsp/model/safetensors.h"

namespace tsp::train {
namespace {

using nlohmann::json;
using parallel::ParamShard;
using parallel::ShardedAdamW;

constexpr int64_t kChecksumReadBytes = int64_t{4} << 20;

// The state tensors in file order (train_state.cpp's state_tensors): every shard renamed
// "<prefix>.<hf name>", its local the state tensor.
std::vector<ParamShard> state_shards(const ShardedAdamW& opt) {
  std::vector<ParamShard> out;
  auto add = [&out](const std::vector<ParamShard>& list, const char* prefix) {
    for (ParamShard s : list) {
      s.name = std::string(prefix) + s.name;
      out.push_back(std::move(s));
    }
  };
  add(opt.exp_avg(), "exp_avg.");
  add(opt.exp_avg_sq(), "exp_avg_sq.");
  if (opt.has_masters()) add(opt.masters(), "master.");
  return out;
}

// FNV-1a 64 of the file's data section (the tensors tile it), streamed through a bounded buffer.
uint64_t data_section_checksum(const model::SafetensorsReader& reader) {
  uint64_t hash = kFnvOffset;
  if (reader.tensors().empty()) return hash;
  const uint64_t begin = reader.tensors().front().file_begin;
  const uint64_t end = reader.tensors().back().file_end;
  const OpenFile file = open_regular_file(reader.path(), "training state");
  const int64_t chunk = std::min<int64_t>(kChecksumReadBytes, static_cast<int64_t>(std::max<uint64_t>(end - begin, 1)));
  Tensor buf = Tensor::empty(Shape{(chunk + 3) / 4}, DType::i32, MemCategory::workspace);  // chunk bytes
  for (uint64_t at = begin; at < end;) {
    const uint64_t n = std::min<uint64_t>(end - at, static_cast<uint64_t>(chunk));
    pread_exact(file.fd.get(), buf.raw(), n, at, reader.path());
    hash = fnv1a64(buf.raw(), n, hash);
    at += n;
  }
  return hash;
}

// Every check of load_train_state except reading the data: format and model dtype (from the
// parsed info), the tensor list, dtypes and full shapes, and the checksum.
void check_state_file(const std::filesystem::path& path, const model::SafetensorsReader& reader,
                      const TrainStateInfo& info, const ShardedAdamW& opt, const std::vector<ParamShard>& tensors) {
  if (info.model_dtype != opt.weight_dtype()) {
    detail::throw_corrupt_train_state(path, std::string("it belongs to a ") + std::string(dtype_name(info.model_dtype)) +
                      " model, this run's weights are " + std::string(dtype_name(opt.weight_dtype())));
  }
  if (reader.tensors().size() != tensors.size()) {
    detail::throw_corrupt_train_state(path, "it holds " + std::to_string(reader.tensors().size()) + " tensors, expected " +
                      std::to_string(tensors.size()));
  }
  for (const ParamShard& s : tensors) {
    if (!reader.contains(s.name)) detail::throw_corrupt_train_state(path, "tensor \"" + s.name + "\" is missing");
    const model::TensorInfo& ti = reader.info(s.name);
    if (ti.dtype != DType::f32 || !(ti.shape == s.full_shape)) {
      std::ostringstream os;
      os << "tensor \"" << s.name << "\" is " << ti.dtype << ti.shape << ", expected f32" << s.full_shape;
      detail::throw_corrupt_train_state(path, os.str());
    }
  }
  const std::string stored = reader.metadata().at("checksum");  // present: read_train_state_info checked
  const std::string actual = detail::train_state_checksum_hex(data_section_checksum(reader));
  if (actual != stored) {
    detail::throw_corrupt_train_state(path, "checksum mismatch (stored " + stored + ", data " + actual + "): the file was modified or damaged");
  }
}

}  // namespace

parallel::ShardedFile sharded_train_state_file(comm::Communicator& group, const TrainStateInfo& info,
                                               const ShardedAdamW& opt) {
  TSP_CHECK_EQ(info.step, opt.steps(), "train state: step and optimizer step count differ");
  parallel::ShardedFile file{state_shards(opt), {}};
  uint64_t hash = kFnvOffset;
  parallel::for_each_assembled_tensor(group, file.tensors, [&](size_t, const Tensor& full) {
    hash = fnv1a64(full.raw(), full.nbytes(), hash);
  });
  // Rank 0 hashed; every rank returns the same description.
  Tensor h = Tensor::empty(Shape{1}, DType::i64, MemCategory::comm);
  h.data<int64_t>()[0] = static_cast<int64_t>(hash);
  comm::broadcast(group, h, 0);
  file.metadata = {{"format", kTrainStateFormat},
                   {"state", detail::train_state_json(info)},
                   {"checksum", detail::train_state_checksum_hex(static_cast<uint64_t>(h.data<int64_t>()[0]))}};
  return file;
}

void save_sharded_train_state(comm::Communicator& group, const std::filesystem::path& path,
                              const TrainStateInfo& info, const ShardedAdamW& opt) {
  parallel::save_sharded_safetensors(group, path, sharded_train_state_file(group, info, opt));
}

TrainStateInfo load_sharded_train_state(const std::filesystem::path& path, ShardedAdamW& opt) {
  const TrainStateInfo info = read_train_state_info(path);  // format and state JSON, or IoError
  const std::vector<ParamShard> tensors = state_shards(opt);
  try {
    const model::SafetensorsReader reader(path);
    check_state_file(path, reader, info, opt, tensors);
    parallel::read_shards(reader, tensors);
  } catch (const IoError& e) {
    const std::string msg = e.what();
    if (msg.rfind("corrupt or incompatible training state", 0) == 0) throw;
    detail::throw_corrupt_train_state(path, msg);
  }
  opt.set_steps(info.step);
  return info;
}

}  // namespace tsp::train
