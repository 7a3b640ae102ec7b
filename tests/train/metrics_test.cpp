#include "tsp/train/metrics.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>

#include "scratch_dir.h"
#include "tsp/core/error.h"
#include "tsp/model/model_config.h"
#include "tsp/plan/time_model.h"

namespace tsp::train {
namespace {

StepMetrics sample() {
  StepMetrics m;
  m.step = 12;
  m.total_steps = 200;
  m.loss = 2.3456789;
  m.lr = 1e-3;
  m.grad_norm = 0.81234;
  m.clipped = true;
  m.tokens = 2048;
  m.seconds = 0.5;
  m.peak_bytes = 45 << 20;
  m.peak_rss_bytes = 80 << 20;
  return m;
}

TEST(Metrics, ProgressLineFormat) {
  EXPECT_EQ(format_progress_line(sample()),
            "step 12/200 | loss 2.345679 | lr 1.000e-03 | gnorm 0.8123 clipped | 4096 tok/s | peak 45.0 MiB (rss 80.0 MiB)");
  StepMetrics m = sample();
  m.clipped = false;
  EXPECT_TRUE(std::regex_match(format_progress_line(m),
                               std::regex(R"(step \d+/\d+ \| loss \d+\.\d{6} \| lr \S+ \| gnorm \S+ \| \d+ tok/s \| peak .* MiB \(rss .* MiB\))")));
}

TEST(Metrics, EvalLineFormat) {
  EvalMetrics e{.step = 40, .loss = 2.5, .tokens = 4096, .batches = 4, .seconds = 0.25};
  EXPECT_EQ(format_eval_line(e), "val step 40 | val_loss 2.500000 | 4096 tokens | 0.25 s");
  EXPECT_EQ(format_eval_line(e, 3.3), "val step 40 | val_loss 2.500000 | 4096 tokens | 0.25 s | unigram 3.3000 nats");
}

TEST(Metrics, JsonLinesFileIsValidAndAppends) {
  testing::ScratchDir dir;
  const auto path = dir / "metrics.jsonl";
  {
    MetricsFile f(path);
    f.write(metrics_json(sample()));
    f.write(metrics_json(EvalMetrics{.step = 12, .loss = 2.0, .tokens = 10, .batches = 1, .seconds = 0.1}));
  }
  {
    MetricsFile f(path);  // a resumed run appends
    f.write(metrics_json(sample()));
  }
  std::ifstream in(path);
  std::string line;
  std::vector<nlohmann::json> rows;
  while (std::getline(in, line)) rows.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0]["type"], "train");
  EXPECT_EQ(rows[0]["step"], 12);
  EXPECT_DOUBLE_EQ(rows[0]["loss"].get<double>(), 2.3456789);
  EXPECT_DOUBLE_EQ(rows[0]["tokens_per_s"].get<double>(), 4096.0);
  EXPECT_EQ(rows[0]["clipped"], true);
  for (const char* k : {"lr", "grad_norm", "tokens", "seconds", "peak_bytes", "peak_rss_bytes"}) {
    EXPECT_TRUE(rows[0].contains(k)) << k;
  }
  EXPECT_EQ(rows[1]["type"], "val");
  EXPECT_DOUBLE_EQ(rows[1]["val_loss"].get<double>(), 2.0);
  EXPECT_EQ(rows[2]["type"], "train");
}

TEST(Metrics, ProgressLineWithMfuAndClock) {
  StepMetrics m = sample();
  m.mfu = 0.1234;
  m.wall_time = 1700000000.75;  // 2023-11-14 22:13:20.75 UTC
  m.elapsed_s = 83.4;
  m.eta_s = 3723;
  EXPECT_EQ(format_progress_line(m),
            "step 12/200 | loss 2.345679 | lr 1.000e-03 | gnorm 0.8123 clipped | 4096 tok/s | MFU 12.3% | "
            "peak 45.0 MiB (rss 80.0 MiB) | 22:13:20 UTC, elapsed 1:23, ETA 1:02:03");
  m.comm_bytes_sent = 3 << 20;
  m.comm_wait_seconds = 0.25;
  EXPECT_NE(format_progress_line(m).find("(rss 80.0 MiB) | sent 3.00 MiB, comm wait 0.250 s | 22:13:20 UTC"),
            std::string::npos)
      << format_progress_line(m);
}

TEST(Metrics, DurationsAndClock) {
  EXPECT_EQ(format_duration(0), "0:00");
  EXPECT_EQ(format_duration(59.6), "1:00");
  EXPECT_EQ(format_duration(3600), "1:00:00");
  EXPECT_EQ(format_duration(90061), "1 d 01:01:01");
  EXPECT_EQ(format_duration(-1), "?");
  EXPECT_EQ(format_utc_clock(0), "00:00:00");
  EXPECT_EQ(format_utc_clock(86399.9), "23:59:59");
}

