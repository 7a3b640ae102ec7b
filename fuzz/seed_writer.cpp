// tsp_fuzz_seeds DIR: writes the seed corpus DIR/<target>/ of every fuzz target with the engine's
// own writers (valid files of the current formats), for ctest's replay and for `make fuzz`.
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fuzz_models.h"
#include "tsp/data/token_file.h"
#include "tsp/model/model_config.h"
#include "tsp/model/model_weights.h"
#include "tsp/model/safetensors.h"
#include "tsp/comm/self/self_backend.h"
#include "tsp/parallel/sharded_adamw.h"
#include "tsp/parallel/single_layout.h"
#include "tsp/train/sharded_train_state.h"

namespace fs = std::filesystem;
using namespace tsp;

namespace {

void write_file(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

std::vector<model::NamedTensor> named(const model::ModelWeights& w) {
  std::vector<model::NamedTensor> out;
  for (auto& [name, t] : w.named()) out.push_back({name, t});
  return out;
}

// The tiny model in f32 and bf16 (HF metadata), and a file of the other dtypes and ranks the
// reader accepts: a scalar, an empty tensor, i32 and i64.
void safetensors_seeds(const fs::path& dir) {
  for (const DType dt : {DType::f32, DType::bf16}) {
    const model::ModelWeights w = model::ModelWeights::initialize(fuzz::tiny_fuzz_config(dt), dt, 3);
    write_file(dir / ("tiny_" + std::string(dtype_name(dt)) + ".safetensors"),
               model::safetensors_bytes(named(w), {.metadata = {{"format", "pt"}}}));
  }
  const Tensor scalar = Tensor::zeros({}, DType::f32, MemCategory::workspace);
  const Tensor empty = Tensor::zeros({0, 3}, DType::bf16, MemCategory::workspace);
  const Tensor ids = Tensor::zeros({3}, DType::i32, MemCategory::workspace);
  const Tensor big = Tensor::zeros({2, 2}, DType::i64, MemCategory::workspace);
  write_file(dir / "dtypes.safetensors",
             model::safetensors_bytes({{"scalar", scalar}, {"empty", empty}, {"ids", ids}, {"big", big}}));
}

// config.json of every preset and of the tiny model, f32 and bf16.
void config_json_seeds(const fs::path& dir) {
  for (const std::string& name : model::preset_names()) {
    write_file(dir / (name + ".json"), model::config_to_json(model::preset(name)));
  }
  for (const DType dt : {DType::f32, DType::bf16}) {
    write_file(dir / ("tiny_fuzz_" + std::string(dtype_name(dt)) + ".json"),
               model::config_to_json(fuzz::tiny_fuzz_config(dt)));
  }
}

// u16 and u32 token files, and an empty one.
void token_file_seeds(const fs::path& dir) {
  std::vector<int32_t> tokens;
  for (int32_t i = 0; i < 40; ++i) tokens.push_back((i * 7) % 300);
  data::write_token_file(dir / "u16.tok", tokens, {.vocab_size = 300});
  data::write_token_file(dir / "u32.tok", tokens, {.vocab_size = 70000, .width = data::TokenWidth::u32});
  data::write_token_file(dir / "empty.tok", {}, {.vocab_size = 2});
}

// The training state of the tiny model after one AdamW step, f32 (no masters) and bf16 (masters).
void train_state_seeds(const fs::path& dir) {
  for (const DType dt : {DType::f32, DType::bf16}) {
    model::ModelWeights w = model::ModelWeights::initialize(fuzz::tiny_fuzz_config(dt), dt, 1);
    const std::vector<parallel::ParamShard> shards = parallel::whole_shards(w);
    parallel::ShardedAdamW opt(shards, {});
    const model::ModelWeights g = model::ModelWeights::initialize(fuzz::tiny_fuzz_config(), DType::f32, 9);
    opt.step(shards, parallel::whole_shards(g), 1e-2);
    train::TrainStateInfo info;
    info.step = 1;
    info.tokens_seen = 64;
    info.model_dtype = dt;
    info.loader = {.seed = 7, .epoch = 0, .position = 1, .batches = 1, .num_tokens = 200, .seq_len = 8,
                   .batch_size = 2, .order = data::WindowOrder::shuffled};
    info.run.steps = 4;
    info.run.batch = 2;
    info.run.seq = 8;
    info.run.dtype = std::string(dtype_name(dt));
    comm::Communicator self = comm::self_communicator();  // one process writes the whole state
    train::save_sharded_train_state(self, dir / ("state_" + std::string(dtype_name(dt)) + ".safetensors"), info, opt);
  }
}

// tokenizer.json: the committed hand-written seeds (fuzz/seeds/tokenizer_json) cover the
// components; the written seed is the smallest accepted file.
void tokenizer_json_seeds(const fs::path& dir) {
  write_file(dir / "minimal.json", R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR (writes DIR/<target>/ seed files)\n", argv[0]);
    return 2;
  }
  const fs::path root = argv[1];
  try {
    const std::pair<const char*, void (*)(const fs::path&)> targets[] = {
        {"safetensors", safetensors_seeds}, {"config_json", config_json_seeds},
        {"token_file", token_file_seeds}, {"train_state", train_state_seeds},
        {"tokenizer_json", tokenizer_json_seeds}};
    for (const auto& [name, write] : targets) {
      fs::remove_all(root / name);
      fs::create_directories(root / name);
      write(root / name);
      const auto n = std::distance(fs::directory_iterator(root / name), fs::directory_iterator());
      std::printf("seeds: %ld files in %s\n", static_cast<long>(n), (root / name).c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tsp_fuzz_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
