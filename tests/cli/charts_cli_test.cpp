// `tsp plot` and `tsp bench --svg` as a user runs them: the SVG files are parsed as XML and checked
// for their parts (titles, axis labels with units, one polyline per run or layout and style,
// every point inside its plot area, skipped layouts named), not compared byte for byte.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>

#include "scratch_dir.h"
#include "tsp_run.h"
#include "svg_check.h"

namespace tsp::cli {
namespace {

using testing::ScratchDir;

using Result = tsp::testing::TspResult;
using tsp::testing::run_tsp;

// Ten steps of 100 tokens, loss 5.0 - 0.3 i; validation at steps 5 and 10 when `with_val`.
void write_metrics(const std::filesystem::path& path, bool with_val, double tokens_per_s) {
  std::ofstream f(path);
  for (int i = 1; i <= 10; ++i) {
    f << "{\"type\":\"train\",\"step\":" << i << ",\"loss\":" << 5.0 - 0.3 * i
      << ",\"lr\":0.001,\"grad_norm\":1.0,\"clipped\":false,\"tokens\":100,\"seconds\":0.1,\"tokens_per_s\":"
      << tokens_per_s + i << ",\"peak_bytes\":1,\"peak_rss_bytes\":1,\"comm_bytes_sent\":0,\"comm_wait_seconds\":0,"
      << "\"wall_time\":" << 1700000000 + i << ",\"elapsed_s\":" << i << ",\"eta_s\":1}\n";
    if (with_val && i % 5 == 0)
      f << "{\"type\":\"val\",\"step\":" << i << ",\"val_loss\":" << 4.9 - 0.3 * i
        << ",\"tokens\":50,\"batches\":1,\"seconds\":0.01}\n";
  }
}

std::vector<const testing::SvgChart::Line*> lines_named(const testing::SvgChart& c, const std::string& name) {
  std::vector<const testing::SvgChart::Line*> v;
  for (const auto& l : c.series)
    if (l.name == name) v.push_back(&l);
  return v;
}

TEST(ChartsCli, PlotDrawsLossAndThroughputAgainstTokens) {
  ScratchDir dir;
  write_metrics(dir / "a.jsonl", true, 1000);
  write_metrics(dir / "b.jsonl", false, 2000);
  const Result r = run_tsp(dir, "plot '" + (dir / "a.jsonl").string() + "' second='" + (dir / "b.jsonl").string() +
                                    "' --svg '" + (dir / "loss.svg").string() + "'");
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("a: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("final val_loss 1.900000"), std::string::npos) << r.out;
  const testing::SvgChart c = testing::read_svg_chart(testing::read_bytes(dir / "loss.svg"));
  for (const char* t : {"training runs compared", "loss against tokens trained", "training throughput", "tokens",
                        "loss (nats/token)", "tokens/s", "train", "validation", "second"})
    EXPECT_TRUE(c.has_text(t)) << "no text '" << t << "'";
  ASSERT_EQ(c.areas.size(), 2u);
  // a: train loss, validation loss (dashed), tokens/s; second: train loss and tokens/s.
  const auto a = lines_named(c, "a"), b = lines_named(c, "second");
  ASSERT_EQ(a.size(), 3u);
  ASSERT_EQ(b.size(), 2u);
  const auto& train = *a[0];
  const auto& val = *a[1];
  ASSERT_EQ(train.points.size(), 10u);
  ASSERT_EQ(val.points.size(), 2u);
  EXPECT_FALSE(train.dashed);
  EXPECT_TRUE(val.dashed);
  for (const auto& l : c.series) EXPECT_TRUE(c.inside_one_area(l)) << l.name << " leaves its plot area";
  // x is the tokens trained so far: increasing, validation at the x of its step (5 and 10).
  for (size_t i = 1; i < train.points.size(); ++i) EXPECT_GT(train.points[i].first, train.points[i - 1].first);
  EXPECT_DOUBLE_EQ(val.points[0].first, train.points[4].first);
  EXPECT_DOUBLE_EQ(val.points[1].first, train.points[9].first);
  // The loss falls: later points are lower on the page (larger y in SVG coordinates).
  EXPECT_GT(train.points.back().second, train.points.front().second);
  // Equal spacing in tokens is equal spacing in pixels (a linear axis), to the 0.1 px printed.
  const double step = train.points[1].first - train.points[0].first;
  EXPECT_NEAR(train.points[9].first - train.points[0].first, 9 * step, 0.2);
}

TEST(ChartsCli, PlotRefusesAFileWithoutTrainRecords) {
  ScratchDir dir;
  std::ofstream(dir / "v.jsonl") << "{\"type\":\"val\",\"step\":1,\"val_loss\":2.0,\"tokens\":1,\"batches\":1,\"seconds\":0}\n";
  const Result r = run_tsp(dir, "plot '" + (dir / "v.jsonl").string() + "' --svg '" + (dir / "x.svg").string() + "'");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.err.find("holds no \"train\" records"), std::string::npos) << r.err;
}

// --svg names a file a user already has: refused before anything is read, the file untouched; a
// chart tsp wrote earlier is replaced.
TEST(ChartsCli, PlotNeverReplacesAUsersFile) {
  ScratchDir dir;
  write_metrics(dir / "a.jsonl", true, 1000);
  std::ofstream(dir / "mine.svg") << "<svg>a user's drawing</svg>\n";
  const std::string args = "plot '" + (dir / "a.jsonl").string() + "' --svg ";
  Result r = run_tsp(dir, args + "'" + (dir / "mine.svg").string() + "'");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.err.find("not written by tsp"), std::string::npos) << r.err;
  EXPECT_EQ(testing::read_bytes(dir / "mine.svg"), "<svg>a user's drawing</svg>\n");
  ASSERT_EQ(run_tsp(dir, args + "'" + (dir / "ours.svg").string() + "'").rc, 0);
  r = run_tsp(dir, args + "'" + (dir / "ours.svg").string() + "'");
  EXPECT_EQ(r.rc, 0) << r.err;
}

// A short sweep on one rank (the MPI singleton): single runs at 16 and 32 tokens, tsp2 is skipped
// at both (it needs two ranks) and must be named on the chart.
TEST(ChartsCli, BenchSweepChartsMemoryAndBytesAgainstSeq) {
  ScratchDir dir;
  const Result r = run_tsp(dir, "bench --preset tiny --seq 32 --batch 1 --steps 1 --layouts single,tsp2 "
                                "--sweep-seq 16,32 --svg '" + (dir / "b.svg").string() + "'");
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  const testing::SvgChart c = testing::read_svg_chart(testing::read_bytes(dir / "b.svg"));
  for (const char* t : {"tsp bench: ", "seq 32, global batch 1, 1 ranks, dtype f32", "peak memory per rank",
                        "MiB per rank", "bytes sent per step", "training throughput", "tokens/s (global batch)",
                        "peak memory per rank vs sequence length", "bytes sent per step vs sequence length",
                        "sequence length (tokens, log scale)", "measured", "planner",
                        "skipped: tsp2 at seq 16, 32 (needs 2 ranks, the job has 1)"})
    EXPECT_TRUE(c.has_text(t)) << "no text '" << t << "'";
  ASSERT_EQ(c.areas.size(), 5u);  // memory, bytes, tokens/s; memory and bytes against seq
  // single: measured (solid) and predicted (dashed) in each of the two sweep charts; tsp2 none.
  const auto single = lines_named(c, "single");
  ASSERT_EQ(single.size(), 4u);
  EXPECT_EQ(std::count_if(single.begin(), single.end(), [](auto* l) { return l->dashed; }), 2);
  EXPECT_TRUE(lines_named(c, "tsp2").empty());
  for (const auto* l : single) {
    ASSERT_EQ(l->points.size(), 2u);
    EXPECT_LT(l->points[0].first, l->points[1].first);  // seq 16 left of 32
    EXPECT_TRUE(c.inside_one_area(*l)) << "a line leaves its plot area";
  }
  // The stacked memory legend lists the top of the stack first: categories in reverse order.
  auto at = [&](const std::string& t) {
    return std::find(c.texts.begin(), c.texts.end(), t) - c.texts.begin();
  };
  EXPECT_LT(at("activations"), at("optimizer"));
  EXPECT_LT(at("optimizer"), at("grads"));
  EXPECT_LT(at("grads"), at("weights"));
  EXPECT_LT(at("weights"), static_cast<long>(c.texts.size()));
}

}  // namespace
}  // namespace tsp::cli
