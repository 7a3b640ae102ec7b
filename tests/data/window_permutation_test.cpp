// WindowPermutation: a bijection of [0, n) for every n, a pure function of the rng's keys, and
// as scattered as a uniform random permutation on the statistics a shuffle is used for.
#include "tsp/data/window_permutation.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <vector>

#include "tsp/core/error.h"

namespace tsp::data {
namespace {

// Every value of [0, n) is hit exactly once.
bool is_bijection(const WindowPermutation& p) {
  std::vector<char> hit(static_cast<size_t>(p.size()), 0);
  for (int64_t i = 0; i < p.size(); ++i) {
    const int64_t v = p(i);
    if (v < 0 || v >= p.size() || hit[static_cast<size_t>(v)]) return false;
    hit[static_cast<size_t>(v)] = 1;
  }
  return true;
}

TEST(WindowPermutation, IsABijectionForEverySize) {
  for (int64_t n = 0; n <= 1100; ++n) {
    Rng rng(7, static_cast<uint64_t>(n));
    ASSERT_TRUE(is_bijection(WindowPermutation(n, rng))) << "n = " << n;
  }
  // Sizes at and around the domain's powers of four (cycle walking over up to 3/4 of the domain).
  for (int64_t n : {int64_t{1} << 20, (int64_t{1} << 20) + 1, (int64_t{1} << 22) - 1, int64_t{3'000'017}}) {
    Rng rng(11, 0);
    EXPECT_TRUE(is_bijection(WindowPermutation(n, rng))) << "n = " << n;
  }
  EXPECT_TRUE(is_bijection(WindowPermutation::identity(5)));
  EXPECT_EQ(WindowPermutation::identity(5)(3), 3);
}

TEST(WindowPermutation, PureFunctionOfTheKeys) {
  Rng a(3, 1), b(3, 1), c(4, 1);
  const WindowPermutation pa(100000, a), pb(100000, b), pc(100000, c);
  int differ = 0;
  for (int64_t i = 0; i < 100000; ++i) {
    ASSERT_EQ(pa(i), pb(i));
    differ += pa(i) != pc(i);
  }
  EXPECT_GT(differ, 99000);  // another seed: another order (a uniform pair agrees on ~1 point)
}

// For a uniform random permutation of n: about one fixed point (Poisson(1)), and a mean
// displacement E|p(i) - i| = (n^2 - 1) / (3n), whose sample mean over n points has a standard
// deviation of about n / (3 sqrt(2n)) (0.2% of the mean at n = 10^5): 5% is far outside chance.
TEST(WindowPermutation, ScattersLikeAUniformShuffle) {
  const int64_t n = 100000;
  Rng rng(1234, 0);
  const WindowPermutation p(n, rng);
  int64_t fixed = 0;
  double displacement = 0;
  for (int64_t i = 0; i < n; ++i) {
    fixed += p(i) == i;
    displacement += std::abs(static_cast<double>(p(i) - i));
  }
  EXPECT_LE(fixed, 10);  // P(Poisson(1) > 10) < 1e-8
  const double expect = (static_cast<double>(n) * n - 1) / (3.0 * n);
  EXPECT_NEAR(displacement / n, expect, 0.05 * expect);
  // Neighbours do not stay neighbours: consecutive positions land far apart.
  int64_t adjacent = 0;
  for (int64_t i = 0; i + 1 < n; ++i) adjacent += std::abs(p(i + 1) - p(i)) == 1;
  EXPECT_LE(adjacent, 20);  // a uniform shuffle: about 2 of n - 1 pairs
}

TEST(WindowPermutation, OutOfRangeIndexIsRefused) {
  Rng rng(1, 0);
  const WindowPermutation p(10, rng);
  EXPECT_THROW(p(10), InvalidArgument);
  EXPECT_THROW(p(-1), InvalidArgument);
}

}  // namespace
}  // namespace tsp::data
