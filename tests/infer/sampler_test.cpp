// Sampler: greedy and temperature -> 0, top-k / top-p never leave their support (statistical runs
// with fixed seeds) and hit every allowed token with the right frequency, seeds, validation.
#include "tsp/infer/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <vector>

#include "tsp/core/error.h"
#include "tsp/core/random.h"

namespace tsp::infer {
namespace {

std::vector<float> random_logits(int64_t n, uint64_t seed, float stddev = 1.f) {
  Rng rng(seed);
  std::vector<float> l(static_cast<size_t>(n));
  for (auto& x : l) x = stddev * rng.normal();
  return l;
}

// Ids sorted by decreasing logit (ties: lower id first).
std::vector<int32_t> ranking(const std::vector<float>& l) {
  std::vector<int32_t> ids(l.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::stable_sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return l[a] > l[b]; });
  return ids;
}

// Probabilities at temperature t restricted to `kept` (renormalised), by the definition.
std::vector<double> probs(const std::vector<float>& l, const std::vector<int32_t>& kept, double t) {
  std::vector<double> p(l.size(), 0.0);
  const double m = *std::max_element(l.begin(), l.end());
  double s = 0;
  for (const int32_t i : kept) s += p[i] = std::exp((l[i] - m) / t);
  for (double& x : p) x /= s;
  return p;
}

// Draws n samples; checks that none falls outside `allowed`, every allowed id is drawn, and each
// frequency is within 5 standard deviations of its probability.
void expect_distribution(Sampler& sampler, const std::vector<float>& l,
                         const std::vector<int32_t>& allowed, const std::vector<double>& p, int n) {
  std::vector<int> count(l.size(), 0);
  for (int i = 0; i < n; ++i) ++count[static_cast<size_t>(sampler.sample(l))];
  const std::set<int32_t> in(allowed.begin(), allowed.end());
  for (size_t id = 0; id < l.size(); ++id) {
    if (!in.count(static_cast<int32_t>(id))) {
      EXPECT_EQ(count[id], 0) << "id " << id << " is outside the allowed set";
      continue;
    }
    EXPECT_GT(count[id], 0) << "allowed id " << id << " never drawn";
    const double sd = std::sqrt(p[id] * (1 - p[id]) / n);
    EXPECT_NEAR(static_cast<double>(count[id]) / n, p[id], 5 * sd + 1e-9) << "id " << id;
  }
}

TEST(Sampler, GreedyAndZeroTemperatureTakeTheArgmax) {
  Sampler greedy({.greedy = true, .temperature = 5.f, .top_k = 3, .seed = 1});
  Sampler zero({.temperature = 0.f});
  for (uint64_t s = 0; s < 50; ++s) {
    const std::vector<float> l = random_logits(100, s);
    const int32_t best = ranking(l)[0];
    EXPECT_EQ(argmax(l), best);
    EXPECT_EQ(greedy.sample(l), best);
    EXPECT_EQ(zero.sample(l), best);
  }
  EXPECT_EQ(argmax(std::vector<float>{1.f, 3.f, 3.f}), 1);  // first of tied maxima
}

TEST(Sampler, TemperatureTowardsZeroEqualsGreedy) {
  Sampler cold({.temperature = 1e-3f, .seed = 3});
  for (uint64_t s = 0; s < 200; ++s) {
    const std::vector<float> l = random_logits(64, 100 + s);
    EXPECT_EQ(cold.sample(l), argmax(l)) << s;
  }
}

TEST(Sampler, PlainTemperatureSamplingFollowsSoftmax) {
  const std::vector<float> l = random_logits(12, 7, 0.5f);
  std::vector<int32_t> all(l.size());
  std::iota(all.begin(), all.end(), 0);
  Sampler s({.temperature = 1.5f, .seed = 4});
  expect_distribution(s, l, all, probs(l, all, 1.5), 40000);
}

TEST(Sampler, TopKNeverLeavesTheKMostLikely) {
  const std::vector<float> l = random_logits(50, 8, 0.3f);  // flat: many ids would be drawn
  const std::vector<int32_t> r = ranking(l);
  const std::vector<int32_t> top5(r.begin(), r.begin() + 5);
  Sampler s({.temperature = 1.f, .top_k = 5, .seed = 5});
  expect_distribution(s, l, top5, probs(l, top5, 1.0), 40000);
}

TEST(Sampler, TopPNeverLeavesTheNucleus) {
  const std::vector<float> l = random_logits(40, 9, 1.f);
  const std::vector<int32_t> r = ranking(l);
  const double t = 0.8, top_p = 0.6;
  const std::vector<double> full = probs(l, r, t);
  std::vector<int32_t> nucleus;
  double cum = 0;
  for (const int32_t id : r) {
    nucleus.push_back(id);
    cum += full[id];
    if (cum >= top_p) break;
  }
  ASSERT_GT(nucleus.size(), 2u);
  ASSERT_LT(nucleus.size(), r.size() / 2);
  Sampler s({.temperature = static_cast<float>(t), .top_p = static_cast<float>(top_p), .seed = 6});
  expect_distribution(s, l, nucleus, probs(l, nucleus, t), 40000);
}

TEST(Sampler, TopKThenTopP) {
  const std::vector<float> l = random_logits(40, 10, 0.4f);
  const std::vector<int32_t> r = ranking(l);
  const std::vector<int32_t> top8(r.begin(), r.begin() + 8);
  const std::vector<double> p8 = probs(l, top8, 1.0);
  std::vector<int32_t> nucleus;
  double cum = 0;
  for (const int32_t id : top8) {
    nucleus.push_back(id);
    cum += p8[id];
    if (cum >= 0.5) break;
  }
  Sampler s({.temperature = 1.f, .top_k = 8, .top_p = 0.5f, .seed = 7});
  expect_distribution(s, l, nucleus, probs(l, nucleus, 1.0), 20000);
}

TEST(Sampler, SameSeedSameTokensAndSequencesHaveTheirOwnStreams) {
  const std::vector<float> l = random_logits(30, 11, 0.2f);
  const SamplingOptions o{.temperature = 1.f, .top_p = 0.9f, .seed = 42};
  Sampler a(o, 2), b(o, 2), c({.temperature = 1.f, .top_p = 0.9f, .seed = 43}, 2);
  std::vector<int32_t> sa, sb, sc, a1;
  for (int i = 0; i < 200; ++i) {
    sa.push_back(a.sample(l, 0));
    a1.push_back(a.sample(l, 1));  // interleaving sequence 1 does not disturb sequence 0
    sb.push_back(b.sample(l, 0));
    sc.push_back(c.sample(l, 0));
  }
  EXPECT_EQ(sa, sb);
  EXPECT_NE(sa, sc);
  EXPECT_NE(sa, a1);
}

TEST(Sampler, InvalidOptionsAndLogitsAreRefused) {
  auto msg = [](const SamplingOptions& o) {
    try {
      Sampler s(o);
    } catch (const InvalidArgument& e) {
      return std::string(e.what());
    }
    return std::string("no exception");
  };
  EXPECT_NE(msg({.temperature = -1.f}).find("temperature must be finite and >= 0"), std::string::npos);
  EXPECT_NE(msg({.temperature = NAN}).find("temperature"), std::string::npos);
  EXPECT_NE(msg({.top_k = -2}).find("top-k must be >= 0"), std::string::npos);
  EXPECT_NE(msg({.top_p = 0.f}).find("top-p must be in (0, 1]"), std::string::npos);
  EXPECT_NE(msg({.top_p = 1.5f}).find("got 1.5"), std::string::npos);
  Sampler s({.seed = 1});
  EXPECT_THROW(s.sample(std::vector<float>{0.f, NAN}), InvalidArgument);
  EXPECT_THROW(s.sample(std::vector<float>{}), InvalidArgument);
  EXPECT_THROW(s.sample(std::vector<float>{-INFINITY, -INFINITY}), InvalidArgument);
  EXPECT_EQ(s.sample(std::vector<float>{-INFINITY, 0.f, -INFINITY}), 1);
  EXPECT_THROW(s.sample(std::vector<float>{0.f}, 1), InvalidArgument);  // one stream only
}

}  // namespace
}  // namespace tsp::infer
