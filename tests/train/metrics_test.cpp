#include "tsp/train/metrics.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>

#include "scratch_dir.h"
#include "tsp/core/error.h"

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

TEST(Metrics, UnwritableFileIsAnIoError) {
  EXPECT_THROW(MetricsFile("/nonexistent-dir/x/metrics.jsonl"), tsp::IoError);
}

}  // namespace
}  // namespace tsp::train
