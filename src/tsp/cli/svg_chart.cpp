// render_svg: panels are laid out left to right with sizes computed from their contents (text
// widths estimated at 7 px per character of 12 px sans-serif, a little above its average, so
// labels do not collide); one palette color per series name or segment label.
#include "tsp/cli/svg_chart.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>

#include "tsp/core/format.h"

namespace tsp::cli {

namespace {

constexpr double kCharW = 7.0;    // estimated width of one 12 px character
constexpr double kSmallCharW = 6.0;  // of one 11 px character (tick labels, legend)
constexpr int kPlotH = 240;
constexpr int kTitleH = 34;        // panel title band above the plot area
constexpr int kNoteH = 15;
// Tableau 10 with purple before yellow: six series (single + five layouts) stay far apart in hue.
const char* const kPalette[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                "#b07aa1", "#edc948", "#ff9da7", "#9c755f", "#bab0ac"};

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else if (c == '\'') o += "&apos;";
    else if (c == '"') o += "&quot;";
    else o += c;
  }
  return o;
}

std::string fmt(const char* f, auto... args) { return format_printf(f, args...); }

double text_w(const std::string& s, double char_w = kCharW) { return static_cast<double>(s.size()) * char_w; }

// Greedy word wrap to at most `width` pixels per line.
std::vector<std::string> wrap(const std::string& text, double width) {
  const auto max_chars = static_cast<size_t>(std::max(10.0, width / kSmallCharW));
  std::vector<std::string> lines;
  std::istringstream words(text);
  std::string word, line;
  while (words >> word) {
    if (!line.empty() && line.size() + 1 + word.size() > max_chars) {
      lines.push_back(line);
      line.clear();
    }
    line += (line.empty() ? "" : " ") + word;
  }
  if (!line.empty()) lines.push_back(line);
  return lines;
}

// Colors by first appearance of a name.
class Colors {
 public:
  const char* of(const std::string& name) {
    auto it = index_.find(name);
    if (it == index_.end()) it = index_.emplace(name, static_cast<int>(index_.size())).first;
    return kPalette[it->second % 10];
  }

 private:
  std::map<std::string, int> index_;
};

struct Box {
  double x = 0, y = 0, w = 0, h = 0;
};

// A linear or log2 mapping of data values onto pixels.
struct Scale {
  double lo = 0, hi = 1;  // domain (log2 of the data when log)
  double p0 = 0, p1 = 1;  // pixels
  bool log = false;
  double operator()(double v) const {
    const double d = log ? std::log2(v) : v;
    return p0 + (d - lo) / (hi - lo) * (p1 - p0);
  }
};

struct Legend {
  struct Entry {
    std::string label;
    std::string color;
    enum Style { swatch, line, dashed_line, tick } style = swatch;
  };
  std::vector<Entry> entries;
  double width() const {
    double w = 0;
    for (const Entry& e : entries) w = std::max(w, 26 + text_w(e.label, kSmallCharW));
    return entries.empty() ? 0 : w + 8;
  }
  void draw(std::ostringstream& os, double x, double y) const {
    for (const Entry& e : entries) {
      switch (e.style) {
        case Entry::swatch:
          os << fmt("<rect x='%.1f' y='%.1f' width='12' height='12' fill='%s'/>\n", x, y - 10, e.color.c_str());
          break;
        case Entry::line:
        case Entry::dashed_line:
          os << fmt("<line x1='%.1f' x2='%.1f' y1='%.1f' y2='%.1f' stroke='%s' stroke-width='2'%s/>\n", x,
                    x + 20, y - 4, y - 4, e.color.c_str(),
                    e.style == Entry::dashed_line ? " stroke-dasharray='5 3'" : "");
          break;
        case Entry::tick:
          os << fmt("<line x1='%.1f' x2='%.1f' y1='%.1f' y2='%.1f' stroke='black' stroke-width='2'/>\n", x,
                    x + 16, y - 4, y - 4);
          break;
      }
      os << fmt("<text x='%.1f' y='%.1f' font-size='11'>%s</text>\n", x + 26, y, esc(e.label).c_str());
      y += 17;
    }
  }
  double height() const { return 17.0 * static_cast<double>(entries.size()); }
};

// What a panel needs: its size, and a function drawing it at an origin.
struct Layout {
  double w = 0, h = 0;
};

