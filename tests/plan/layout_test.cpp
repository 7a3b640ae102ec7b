// The divisibility rules of every layout (names and parsing: tests/core/layout_spec_test.cpp).
#include "tsp/plan/layout.h"

#include <gtest/gtest.h>

#include "plan_test_util.h"
#include "tsp/core/error.h"

namespace tsp::plan {
namespace {

TEST(Layout, DivisibilityProblemsNameTheSize) {
  const model::ModelConfig c = testing::hand_config();  // H = H_kv = 2, F = 32, V = 16, L = 2
  const Workload w = testing::fp32_work(1, 12);
  const std::vector<std::string> p = divisibility_problems(c, w, tsp_layout(4));
  ASSERT_EQ(p.size(), 3u);
  EXPECT_EQ(p[0], "2 attention heads are not divisible by tsp=4");
  EXPECT_EQ(p[1], "2 key/value heads are not divisible by tsp=4");
  EXPECT_EQ(p[2], "sequence length 12 not divisible by 2*tsp=8 (zigzag split)");
  EXPECT_EQ(divisibility_problems(c, w, tp_layout(3)),
            (std::vector<std::string>{"2 attention heads are not divisible by tp=3",
                                      "2 key/value heads are not divisible by tp=3",
                                      "32 intermediate size is not divisible by tp=3",
                                      "16 vocabulary size is not divisible by tp=3"}));
  EXPECT_TRUE(divisibility_problems(c, w, sp_layout(3)).empty());  // 12 % 6 == 0
  EXPECT_EQ(divisibility_problems(c, w, dp_layout(1, 3)),
            (std::vector<std::string>{"2 layers are not divisible by pp=3"}));
}

}  // namespace
}  // namespace tsp::plan
