// The CPU features this binary was compiled for (TSP_MARCH) against the ones the running CPU has,
// so a binary built on an AVX-512 machine ends with a message on an AVX2-only host, not SIGILL.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace tsp {

// Instruction-set features the build target assumes (from the compiler's predefined macros), by
// their GCC __builtin_cpu_supports names: "avx2", "fma", "avx512f", ..., widest last.
std::vector<std::string> build_target_features();

// The subset of build_target_features() for which has_feature(name) is false.
std::vector<std::string> missing_cpu_features(const std::function<bool(const std::string&)>& has_feature);

// Throws tsp::Error naming the missing features and how to rebuild (-DTSP_MARCH=...) when the
// running CPU lacks any of them; called first by the tsp binary.
void check_cpu_runs_build_target();

}  // namespace tsp
