#include "tsp/train/optimizer.h"

#include <gtest/gtest.h>

#include <cstring>

#include "tsp/kernels/adamw.h"
#include "train_test_util.h"

namespace tsp::train {
namespace {

using testing::tiny_train_config;

// Two AdamW steps through the optimizer agree bit for bit with kernels::adamw_step applied by
// hand, tensor by tensor, with weight decay on matrices only.
TEST(AdamW, MatchesTheKernelAppliedByHand) {
  const model::ModelConfig cfg = tiny_train_config();
  model::ModelWeights w = model::ModelWeights::initialize(cfg, DType::f32, 1);
  const model::ModelWeights g1 = model::ModelWeights::initialize(cfg, DType::f32, 2);
  const model::ModelWeights g2 = model::ModelWeights::initialize(cfg, DType::f32, 3);
  // By hand.
  model::ModelWeights p(cfg, DType::f32, MemCategory::workspace);
  p.copy_from(w);
  model::ModelWeights m(cfg, DType::f32, MemCategory::workspace), v(cfg, DType::f32, MemCategory::workspace);
  const AdamWConfig c{.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
  const double lrs[2] = {1e-2, 5e-3};
  const model::ModelWeights* gs[2] = {&g1, &g2};
  for (int s = 0; s < 2; ++s) {
    const auto pn = p.named(), mn = m.named(), vn = v.named(), gn = gs[s]->named();
    for (size_t i = 0; i < pn.size(); ++i) {
      kernels::AdamWOptions o{.lr = static_cast<float>(lrs[s]), .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                              .weight_decay = pn[i].second.rank() == 2 ? 0.1f : 0.f};
      kernels::adamw_step(pn[i].second, mn[i].second, vn[i].second, gn[i].second, s + 1, o);
    }
  }
  AdamW opt(w, c);
  EXPECT_FALSE(opt.has_masters());
  opt.step(w, g1, lrs[0]);
  opt.step(w, g2, lrs[1]);
  EXPECT_EQ(opt.steps(), 2);
  EXPECT_TRUE(testing::weights_bit_equal(w, p));
  EXPECT_TRUE(testing::weights_bit_equal(opt.exp_avg(), m));
  EXPECT_TRUE(testing::weights_bit_equal(opt.exp_avg_sq(), v));
  // Norm gains were not decayed: with zero gradient a gain stays exactly 1 after the step.
}

TEST(AdamW, Bf16WeightsKeepFp32MastersAndGetTheRoundedCopy) {
  const model::ModelConfig cfg = tiny_train_config(DType::bf16);
  model::ModelWeights w = model::ModelWeights::initialize(cfg, DType::bf16, 1);
  const model::ModelWeights g = model::ModelWeights::initialize(cfg, DType::f32, 2);
  AdamW opt(w, {});
  ASSERT_TRUE(opt.has_masters());
  EXPECT_EQ(opt.masters().dtype(), DType::f32);
  EXPECT_EQ(opt.masters().embed().category(), MemCategory::optimizer);
  EXPECT_EQ(opt.exp_avg().embed().category(), MemCategory::optimizer);
  opt.step(w, g, 1e-2);
  model::ModelWeights rounded(cfg, DType::bf16, MemCategory::workspace);
  rounded.copy_from(opt.masters());
  EXPECT_TRUE(testing::weights_bit_equal(w, rounded));
  // The master moved by less than a bf16 ulp in some elements: it is not itself bf16-rounded.
  const Tensor m = opt.masters().embed();
  bool finer = false;
  for (int64_t i = 0; i < m.numel() && !finer; ++i) finer = m.data<float>()[i] != round_to_bf16(m.data<float>()[i]);
  EXPECT_TRUE(finer);
}

TEST(AdamW, ZeroGradientLeavesNormGainsUndecayed) {
  const model::ModelConfig cfg = tiny_train_config();
  model::ModelWeights w = model::ModelWeights::initialize(cfg, DType::f32, 1);
  model::ModelWeights g(cfg, DType::f32, MemCategory::grads);
  AdamW opt(w, {.weight_decay = 0.5});
  opt.step(w, g, 0.1);
  EXPECT_EQ(w.final_norm().item_f32(0), 1.0f);
  const model::ModelWeights w0 = model::ModelWeights::initialize(cfg, DType::f32, 1);
  EXPECT_EQ(w.embed().item_f32(0), w0.embed().item_f32(0) * static_cast<float>(1.0 - 0.1 * 0.5f));
}

}  // namespace
}  // namespace tsp::train
