// The one SVG chart writer of the CLI (`tsp bench --svg`, `tsp plot`): a figure of titled panels in
// rows, each a column chart (stacked by category, with a predicted tick) or a line chart (series
// solid or dashed, linear or log2 x), with axes, ticks, units and a legend. No dependencies.
#pragma once

#include <string>
#include <vector>

namespace tsp::cli {

// ---- column charts: one column per group, its segments stacked bottom to top ----

struct BarSegment {
  std::string label;  // legend entry (same order in every group)
  double value = 0;
};

struct BarGroup {
  std::string name;                  // label under the column
  std::vector<BarSegment> segments;  // stacked from the bottom up
  double predicted = -1;             // drawn as a black tick across the column when >= 0
};

struct BarChart {
  std::string title;
  std::string y_label;             // with its unit, e.g. "MiB per rank"
  std::vector<BarGroup> groups;
  std::string predicted_label;     // legend text of the tick, e.g. "planner"; "" when no ticks
  std::vector<std::string> notes;  // lines printed under the chart (e.g. skipped layouts)
};

// ---- line charts ----

struct Point {
  double x = 0, y = 0;
};

struct Series {
  std::string name;   // legend entry; series sharing a name share a color and one legend entry
  std::vector<Point> points;  // drawn in order as one polyline (class "series", data-name=name)
  bool dashed = false;
  bool markers = true;        // a dot at each point
};

struct Axis {
  std::string label;  // with its unit, e.g. "tokens", "loss (nats/token)"
  bool log2 = false;          // x only: log2 scale, ticks at the data's x values
  bool include_zero = false;  // linear: the range reaches down (or up) to 0
};

struct LineChart {
  std::string title;
  Axis x, y;
  std::vector<Series> series;
  // Legend entries that explain the line styles ({"measured", false}, {"planner", true}).
  std::vector<std::pair<std::string, bool>> style_keys;
  std::vector<std::string> notes;
};

struct Panel {
  enum Kind { bars, lines } kind = bars;
  BarChart bar;
  LineChart line;
};

inline Panel panel(BarChart c) { return Panel{Panel::bars, std::move(c), {}}; }
inline Panel panel(LineChart c) { return Panel{Panel::lines, {}, std::move(c)}; }

struct Figure {
  std::string title;                   // printed bold at the top
  std::vector<std::string> subtitle;   // lines under the title
  std::vector<std::vector<Panel>> rows;  // panels left to right, rows top to bottom
};

// The whole figure as one SVG document. Every plot area is a <rect class='plot-area'>, every
// series a <polyline class='series' data-name='...'> inside it, every column segment a
// <rect class='bar'>; titles and axis labels are <text> elements.
std::string render_svg(const Figure& figure);

// Tick values: about `target` "nice" (1, 2, 2.5, 5 x 10^k) steps covering [lo, hi].
std::vector<double> nice_ticks(double lo, double hi, int target = 5);
// A tick label: 1.5k, 20M, 3G, 0.25, 1024 (integers below 10000 in full).
std::string tick_label(double v);

}  // namespace tsp::cli
