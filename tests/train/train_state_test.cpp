// The training state file written and read by the one optimizer on one process (whole tensors,
// the self transport): round trips, and every corruption refused with one clear IoError.
#include "tsp/train/train_state.h"

#include <gtest/gtest.h>

#include <functional>
#include <utility>
#include <vector>

#include "io_test_util.h"
#include "tsp/model/model_config.h"
#include "tsp/model/safetensors.h"
#include "train_state_edit.h"
#include "train_test_util.h"
#include "tsp/comm/self/self_backend.h"
#include "tsp/parallel/single_layout.h"
#include "tsp/train/sharded_train_state.h"

namespace tsp::train {
namespace {

using testing::ScratchDir;
using testing::tiny_train_config;

// One process's optimizer: whole-tensor shards viewing `weights`.
struct WholeAdamW {
  std::vector<parallel::ParamShard> shards;
  parallel::ShardedAdamW opt;
  explicit WholeAdamW(const model::ModelWeights& weights)
      : shards(parallel::whole_shards(weights)), opt(shards, {}) {}
};

model::ModelWeights whole(const std::vector<parallel::ParamShard>& shards) {
  return testing::whole_of(tiny_train_config(), shards);
}

TrainStateInfo load(const std::filesystem::path& path, WholeAdamW& adam) {
  return load_sharded_train_state(path, adam.opt);
}

struct Fixture {
  model::ModelWeights weights;
  WholeAdamW adam;
  const parallel::ShardedAdamW& opt;
  TrainStateInfo info;
  explicit Fixture(DType dtype)
      : weights(model::ModelWeights::initialize(tiny_train_config(dtype), dtype, 1)), adam(weights), opt(adam.opt) {
    const model::ModelWeights g = model::ModelWeights::initialize(tiny_train_config(), DType::f32, 9);
    adam.opt.step(adam.shards, parallel::whole_shards(g), 1e-2);
    adam.opt.step(adam.shards, parallel::whole_shards(g), 1e-2);
    info.step = 2;
    info.tokens_seen = 256;
    info.model_dtype = dtype;
    info.loader = {.seed = 7, .epoch = 1, .position = 3, .batches = 9, .num_tokens = 1000, .seq_len = 16,
                   .batch_size = 4, .order = data::WindowOrder::shuffled};
    info.run = testing::tiny_run(10);
    info.run.dtype = std::string(dtype_name(dtype));
  }
};

std::filesystem::path save(const ScratchDir& dir, const Fixture& f) {
  const auto path = dir / kTrainStateFileName;
  comm::Communicator self = comm::self_communicator();
  save_sharded_train_state(self, path, f.info, f.opt);
  return path;
}

TEST(TrainState, RoundTripF32) {
  ScratchDir dir;
  Fixture f(DType::f32);
  const auto path = save(dir, f);
  model::ModelWeights w2 = model::ModelWeights::initialize(tiny_train_config(), DType::f32, 5);
  WholeAdamW opt2(w2);
  const TrainStateInfo got = load(path, opt2);
  EXPECT_EQ(got.step, 2);
  EXPECT_EQ(opt2.opt.steps(), 2);
  EXPECT_EQ(got.tokens_seen, 256);
  EXPECT_EQ(got.loader, f.info.loader);
  EXPECT_EQ(got.run, f.info.run);
  EXPECT_EQ(got.model_dtype, DType::f32);
  EXPECT_TRUE(testing::weights_bit_equal(whole(opt2.opt.exp_avg()), whole(f.opt.exp_avg())));
  EXPECT_TRUE(testing::weights_bit_equal(whole(opt2.opt.exp_avg_sq()), whole(f.opt.exp_avg_sq())));
  EXPECT_EQ(read_train_state_info(path).loader, f.info.loader);
}

TEST(TrainState, RoundTripBf16KeepsMasters) {
  ScratchDir dir;
  Fixture f(DType::bf16);
  const auto path = save(dir, f);
  model::ModelWeights w2 = model::ModelWeights::initialize(tiny_train_config(DType::bf16), DType::bf16, 5);
  WholeAdamW opt2(w2);
  load(path, opt2);
  EXPECT_TRUE(testing::weights_bit_equal(whole(opt2.opt.masters()), whole(f.opt.masters())));
  opt2.opt.sync_weights_from_masters(opt2.shards);
  EXPECT_TRUE(testing::weights_bit_equal(w2, f.weights));
}

std::string load_error(const std::filesystem::path& path, DType dtype = DType::f32) {
  model::ModelWeights w = model::ModelWeights::initialize(tiny_train_config(dtype), dtype, 5);
  WholeAdamW opt(w);
  return testing::io_error_of([&] { load(path, opt); });
}

TEST(TrainState, TruncatedFileIsRejected) {
  ScratchDir dir;
  Fixture f(DType::f32);
  const auto path = save(dir, f);
  std::string bytes = testing::read_bytes(path);
  testing::write_bytes(path, bytes.substr(0, bytes.size() - 100));
  const std::string msg = load_error(path);
  EXPECT_NE(msg.find("corrupt or incompatible training state"), std::string::npos) << msg;
  EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
  testing::write_bytes(path, "");
  EXPECT_NE(load_error(path).find("corrupt or incompatible training state"), std::string::npos);
  testing::write_bytes(path, bytes.substr(0, 20));
  EXPECT_NE(load_error(path).find("corrupt or incompatible training state"), std::string::npos);
}

TEST(TrainState, FlippedDataByteFailsTheChecksum) {
  ScratchDir dir;
  Fixture f(DType::f32);
  const auto path = save(dir, f);
  std::string bytes = testing::read_bytes(path);
  bytes[bytes.size() - 7] ^= 0x10;
  testing::write_bytes(path, bytes);
  const std::string msg = load_error(path);
  EXPECT_NE(msg.find("checksum mismatch"), std::string::npos) << msg;
}

TEST(TrainState, DamagedHeaderIsRejected) {
  ScratchDir dir;
  Fixture f(DType::f32);
  const auto path = save(dir, f);
  std::string bytes = testing::read_bytes(path);
  bytes[10] = '#';  // inside the JSON header
  testing::write_bytes(path, bytes);
  EXPECT_NE(load_error(path).find("corrupt or incompatible training state"), std::string::npos);
}

TEST(TrainState, WrongModelDtypeIsRejected) {
  ScratchDir dir;
  Fixture f(DType::f32);
  const auto path = save(dir, f);
  const std::string msg = load_error(path, DType::bf16);
  EXPECT_NE(msg.find("belongs to a f32 model"), std::string::npos) << msg;
}

TEST(TrainState, NotAStateFileIsRejected) {
  ScratchDir dir;
  const auto path = dir / "x.safetensors";
  model::write_safetensors(path, {{"a", Tensor::zeros(Shape{2}, DType::f32, MemCategory::workspace)}});
  const std::string msg = load_error(path);
  EXPECT_NE(msg.find("no \"format\""), std::string::npos) << msg;
}

// Item: every byte of the metadata that matters is covered. Each edit keeps the file well-formed
// (valid JSON, valid safetensors, plausible values), so only the checksum can catch it.
TEST(TrainState, EditedStepLoaderPositionOrRunSettingFailsTheChecksum) {
  const std::vector<std::pair<const char*, std::function<void(nlohmann::json&)>>> edits = {
      {"step", [](nlohmann::json& s) { s["step"] = s["step"].get<int64_t>() + 1; }},
      {"tokens_seen", [](nlohmann::json& s) { s["tokens_seen"] = 0; }},
      {"loader position",
       [](nlohmann::json& s) {
         data::LoaderState l = data::LoaderState::parse(s["loader"].get<std::string>());
         l.position += 1;
         s["loader"] = l.to_string();
       }},
      {"run seq", [](nlohmann::json& s) { s["run"]["seq"] = 8; }},
      {"run lr", [](nlohmann::json& s) { s["run"]["lr"] = 0.5; }},
      {"model_config", [](nlohmann::json& s) { s["model_config"]["rope_theta"] = 500000.0; }},
  };
  for (const auto& [what, edit] : edits) {
    ScratchDir dir;
    Fixture f(DType::f32);
    f.info.model_config = model::config_to_json(tiny_train_config());
    const auto path = save(dir, f);
    testing::edit_train_state_json(path, edit);
    const std::string msg = load_error(path);
    EXPECT_NE(msg.find("checksum mismatch in the metadata"), std::string::npos) << what << ": " << msg;
    EXPECT_THROW(read_train_state_info(path), IoError) << what;
  }
}

TEST(TrainState, EditedTensorChecksumListFailsTheMetadataChecksum) {
  ScratchDir dir;
  Fixture f(DType::f32);
  const auto path = save(dir, f);
  testing::edit_safetensors_metadata(path, [](nlohmann::json& meta) {
    nlohmann::json sums = nlohmann::json::parse(meta["tensor_checksums"].get<std::string>());
    sums.begin().value()[0] = "0000000000000000";
    meta["tensor_checksums"] = sums.dump();
  });
  EXPECT_NE(load_error(path).find("checksum mismatch in the metadata"), std::string::npos);
}

TEST(TrainState, EveryChunkOfEveryTensorIsChecked) {
  // A flipped byte in the first and in the last tensor: both are found and the tensor is named.
  ScratchDir dir;
  Fixture f(DType::f32);
  const auto path = save(dir, f);
  const std::string clean = testing::read_bytes(path);
  const model::SafetensorsReader reader(path);
  for (const model::TensorInfo* ti : {&reader.tensors().front(), &reader.tensors().back()}) {
    std::string bytes = clean;
    bytes[static_cast<size_t>(ti->file_begin + ti->nbytes() / 2)] ^= 0x01;
    testing::write_bytes(path, bytes);
    const std::string msg = load_error(path);
    EXPECT_NE(msg.find("checksum mismatch in tensor \"" + ti->name + "\""), std::string::npos) << msg;
  }
}

TEST(TrainState, OlderFormatIsRefusedWithAClearMessageButItsInfoIsReadable) {
  ScratchDir dir;
  Fixture f(DType::f32);
  const auto path = save(dir, f);
  testing::edit_safetensors_metadata(path, [](nlohmann::json& meta) {
    meta["format"] = kTrainStateFormatV1;
    meta.erase("tensor_checksums");
  });
  const std::string msg = load_error(path);
  EXPECT_NE(msg.find("written by an older tsp"), std::string::npos) << msg;
  EXPECT_NE(msg.find("--init"), std::string::npos) << msg;
  EXPECT_EQ(read_train_state_info(path).step, 2);  // tsp eval still reads the run's settings
  EXPECT_THROW(read_train_state_info(path, /*allow_v1=*/false), IoError);
}

TEST(TrainState, ChecksumsAreXxh3PerChunk) {
  // The stored digits are XXH3-64 of the tensor bytes (one chunk each here), recomputable by any
  // xxHash implementation; and the hash is XXH3's, not FNV's: the empty input's well-known value.
  EXPECT_EQ(detail::checksum_hex(xxh3_64("", 0)), "2d06800538d394c2");
  ScratchDir dir;
  Fixture f(DType::f32);
  const auto path = save(dir, f);
  const model::SafetensorsReader reader(path);
  const auto sums = detail::parse_tensor_checksums(path, reader.metadata().at("tensor_checksums"));
  const auto& first = reader.tensors().front();
  const Tensor t = reader.read(first.name, MemCategory::workspace);
  ASSERT_EQ(sums.at(first.name).size(), 1u);
  EXPECT_EQ(sums.at(first.name)[0], detail::checksum_hex(xxh3_64(t.raw(), t.nbytes())));
  // Chunking: a buffer of 2.5 chunks has three checksums, the last over the half chunk.
  std::string big(static_cast<size_t>(kTrainStateChecksumChunkBytes * 5 / 2), 'x');
  big[static_cast<size_t>(kTrainStateChecksumChunkBytes * 2 + 3)] = 'y';
  const auto c = detail::chunk_checksums(big.data(), big.size());
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[0], c[1]);
  EXPECT_EQ(c[2], detail::checksum_hex(xxh3_64(big.data() + kTrainStateChecksumChunkBytes * 2,
                                               kTrainStateChecksumChunkBytes / 2)));
}

}  // namespace
}  // namespace tsp::train
