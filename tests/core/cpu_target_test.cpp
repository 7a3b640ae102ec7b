// cpu_target: the build's assumed features match its predefined macros, a CPU lacking one of them
// is named, and the machine running the tests (which built them) passes the check.
#include "tsp/core/cpu_target.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "tsp/core/error.h"

namespace tsp {
namespace {

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

TEST(CpuTarget, FeaturesFollowTheCompilerTarget) {
  const std::vector<std::string> f = build_target_features();
#ifdef __AVX2__
  EXPECT_TRUE(contains(f, "avx2"));
#else
  EXPECT_FALSE(contains(f, "avx2"));
#endif
#ifdef __AVX512F__
  EXPECT_TRUE(contains(f, "avx512f"));
#else
  EXPECT_FALSE(contains(f, "avx512f"));
#endif
  std::string all;
  for (const std::string& s : f) all += s + " ";
  std::printf("build target features: %s\n", all.empty() ? "(baseline x86-64)" : all.c_str());
}

TEST(CpuTarget, AnAvx2OnlyHostIsToldWhatIsMissing) {
  // A host with AVX2 + FMA and nothing newer, as an AMD Zen 3 node in the same cluster.
  const auto zen3 = [](const std::string& name) { return name == "avx2" || name == "fma"; };
  const std::vector<std::string> missing = missing_cpu_features(zen3);
  for (const std::string& name : build_target_features())
    EXPECT_EQ(contains(missing, name), name != "avx2" && name != "fma") << name;
  const auto nothing = [](const std::string&) { return false; };
  EXPECT_EQ(missing_cpu_features(nothing), build_target_features());
}

TEST(CpuTarget, TheBuildMachineRunsItsOwnBuild) { EXPECT_NO_THROW(check_cpu_runs_build_target()); }

}  // namespace
}  // namespace tsp
