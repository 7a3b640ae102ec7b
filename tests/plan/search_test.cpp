// Layout evaluation, the comparison set, the exhaustive enumeration and the rejection reasons.
#include "tsp/plan/search.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "plan_test_util.h"
#include "tsp/core/error.h"

namespace tsp::plan {
namespace {

using testing::bf16_work;
using testing::fp32_work;
using testing::hand_config;

std::vector<std::string> names(const std::vector<Layout>& layouts) {
  std::vector<std::string> out;
  for (const Layout& l : layouts) out.push_back(l.name());
  return out;
}

Cluster roomy() {
  Cluster c = cluster_preset("h100");
  c.memory_per_device_gib = 1;
  return c;
}

TEST(Search, ComparisonSetOfTheStudy) {
  EXPECT_EQ(names(comparison_layouts(8, cluster_preset("mi300x"))),
            (std::vector<std::string>{"tsp8", "tp8", "tp4xsp2", "tp2xsp4", "sp8", "dp8", "fsdp-sp8"}));
  EXPECT_EQ(names(comparison_layouts(1024, cluster_preset("mi300x"))),
            (std::vector<std::string>{"dp128xtsp8", "dp128xtp8", "dp128xtp4xsp2", "dp128xtp2xsp4",
                                      "dp128xsp8", "dp1024", "dp128xfsdp-sp8"}));
  EXPECT_EQ(names(comparison_layouts(2, cluster_preset("h100"))),
            (std::vector<std::string>{"tsp2", "tp2", "sp2", "dp2", "fsdp-sp2"}));
  EXPECT_THROW(comparison_layouts(12, cluster_preset("h100")), InvalidArgument);
}

TEST(Search, EnumeratesEveryFactorisation) {
  const std::vector<std::string> n = names(enumerate_layouts(8));
  // dp 1: 6 kinds of 8; dp 2: tsp4, tp4, tp2xsp2, sp4, fsdp-sp4; dp 4: four kinds of 2; dp 8.
  EXPECT_EQ(n.size(), 16u);
  for (const char* want : {"tsp8", "tp4xsp2", "tp2xsp4", "fsdp-sp8", "dp2xtp2xsp2", "dp4xtsp2", "dp8"}) {
    EXPECT_NE(std::find(n.begin(), n.end(), want), n.end()) << want;
  }
  // pp 2: dp 1 x 4-way groups (5 kinds), dp 2 x 2-way (4 kinds), dp 4 (pure dp).
  EXPECT_EQ(enumerate_layouts(8, {.max_pp = 2}).size(), 16u + 10u);
}

TEST(Search, RejectsIndivisibleLayoutsWithTheSize) {
  // H = 2: tsp4 and tp4 cannot split the heads; sp4 needs S % 8 == 0 (S = 8 is fine).
  const LayoutPlan p = plan_layout(hand_config(), fp32_work(1, 8), tsp_layout(4), roomy());
  EXPECT_FALSE(p.valid());
  EXPECT_EQ(p.rejection,
            "2 attention heads are not divisible by tsp=4; 2 key/value heads are not divisible by "
            "tsp=4");
  const LayoutPlan s = plan_layout(hand_config(), fp32_work(1, 12), sp_layout(4), roomy());
  EXPECT_EQ(s.rejection, "sequence length 12 not divisible by 2*sp=8 (zigzag split)");
  EXPECT_TRUE(plan_layout(hand_config(), fp32_work(1, 8), sp_layout(4), roomy()).valid());
}

TEST(Search, RejectsOutOfMemoryByHowMuch) {
  // TSP 2 of the hand config, fp32: state 1192 * (4 + 4 + 8) = 19072 B, activations 3792,
  // comm 4624 (memory_model_test), workspace (block backward) 128 + 128 + 16 + 128 +
  // max(4*16*4, 4*(8+24)/2*4) = 656: total 28144 B. A device of 28000 B is 144 B short.
  Cluster c = roomy();
  c.memory_per_device_gib = 28000.0 / (1 << 30);
  const LayoutPlan p = plan_layout(hand_config(), fp32_work(1, 8), tsp_layout(2), c);
  EXPECT_EQ(p.memory.total(), 28144);
  EXPECT_FALSE(p.fits);
  EXPECT_EQ(p.rejection.rfind("out of memory: needs 0.0 GiB per device, has 0.0 GiB", 0), 0u)
      << p.rejection;
  EXPECT_GT(p.time.tokens_per_s, 0);  // still predicted
}

TEST(Search, SevenBOnOneMi300xNode) {
  const model::ModelConfig c = model::preset("7b");
  const SearchResult r = search(c, bf16_work(1, 131072), 8, cluster_preset("mi300x"));
  ASSERT_FALSE(r.ranked.empty());
  for (size_t i = 1; i < r.ranked.size(); ++i) {
    EXPECT_GE(r.ranked[i - 1].time.tokens_per_s, r.ranked[i].time.tokens_per_s);
  }
  // A 131072-token sequence of a replicated 8.9B model does not fit in 192 GB.
  auto rejected = [&](const std::string& name) -> std::string {
    for (const LayoutPlan& p : r.rejected) {
      if (p.layout.name() == name) return p.rejection;
    }
    return "";
  };
  EXPECT_EQ(rejected("dp8").rfind("out of memory", 0), 0u) << rejected("dp8");
  EXPECT_EQ(rejected("sp8").rfind("out of memory", 0), 0u) << rejected("sp8");
  // TSP keeps every layer compute-bound (tsp8 and dp2xtsp4 tie; enumeration order keeps tsp8).
  EXPECT_EQ(r.ranked.front().layout.kind, LayoutKind::tsp);
  EXPECT_EQ(r.ranked.front().layout.name(), "tsp8");
}

}  // namespace
}  // namespace tsp::plan
