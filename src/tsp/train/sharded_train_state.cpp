// Sharded training state: the state's tensors as shard lists, the checksum pass, and loading with
// a checksum check of the chunks this rank reads before any piece is read.
#include "tsp/train/sharded_train_state.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
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

// The state tensors in file order (train_state.cpp's state_tensors): every shard renamed
// "<prefix>.<hf name>", its local the state tensor.
std::vector<ParamShard> state_shards(const ShardedAdamW& opt, const ShardView& view = {}) {
  std::vector<ParamShard> out;
  auto add = [&out, &view](const std::vector<ParamShard>& list, const char* prefix) {
    for (ParamShard s : view ? view(list) : list) {
      s.name = std::string(prefix) + s.name;
      out.push_back(std::move(s));
    }
  };
  add(opt.exp_avg(), "exp_avg.");
  add(opt.exp_avg_sq(), "exp_avg_sq.");
  if (opt.has_masters()) add(opt.masters(), "master.");
  return out;
}

// The bytes of tensor `s` this rank reads: its rows, or the whole tensor (columns are read as
// blocks of whole rows, replicated tensors whole).
struct ByteRange {
  uint64_t begin = 0, end = 0;
};
ByteRange bytes_read(const ParamShard& s, const model::TensorInfo& ti) {
  if (s.kind != parallel::ShardKind::rows || s.full_shape[0] == 0) return {0, ti.nbytes()};
  const uint64_t row_bytes = ti.nbytes() / static_cast<uint64_t>(s.full_shape[0]);
  return {static_cast<uint64_t>(s.offset) * row_bytes, static_cast<uint64_t>(s.offset + s.extent) * row_bytes};
}

// Every check of the state file except reading the data: format and model dtype (from the
// parsed info), the tensor list, dtypes and full shapes, and the XXH3 checksum of every chunk of
// the bytes this rank reads (streamed through one chunk-sized buffer).
void check_state_file(const std::filesystem::path& path, const model::SafetensorsReader& reader,
                      const TrainStateInfo& info, const ShardedAdamW& opt, const std::vector<ParamShard>& tensors,
                      size_t expected_tensors) {
  if (info.model_dtype != opt.weight_dtype()) {
    detail::throw_corrupt_train_state(path, std::string("it belongs to a ") + std::string(dtype_name(info.model_dtype)) +
                      " model, this run's weights are " + std::string(dtype_name(opt.weight_dtype())));
  }
  if (reader.tensors().size() != expected_tensors) {
    detail::throw_corrupt_train_state(path, "it holds " + std::to_string(reader.tensors().size()) + " tensors, expected " +
                      std::to_string(expected_tensors));
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
  const auto sums = detail::parse_tensor_checksums(path, reader.metadata().at("tensor_checksums"));
  const OpenFile file = open_regular_file(reader.path(), "training state");
  const uint64_t chunk = kTrainStateChecksumChunkBytes;
  Tensor buf;
  for (const ParamShard& s : tensors) {
    const model::TensorInfo& ti = reader.info(s.name);
    const auto it = sums.find(s.name);
    const uint64_t chunks = (ti.nbytes() + chunk - 1) / chunk;
    if (it == sums.end() || it->second.size() != chunks) {
      detail::throw_corrupt_train_state(path, "tensor \"" + s.name + "\" has no or the wrong number of checksums");
    }
    const ByteRange r = bytes_read(s, ti);
    if (r.end <= r.begin) continue;
    for (uint64_t c = r.begin / chunk; c * chunk < r.end; ++c) {
      const uint64_t n = std::min(chunk, ti.nbytes() - c * chunk);
      if (!buf.defined()) buf = Tensor::empty(Shape{static_cast<int64_t>(chunk / 4)}, DType::i32, MemCategory::workspace);
      pread_exact(file.fd.get(), buf.raw(), n, ti.file_begin + c * chunk, reader.path());
      const std::string actual = detail::checksum_hex(xxh3_64(buf.raw(), static_cast<size_t>(n)));
      if (actual != it->second[c]) {
        detail::throw_corrupt_train_state(path, "checksum mismatch in tensor \"" + s.name + "\" chunk " + std::to_string(c) +
                                                    " (stored " + it->second[c] + ", data " + actual +
                                                    "): the file was modified or damaged");
      }
    }
  }
}

}  // namespace

parallel::ShardedFile sharded_train_state_file(comm::Communicator& group, const TrainStateInfo& info,
                                               const ShardedAdamW& opt, const ShardView& view) {
  TSP_CHECK_EQ(info.step, opt.steps(), "train state: step and optimizer step count differ");
  parallel::ShardedFile file{state_shards(opt, view), {}};
  // Rank 0 hashes each assembled tensor; the others learn the hex digits by broadcast (every rank
  // returns the same description).
  std::string sums_json;
  {
    std::map<std::string, std::vector<std::string>> sums;
    parallel::for_each_assembled_tensor(group, file.tensors, [&](size_t i, const Tensor& full) {
      sums[file.tensors[i].name] = detail::chunk_checksums(full.raw(), full.nbytes());
    });
    sums_json = detail::tensor_checksums_json(sums);
  }
  Tensor len = Tensor::empty(Shape{1}, DType::i64, MemCategory::comm);
  len.data<int64_t>()[0] = static_cast<int64_t>(sums_json.size());
  comm::broadcast(group, len, 0);
  const int64_t n = len.data<int64_t>()[0];
  Tensor text = Tensor::zeros(Shape{(n + 7) / 8}, DType::i64, MemCategory::comm);
  if (group.rank() == 0) std::memcpy(text.raw(), sums_json.data(), static_cast<size_t>(n));
  comm::broadcast(group, text, 0);
  const auto sums = detail::parse_tensor_checksums("<broadcast>", std::string(static_cast<const char*>(text.raw()),
                                                                                static_cast<size_t>(n)));
  file.metadata = detail::train_state_metadata(info, sums);
  return file;
}

void save_sharded_train_state(comm::Communicator& group, const std::filesystem::path& path,
                              const TrainStateInfo& info, const ShardedAdamW& opt) {
  parallel::save_sharded_safetensors(group, path, sharded_train_state_file(group, info, opt));
}

TrainStateInfo load_sharded_train_state(const std::filesystem::path& path, ShardedAdamW& opt,
                                        int64_t model_tensors) {
  const std::vector<ParamShard> tensors = state_shards(opt);
  // exp_avg and exp_avg_sq (and master) of every tensor of the model
  const size_t lists = opt.has_masters() ? 3 : 2;
  const size_t expected = model_tensors < 0 ? tensors.size() : lists * static_cast<size_t>(model_tensors);
  TrainStateInfo info;
  try {
    const model::SafetensorsReader reader(path);
    info = detail::parse_train_state_info(path, reader.metadata(), /*allow_v1=*/false);
    check_state_file(path, reader, info, opt, tensors, expected);
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