TEST(Metrics, JsonGainsWallTimeAndMfuKeepingTheOldFields) {
  StepMetrics m = sample();
  const nlohmann::json plain = nlohmann::json::parse(metrics_json(m));
  EXPECT_FALSE(plain.contains("wall_time"));
  EXPECT_FALSE(plain.contains("mfu"));
  m.wall_time = 1700000000.75;
  m.elapsed_s = 83.5;
  m.eta_s = 10;
  m.mfu = 0.25;
  const nlohmann::json j = nlohmann::json::parse(metrics_json(m));
  EXPECT_DOUBLE_EQ(j.at("wall_time").get<double>(), 1700000000.75);
  EXPECT_DOUBLE_EQ(j.at("elapsed_s").get<double>(), 83.5);
  EXPECT_DOUBLE_EQ(j.at("eta_s").get<double>(), 10);
  EXPECT_DOUBLE_EQ(j.at("mfu").get<double>(), 0.25);
  for (const auto& [k, v] : plain.items()) EXPECT_EQ(j.at(k), v) << k;  // old fields unchanged
  EvalMetrics e{.step = 12, .loss = 2.0, .tokens = 10, .batches = 1, .seconds = 0.1};
  e.wall_time = 1700000001.5;
  e.elapsed_s = 84;
  const nlohmann::json v = nlohmann::json::parse(metrics_json(e));
  EXPECT_DOUBLE_EQ(v.at("wall_time").get<double>(), 1700000001.5);
  EXPECT_DOUBLE_EQ(v.at("elapsed_s").get<double>(), 84);
  EXPECT_DOUBLE_EQ(v.at("val_loss").get<double>(), 2.0);
}

TEST(Metrics, RunClockEtaIsTheMeanStepTimeTimesTheStepsLeft) {
  RunClock clock;
  const double before = unix_time_now();
  StepMetrics a = sample();
  a.step = 1, a.total_steps = 10, a.seconds = 1;
  clock.stamp(a);
  EXPECT_DOUBLE_EQ(a.eta_s, 9 * 1.0);
  StepMetrics b = a;
  b.step = 2, b.seconds = 3;
  clock.stamp(b);
  EXPECT_DOUBLE_EQ(b.eta_s, 8 * 2.0);  // mean of 1 s and 3 s, 8 steps left
  EXPECT_GE(b.wall_time, before);
  EXPECT_LE(b.wall_time, unix_time_now());
  EXPECT_GE(b.elapsed_s, a.elapsed_s);
  EXPECT_GE(a.elapsed_s, 0);
}

TEST(Metrics, MfuIsModelFlopsOverTimeTimesThePeakOfAllCores) {
  MfuBasis b;
  EXPECT_FALSE(b.enabled());
  EXPECT_EQ(b.mfu(1.0), -1);
  b.model_flops_per_step = 6e9;
  b.ranks = 2;
  b.threads_per_rank = 3;
  b.peak_gflops_per_core = 50;
  b.peak_description = "50.0 GFLOP/s/core fp32 avx512";
  EXPECT_DOUBLE_EQ(b.peak_flops(), 2 * 3 * 50e9);
  // 6e9 / (0.5 s x 300e9 FLOP/s) = 0.04
  EXPECT_DOUBLE_EQ(b.mfu(0.5), 6e9 / (0.5 * 300e9));
  EXPECT_EQ(b.mfu(0), -1);
  EXPECT_NE(b.describe().find("peak 50.0 GFLOP/s/core fp32 avx512 (x 3 threads x 2 ranks = 300.0 GFLOP/s)"),
            std::string::npos)
      << b.describe();
}

TEST(Metrics, MeasuredBasisCountsTheGlobalBatch) {
  const model::ModelConfig c = model::preset("tiny");
  RunConfig run;
  run.batch = 8;
  run.seq = 64;
  run.dp = 2;
  run.grad_accum = 2;
  const MfuBasis b = measure_mfu_basis(c, run, 4);
  // FLOPs are linear in the rows: the global batch's are 8 single rows' (the sum over replicas
  // and micro-batches), so no dp or grad-accum factor may appear twice.
  EXPECT_DOUBLE_EQ(b.model_flops_per_step, 8 * plan::model_flops(c, plan::Workload{.batch = 1, .seq = 64}));
  EXPECT_EQ(b.ranks, 4);
  EXPECT_GE(b.threads_per_rank, 1);
  EXPECT_GT(b.peak_gflops_per_core, 0);
  EXPECT_NE(b.peak_description.find("GFLOP/s/core fp32"), std::string::npos) << b.peak_description;
}

TEST(Metrics, UnwritableFileIsAnIoError) {
  EXPECT_THROW(MetricsFile("/nonexistent-dir/x/metrics.jsonl"), tsp::IoError);
}

}  // namespace
}  // namespace tsp::train
