// The chart writer on its own: tick values and labels, and figures whose parts must stay inside
// the document (long rotated column names, notes, a single point, an empty series), parsed as XML.
#include "tsp/cli/svg_chart.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "scratch_dir.h"
#include "svg_check.h"

namespace tsp::cli {
namespace {

TEST(SvgChart, NiceTicksCoverTheRangeInRoundSteps) {
  EXPECT_EQ(nice_ticks(0, 10, 5), (std::vector<double>{0, 2, 4, 6, 8, 10}));
  EXPECT_EQ(nice_ticks(0, 1.08, 5), (std::vector<double>{0, 0.25, 0.5, 0.75, 1, 1.25}));
  const std::vector<double> t = nice_ticks(3.1, 5.73, 5);
  EXPECT_LE(t.front(), 3.1);
  EXPECT_GE(t.back(), 5.73);
  EXPECT_GE(t.size(), 3u);
  for (size_t i = 2; i < t.size(); ++i) EXPECT_NEAR(t[i] - t[i - 1], t[1] - t[0], 1e-12);
  // A flat range still gets two ticks around the value.
  const std::vector<double> flat = nice_ticks(4.32, 4.32, 5);
  EXPECT_LT(flat.front(), 4.32);
  EXPECT_GT(flat.back(), 4.32);
}

TEST(SvgChart, TickLabelsAreShort) {
  EXPECT_EQ(tick_label(0), "0");
  EXPECT_EQ(tick_label(0.25), "0.25");
  EXPECT_EQ(tick_label(1024), "1024");
  EXPECT_EQ(tick_label(20000), "20k");
  EXPECT_EQ(tick_label(2.5e6), "2.5M");
  EXPECT_EQ(tick_label(3e9), "3G");
}

TEST(SvgChart, EveryPartStaysInsideTheDocument) {
  Figure f;
  f.title = "a figure";
  BarChart bars;
  bars.title = "columns with long names";
  bars.y_label = "MiB per rank";
  for (const char* n : {"single", "a-very-long-layout-name", "dp2xtsp2xtp2"})
    bars.groups.push_back({n, {{"weights", 1}, {"grads", 2}, {"zero", 0}}, 2.5});
  bars.predicted_label = "planner";
  bars.notes = {"skipped: tsp8 at seq 16, 32, 64, 128, 256, 512, 1024, 2048, 4096 (needs 8 ranks, the job has 2; "
                "a long reason that has to wrap onto several lines to stay inside the panel)"};
  LineChart lines;
  lines.title = "one point and an empty series";
  lines.x = {.label = "seq", .log2 = true};
  lines.y = {.label = "MiB", .include_zero = true};
  Series one;
  one.name = "one";
  one.points = {{64, 3}};
  Series empty;
  empty.name = "empty";
  lines.series = {one, empty};
  f.rows.push_back({panel(bars), panel(lines)});
  const std::string svg = render_svg(f);
  const testing::SvgChart c = testing::read_svg_chart(svg);
  const double width = c.root.num("width"), height = c.root.num("height");
  ASSERT_GT(width, 0);
  ASSERT_GT(height, 0);
  std::vector<const testing::XmlElement*> all;
  c.root.collect(all);
  int notes = 0;
  for (const testing::XmlElement* e : all) {
    if (e->name != "text") continue;
    const double x = e->num("x"), y = e->num("y");
    EXPECT_GE(x, 0) << e->text;
    EXPECT_LE(y, height) << e->text;
    // Unrotated, left-anchored text: its estimated end (6 px per 11 px character) inside too.
    if (e->attr("transform").empty() && e->attr("text-anchor").empty()) {
      EXPECT_LE(x + 6.0 * static_cast<double>(e->text.size()), width + 1) << e->text;
    }
    if (e->attr("class") == "note") ++notes;
  }
  EXPECT_GE(notes, 2) << "the long note was not wrapped";
  // The zero category has no legend entry; the others do, the top of the stack first.
  EXPECT_FALSE(c.has_text("zero"));  // (no other text contains "zero")
  auto at = [&](const std::string& t) { return std::find(c.texts.begin(), c.texts.end(), t) - c.texts.begin(); };
  EXPECT_LT(at("grads"), at("weights"));
  EXPECT_LT(at("weights"), static_cast<long>(c.texts.size()));
  ASSERT_EQ(c.series.size(), 2u);
  EXPECT_EQ(c.series[0].points.size(), 1u);
  EXPECT_TRUE(c.inside_one_area(c.series[0]));
  EXPECT_TRUE(c.series[1].points.empty());
  EXPECT_LT(at("one"), static_cast<long>(c.texts.size()));
  EXPECT_EQ(at("empty"), static_cast<long>(c.texts.size())) << "a series with nothing drawn has no legend entry";
  if (const char* dump = std::getenv("TSP_SVG_CHART_DUMP")) testing::write_bytes(dump, svg);  // to look at it
}

// A long run (1000 steps): every point of the series reaches the document; a fixed-size format
// buffer once cut the polyline short and left the SVG unparseable.
TEST(SvgChart, LongSeriesAreWrittenWhole) {
  Figure f;
  LineChart lines;
  lines.title = "loss";
  lines.x = {.label = "tokens"};
  lines.y = {.label = "loss"};
  Series s;
  s.name = "run";
  for (int i = 1; i <= 1000; ++i) s.points.push_back({100.0 * i, 5.0 + 1.0 / i});
  lines.series = {s};
  f.rows.push_back({panel(lines)});
  const testing::SvgChart c = testing::read_svg_chart(render_svg(f));
  ASSERT_EQ(c.series.size(), 1u);
  EXPECT_EQ(c.series[0].points.size(), 1000u);
}

}  // namespace
}  // namespace tsp::cli
