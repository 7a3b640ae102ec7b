// Tensor views, copies with dtype conversion, and shape errors.
#include "tsp/core/tensor.h"

#include <gtest/gtest.h>

#include <cmath>

#include "tsp/core/random.h"

namespace tsp {
namespace {

TEST(Tensor, ContiguousStridesAndViews) {
  Tensor t = Tensor::empty({2, 3, 4}, DType::f32, MemCategory::workspace);
  EXPECT_EQ(t.strides(), (Shape{12, 4, 1}));
  EXPECT_TRUE(t.is_contiguous());
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = static_cast<float>(i);
  Tensor s = t.slice(1, 1, 2);  // [2, 2, 4]
  EXPECT_EQ(s.shape(), (Shape{2, 2, 4}));
  EXPECT_FALSE(s.is_contiguous());
  EXPECT_EQ(s.item_f32(0), 4.f);
  EXPECT_EQ(s.item_f32(8), 16.f);
  Tensor tr = t.transpose(0, 2);  // [4, 3, 2]
  EXPECT_EQ(tr.item_f32(1), 12.f);
  Tensor sel = t.select(-1, 3);  // [2, 3]
  EXPECT_EQ(sel.shape(), (Shape{2, 3}));
  EXPECT_EQ(sel.item_f32(4), 19.f);
  Tensor v = t.view({6, 4});
  EXPECT_EQ(v.item_f32(23), 23.f);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw()) % kTensorAlignment, 0u);
}

TEST(Tensor, CopyConvertsDtypeAndLayout) {
  Tensor src = Tensor::empty({3, 5}, DType::f32, MemCategory::workspace);
  Rng rng(1);
  fill_normal(src, rng);
  Tensor dst = Tensor::empty({5, 3}, DType::bf16, MemCategory::workspace);
  dst.copy_from(src.transpose(0, 1));
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 3; ++j)
      EXPECT_EQ(dst.item_f32(i * 3 + j), round_to_bf16(src.item_f32(j * 5 + i)));
}

// fill() on a whole (contiguous) tensor and on a strided view, for every dtype: the view's
// elements change, the elements between them keep their values.
TEST(Tensor, FillWholeAndStridedForEveryDtype) {
  for (DType dt : {DType::f32, DType::bf16, DType::f16, DType::i32, DType::i64}) {
    Tensor t = Tensor::empty({4, 6}, dt, MemCategory::workspace);
    t.fill(3.f);
    for (int64_t i = 0; i < t.numel(); ++i) EXPECT_EQ(t.item_f32(i), 3.f) << dtype_name(dt);
    t.slice(1, 2, 3).fill(-2.f);  // columns 2..4 of every row
    for (int64_t r = 0; r < 4; ++r)
      for (int64_t c = 0; c < 6; ++c)
        EXPECT_EQ(t.item_f32(r * 6 + c), c >= 2 && c < 5 ? -2.f : 3.f) << dtype_name(dt);
    t.zero();
    for (int64_t i = 0; i < t.numel(); ++i) EXPECT_EQ(t.item_f32(i), 0.f) << dtype_name(dt);
  }
}

TEST(Tensor, Bf16RoundsToNearestEven) {
  EXPECT_EQ(bf16(1.0f).bits, 0x3f80);
  // 1 + 2^-8 is exactly halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
  EXPECT_EQ(round_to_bf16(1.0f + 1.0f / 256), 1.0f);
  EXPECT_EQ(round_to_bf16(1.0f + 3.0f / 256), 1.0f + 4.0f / 256);
  EXPECT_TRUE(std::isnan(round_to_bf16(std::nanf(""))));
}

TEST(Tensor, ErrorsNameShapes) {
  Tensor t = Tensor::empty({2, 3}, DType::f32, MemCategory::workspace);
  try {
    (void)t.view({4, 2});
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("[4, 2]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[2, 3]"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)t.slice(0, 1, 2), ShapeError);
  EXPECT_THROW((void)t.data<bf16>(), DTypeError);
  EXPECT_THROW((void)t.transpose(0, 1).view({6}), LayoutError);
  Tensor u = Tensor::empty({3, 2}, DType::f32, MemCategory::workspace);
  EXPECT_THROW(u.copy_from(t), ShapeError);
}

TEST(Check, ComparisonMessageShowsOperands) {
  const int s = 1000, d = 3;
  try {
    TSP_CHECK_EQ(s % (2 * d), 0, "sequence length must be divisible by 2*D");
    FAIL();
  } catch (const InvalidArgument& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("s % (2 * d) = 4"), std::string::npos) << m;
    EXPECT_NE(m.find("divisible by 2*D"), std::string::npos) << m;
  }
}

}  // namespace
}  // namespace tsp

namespace tsp {
namespace {

TEST(Tensor, OverflowingSizesAreRejectedBeforeAllocating) {
  EXPECT_THROW((void)Tensor::empty({int64_t{1} << 61}, DType::i64, MemCategory::workspace), OutOfMemory);
  EXPECT_THROW((void)Tensor::empty({int64_t{1} << 40, int64_t{1} << 40}, DType::f32, MemCategory::workspace),
               ShapeError);
  EXPECT_THROW((void)MemoryLedger::process().allocate(SIZE_MAX - 10, MemCategory::workspace), OutOfMemory);
}

TEST(Tensor, EmptyViewsAreContiguous) {
  Tensor t = Tensor::empty({2, 4}, DType::f32, MemCategory::workspace);
  Tensor e = t.slice(1, 0, 0);
  EXPECT_TRUE(e.is_contiguous());
  EXPECT_EQ(e.view({0}).numel(), 0);
}

}  // namespace
}  // namespace tsp
