#include "tsp/train/train_state.h"

#include <gtest/gtest.h>

#include "io_test_util.h"
#include "tsp/model/safetensors.h"
#include "train_test_util.h"

namespace tsp::train {
namespace {

using testing::ScratchDir;
using testing::tiny_train_config;

struct Fixture {
  model::ModelWeights weights;
  AdamW opt;
  TrainStateInfo info;
  explicit Fixture(DType dtype)
      : weights(model::ModelWeights::initialize(tiny_train_config(dtype), dtype, 1)), opt(weights, {}) {
    const model::ModelWeights g = model::ModelWeights::initialize(tiny_train_config(), DType::f32, 9);
    opt.step(weights, g, 1e-2);
    opt.step(weights, g, 1e-2);
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
  testing::write_bytes(path, train_state_bytes(f.info, f.opt));
  return path;
}

TEST(TrainState, RoundTripF32) {
  ScratchDir dir;
  Fixture f(DType::f32);
  const auto path = save(dir, f);
  model::ModelWeights w2 = model::ModelWeights::initialize(tiny_train_config(), DType::f32, 5);
  AdamW opt2(w2, {});
  const TrainStateInfo got = load_train_state(path, opt2);
  EXPECT_EQ(got.step, 2);
  EXPECT_EQ(opt2.steps(), 2);
  EXPECT_EQ(got.tokens_seen, 256);
  EXPECT_EQ(got.loader, f.info.loader);
  EXPECT_EQ(got.run, f.info.run);
  EXPECT_EQ(got.model_dtype, DType::f32);
  EXPECT_TRUE(testing::weights_bit_equal(opt2.exp_avg(), f.opt.exp_avg()));
  EXPECT_TRUE(testing::weights_bit_equal(opt2.exp_avg_sq(), f.opt.exp_avg_sq()));
  EXPECT_EQ(read_train_state_info(path).loader, f.info.loader);
}

TEST(TrainState, RoundTripBf16KeepsMasters) {
  ScratchDir dir;
  Fixture f(DType::bf16);
  const auto path = save(dir, f);
  model::ModelWeights w2 = model::ModelWeights::initialize(tiny_train_config(DType::bf16), DType::bf16, 5);
  AdamW opt2(w2, {});
  load_train_state(path, opt2);
  EXPECT_TRUE(testing::weights_bit_equal(opt2.masters(), f.opt.masters()));
  opt2.sync_weights_from_masters(w2);
  EXPECT_TRUE(testing::weights_bit_equal(w2, f.weights));
}

std::string load_error(const std::filesystem::path& path, DType dtype = DType::f32) {
  model::ModelWeights w = model::ModelWeights::initialize(tiny_train_config(dtype), dtype, 5);
  AdamW opt(w, {});
  return testing::io_error_of([&] { load_train_state(path, opt); });
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

}  // namespace
}  // namespace tsp::train