double tick_label_width(const std::vector<double>& ticks) {
  double w = 0;
  for (double t : ticks) w = std::max(w, text_w(tick_label(t), kSmallCharW));
  return w;
}

// The y axis: gridlines, tick labels and the rotated label, left of the plot area.
void draw_y_axis(std::ostringstream& os, const Box& plot, const Scale& y, const std::vector<double>& ticks,
                 const std::string& label, double label_x) {
  for (double t : ticks) {
    const double py = y(t);
    os << fmt("<line x1='%.1f' x2='%.1f' y1='%.1f' y2='%.1f' stroke='#e4e4e4'/>\n", plot.x, plot.x + plot.w, py, py);
    os << fmt("<text x='%.1f' y='%.1f' font-size='11' text-anchor='end'>%s</text>\n", plot.x - 5, py + 4,
              tick_label(t).c_str());
  }
  const double cy = plot.y + plot.h / 2;
  os << fmt("<text x='%.1f' y='%.1f' text-anchor='middle' transform='rotate(-90 %.1f %.1f)'>%s</text>\n",
            label_x, cy, label_x, cy, esc(label).c_str());
}

void draw_frame(std::ostringstream& os, const Box& plot) {
  os << fmt("<rect class='plot-area' x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='none' "
            "stroke='#888'/>\n",
            plot.x, plot.y, plot.w, plot.h);
}

void draw_title(std::ostringstream& os, double x, double y, const std::string& title) {
  os << fmt("<text class='panel-title' x='%.1f' y='%.1f' font-size='13' font-weight='bold'>%s</text>\n", x, y,
            esc(title).c_str());
}

void draw_notes(std::ostringstream& os, double x, double y, const std::vector<std::string>& lines) {
  for (const std::string& l : lines) {
    os << fmt("<text class='note' x='%.1f' y='%.1f' font-size='11' fill='#444'>%s</text>\n", x, y, esc(l).c_str());
    y += kNoteH;
  }
}

// ---- column chart ----

// A value printed on a column: whole numbers from 100, three significant digits below.
std::string value_label(double v) {
  if (std::fabs(v) >= 1e5) return tick_label(v);
  return std::fabs(v) >= 100 ? fmt("%.0f", v) : fmt("%.3g", v);
}

double column_total(const BarGroup& g) {
  double t = 0;
  for (const BarSegment& s : g.segments) t += s.value;
  return t;
}

class BarPanel {
 public:
  explicit BarPanel(const BarChart& c) : c_(c) {
    double vmax = 0;
    for (const BarGroup& g : c.groups) vmax = std::max({vmax, column_total(g), g.predicted});
    ticks_ = nice_ticks(0, vmax > 0 ? vmax * 1.08 : 1, 5);
    // Legend: stack order, the top of the stack first (the reverse of the drawing order).
    std::vector<std::string> labels;
    for (const BarGroup& g : c.groups)
      for (const BarSegment& s : g.segments)
        if (std::find(labels.begin(), labels.end(), s.label) == labels.end()) labels.push_back(s.label);
    // A label that is zero in every column draws nothing: no legend entry (its color stays).
    std::vector<std::string> shown;
    for (const std::string& l : labels) {
      bool nonzero = false;
      for (const BarGroup& g : c.groups)
        for (const BarSegment& s : g.segments) nonzero = nonzero || (s.label == l && s.value != 0);
      if (nonzero) shown.push_back(l);
    }
    for (const std::string& l : labels) colors_.of(l);
    if (labels.size() > 1)
      for (auto it = shown.rbegin(); it != shown.rend(); ++it) legend_.entries.push_back({*it, colors_.of(*it)});
    if (!c.predicted_label.empty()) legend_.entries.push_back({c.predicted_label, "black", Legend::Entry::tick});
    double name_w = 0;
    for (const BarGroup& g : c.groups) name_w = std::max(name_w, text_w(g.name, kSmallCharW));
    const double n = static_cast<double>(std::max<size_t>(1, c.groups.size()));
    plot_w_ = std::max(220.0, 52 * n);
    slot_ = plot_w_ / n;
    rotate_ = name_w > slot_ - 4;
    below_ = rotate_ ? name_w * 0.6 + 14 : 18;
    left_ = 24 + tick_label_width(ticks_) + 8;
    notes_ = wrap_notes(c.notes);
  }

