// kernels::add_sum_of_squares: equal to a naive double sum within its rounding, the same bits
// whatever the thread count, the running sum carried, and non-f32 / strided inputs refused.
#include "tsp/kernels/sum_of_squares.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>

#include "test_util.h"
#include "tsp/core/error.h"

namespace tsp::kernels {
namespace {

TEST(SumOfSquares, MatchesNaiveSumAndIsThreadCountIndependent) {
  // 3 blocks of 2^14 and a ragged one.
  const Tensor t = testing::random_tensor({3 * (1 << 14) + 123}, DType::f32, 5);
  double naive = 0;
  for (int64_t i = 0; i < t.numel(); ++i) naive += static_cast<double>(t.data<float>()[i]) * t.data<float>()[i];
  // Double sums of n = 49275 non-negative terms in two orders: each within n 2^-53 of the exact.
  const double one = add_sum_of_squares(t, 0.0);
  EXPECT_NEAR(one, naive, 2 * 49275 * 0x1p-53 * naive);
  // The running sum is added to, not replaced (one more double rounding: 2^-53 relative).
  EXPECT_NEAR(add_sum_of_squares(t, 2.5), 2.5 + one, 4 * 0x1p-53 * (2.5 + one));
  const int threads = omp_get_max_threads();
  for (int n : {1, 2, 3}) {
    omp_set_num_threads(n);
    EXPECT_EQ(add_sum_of_squares(t, 0.0), one) << n << " threads";
  }
  omp_set_num_threads(threads);
}

TEST(SumOfSquares, RefusesWhatItCannotRead) {
  EXPECT_THROW(add_sum_of_squares(testing::random_tensor({8}, DType::bf16, 1), 0.0), DTypeError);
  const Tensor m = testing::random_tensor({4, 4}, DType::f32, 2);
  EXPECT_THROW(add_sum_of_squares(m.transpose(0, 1), 0.0), LayoutError);
}

}  // namespace
}  // namespace tsp::kernels
