#include "tsp/train/lr_schedule.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "tsp/core/error.h"

namespace tsp::train {
namespace {

TEST(LrSchedule, WarmupIsLinearAndEndsAtThePeak) {
  const LrSchedule s{.peak_lr = 1e-3, .min_lr = 1e-4, .warmup_steps = 10, .total_steps = 110};
  EXPECT_DOUBLE_EQ(lr_at(s, 1), 1e-4);
  EXPECT_DOUBLE_EQ(lr_at(s, 5), 5e-4);
  EXPECT_DOUBLE_EQ(lr_at(s, 10), 1e-3);
}

TEST(LrSchedule, CosineHalfwayAndEnd) {
  const LrSchedule s{.peak_lr = 1e-3, .min_lr = 1e-4, .warmup_steps = 10, .total_steps = 110};
  EXPECT_DOUBLE_EQ(lr_at(s, 60), 1e-4 + 0.5 * 9e-4);  // p = 1/2: cos = 0
  EXPECT_NEAR(lr_at(s, 35), 1e-4 + 9e-4 * 0.5 * (1 + std::cos(std::numbers::pi / 4)), 1e-18);
  EXPECT_DOUBLE_EQ(lr_at(s, 110), 1e-4);              // last step: the floor
  EXPECT_DOUBLE_EQ(lr_at(s, 500), 1e-4);              // beyond the run
  for (int64_t t = 11; t < 110; ++t) EXPECT_LT(lr_at(s, t + 1), lr_at(s, t)) << t;
}

TEST(LrSchedule, NoWarmup) {
  const LrSchedule s{.peak_lr = 2.0, .min_lr = 0.0, .warmup_steps = 0, .total_steps = 4};
  EXPECT_DOUBLE_EQ(lr_at(s, 1), 2.0 * 0.5 * (1 + std::cos(std::numbers::pi / 4)));
  EXPECT_DOUBLE_EQ(lr_at(s, 2), 1.0);
  EXPECT_DOUBLE_EQ(lr_at(s, 4), 0.0);
}

TEST(LrSchedule, WarmupLongerThanTheRunAndBadStep) {
  const LrSchedule s{.peak_lr = 1.0, .min_lr = 0.0, .warmup_steps = 10, .total_steps = 5};
  EXPECT_DOUBLE_EQ(lr_at(s, 5), 0.5);
  EXPECT_THROW(lr_at(s, 0), InvalidArgument);
}

}  // namespace
}  // namespace tsp::train
