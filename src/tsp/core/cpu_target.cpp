// Build-target features from predefined macros, checked with GCC's __builtin_cpu_supports.
// Compiled like everything else: nothing here is vectorisable, so it runs on any x86-64 CPU.
#include "tsp/core/cpu_target.h"

#include "tsp/core/check.h"

namespace tsp {

std::vector<std::string> build_target_features() {
  std::vector<std::string> f;
#ifdef __AVX2__
  f.push_back("avx2");
#endif
#ifdef __FMA__
  f.push_back("fma");
#endif
#ifdef __AVX512F__
  f.push_back("avx512f");
#endif
#ifdef __AVX512BW__
  f.push_back("avx512bw");
#endif
#ifdef __AVX512VL__
  f.push_back("avx512vl");
#endif
#ifdef __AVX512DQ__
  f.push_back("avx512dq");
#endif
#ifdef __AVX512BF16__
  f.push_back("avx512bf16");
#endif
  return f;
}

std::vector<std::string> missing_cpu_features(const std::function<bool(const std::string&)>& has_feature) {
  std::vector<std::string> missing;
  for (const std::string& name : build_target_features())
    if (!has_feature(name)) missing.push_back(name);
  return missing;
}

namespace {
// __builtin_cpu_supports takes a string literal only, hence the table.
bool cpu_supports(const std::string& name) {
  __builtin_cpu_init();
  if (name == "avx2") return __builtin_cpu_supports("avx2");
  if (name == "fma") return __builtin_cpu_supports("fma");
  if (name == "avx512f") return __builtin_cpu_supports("avx512f");
  if (name == "avx512bw") return __builtin_cpu_supports("avx512bw");
  if (name == "avx512vl") return __builtin_cpu_supports("avx512vl");
  if (name == "avx512dq") return __builtin_cpu_supports("avx512dq");
  if (name == "avx512bf16") return __builtin_cpu_supports("avx512bf16");
  return false;
}
}  // namespace

void check_cpu_runs_build_target() {
  const std::vector<std::string> missing = missing_cpu_features(cpu_supports);
  if (missing.empty()) return;
  std::string names;
  for (const std::string& m : missing) names += (names.empty() ? "" : ", ") + m;
  TSP_THROW(Error, "this tsp binary was compiled for a CPU with ", names,
            " (cmake -DTSP_MARCH, default native: the build machine's CPU), and this CPU lacks them. "
            "Build on this machine, or build one binary for every host with the oldest CPU's "
            "target, e.g. cmake -DTSP_MARCH=x86-64-v3 (AVX2 + FMA) or x86-64-v4 (AVX-512); see "
            "docs/kernels.md, \"Vector width\"");
}

}  // namespace tsp
