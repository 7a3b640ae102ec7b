// IEEE binary16 (the f16 storage dtype of float16 checkpoints): widening checked on all 65536
// values against the definition, narrowing's round-to-nearest-even on every tie and its overflow
// and NaN handling.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "tsp/core/dtype.h"
#include "tsp/core/tensor.h"

namespace tsp {
namespace {

// The value of a binary16 bit pattern from the definition: (-1)^s 2^(e-15) (1 + m/1024), or
// 2^-14 (m/1024) for e = 0.
double f16_value(uint16_t h) {
  const int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
  const double sign = s ? -1.0 : 1.0;
  if (e == 31) return m ? std::nan("") : sign * INFINITY;
  if (e == 0) return sign * std::ldexp(m, -24);
  return sign * std::ldexp(1024 + m, e - 25);
}

TEST(F16, WideningIsExactForEveryValue) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = f16::to_float(static_cast<uint16_t>(h));
    const double want = f16_value(static_cast<uint16_t>(h));
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(f)) << std::hex << h;
    } else {
      ASSERT_EQ(static_cast<double>(f), want) << std::hex << h;
      ASSERT_EQ(std::signbit(f), (h & 0x8000) != 0) << std::hex << h;  // -0 stays -0
    }
  }
}

TEST(F16, NarrowingRoundsToNearestEven) {
  for (uint32_t h = 0; h < 0x7c00; ++h) {  // every finite non-negative value and its negative
    for (const uint32_t sign : {0u, 0x8000u}) {
      const uint16_t bits = static_cast<uint16_t>(h | sign);
      const float x = f16::to_float(bits);
      ASSERT_EQ(f16::round_from_float(x), bits) << std::hex << bits;  // values round trip
      if (h + 1 >= 0x7c00) continue;
      // The midpoint to the next value (exact in float) goes to the even one; a float step either
      // side goes to the nearer one.
      const uint16_t next = static_cast<uint16_t>((h + 1) | sign);
      const float y = f16::to_float(next);
      const float mid = (x + y) / 2;  // exact: x and y have at most 11 significant bits
      const uint16_t even = (h & 1) ? next : bits;
      ASSERT_EQ(f16::round_from_float(mid), even) << std::hex << bits;
      ASSERT_EQ(f16::round_from_float(std::nextafter(mid, x)), bits) << std::hex << bits;
      ASSERT_EQ(f16::round_from_float(std::nextafter(mid, y)), next) << std::hex << bits;
    }
  }
}

TEST(F16, OverflowUnderflowInfinityAndNan) {
  EXPECT_EQ(f16::round_from_float(65504.f), 0x7bff);
  EXPECT_EQ(f16::round_from_float(65519.996f), 0x7bff);  // below the midpoint to 2^16
  EXPECT_EQ(f16::round_from_float(65520.f), 0x7c00);     // the tie goes to even: infinity
  EXPECT_EQ(f16::round_from_float(1e10f), 0x7c00);
  EXPECT_EQ(f16::round_from_float(-INFINITY), 0xfc00);
  EXPECT_EQ(f16::round_from_float(0x1p-25f), 0x0000);              // half the smallest subnormal: even
  EXPECT_EQ(f16::round_from_float(std::nextafter(0x1p-25f, 1.f)), 0x0001);
  EXPECT_EQ(f16::round_from_float(0x1p-14f), 0x0400);              // smallest normal
  EXPECT_EQ(f16::round_from_float(-0.f), 0x8000);
  const uint16_t nan = f16::round_from_float(std::nanf(""));
  EXPECT_TRUE(std::isnan(f16::to_float(nan))) << std::hex << nan;
}

TEST(F16, TensorsConvertThroughCopy) {
  Tensor h = Tensor::empty({4}, DType::f16, MemCategory::workspace);
  EXPECT_EQ(h.nbytes(), 8);
  Tensor x = Tensor::empty({4}, DType::f32, MemCategory::workspace);
  const float values[] = {1.f, -2.5f, 0.1f, 70000.f};
  std::memcpy(x.raw(), values, sizeof values);
  h.copy_from(x);
  Tensor back = Tensor::copy_of(h, DType::f32, MemCategory::workspace);
  EXPECT_EQ(back.item_f32(0), 1.f);
  EXPECT_EQ(back.item_f32(1), -2.5f);
  EXPECT_EQ(back.item_f32(2), f16::to_float(f16::round_from_float(0.1f)));
  EXPECT_TRUE(std::isinf(back.item_f32(3)));
  EXPECT_EQ(dtype_name(DType::f16), "f16");
}

}  // namespace
}  // namespace tsp
