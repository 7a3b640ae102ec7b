// kernels::bias_add_forward / bias_backward against the double reference: column slices of a fused
// buffer (strided rows), widths with masked tails, bf16 storage, set and accumulate, and errors.
#include "tsp/kernels/bias.h"

#include <gtest/gtest.h>

#include "test_util.h"
#include "tsp/core/error.h"
#include "tsp/kernels/reference/pointwise_ref.h"

namespace tsp::kernels {
namespace {

namespace ref = reference;
using testing::random_tensor;

// fp32 add: one rounding, <= 2^-24 relative of |y + b|; |y + b| can cancel to ~0, so judged
// against a floor on the scale of the operands (N(0, 1)): 1e-7 relative with floor 1.
// bf16 y: the f32 sum rounded once to bf16 (2^-9 relative).
// Column sums of N rows in f32, in order: each partial sum rounds once, <= (N - 1) 2^-24 of the sum
// of |terms| <= N (N(0, 1) terms): 37 rows, 37 * 36 * 6e-8 < 1e-4 absolute.
TEST(Bias, AddMatchesReferenceOnFusedSlices) {
  for (int64_t n : {5, 16, 40, 300}) {
    SCOPED_TRACE(::testing::Message() << "n=" << n);
    const int64_t rows = 37;
    for (DType dt : {DType::f32, DType::bf16}) {
      Tensor fused = random_tensor({rows, 3 * n}, dt, 10 + n);
      const Tensor y = fused.slice(1, n, n);
      const Tensor bias = random_tensor({n}, dt, 11 + n);
      const Tensor before = Tensor::copy_of(fused, DType::f32, MemCategory::workspace);
      bias_add_forward(y, bias);
      const ref::Vec expected =
          ref::bias_add(ref::to_doubles(before.slice(1, n, n)), ref::to_doubles(bias), rows, n);
      EXPECT_CLOSE(y, ref::from_doubles(expected, {rows, n}), dt == DType::f32 ? 1e-7 : 4e-3, 1.0);
      // The columns outside the slice are untouched.
      EXPECT_CLOSE(fused.slice(1, 0, n), before.slice(1, 0, n), 0.0, 1.0);
      EXPECT_CLOSE(fused.slice(1, 2 * n, n), before.slice(1, 2 * n, n), 0.0, 1.0);
    }
  }
}

TEST(Bias, BackwardSumsColumnsSetOrAccumulated) {
  for (int64_t n : {5, 40, 300}) {
    SCOPED_TRACE(::testing::Message() << "n=" << n);
    const int64_t rows = 37;
    for (DType dt : {DType::f32, DType::bf16}) {
      const Tensor fused = random_tensor({rows, 2 * n}, dt, 20 + n);
      const Tensor dy = fused.slice(1, n, n);
      const ref::Vec sums = ref::bias_column_sums(ref::to_doubles(dy), rows, n);
      Tensor db = random_tensor({n}, DType::f32, 21 + n);
      const ref::Vec start = ref::to_doubles(db);
      bias_backward(dy, db, /*accumulate=*/true);
      ref::Vec acc(sums);
      for (size_t i = 0; i < acc.size(); ++i) acc[i] += start[i];
      EXPECT_CLOSE(db, ref::from_doubles(acc, {n}), 1e-4, 1.0);
      bias_backward(dy, db, /*accumulate=*/false);
      EXPECT_CLOSE(db, ref::from_doubles(sums, {n}), 1e-4, 1.0);
    }
  }
}

TEST(Bias, RejectsMismatchedOperands) {
  const Tensor y = random_tensor({4, 8}, DType::f32, 1);
  EXPECT_THROW(bias_add_forward(y, random_tensor({7}, DType::f32, 2)), ShapeError);
  EXPECT_THROW(bias_add_forward(y, random_tensor({8}, DType::i32, 2)), DTypeError);
  EXPECT_THROW(bias_add_forward(random_tensor({8}, DType::f32, 3), random_tensor({8}, DType::f32, 2)),
               ShapeError);
  EXPECT_THROW(bias_backward(y, Tensor::zeros({8}, DType::bf16, MemCategory::workspace), false),
               DTypeError);
  EXPECT_THROW(bias_backward(y, Tensor::zeros({9}, DType::f32, MemCategory::workspace), false),
               ShapeError);
  // A transposed (column-major) y has no unit inner stride.
  const Tensor square = random_tensor({8, 8}, DType::f32, 4);
  EXPECT_THROW(bias_add_forward(square.transpose(0, 1), random_tensor({8}, DType::f32, 5)), LayoutError);
}

}  // namespace
}  // namespace tsp::kernels
