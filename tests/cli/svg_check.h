// A small XML reader for checking the charts `tsp plot` and `tsp bench --svg` write: parses the
// document into elements (throws on anything malformed: unbalanced tags, bad attributes), and
// finds texts, plot areas and series polylines, so tests check a chart's structure, not its bytes.
#pragma once

#include <cctype>
#include <cstdlib>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace tsp::testing {

struct XmlElement {
  std::string name;
  std::map<std::string, std::string> attrs;
  std::string text;  // direct character data, entities decoded
  std::vector<XmlElement> children;

  std::string attr(const std::string& k) const {
    auto it = attrs.find(k);
    return it == attrs.end() ? std::string() : it->second;
  }
  double num(const std::string& k) const { return std::strtod(attr(k).c_str(), nullptr); }
  // This element and every descendant, depth first.
  void collect(std::vector<const XmlElement*>& out) const {
    out.push_back(this);
    for (const XmlElement& c : children) c.collect(out);
  }
};

inline std::string xml_decode(const std::string& s) {
  std::string o;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '&') {
      o += s[i];
      continue;
    }
    const size_t semi = s.find(';', i);
    if (semi == std::string::npos) throw std::runtime_error("unterminated entity in '" + s + "'");
    const std::string e = s.substr(i + 1, semi - i - 1);
    if (e == "lt") o += '<';
    else if (e == "gt") o += '>';
    else if (e == "amp") o += '&';
    else if (e == "apos") o += '\'';
    else if (e == "quot") o += '"';
    else throw std::runtime_error("unknown entity &" + e + ";");
    i = semi;
  }
  return o;
}

class XmlParser {
 public:
  explicit XmlParser(const std::string& s) : s_(s) {}
  XmlElement document() {
    skip_prolog();
    XmlElement root = element();
    skip_space();
    if (pos_ != s_.size()) fail("content after the root element");
    return root;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error("XML: " + what + " at offset " + std::to_string(pos_));
  }
  void skip_space() {
    while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_;
  }
  void skip_prolog() {
    for (;;) {
      skip_space();
      if (s_.compare(pos_, 2, "<?") == 0) pos_ = s_.find("?>", pos_) + 2;
      else if (s_.compare(pos_, 4, "<!--") == 0) pos_ = s_.find("-->", pos_) + 3;
      else return;
      if (pos_ < 2) fail("unterminated prolog");
    }
  }
  std::string name() {
    const size_t start = pos_;
    while (pos_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '-' ||
                                s_[pos_] == ':' || s_[pos_] == '_'))
      ++pos_;
    if (pos_ == start) fail("expected a name");
    return s_.substr(start, pos_ - start);
  }
  XmlElement element() {
    if (pos_ >= s_.size() || s_[pos_] != '<') fail("expected '<'");
    ++pos_;
    XmlElement e;
    e.name = name();
    for (;;) {
      skip_space();
      if (pos_ >= s_.size()) fail("unterminated tag <" + e.name);
      if (s_.compare(pos_, 2, "/>") == 0) {
        pos_ += 2;
        return e;
      }
      if (s_[pos_] == '>') {
        ++pos_;
        break;
      }
      const std::string k = name();
      skip_space();
      if (pos_ >= s_.size() || s_[pos_] != '=') fail("attribute " + k + " without '='");
      ++pos_;
      skip_space();
      const char q = pos_ < s_.size() ? s_[pos_] : 0;
      if (q != '\'' && q != '"') fail("attribute " + k + " not quoted");
      const size_t end = s_.find(q, pos_ + 1);
      if (end == std::string::npos) fail("unterminated attribute " + k);
      const std::string v = s_.substr(pos_ + 1, end - pos_ - 1);
      if (v.find('<') != std::string::npos) fail("'<' in attribute " + k);
      if (!e.attrs.emplace(k, xml_decode(v)).second) fail("duplicate attribute " + k);
      pos_ = end + 1;
    }
    for (;;) {
      const size_t lt = s_.find('<', pos_);
      if (lt == std::string::npos) fail("element <" + e.name + "> not closed");
      e.text += xml_decode(s_.substr(pos_, lt - pos_));
      pos_ = lt;
      if (s_.compare(pos_, 2, "</") == 0) {
        pos_ += 2;
        const std::string closing = name();
        if (closing != e.name) fail("</" + closing + "> closes <" + e.name + ">");
        skip_space();
        if (pos_ >= s_.size() || s_[pos_] != '>') fail("bad closing tag");
        ++pos_;
        return e;
      }
      if (s_.compare(pos_, 4, "<!--") == 0) {
        pos_ = s_.find("-->", pos_) + 3;
        continue;
      }
      e.children.push_back(element());
    }
  }

  const std::string& s_;
  size_t pos_ = 0;
};

inline XmlElement parse_xml(const std::string& s) { return XmlParser(s).document(); }

// A chart's parts: texts, plot areas and series (name, pixel points).
struct SvgChart {
  XmlElement root;
  std::vector<std::string> texts;
  struct Area {
    double x, y, w, h;
    bool contains(double px, double py) const {
      return px >= x - 0.05 && px <= x + w + 0.05 && py >= y - 0.05 && py <= y + h + 0.05;
    }
  };
  std::vector<Area> areas;
  struct Line {
    std::string name;
    bool dashed = false;
    std::vector<std::pair<double, double>> points;
  };
  std::vector<Line> series;

  bool has_text(const std::string& needle) const {
    for (const std::string& t : texts)
      if (t.find(needle) != std::string::npos) return true;
    return false;
  }
  // Whether every point of `l` lies inside one plot area.
  bool inside_one_area(const Line& l) const {
    for (const Area& a : areas) {
      bool all = true;
      for (const auto& [x, y] : l.points) all = all && a.contains(x, y);
      if (all) return true;
    }
    return false;
  }
};

inline SvgChart read_svg_chart(const std::string& svg) {
  SvgChart c;
  c.root = parse_xml(svg);
  std::vector<const XmlElement*> all;
  c.root.collect(all);
  for (const XmlElement* e : all) {
    if (e->name == "text") c.texts.push_back(e->text);
    if (e->name == "rect" && e->attr("class") == "plot-area")
      c.areas.push_back({e->num("x"), e->num("y"), e->num("width"), e->num("height")});
    if (e->name == "polyline" && e->attr("class") == "series") {
      SvgChart::Line l;
      l.name = e->attr("data-name");
      l.dashed = !e->attr("stroke-dasharray").empty();
      std::istringstream pts(e->attr("points"));
      std::string p;
      while (pts >> p) {
        const size_t comma = p.find(',');
        l.points.emplace_back(std::strtod(p.substr(0, comma).c_str(), nullptr),
                              std::strtod(p.substr(comma + 1).c_str(), nullptr));
      }
      c.series.push_back(std::move(l));
    }
  }
  return c;
}

}  // namespace tsp::testing
