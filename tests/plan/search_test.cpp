// Layout evaluation, the comparison set, the exhaustive enumeration and the rejection reasons.
#include "tsp/plan/search.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>

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

// The search's original definition, loop by loop over every candidate degree (O(devices)):
// the divisor-based enumeration must list the same layouts in the same order.
std::vector<std::string> brute_force_layouts(int64_t devices, int64_t max_pp) {
  std::vector<std::string> out;
  for (int64_t dp = 1; dp <= devices; ++dp) {
    if (devices % dp != 0) continue;
    for (int64_t pp = 1; pp <= std::min(max_pp, devices / dp); ++pp) {
      if ((devices / dp) % pp != 0) continue;
      const int64_t m = devices / dp / pp;
      if (m == 1) {
        out.push_back(dp_layout(dp, pp).name());
        continue;
      }
      out.push_back(tsp_layout(m, dp, pp).name());
      out.push_back(tp_layout(m, dp, pp).name());
      for (int64_t t = m / 2; t >= 2; --t)
        if (m % t == 0) out.push_back(tp_sp_layout(t, m / t, dp, pp).name());
      out.push_back(sp_layout(m, dp, pp).name());
      out.push_back(fsdp_sp_layout(m, dp, pp).name());
    }
  }
  return out;
}

TEST(Search, DivisorEnumerationMatchesTheExhaustiveLoops) {
  for (const int64_t n : {1, 2, 7, 12, 36, 97, 360, 1024}) {
    for (const int64_t max_pp : {1, 3, 8}) {
      EXPECT_EQ(names(enumerate_layouts(n, {.max_pp = max_pp})), brute_force_layouts(n, max_pp))
          << n << " devices, max_pp " << max_pp;
    }
  }
  for (const int64_t n : {1, 2, 36, 97, 1000, 999983}) {
    std::vector<int64_t> want;
    for (int64_t d = 1; d <= n; ++d)
      if (n % d == 0) want.push_back(d);
    EXPECT_EQ(divisors(n), want) << n;
  }
}

// A prime device count has two divisors: the search is instant, and the cap is named.
TEST(Search, DeviceCountIsBoundedAndPrimesAreCheap) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<Layout> prime = enumerate_layouts(1048573);  // the largest prime below 2^20
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 1.0);
  EXPECT_EQ(names(prime), (std::vector<std::string>{"tsp1048573", "tp1048573", "sp1048573", "fsdp-sp1048573",
                                                     "dp1048573"}));
  EXPECT_EQ(enumerate_layouts(kMaxSearchDevices).empty(), false);
  for (const int64_t bad : {kMaxSearchDevices + 1, int64_t{999999937}}) {
    try {
      enumerate_layouts(bad);
      ADD_FAILURE() << bad << " devices accepted";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("[1, 1048576]"), std::string::npos) << e.what();
    }
  }
  // A highly composite count (720720 has 240 divisors) is enumerated in full.
  const std::vector<std::string> hc = names(enumerate_layouts(720720));
  EXPECT_NE(std::find(hc.begin(), hc.end(), "dp90090xtp4xsp2"), hc.end());
  EXPECT_EQ(hc.back(), "dp720720");
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
