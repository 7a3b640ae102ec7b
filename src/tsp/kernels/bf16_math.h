// Where bf16 products run: on bf16 dot-product hardware (vdpbf16ps, AMX tiles through oneDNN) or on
// fp32 FMAs after widening the bf16 operands (exact), chosen once per process by a documented rule.
#pragma once

#include <string>

namespace tsp::kernels {

enum class Bf16Math { native, fp32 };

// TSP_BF16_MATH=native|fp32 overrides (anything else is an error). Default: native where bf16 dot
// products are faster than fp32 FMAs: oneDNN runs AMX (avx512_core_amx), or the CPU is an AMD one
// with AVX512-BF16 (Zen 4/5: vdpbf16ps at the FMA instruction rate, twice the flops); fp32
// elsewhere, including Intel AVX512-BF16 without AMX (vdpbf16ps measured at half the fp32 FMA
// rate: docs/kernels.md). native also needs oneDNN to run bf16 matmul natively; without it the
// GEMMs widen to fp32 whatever this says. Read once; deterministic per machine, never by timing.
Bf16Math bf16_math();

// One line for logs and benchmark headers: the choice and why ("fp32 FMAs (default: Intel
// AVX512-BF16 without AMX, vdpbf16ps at half the FMA rate)", "native (TSP_BF16_MATH=native)", ...).
std::string bf16_math_description();

// The default rule on its inputs, for tests: the CPU's vendor, whether it has AVX512-BF16, and
// whether oneDNN's effective ISA has AMX.
Bf16Math default_bf16_math(bool amd, bool avx512_bf16, bool onednn_amx);

}  // namespace tsp::kernels
