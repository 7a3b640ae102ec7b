// render_bar_charts: fixed layout, one palette color per segment label, values printed at the
// end of each bar.
#include "tsp/cli/svg_chart.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <sstream>

namespace tsp::cli {

namespace {

constexpr int kWidth = 900, kLabel = 120, kBarArea = 620, kRow = 22, kTitle = 30, kLegend = 22;
const char* const kPalette[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else o += c;
  }
  return o;
}

double total(const BarGroup& g) {
  double t = 0;
  for (const BarSegment& s : g.segments) t += s.value;
  return t;
}

int chart(std::ostringstream& os, const BarChart& c, int y0) {
  double vmax = 1e-12;
  for (const BarGroup& g : c.groups) vmax = std::max({vmax, total(g), g.predicted});
  std::map<std::string, int> color;
  for (const BarGroup& g : c.groups)
    for (const BarSegment& s : g.segments)
      color.emplace(s.label, static_cast<int>(color.size()) % 10);
  os << "<text x='10' y='" << y0 + 18 << "' font-weight='bold'>" << esc(c.title) << "</text>\n";
  int y = y0 + kTitle;
  char buf[256];
  for (const BarGroup& g : c.groups) {
    os << "<text x='10' y='" << y + 15 << "'>" << esc(g.name) << "</text>\n";
    double x = kLabel;
    for (const BarSegment& s : g.segments) {
      const double w = s.value / vmax * kBarArea;
      std::snprintf(buf, sizeof buf, "<rect x='%.1f' y='%d' width='%.1f' height='%d' fill='%s'>",
                    x, y + 2, w, kRow - 6, kPalette[color[s.label]]);
      os << buf << "<title>" << esc(s.label) << ": " << s.value << "</title></rect>\n";
      x += w;
    }
    std::snprintf(buf, sizeof buf, "<text x='%.1f' y='%d' font-size='11'>%.2f</text>\n", x + 4, y + 15,
                  total(g));
    os << buf;
    if (g.predicted >= 0) {
      const double px = kLabel + g.predicted / vmax * kBarArea;
      std::snprintf(buf, sizeof buf,
                    "<line x1='%.1f' x2='%.1f' y1='%d' y2='%d' stroke='black' stroke-width='2'/>\n",
                    px, px, y, y + kRow - 2);
      os << buf;
    }
    y += kRow;
  }
  int lx = kLabel;
  for (const auto& [label, ci] : color) {
    os << "<rect x='" << lx << "' y='" << y + 6 << "' width='10' height='10' fill='" << kPalette[ci]
       << "'/><text x='" << lx + 14 << "' y='" << y + 15 << "' font-size='11'>" << esc(label)
       << "</text>\n";
    lx += 16 + 8 * static_cast<int>(label.size()) + 12;
  }
  return y + kLegend + 10;
}

}  // namespace

std::string render_bar_charts(const std::vector<BarChart>& charts) {
  std::ostringstream body;
  int y = 0;
  for (const BarChart& c : charts) y = chart(body, c, y);
  std::ostringstream os;
  os << "<svg xmlns='http://www.w3.org/2000/svg' width='" << kWidth << "' height='" << y
     << "' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n"
     << body.str() << "</svg>\n";
  return os.str();
}

}  // namespace tsp::cli
