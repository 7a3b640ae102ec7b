// A minimal SVG bar chart writer for `tsp bench`: horizontal bars, optionally stacked by
// category, with a tick for a predicted value. No dependencies; the output opens in a browser.
#pragma once

#include <string>
#include <vector>

namespace tsp::cli {

struct BarSegment {
  std::string label;  // legend entry (same order in every group)
  double value = 0;
};

struct BarGroup {
  std::string name;                  // row label
  std::vector<BarSegment> segments;  // stacked left to right
  double predicted = -1;             // drawn as a tick when >= 0
};

struct BarChart {
  std::string title;
  std::vector<BarGroup> groups;
};

// The charts one below the other, each scaled to its largest bar or tick.
std::string render_bar_charts(const std::vector<BarChart>& charts);

}  // namespace tsp::cli