  Layout size() const {
    const double w = left_ + plot_w_ + 14 + legend_.width() + 10;
    const double h = kTitleH + std::max<double>(kPlotH, legend_.height()) + below_ + 8 +
                     kNoteH * static_cast<double>(notes_.size()) + 10;
    return {std::max(w, text_w(c_.title, 7.5) + 20), h};
  }

  void draw(std::ostringstream& os, double x0, double y0) const {
    draw_title(os, x0 + 10, y0 + 20, c_.title);
    const Box plot{x0 + left_, y0 + kTitleH, plot_w_, kPlotH};
    const Scale y{ticks_.front(), ticks_.back(), plot.y + plot.h, plot.y};
    draw_y_axis(os, plot, y, ticks_, c_.y_label, x0 + 14);
    Colors colors = colors_;
    const double bar_w = std::min(40.0, slot_ * 0.62);
    for (size_t i = 0; i < c_.groups.size(); ++i) {
      const BarGroup& g = c_.groups[i];
      const double cx = plot.x + slot_ * (static_cast<double>(i) + 0.5);
      double base = 0;
      for (const BarSegment& s : g.segments) {
        const double top = y(base + s.value), bottom = y(base);
        os << fmt("<rect class='bar' x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='%s'><title>%s %s: %s</title></rect>\n",
                  cx - bar_w / 2, top, bar_w, std::max(0.0, bottom - top), colors.of(s.label), esc(g.name).c_str(),
                  esc(s.label).c_str(), value_label(s.value).c_str());
        base += s.value;
      }
      os << fmt("<text x='%.1f' y='%.1f' font-size='10' text-anchor='middle'>%s</text>\n", cx, y(base) - 4,
                value_label(base).c_str());
      if (g.predicted >= 0)
        os << fmt("<line class='predicted' x1='%.1f' x2='%.1f' y1='%.1f' y2='%.1f' stroke='black' stroke-width='2'/>\n",
                  cx - bar_w / 2 - 4, cx + bar_w / 2 + 4, y(g.predicted), y(g.predicted));
      const double ty = plot.y + plot.h + 14;
      if (rotate_)
        os << fmt("<text x='%.1f' y='%.1f' font-size='11' text-anchor='end' transform='rotate(-35 %.1f %.1f)'>%s</text>\n",
                  cx + 3, ty, cx + 3, ty, esc(g.name).c_str());
      else
        os << fmt("<text x='%.1f' y='%.1f' font-size='11' text-anchor='middle'>%s</text>\n", cx, ty, esc(g.name).c_str());
    }
    draw_frame(os, plot);
    legend_.draw(os, plot.x + plot.w + 14, plot.y + 12);
    draw_notes(os, x0 + 10, plot.y + plot.h + below_ + 8 + 11, notes_);
  }

 private:
  std::vector<std::string> wrap_notes(const std::vector<std::string>& notes) const {
    std::vector<std::string> out;
    const double width = std::max(left_ + plot_w_ + 14 + legend_.width(), 300.0) - 10;
    for (const std::string& n : notes)
      for (std::string& l : wrap(n, width)) out.push_back(std::move(l));
    return out;
  }

  const BarChart& c_;
  std::vector<double> ticks_;
  Colors colors_;
  Legend legend_;
  double plot_w_ = 0, slot_ = 0, below_ = 0, left_ = 0;
  bool rotate_ = false;
  std::vector<std::string> notes_;
};

// ---- line chart ----

