// The one trainer in one process (train/trainer.h): the single layout on a mesh of one over the
// self transport, with what only the plain model accepts and what every layout refuses.
#include "tsp/train/trainer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "train_test_util.h"
#include "tsp/core/error.h"

namespace tsp::train {
namespace {

// An odd sequence length cannot be cut into zigzag chunks, but the plain model has no chunks: a
// one-process run takes it, and its first step's loss is the model's on that batch.
TEST(Trainer, OneProcessTakesAnySequenceLength) {
  RunConfig run = testing::tiny_run(2);
  run.seq = 15;
  Trainer t(testing::tiny_train_config(), run, testing::pattern_tokens(4000));
  const StepMetrics first = t.train_step();
  EXPECT_TRUE(std::isfinite(first.loss));
  EXPECT_GT(first.loss, 0);
  EXPECT_EQ(t.step(), 1);
  EXPECT_EQ(t.layout().describe().find("single"), 0u) << t.layout().describe();
}

// A layout other than single in one process runs at degree 1 and is held to its own rules.
TEST(Trainer, OneProcessLayoutsKeepTheirRules) {
  RunConfig run = testing::tiny_run(2);
  run.seq = 15;
  run.layout = "tsp";
  try {
    Trainer t(testing::tiny_train_config(), run, testing::pattern_tokens(4000));
    ADD_FAILURE() << "tsp accepted an odd sequence length";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("15"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tsp::train
