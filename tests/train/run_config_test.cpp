#include "tsp/train/run_config.h"

#include <gtest/gtest.h>

#include "tsp/core/error.h"

namespace tsp::train {
namespace {

TEST(RunConfig, DefaultsAreValid) { EXPECT_NO_THROW(RunConfig{}.validate()); }

TEST(RunConfig, JsonRoundTripKeepsEveryField) {
  RunConfig c;
  c.steps = 7;
  c.lr = 0.125;
  c.dtype = "bf16";
  c.recompute = true;
  c.checkpoint_dir = "/tmp/x";
  EXPECT_EQ(run_config_from_json(run_config_to_json(c)), c);
}

TEST(RunConfig, RejectsUnknownKeysAndWrongTypes) {
  EXPECT_THROW(run_config_from_json(R"({"stepz": 3})"), InvalidArgument);
  EXPECT_THROW(run_config_from_json(R"({"steps": "three"})"), InvalidArgument);
  EXPECT_THROW(run_config_from_json("not json"), InvalidArgument);
  EXPECT_EQ(run_config_from_json(R"({"steps": 3})").steps, 3);
}

TEST(RunConfig, ValidationNamesTheFlag) {
  RunConfig c;
  c.grad_accum = 3;
  try {
    c.validate();
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("--grad-accum 3 does not divide --batch 16"), std::string::npos) << e.what();
  }
  c = RunConfig{};
  c.dtype = "f16";
  EXPECT_THROW(c.validate(), InvalidArgument);
  c = RunConfig{};
  c.comm_timeout = -1;
  try {
    c.validate();
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("--comm-timeout must be a number of seconds >= 0 (0: off), got -1"),
              std::string::npos) << e.what();
  }
  c.comm_timeout = 0;  // off
  EXPECT_NO_THROW(c.validate());
}

// Every integer field has a range, checked by validate() too (a run config read back from a
// training state passes there): both ends accepted, one beyond refused with the flag and range.
// `--layout dp2xtsp2` is the flag form `--layout tsp --tsp 2 --dp 2` once expanded, so the saved
// run config and every reader of the degree fields see one form.
TEST(RunConfig, LayoutNamesExpandIntoTheFlagForm) {
  RunConfig named;
  named.layout = "dp2xtsp2";
  EXPECT_NO_THROW(named.validate());
  EXPECT_EQ(named.layout_spec(), tsp_layout(2, 2));
  named.expand_layout_name();
  EXPECT_EQ(named.layout, "tsp");
  EXPECT_EQ(named.tsp, 2);
  EXPECT_EQ(named.dp, 2);
  EXPECT_EQ(named.micro_batch(), named.batch / 2);
  RunConfig flags;
  flags.layout = "tsp";
  flags.tsp = 2;
  flags.dp = 2;
  EXPECT_EQ(named, flags);
  flags.expand_layout_name();  // a kind name stays as given
  EXPECT_EQ(named, flags);
  // Pipeline stages expand into --pp like every other degree.
  RunConfig piped;
  piped.layout = "pp2xtsp2";
  EXPECT_NO_THROW(piped.validate());
  piped.expand_layout_name();
  EXPECT_EQ(piped.layout, "tsp");
  EXPECT_EQ(piped.tsp, 2);
  EXPECT_EQ(piped.pp, 2);
}

TEST(RunConfig, IntegerFieldsAreCheckedAgainstTheirFlagRanges) {
  EXPECT_EQ(run_flag_range("steps").hi, 1'000'000'000);
  EXPECT_EQ(run_flag_range("batch").lo, 1);
  EXPECT_EQ(run_flag_range("seed").hi, INT64_MAX);
  RunConfig c;
  c.steps = 1'000'000'000;
  c.seed = INT64_MAX;
  c.log_every = 1;
  EXPECT_NO_THROW(c.validate());
  c.steps = 1'000'000'001;
  try {
    c.validate();
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("--steps must lie in [0, 1000000000], got 1000000001"), std::string::npos)
        << e.what();
  }
  c = RunConfig{};
  c.seq = (int64_t{1} << 30) + 1;
  EXPECT_THROW(c.validate(), InvalidArgument);
  EXPECT_THROW(run_config_from_json(R"({"eval_batches": 0})").validate(), InvalidArgument);
}

TEST(RunConfig, ResumeComparesDataAndMathSettings) {
  RunConfig a, b;
  b.steps = 999;  // allowed: extends the schedule
  b.lr = 1;
  EXPECT_TRUE(data_and_math_differences(a, b).empty());
  b.seq = 64;
  b.seed = 3;
  EXPECT_EQ(data_and_math_differences(a, b).size(), 2u);
}

}  // namespace
}  // namespace tsp::train