class LinePanel {
 public:
  explicit LinePanel(const LineChart& c) : c_(c) {
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (const Series& s : c.series)
      for (const Point& p : s.points) {
        if (!usable(p)) continue;
        xlo = std::min(xlo, p.x), xhi = std::max(xhi, p.x);
        ylo = std::min(ylo, p.y), yhi = std::max(yhi, p.y);
        if (c.x.log2 && std::find(xs_.begin(), xs_.end(), p.x) == xs_.end()) xs_.push_back(p.x);
      }
    if (!(xlo <= xhi)) xlo = c.x.log2 ? 1 : 0, xhi = c.x.log2 ? 2 : 1, ylo = 0, yhi = 1;
    if (c.y.include_zero) ylo = std::min(ylo, 0.0), yhi = std::max(yhi, 0.0);
    // 4% headroom: a point at the range's end would otherwise sit on the frame.
    const double pad = 0.04 * (yhi - ylo);
    if (ylo != 0 || !c.y.include_zero) ylo -= pad;
    yhi += pad;
    if (c.x.include_zero && !c.x.log2) xlo = std::min(xlo, 0.0), xhi = std::max(xhi, 0.0);
    yticks_ = nice_ticks(ylo, yhi, 5);
    if (c.x.log2) {
      std::sort(xs_.begin(), xs_.end());
      xdomain_ = {std::log2(xlo) - 0.3, std::log2(xhi) + 0.3};
      if (xlo == xhi) xdomain_ = {std::log2(xlo) - 1, std::log2(xlo) + 1};
    } else {
      xticks_ = nice_ticks(xlo, xhi, 5);
      xdomain_ = {xticks_.front(), xticks_.back()};
    }
    std::vector<std::string> names;  // in the legend: the names of series with a drawable point
    for (const Series& s : c.series) {
      const bool drawn = std::any_of(s.points.begin(), s.points.end(), [&](const Point& p) { return usable(p); });
      if (drawn && std::find(names.begin(), names.end(), s.name) == names.end()) names.push_back(s.name);
    }
    for (const std::string& n : names) legend_.entries.push_back({n, colors_.of(n), Legend::Entry::line});
    for (const auto& [label, dashed] : c.style_keys)
      legend_.entries.push_back({label, "#555", dashed ? Legend::Entry::dashed_line : Legend::Entry::line});
    left_ = 24 + tick_label_width(yticks_) + 8;
    notes_ = wrap_notes(c.notes);
  }

  Layout size() const {
    const double w = left_ + kPlotW + 14 + legend_.width() + 10;
    const double h = kTitleH + std::max<double>(kPlotH, legend_.height()) + 38 +
                     kNoteH * static_cast<double>(notes_.size()) + 10;
    return {std::max(w, text_w(c_.title, 7.5) + 20), h};
  }

  void draw(std::ostringstream& os, double x0, double y0) const {
    draw_title(os, x0 + 10, y0 + 20, c_.title);
    const Box plot{x0 + left_, y0 + kTitleH, kPlotW, kPlotH};
    const Scale y{yticks_.front(), yticks_.back(), plot.y + plot.h, plot.y};
    const Scale x{xdomain_.first, xdomain_.second, plot.x, plot.x + plot.w, c_.x.log2};
    draw_y_axis(os, plot, y, yticks_, c_.y.label, x0 + 14);
    // x ticks: the nice values, or for log2 the data's x values, skipping any that would touch
    // the previous label.
    const std::vector<double>& xt = c_.x.log2 ? xs_ : xticks_;
    double last_right = -INFINITY;
    for (double t : xt) {
      const double px = x(t);
      const std::string label = tick_label(t);
      const double half = text_w(label, kSmallCharW) / 2;
      os << fmt("<line x1='%.1f' x2='%.1f' y1='%.1f' y2='%.1f' stroke='#e4e4e4'/>\n", px, px, plot.y, plot.y + plot.h);
      if (px - half < last_right + 6) continue;
      os << fmt("<text x='%.1f' y='%.1f' font-size='11' text-anchor='middle'>%s</text>\n", px, plot.y + plot.h + 15,
                label.c_str());
      last_right = px + half;
    }
    os << fmt("<text class='axis-label' x='%.1f' y='%.1f' text-anchor='middle'>%s</text>\n", plot.x + plot.w / 2,
              plot.y + plot.h + 32, esc(c_.x.label).c_str());
    Colors colors = colors_;
    for (const Series& s : c_.series) {
      std::string pts;
      std::vector<std::pair<double, double>> px;
      for (const Point& p : s.points) {
        if (!usable(p)) continue;
        px.emplace_back(x(p.x), y(p.y));
        pts += fmt("%s%.1f,%.1f", pts.empty() ? "" : " ", px.back().first, px.back().second);
      }
      const char* color = colors.of(s.name);
      os << fmt("<polyline class='series' data-name='%s' points='%s' fill='none' stroke='%s' stroke-width='2'%s>"
                "<title>%s</title></polyline>\n",
                esc(s.name).c_str(), pts.c_str(), color, s.dashed ? " stroke-dasharray='6 4'" : "",
                esc(s.name).c_str());
      if (s.markers)
        for (const auto& [mx, my] : px)
          os << (s.dashed ? fmt("<circle cx='%.1f' cy='%.1f' r='3' fill='white' stroke='%s' stroke-width='1.5'/>\n", mx, my, color)
                          : fmt("<circle cx='%.1f' cy='%.1f' r='3' fill='%s'/>\n", mx, my, color));
    }
    draw_frame(os, plot);
    legend_.draw(os, plot.x + plot.w + 14, plot.y + 12);
    draw_notes(os, x0 + 10, plot.y + plot.h + 38 + 11, notes_);
  }

