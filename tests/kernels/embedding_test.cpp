// kernels::embedding_forward/backward against the reference: vocabulary-shard offsets, skip vs
// strict out-of-range handling, repeated ids in the scatter-add, bf16, errors.
#include "tsp/kernels/embedding.h"

#include <gtest/gtest.h>

#include "kernels/finite_difference.h"
#include "fp_bounds.h"
#include "test_util.h"
#include "tsp/kernels/reference/pointwise_ref.h"

namespace tsp::kernels {
namespace {

namespace ref = reference;
using testing::random_tensor;

Tensor ids_tensor(const std::vector<int64_t>& v, DType dt) {
  Tensor t = Tensor::empty({static_cast<int64_t>(v.size())}, dt, MemCategory::workspace);
  for (size_t i = 0; i < v.size(); ++i) {
    if (dt == DType::i32) t.data<int32_t>()[i] = static_cast<int32_t>(v[i]);
    else t.data<int64_t>()[i] = v[i];
  }
  return t;
}

std::vector<int64_t> random_ids(int64_t n, int64_t lo, int64_t hi, uint64_t seed) {
  Rng rng(seed);
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (auto& id : v) id = lo + static_cast<int64_t>(rng.below(static_cast<uint64_t>(hi - lo)));
  return v;
}

// The forward is a copy: exact (also f32 -> bf16, which is one rounding like from_doubles).
TEST(Embedding, ForwardMatchesReferenceExactly) {
  const int64_t rows = 101, h = 40, n = 37;
  for (DType id_t : {DType::i32, DType::i64}) {
    for (DType tab_t : {DType::f32, DType::bf16}) {
      for (DType out_t : {DType::f32, DType::bf16}) {
        Tensor table = random_tensor({rows, h}, tab_t, 1);
        const std::vector<int64_t> ids = random_ids(n, 0, rows, 2);
        Tensor out = Tensor::empty({n, h}, out_t, MemCategory::workspace);
        embedding_forward(ids_tensor(ids, id_t), table, out);
        const ref::Vec expected = ref::embedding_forward(ids, ref::to_doubles(table), rows, h, 0);
        EXPECT_CLOSE(out, ref::from_doubles(expected, {n, h}, out_t), 0.0, 1e-6);
      }
    }
  }
}

TEST(Embedding, VocabShardOffsetSkipsForeignIds) {
  const int64_t rows = 30, h = 24, n = 37, offset = 50;
  Tensor table = random_tensor({rows, h}, DType::f32, 3);
  const std::vector<int64_t> ids = random_ids(n, 0, 101, 4);
  Tensor out = random_tensor({n, h}, DType::f32, 5);  // garbage to be overwritten
  const EmbeddingOptions opt{.row_offset = offset, .out_of_range = OutOfRangeIds::skip};
  embedding_forward(ids_tensor(ids, DType::i64), table, out, opt);
  EXPECT_CLOSE(out, ref::from_doubles(ref::embedding_forward(ids, ref::to_doubles(table), rows, h, offset), {n, h}),
               0.0, 1e-6);
  // Backward: only local ids scatter; repeated ids add up; accumulates onto existing values.
  Tensor dout = random_tensor({n, h}, DType::f32, 6);
  Tensor dtable = random_tensor({rows, h}, DType::f32, 7);
  ref::Vec expected = ref::to_doubles(dtable);
  ref::embedding_backward(ids, ref::to_doubles(dout), rows, h, offset, expected);
  // Magnitude of each element's summed terms: |dtable| + sum of |dout| over its tokens.
  ref::Vec mag = ref::to_doubles(testing::abs_of(dtable));
  ref::embedding_backward(ids, ref::to_doubles(testing::abs_of(dout)), rows, h, offset, mag);
  embedding_backward(ids_tensor(ids, DType::i32), dout, dtable, opt);
  // fp32 sums of at most n + 1 terms (any order): within gamma_{n+1} of the magnitude of the terms
  // (an element that cancels to ~0 is judged on that scale), plus the reference's f32 rounding.
  EXPECT_TERMS_CLOSE(dtable, ref::from_doubles(expected, {rows, h}), ref::from_doubles(mag, {rows, h}),
                     testing::gamma_n(n + 1), testing::kUnitF32);
}

TEST(Embedding, RepeatedIdsScatterAddAndMatchFiniteDifferences) {
  const int64_t rows = 11, h = 24, n = 37;
  std::vector<int64_t> ids = random_ids(n, 0, rows, 8);  // 37 ids over 11 rows: many repeats
  Tensor dout = random_tensor({n, h}, DType::bf16, 9);
  Tensor dtable = Tensor::zeros({rows, h}, DType::f32, MemCategory::workspace);
  embedding_backward(ids_tensor(ids, DType::i64), dout, dtable);
  ref::Vec expected(static_cast<size_t>(rows * h), 0.0), mag(static_cast<size_t>(rows * h), 0.0);
  ref::embedding_backward(ids, ref::to_doubles(dout), rows, h, 0, expected);
  ref::embedding_backward(ids, ref::to_doubles(testing::abs_of(dout)), rows, h, 0, mag);
  // As above: bf16 dout values are exact in fp32; sums of <= n terms.
  EXPECT_TERMS_CLOSE(dtable, ref::from_doubles(expected, {rows, h}), ref::from_doubles(mag, {rows, h}),
                     testing::gamma_n(n), testing::kUnitF32);
  // The reference backward is the gradient of sum(dout * embedding(table)).
  const ref::Vec d = ref::to_doubles(dout);
  auto loss = [&](const ref::Vec& t) { return testing::dot(d, ref::embedding_forward(ids, t, rows, h, 0)); };
  const ref::Vec table0 = ref::to_doubles(random_tensor({rows, h}, DType::f32, 10));
  EXPECT_LT(testing::max_rel_diff(expected, testing::numeric_gradient(loss, table0), testing::kFdFloor), testing::kFdTol);
}

TEST(Embedding, StrictOutOfRangeIdNamesIdAndRange) {
  const int64_t rows = 30, h = 24;
  Tensor table = random_tensor({rows, h}, DType::f32, 11);
  Tensor out = Tensor::zeros({3, h}, DType::f32, MemCategory::workspace);
  const EmbeddingOptions strict{.row_offset = 50};
  try {
    embedding_forward(ids_tensor({55, 79, 80}, DType::i32), table, out, strict);
    FAIL() << "expected InvalidArgument";
  } catch (const InvalidArgument& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("id 80"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[50, 80)"), std::string::npos) << msg;
  }
  // Nothing was written before the error.
  EXPECT_EQ(out.item_f32(0), 0.f);
  EXPECT_THROW(embedding_forward(ids_tensor({49}, DType::i64), table, out.slice(0, 0, 1), strict),
               InvalidArgument);
  Tensor dtable = Tensor::zeros({rows, h}, DType::f32, MemCategory::workspace);
  EXPECT_THROW(embedding_backward(ids_tensor({-1}, DType::i64), out.slice(0, 0, 1), dtable, strict),
               InvalidArgument);
}

TEST(Embedding, BadInputsThrowTypedErrors) {
  Tensor table = random_tensor({30, 24}, DType::f32, 12);
  Tensor ids = ids_tensor({1, 2, 3}, DType::i32);
  try {
    embedding_forward(ids, table, Tensor::empty({3, 40}, DType::f32, MemCategory::workspace));
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("f32[3, 40]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("f32[30, 24]"), std::string::npos) << e.what();
  }
  Tensor out = Tensor::empty({3, 24}, DType::f32, MemCategory::workspace);
  EXPECT_THROW(embedding_forward(Tensor::zeros({3}, DType::f32, MemCategory::workspace), table, out),
               DTypeError);
  EXPECT_THROW(embedding_backward(ids, out, Tensor::zeros({30, 24}, DType::bf16, MemCategory::workspace)),
               DTypeError);
  EXPECT_THROW(embedding_forward(ids, random_tensor({24, 30}, DType::f32, 1).transpose(0, 1), out),
               LayoutError);
}

}  // namespace
}  // namespace tsp::kernels
