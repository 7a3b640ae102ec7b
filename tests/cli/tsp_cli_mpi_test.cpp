// `tsp train --layout tsp` and `tsp bench` under mpirun, run as a user would (the `tsp` binary
// under TSP_MPIEXEC as a subprocess). Registered by tests/cli/CMakeLists.txt as the ctest tests
// tsp_train_layout_tsp.np2 and tsp_bench_layouts.np2 (label "mpi"); each uses a fresh work
// directory under the build tree, removed when the test passes.
//
// The numbers the runs print are compared as numbers, with the rounding-error bound derived from
// the arithmetic (tests/fp_bounds.h), never as text: another CPU (another oneDNN kernel, another
// summation order) may change the sixth decimal (issue #12: 5.360978 vs 5.360977 on a Zen 5).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fp_bounds.h"
#include "scratch_dir.h"
#include "tsp/model/model_config.h"

namespace tsp::cli {
namespace {

namespace fs = std::filesystem;

struct Result {
  int rc = -1;
  std::string out;  // stdout and stderr together (as the CMake scripts these tests replace saw them)
};

// A fresh directory under the build tree, removed by the test when it passes.
fs::path fresh_work_dir(const std::string& name) {
  const fs::path dir = fs::path(TSP_CLI_WORK_ROOT) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// Runs `command` through the shell with a hard time limit (no hang), output captured in `dir`.
Result run(const fs::path& dir, const std::string& command, int seconds = 120) {
  const fs::path out = dir / "output.txt";
  const std::string cmd = "OMP_NUM_THREADS=1 timeout -k 5 " + std::to_string(seconds) + " " + command + " > '" +
                          out.string() + "' 2>&1";
  const int status = std::system(cmd.c_str());
  Result r;
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = testing::read_bytes(out);
  return r;
}

std::string tsp() { return std::string("'") + TSP_BINARY + "'"; }
std::string mpirun(int np) {
  return std::string("'") + TSP_MPIEXEC + "' " + TSP_MPIEXEC_NP_FLAG + " " + std::to_string(np) + " --oversubscribe ";
}

// The number in group 1 of the first (or last) match of `re` in `text`; NaN when none.
double number_after(const std::string& text, const std::string& re, bool last = false) {
  double value = NAN;
  const std::regex r(re);
  for (auto it = std::sregex_iterator(text.begin(), text.end(), r); it != std::sregex_iterator(); ++it) {
    value = std::stod((*it)[1].str());
    if (!last) break;
  }
  return value;
}

// --- tsp train --layout tsp ----------------------------------------------------------------------

// 1. mpirun -np 2 tsp train --layout tsp --tsp 2 trains 4 steps of the tiny preset, prints the
//    progress lines with bytes sent and comm wait, the validation, the per-rank memory table, and
//    writes a checkpoint; 2. single-rank `tsp eval` of that checkpoint reproduces the validation
//    loss the distributed run printed; 3. wrong degrees or sizes fail fast with a clear message.
TEST(TspMpiCli, TrainLayoutTsp) {
  const fs::path work = fresh_work_dir("mpi_train_work");
  const std::string common = " train --preset tiny --steps 4 --batch 4 --seq 32 --warmup 1 --eval-batches 2";
  const std::string ckpt = (work / "ckpt").string();
  Result r = run(work, mpirun(2) + tsp() + common + " --layout tsp --tsp 2 --checkpoint-dir '" + ckpt +
                           "' --metrics '" + (work / "m.jsonl").string() + "'");
  ASSERT_EQ(r.rc, 0) << "distributed training failed:\n" << r.out;
  for (const char* needle : {"layout: dp=1 x pp=1 x sp=1 x tp=1 x tsp=2", "step 4/4 | loss", "| sent ", "comm wait",
                             "per-rank peak memory", "checkpoint: step 4 -> "})
    EXPECT_NE(r.out.find(needle), std::string::npos) << "'" << needle << "' missing from the output:\n" << r.out;
  const double dist_val = number_after(r.out, R"(val step 4 \| val_loss (\d+\.\d+))");
  ASSERT_FALSE(std::isnan(dist_val)) << "no final validation line:\n" << r.out;

  const Result e = run(work, tsp() + " eval --checkpoint '" + ckpt + "'", 60);
  ASSERT_EQ(e.rc, 0) << e.out;
  const double eval_val = number_after(e.out, R"(val_loss (\d+\.\d+))");
  ASSERT_FALSE(std::isnan(eval_val)) << e.out;
  // Both are the mean loss of the same weights (the checkpoint holds the distributed run's
  // weights bit for bit) on the same validation batches: only the fp32 forward differs (TSP's
  // sharded sums vs single-rank GEMMs, whatever kernels oneDNN picks). The mean of non-negative
  // per-token terms -log p is within gamma_f of exact relative to itself, gamma_f = 5885 * 2^-24
  // = 3.5e-4 the sum of the lengths of the chained fp32 reductions of the tiny preset's forward
  // (L 4, h 128, F 512, V 320, S 32, T 256; tests/fp_bounds.h), +2 for the all-reduce of the two
  // ranks' sums; two such runs differ by <= 2 gamma_f val_loss; each printed value is within 5e-7
  // (half the last of 6 decimals) of its double. Evaluating another checkpoint (an earlier step,
  // other weights) moves the loss by >= 1e-1.
  const model::ModelConfig c = model::preset("tiny");
  const double gamma_f = testing::model_chain(c, 32, 2 * 4 * 32, /*backward=*/false, /*extra=*/2).gamma;
  EXPECT_NEAR(eval_val, dist_val, 2 * gamma_f * dist_val + 2 * testing::kPrinted6)
      << "tsp eval of the tsp checkpoint vs the distributed run's val_loss:\n" << r.out << "\n---\n" << e.out;

  // Clear errors, non-zero exit, no hang.
  r = run(work, mpirun(2) + tsp() + common + " --layout tsp --tsp 4");
  EXPECT_NE(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("tsp=4 = 4, but the world has 2 ranks"), std::string::npos) << r.out;
  // The layout by name (core/layout_spec) reaches the same check as --layout tsp --tsp 2.
  r = run(work, mpirun(2) + tsp() + " train --preset tiny --steps 1 --batch 2 --seq 30 --layout tsp2");
  EXPECT_NE(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("sequence length S=30 is not divisible by 2*D=4"), std::string::npos) << r.out;
  r = run(work, mpirun(2) + tsp() +
                    " train --preset tiny --steps 1 --batch 2 --seq 32 --layout tsp --tsp 2 --vocab-size-is-not-a-flag");
  EXPECT_NE(r.rc, 0) << "an unknown flag must fail:\n" << r.out;
  // A model far beyond this host's memory: every rank refuses before allocating, counting both
  // ranks of this host against its MemAvailable (or cgroup limit).
  model::ModelConfigFields huge = model::preset("7b").fields();
  huge.num_hidden_layers = 4096;
  huge.vocab_size = 320;
  model::save_config(model::ModelConfig(huge), work / "huge.json");
  r = run(work, mpirun(2) + tsp() + " train --steps 1 --batch 2 --seq 32 --layout tsp --tsp 2 --config '" +
                    (work / "huge.json").string() + "'", 60);
  EXPECT_NE(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("GiB per rank (x 2 ranks on this host = "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--skip-memory-check to try anyway"), std::string::npos) << r.out;
  if (!::testing::Test::HasFailure()) fs::remove_all(work);
}

// --- tsp bench ----------------------------------------------------------------------------------

// Training mode: every layout of 2 ranks runs, ends at the single-rank loss, and the JSON and SVG
// are written with measured and predicted numbers. Inference mode: single, TSP and TP decode rows
// with KV bytes per rank.
TEST(TspMpiCli, BenchLayouts) {
  const fs::path work = fresh_work_dir("mpi_bench_work");
  const model::ModelConfig c = model::preset("tiny");
  const int64_t B = 2, S = 64;
  // The single-rank run bench's rows repeat (same RunConfig: 2 steps, warmup 1, one eval batch),
  // for the first step's learning rate and gradient norm, which size the bound below.
  const fs::path metrics = work / "single.jsonl";
  const Result t = run(work, tsp() + " train --preset tiny --seq 64 --batch 2 --steps 2 --warmup 1 --eval-batches 1"
                                     " --metrics '" + metrics.string() + "'");
  ASSERT_EQ(t.rc, 0) << t.out;
  double lr1 = NAN, gnorm1 = NAN;
  {
    std::ifstream in(metrics);
    std::string line;
    while (std::getline(in, line)) {
      const nlohmann::json j = nlohmann::json::parse(line);
      if (j["type"] == "train" && j["step"] == 1) {
        lr1 = j["lr"].get<double>();
        gnorm1 = j["grad_norm"].get<double>();
      }
    }
  }
  ASSERT_FALSE(std::isnan(lr1) || std::isnan(gnorm1)) << testing::read_bytes(metrics);

  const Result r = run(work, mpirun(2) + tsp() + " bench --preset tiny --seq 64 --batch 2 --steps 1 --json '" +
                                 (work / "b.json").string() + "' --svg '" + (work / "b.svg").string() + "'");
  ASSERT_EQ(r.rc, 0) << "tsp bench failed:\n" << r.out;
  // "<layout> <ranks> <seq> ... <loss>" rows of the table; loss printed with 6 decimals.
  auto loss_of = [&](const std::string& layout, int ranks) {
    return number_after(r.out, "(?:^|\\n)" + layout + " +" + std::to_string(ranks) + " +" + std::to_string(S) +
                                   " [^\\n]* (\\d+\\.\\d+)\\n");
  };
  const double single = loss_of("single", 1);
  ASSERT_FALSE(std::isnan(single)) << "no single-rank row:\n" << r.out;
  // The printed loss is the second step's (one warm-up step, then --steps 1), so it is the loss of
  // the weights after one AdamW step, and those differ between layouts by the rounding of the
  // first step's gradients. Bound (derived, to first order in lr; tests/fp_bounds.h):
  //  - forward: each run's mean loss is within gamma_f of exact relative to itself (non-negative
  //    terms), gamma_f = (sum of the lengths of the chained fp32 reductions, L 4, h 128, F 512,
  //    V 320, S 64, T 128: 6013, +2 for the all-reduce over 2 ranks) 2^-24 = 3.6e-4: two runs
  //    differ by <= 2 gamma_f L2;
  //  - the step: each element of the (unclipped) gradient G differs by dG_i <= 2 gamma_b (|G_i| +
  //    rms of its tensor), gamma_b = (14844 forward and backward, +2 all-reduce, +2 clipping)
  //    2^-24 = 8.9e-4. AdamW's first update is lr g / (|g| + eps) (m = (1-b1) g, v = (1-b2) g^2
  //    after bias correction; g = c G clipped, and c scales g and dg alike), so an element moves by
  //    lr |du_i| <= lr 2 dG_i / (|G_i| + dG_i) (a sign flip when |G_i| < dG_i; eps only lowers
  //    du) and the loss by |G_i| lr |du_i| <= 2 lr dG_i. Summed: |dL2| <= 2 lr sum_i dG_i <=
  //    4 lr gamma_b sum_t (|G_t|_1 + n_t rms_t) <= 8 lr gamma_b sqrt(P) |G|_2, with P parameters
  //    and |G|_2 the first step's gradient norm, both from the single-rank run: ~0.15 here;
  //  - printing: each value within 5e-7 of its double (single's also passes through a float:
  //    2^-24 L2).
  // The step term dominates: worst-case rounding of every gradient element, each near-zero one
  // flipping its first update, is what a layout may legitimately do to the second step's loss.
  // It still fails a layout that does not train (the first step lowers the loss by ~0.35) or
  // trains on other data; that every layout computes the single-rank gradients and weights
  // element by element is tested by tests/train/distributed_trainer_mpi_test.cpp.
  const int64_t T = B * S;
  const double gamma_f = testing::model_chain(c, S, T, /*backward=*/false, /*extra=*/2).gamma;
  const double gamma_b = testing::model_chain(c, S, T, /*backward=*/true, /*extra=*/4).gamma;
  const double step_term = 8 * lr1 * gamma_b * std::sqrt(static_cast<double>(c.total_params())) * gnorm1;
  const double tol = 2 * gamma_f * single + step_term + 2 * testing::kPrinted6 + testing::kUnitF32 * single;
  std::printf("bench: single-rank loss %.6f, tolerance %.3g (step term %.3g, lr %.3g, gnorm %.4f)\n", single, tol,
              step_term, lr1, gnorm1);
  for (const char* layout : {"tsp2", "tp2", "sp2", "dp2", "fsdp-sp2"}) {
    const double loss = loss_of(layout, 2);
    ASSERT_FALSE(std::isnan(loss)) << layout << " missing from the table:\n" << r.out;
    EXPECT_NEAR(loss, single, tol) << layout << " not at the single-rank loss:\n" << r.out;
  }
  const std::string json = testing::read_bytes(work / "b.json");
  // Step 1's loss (JSON, full double): the same initial weights and batch in every layout, so the
  // forward bound alone applies: each run's mean loss is within gamma_f of exact relative to
  // itself (non-negative terms), two runs within 2 gamma_f L1 (~4e-3 here, against a loss of ~5.7;
  // a layout that drops or doubles a token's or a head's contribution moves it by far more).
  {
    const nlohmann::json rows = nlohmann::json::parse(json);
    std::map<std::string, double> first;
    for (const auto& row : rows.at("rows"))
      if (row.contains("first_step_loss")) first[row.at("layout").get<std::string>()] = row.at("first_step_loss").get<double>();
    ASSERT_TRUE(first.count("single")) << json;
    const double l1 = first.at("single");
    for (const char* layout : {"tsp2", "tp2", "sp2", "dp2", "fsdp-sp2"}) {
      ASSERT_TRUE(first.count(layout)) << layout << " has no first_step_loss:\n" << json;
      EXPECT_NEAR(first.at(layout), l1, 2 * gamma_f * l1) << layout << " step-1 loss vs single-rank";
    }
  }
  for (const char* key : {"peak_bytes_per_rank", "predicted_bytes_per_rank", "bytes_sent_per_step",
                          "predicted_bytes_sent_per_step", "tokens_per_s"})
    EXPECT_NE(json.find("\"" + std::string(key) + "\""), std::string::npos) << "'" << key << "' missing from the JSON:\n"
                                                                             << json;
  EXPECT_TRUE(nlohmann::json::accept(json)) << json;
  const std::string svg = testing::read_bytes(work / "b.svg");
  EXPECT_EQ(svg.rfind("<svg", 0), 0u) << "bad SVG:\n" << svg;
  EXPECT_NE(svg.find("fsdp-sp2"), std::string::npos) << "bad SVG:\n" << svg;

  const Result inf = run(work, mpirun(2) + tsp() + " bench --infer --preset tiny --seq 64 --new-tokens 4 --steps 1");
  EXPECT_EQ(inf.rc, 0) << inf.out;
  for (const char* re : {R"(single \(1 core\) +prefill)", R"(tsp D=2 +prefill)", R"(tp T=2 +prefill)", R"(kv bytes/rank)"})
    EXPECT_TRUE(std::regex_search(inf.out, std::regex(re))) << "tsp bench --infer: '" << re << "' missing:\n" << inf.out;
  if (!::testing::Test::HasFailure()) fs::remove_all(work);
}

}  // namespace
}  // namespace tsp::cli
