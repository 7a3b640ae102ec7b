// The peak loops shared by the kernel benchmarks and the trainer's MFU: the widths the build has,
// their flop counts, and that a measurement runs and returns a rate.
#include "tsp/kernels/peak.h"

#include <gtest/gtest.h>

#include <cmath>

#include "tsp/core/error.h"

namespace tsp::kernels {
namespace {

TEST(Peak, WidthsAreTheBuildsWidestFirst) {
  const std::vector<int> w = fma_widths();
  ASSERT_FALSE(w.empty());
  for (size_t i = 1; i < w.size(); ++i) EXPECT_GT(w[i - 1], w[i]);
#if defined(__AVX512F__)
  EXPECT_EQ(w.front(), 512);
  EXPECT_EQ(fma_isa_name(w.front()), "avx512");
#elif defined(__AVX2__) && defined(__FMA__)
  EXPECT_EQ(w.front(), 256);
  EXPECT_EQ(fma_isa_name(w.front()), "avx2");
#endif
  // Each iteration is one FMA (2 flops) per lane of every accumulator: a multiple of 2 x lanes.
  for (int bits : w) {
    const double lanes = bits == 32 ? 1 : bits / 32.0;
    const double per = fma_flops_per_iter(bits) / (2 * lanes);
    EXPECT_GT(per, 0);
    EXPECT_EQ(per, std::floor(per)) << bits;
  }
  EXPECT_THROW(fma_loop_seconds(1024, 1, nullptr), InvalidArgument);
}

TEST(Peak, MeasurementsReturnARate) {
  const PeakRuns quick{.warmup_iters = 1000, .iters = 20'000, .reps = 2};
  const FmaPeak p = measure_fma_peak(fma_widths().front(), quick);
  EXPECT_GT(p.gflops, 0);
  EXPECT_TRUE(std::isfinite(p.gflops));
  EXPECT_FALSE(p.what.empty());
  const MathPeak f32 = measure_math_peak(DType::f32, quick);
  EXPECT_EQ(f32.path, "fp32");
  EXPECT_EQ(f32.isa, fma_isa_name(fma_widths().front()));
  EXPECT_GT(f32.gflops_per_core, 0);
  EXPECT_NE(f32.describe().find("GFLOP/s/core fp32 " + f32.isa), std::string::npos) << f32.describe();
  if (has_dpbf16_loop()) {
    EXPECT_GT(measure_dpbf16_peak(quick), 0);
  } else {
    EXPECT_EQ(measure_dpbf16_peak(quick), 0);
  }
}

}  // namespace
}  // namespace tsp::kernels
