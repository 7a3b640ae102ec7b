#include "tsp/train/train_state.h"

#include <cstdio>

#include <nlohmann/json.hpp>

#include "tsp/core/check.h"
#include "tsp/model/safetensors.h"

namespace tsp::train {

using nlohmann::json;

uint64_t fnv1a64(const void* data, size_t bytes, uint64_t hash) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < bytes; ++i) {
    hash ^= p[i];
    hash *= 0x100000001b3ull;
  }
  return hash;
}

namespace detail {

std::string train_state_checksum_hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string train_state_json(const TrainStateInfo& info) {
  json j = {{"step", info.step},
            {"tokens_seen", info.tokens_seen},
            {"model_dtype", std::string(dtype_name(info.model_dtype))},
            {"loader", info.loader.to_string()},
            {"run", json::parse(run_config_to_json(info.run))}};
  return j.dump();
}

void throw_corrupt_train_state(const std::filesystem::path& path, const std::string& why) {
  TSP_THROW(IoError, "corrupt or incompatible training state ", path.string(), ": ", why);
}

}  // namespace detail

namespace {

struct StateTensor {
  std::string name;
  Tensor tensor;
};

// Every tensor of the state, in file order.
std::vector<StateTensor> state_tensors(const AdamW& opt) {
  std::vector<StateTensor> out;
  for (auto& [n, t] : opt.exp_avg().named()) out.push_back({"exp_avg." + n, t});
  for (auto& [n, t] : opt.exp_avg_sq().named()) out.push_back({"exp_avg_sq." + n, t});
  if (opt.has_masters()) {
    for (auto& [n, t] : opt.masters().named()) out.push_back({"master." + n, t});
  }
  return out;
}

TrainStateInfo parse_info(const std::filesystem::path& path, const std::map<std::string, std::string>& meta) {
  auto get = [&](const char* key) -> const std::string& {
    auto it = meta.find(key);
    if (it == meta.end()) detail::throw_corrupt_train_state(path, std::string("metadata has no \"") + key + "\" entry");
    return it->second;
  };
  if (get("format") != kTrainStateFormat) {
    detail::throw_corrupt_train_state(path, "format is \"" + get("format") + "\", expected \"" + kTrainStateFormat + "\"");
  }
  get("checksum");
  TrainStateInfo info;
  try {
    const json j = json::parse(get("state"));
    info.step = j.at("step").get<int64_t>();
    info.tokens_seen = j.at("tokens_seen").get<int64_t>();
    info.model_dtype = parse_dtype(j.at("model_dtype").get<std::string>());
    info.loader = data::LoaderState::parse(j.at("loader").get<std::string>());
    info.run = run_config_from_json(j.at("run").dump());
  } catch (const json::exception& e) {
    detail::throw_corrupt_train_state(path, std::string("bad \"state\" metadata: ") + e.what());
  } catch (const InvalidArgument& e) {
    detail::throw_corrupt_train_state(path, std::string("bad \"state\" metadata: ") + e.what());
  }
  if (info.step < 0 || info.tokens_seen < 0) detail::throw_corrupt_train_state(path, "negative step or token count");
  return info;
}

}  // namespace

std::string train_state_bytes(const TrainStateInfo& info, const AdamW& optimizer) {
  TSP_CHECK_EQ(info.step, optimizer.steps(), "train state: step and optimizer step count differ");
  std::vector<model::NamedTensor> tensors;
  uint64_t hash = kFnvOffset;
  for (auto& st : state_tensors(optimizer)) {
    TSP_ASSERT(st.tensor.is_contiguous() && st.tensor.dtype() == DType::f32, "state tensor ", st.name);
    hash = fnv1a64(st.tensor.raw(), st.tensor.nbytes(), hash);
    tensors.push_back({st.name, st.tensor});
  }
  model::SafetensorsWriteOptions options;
  options.metadata = {{"format", kTrainStateFormat}, {"state", detail::train_state_json(info)}, {"checksum", detail::train_state_checksum_hex(hash)}};
  return model::safetensors_bytes(tensors, options);
}

TrainStateInfo read_train_state_info(const std::filesystem::path& path) {
  std::map<std::string, std::string> meta;
  try {
    meta = model::SafetensorsReader(path).metadata();
  } catch (const IoError& e) {
    detail::throw_corrupt_train_state(path, e.what());
  }
  return parse_info(path, meta);
}

TrainStateInfo load_train_state(const std::filesystem::path& path, AdamW& optimizer) {
  try {
    const model::SafetensorsReader reader(path);
    TrainStateInfo info = parse_info(path, reader.metadata());
    const DType want = optimizer.has_masters() ? DType::bf16 : DType::f32;
    if (info.model_dtype != want) {
      detail::throw_corrupt_train_state(path, std::string("it belongs to a ") + std::string(dtype_name(info.model_dtype)) +
                        " model, this run's weights are " + std::string(dtype_name(want)));
    }
    const auto tensors = state_tensors(optimizer);
    if (reader.tensors().size() != tensors.size()) {
      detail::throw_corrupt_train_state(path, "it holds " + std::to_string(reader.tensors().size()) + " tensors, expected " +
                        std::to_string(tensors.size()));
    }
    uint64_t hash = kFnvOffset;
    for (const auto& st : tensors) {
      if (!reader.contains(st.name)) detail::throw_corrupt_train_state(path, "tensor \"" + st.name + "\" is missing");
      const model::TensorInfo& ti = reader.info(st.name);
      if (ti.dtype != DType::f32 || !(ti.shape == st.tensor.shape())) {
        std::ostringstream os;
        os << "tensor \"" << st.name << "\" is " << ti.dtype << ti.shape << ", expected f32" << st.tensor.shape();
        detail::throw_corrupt_train_state(path, os.str());
      }
      reader.read_into(st.name, st.tensor);
      hash = fnv1a64(st.tensor.raw(), st.tensor.nbytes(), hash);
    }
    if (detail::train_state_checksum_hex(hash) != reader.metadata().at("checksum")) {
      detail::throw_corrupt_train_state(path, "checksum mismatch (stored " + reader.metadata().at("checksum") + ", data " + detail::train_state_checksum_hex(hash) +
                        "): the file was modified or damaged");
    }
    optimizer.set_steps(info.step);
    return info;
  } catch (const IoError& e) {
    const std::string msg = e.what();
    if (msg.rfind("corrupt or incompatible training state", 0) == 0) throw;
    detail::throw_corrupt_train_state(path, msg);
  }
}

}  // namespace tsp::train
