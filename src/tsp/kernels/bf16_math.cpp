// The bf16 math rule: the TSP_BF16_MATH override, else CPU vendor, AVX512-BF16 and oneDNN's AMX.
// See bf16_math.h; the measurements behind the rule are in docs/kernels.md ("bf16").
#include "tsp/kernels/bf16_math.h"

#include <cstdlib>
#include <string_view>

#include "tsp/core/check.h"
#include "tsp/kernels/gemm.h"

namespace tsp::kernels {

namespace {

struct Choice {
  Bf16Math math;
  std::string why;
};

bool cpu_is_amd() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_is("amd");
#else
  return false;
#endif
}

bool cpu_has_avx512_bf16() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

Choice choose() {
  if (const char* env = std::getenv("TSP_BF16_MATH"); env != nullptr && *env != '\0') {
    const std::string_view v(env);
    TSP_CHECK(v == "native" || v == "fp32", "TSP_BF16_MATH must be native or fp32, got '", v, "'");
    return {v == "native" ? Bf16Math::native : Bf16Math::fp32, std::string("TSP_BF16_MATH=") + env};
  }
  const bool amd = cpu_is_amd(), bf16 = cpu_has_avx512_bf16(), amx = gemm_onednn_has_amx();
  const Bf16Math m = default_bf16_math(amd, bf16, amx);
  std::string why = "default: ";
  if (amx) why += "oneDNN runs AMX tiles";
  else if (amd && bf16) why += "AMD with AVX512-BF16, vdpbf16ps at the FMA rate";
  else if (bf16) why += "AVX512-BF16 without AMX on a non-AMD CPU, vdpbf16ps at half the FMA rate";
  else why += "no bf16 dot-product instructions";
  return {m, why};
}

const Choice& chosen() {
  static const Choice c = choose();
  return c;
}

}  // namespace

Bf16Math default_bf16_math(bool amd, bool avx512_bf16, bool onednn_amx) {
  if (onednn_amx) return Bf16Math::native;
  return amd && avx512_bf16 ? Bf16Math::native : Bf16Math::fp32;
}

Bf16Math bf16_math() { return chosen().math; }

std::string bf16_math_description() {
  const Choice& c = chosen();
  return std::string(c.math == Bf16Math::native ? "native bf16 dot products" : "fp32 FMAs on widened bf16") +
         " (" + c.why + ")";
}

}  // namespace tsp::kernels