 private:
  static constexpr double kPlotW = 380;
  bool usable(const Point& p) const {
    return std::isfinite(p.x) && std::isfinite(p.y) && (!c_.x.log2 || p.x > 0);
  }
  std::vector<std::string> wrap_notes(const std::vector<std::string>& notes) const {
    std::vector<std::string> out;
    const double width = left_ + kPlotW + 14 + legend_.width() - 10;
    for (const std::string& n : notes)
      for (std::string& l : wrap(n, width)) out.push_back(std::move(l));
    return out;
  }

  const LineChart& c_;
  std::vector<double> xs_, xticks_, yticks_;
  std::pair<double, double> xdomain_{0, 1};
  Colors colors_;
  Legend legend_;
  double left_ = 0;
  std::vector<std::string> notes_;
};

}  // namespace

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) lo = 0, hi = 1;
  if (hi < lo) std::swap(lo, hi);
  if (hi == lo) {
    const double pad = lo == 0 ? 1 : std::fabs(lo) * 0.1;
    lo -= pad, hi += pad;
  }
  const double raw = (hi - lo) / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = 10 * mag;
  for (double m : {1.0, 2.0, 2.5, 5.0})
    if (m * mag >= raw * 0.999) {
      step = m * mag;
      break;
    }
  const double first = std::floor(lo / step + 1e-9), last = std::ceil(hi / step - 1e-9);
  std::vector<double> ticks;
  for (double i = first; i <= last; i += 1) {
    const double v = i * step;
    ticks.push_back(std::fabs(v) < step * 1e-9 ? 0.0 : v);
  }
  if (ticks.size() < 2) ticks.push_back(ticks.back() + step);
  return ticks;
}

std::string tick_label(double v) {
  const double a = std::fabs(v);
  if (a < 1e-12) return "0";
  if (a >= 1e9) return fmt("%gG", v / 1e9);
  if (a >= 1e6) return fmt("%gM", v / 1e6);
  if (a >= 1e4) return fmt("%gk", v / 1e3);
  return fmt("%.4g", v);
}

std::string render_svg(const Figure& f) {
  std::ostringstream body;
  double y = 12;
  double width = 0;
  if (!f.title.empty()) {
    body << fmt("<text class='figure-title' x='12' y='%.1f' font-size='16' font-weight='bold'>%s</text>\n", y + 16,
                esc(f.title).c_str());
    width = std::max(width, text_w(f.title, 9.0) + 24);
    y += 26;
  }
  for (const std::string& s : f.subtitle) {
    body << fmt("<text x='12' y='%.1f' fill='#333'>%s</text>\n", y + 12, esc(s).c_str());
    width = std::max(width, text_w(s) + 24);
    y += 17;
  }
  y += 6;
  for (const std::vector<Panel>& row : f.rows) {
    double x = 0, row_h = 0;
    for (const Panel& p : row) {
      Layout size;
      if (p.kind == Panel::bars) {
        const BarPanel bp(p.bar);
        size = bp.size();
        bp.draw(body, x, y);
      } else {
        const LinePanel lp(p.line);
        size = lp.size();
        lp.draw(body, x, y);
      }
      x += size.w + 16;
      row_h = std::max(row_h, size.h);
    }
    width = std::max(width, x);
    y += row_h + 10;
  }
  std::ostringstream os;
  os << fmt("<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' font-family='sans-serif' "
            "font-size='12'>\n<!-- generator: tsp -->\n<rect width='100%%' height='100%%' fill='white'/>\n",
            std::ceil(width), std::ceil(y));
  os << body.str() << "</svg>\n";
  return os.str();
}

}  // namespace tsp::cli
