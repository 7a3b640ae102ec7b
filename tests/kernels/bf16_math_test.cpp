// bf16_math: the default rule on each kind of CPU, the override, and that gemm follows the choice.
#include "tsp/kernels/bf16_math.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>

#include "tsp/kernels/gemm.h"

namespace tsp::kernels {
namespace {

TEST(Bf16Math, DefaultRuleByCpu) {
  // Zen 4 / Zen 5: vdpbf16ps issues at the FMA instruction rate (twice the flops).
  EXPECT_EQ(default_bf16_math(/*amd=*/true, /*avx512_bf16=*/true, /*onednn_amx=*/false), Bf16Math::native);
  // Intel with AMX: oneDNN's bf16 GEMMs run on tiles.
  EXPECT_EQ(default_bf16_math(false, true, true), Bf16Math::native);
  // Intel AVX512-BF16 without AMX (this project's Xeon): vdpbf16ps at half the FMA rate.
  EXPECT_EQ(default_bf16_math(false, true, false), Bf16Math::fp32);
  // No bf16 dot products at all (Zen 3, AVX2 machines).
  EXPECT_EQ(default_bf16_math(true, false, false), Bf16Math::fp32);
  EXPECT_EQ(default_bf16_math(false, false, false), Bf16Math::fp32);
}

TEST(Bf16Math, ProcessChoiceFollowsTheOverrideAndGemmFollowsIt) {
  std::printf("bf16 math in this process: %s; gemm bf16 %s\n", bf16_math_description().c_str(),
              gemm_native_bf16() ? "native" : "widened to fp32");
  const char* env = std::getenv("TSP_BF16_MATH");
  if (env != nullptr && std::string(env) == "fp32") EXPECT_EQ(bf16_math(), Bf16Math::fp32);
  if (env != nullptr && std::string(env) == "native") EXPECT_EQ(bf16_math(), Bf16Math::native);
  if (bf16_math() == Bf16Math::fp32) EXPECT_FALSE(gemm_native_bf16());
}

}  // namespace
}  // namespace tsp::kernels
