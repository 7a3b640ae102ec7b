// Layout names, parsing and the divisibility rules.
#include "tsp/plan/layout.h"

#include <gtest/gtest.h>

#include "plan_test_util.h"
#include "tsp/core/error.h"

namespace tsp::plan {
namespace {

TEST(Layout, ParsesAndNamesEveryKind) {
  EXPECT_EQ(parse_layout("tsp8"), tsp_layout(8));
  EXPECT_EQ(parse_layout("tp8"), tp_layout(8));
  EXPECT_EQ(parse_layout("tp4xsp2"), tp_sp_layout(4, 2));
  EXPECT_EQ(parse_layout("tp2sp4"), tp_sp_layout(2, 4));
  EXPECT_EQ(parse_layout("sp8"), sp_layout(8));
  EXPECT_EQ(parse_layout("dp8"), dp_layout(8));
  EXPECT_EQ(parse_layout("fsdp-sp8"), fsdp_sp_layout(8));
  EXPECT_EQ(parse_layout("DP128xTSP8"), tsp_layout(8, 128));
  EXPECT_EQ(parse_layout("dp2.pp2.tp4"), tp_layout(4, 2, 2));
  for (const Layout& l : {tsp_layout(8), tp_sp_layout(4, 2), fsdp_sp_layout(8, 2), dp_layout(8),
                          tsp_layout(8, 128), tp_layout(4, 2, 2), dp_layout(1), dp_layout(2, 2)}) {
    EXPECT_EQ(parse_layout(l.name()), l) << l.name();
  }
  EXPECT_EQ(tsp_layout(8, 128).name(), "dp128xtsp8");
  EXPECT_EQ(tp_sp_layout(4, 2).name(), "tp4xsp2");
  EXPECT_EQ(tp_sp_layout(4, 2).devices(), 8);
  EXPECT_EQ(tsp_layout(8, 128).devices(), 1024);
}

TEST(Layout, RejectsMalformedNames) {
  for (const char* bad : {"", "tsp", "foo8", "tsp8xtp2", "tp2xtp2", "tsp0", "fsdp-sp4xsp2", "tsp8x"}) {
    EXPECT_THROW(parse_layout(bad), InvalidArgument) << bad;
  }
}

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
