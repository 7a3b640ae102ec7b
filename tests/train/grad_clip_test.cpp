// The trainer's gradient clipping (parallel::clip_grad_norm) on one process's whole tensors:
// the norm in double, torch.nn.utils.clip_grad_norm_'s factor, nothing touched below the limit.
#include <gtest/gtest.h>

#include <cmath>

#include "fp_bounds.h"
#include "train_test_util.h"
#include "tsp/comm/self/self_backend.h"
#include "tsp/parallel/sharded_grad.h"
#include "tsp/parallel/single_layout.h"

namespace tsp::train {
namespace {

using parallel::ClipResult;

// The clipping of a one-process run: a group of one holding every tensor whole.
double global_grad_norm(const model::ModelWeights& g) {
  comm::Communicator self = comm::self_communicator();
  return parallel::global_grad_norm(self, parallel::whole_shards(g));
}
ClipResult clip_grad_norm(model::ModelWeights& g, double max_norm) {
  comm::Communicator self = comm::self_communicator();
  return parallel::clip_grad_norm(self, parallel::whole_shards(g), max_norm);
}

model::ModelWeights random_grads(uint64_t seed) {
  model::ModelWeights g = model::ModelWeights::initialize(testing::tiny_train_config(), DType::f32, seed);
  return g;
}

double norm_by_hand(const model::ModelWeights& g) {
  long double s = 0;
  for (const auto& [n, t] : g.named()) {
    const float* p = t.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i) s += static_cast<long double>(p[i]) * p[i];
  }
  return static_cast<double>(std::sqrt(s));
}

// A sum of P non-negative squares in double, in any order, is within gamma_P (double) of exact
// relative to itself, and the square root halves that: P ~ 2e4 gives ~1e-12 (a float sum would
// err by ~1e-3, 9 orders of magnitude more).
double double_norm_tol(const model::ModelWeights& g) {
  int64_t n = 0;
  for (const auto& [name, t] : g.named()) n += t.numel();
  return testing::gamma_n(n + 2, testing::kUnitF64);
}

TEST(GradClip, NormIsComputedInDouble) {
  const model::ModelWeights g = random_grads(3);
  EXPECT_NEAR(global_grad_norm(g), norm_by_hand(g), double_norm_tol(g) * norm_by_hand(g));
}

TEST(GradClip, ScalesByExactlyTorchsFactor) {
  model::ModelWeights g = random_grads(4);
  const model::ModelWeights before = random_grads(4);
  const double norm = norm_by_hand(before);
  const double max_norm = norm / 3;
  const ClipResult r = clip_grad_norm(g, max_norm);
  EXPECT_TRUE(r.clipped);
  EXPECT_NEAR(r.norm, norm, double_norm_tol(before) * norm);
  EXPECT_EQ(r.scale, max_norm / (r.norm + 1e-6));
  const float f = static_cast<float>(r.scale);
  const auto a = before.named();
  const auto b = g.named();
  for (size_t k = 0; k < a.size(); ++k) {
    const float* x = a[k].second.data<float>();
    const float* y = b[k].second.data<float>();
    for (int64_t i = 0; i < a[k].second.numel(); ++i) ASSERT_EQ(y[i], x[i] * f) << a[k].first << " " << i;
  }
  // Each element is x f with f = float(max_norm / (norm + 1e-6)): rounded twice (2^-24 each), and
  // the 1e-6 lowers the scale by 1e-6 / norm relative; plus the norm's own double sum.
  EXPECT_NEAR(global_grad_norm(g), max_norm,
              (2 * testing::kUnitF32 + 1e-6 / r.norm + double_norm_tol(g)) * max_norm);
}

TEST(GradClip, BelowTheLimitOrDisabledLeavesGradientsUntouched) {
  model::ModelWeights g = random_grads(5);
  const model::ModelWeights before = random_grads(5);
  const ClipResult r = clip_grad_norm(g, 1e9);
  EXPECT_FALSE(r.clipped);
  EXPECT_EQ(r.scale, 1.0);
  EXPECT_TRUE(testing::weights_bit_equal(g, before));
  const ClipResult off = clip_grad_norm(g, 0.0);
  EXPECT_FALSE(off.clipped);
  EXPECT_GT(off.norm, 0);
  EXPECT_TRUE(testing::weights_bit_equal(g, before));
}

}  // namespace
}  // namespace tsp::train
