// The layout registry: naming, parsing (planner names and command-line flags) and the kind rules.
// Model-dependent rules (heads, sequence and layers divisible by the degrees) live in plan/layout.
#include "tsp/core/layout_spec.h"

#include <cctype>
#include <sstream>

#include "tsp/core/check.h"

namespace tsp {

std::string_view axis_name(LayoutAxis axis) {
  switch (axis) {
    case LayoutAxis::dp: return "dp";
    case LayoutAxis::pp: return "pp";
    case LayoutAxis::sp: return "sp";
    case LayoutAxis::tp: return "tp";
    case LayoutAxis::tsp: return "tsp";
  }
  return "?";
}

std::string_view layout_kind_name(LayoutKind kind) {
  switch (kind) {
    case LayoutKind::tsp: return "tsp";
    case LayoutKind::tp: return "tp";
    case LayoutKind::sp: return "sp";
    case LayoutKind::tp_sp: return "tp+sp";
    case LayoutKind::dp: return "dp";
    case LayoutKind::fsdp_sp: return "fsdp-sp";
  }
  return "?";
}

int64_t LayoutSpec::degree(LayoutAxis axis) const {
  switch (axis) {
    case LayoutAxis::dp: return dp;
    case LayoutAxis::pp: return pp;
    case LayoutAxis::sp: return sp;
    case LayoutAxis::tp: return tp;
    case LayoutAxis::tsp: return tsp;
  }
  return 1;
}

int64_t LayoutSpec::weight_shards() const {
  switch (kind) {
    case LayoutKind::tsp: return tsp;
    case LayoutKind::tp:
    case LayoutKind::tp_sp: return tp;
    case LayoutKind::fsdp_sp: return sp;
    case LayoutKind::sp:
    case LayoutKind::dp: return 1;
  }
  return 1;
}

std::string LayoutSpec::name() const {
  std::ostringstream os;
  auto part = [&](std::string_view axis, int64_t degree) {
    if (os.tellp() > 0) os << 'x';
    os << axis << degree;
  };
  const bool dp_only = kind == LayoutKind::dp;
  if (dp > 1 || (dp_only && pp == 1)) part("dp", dp);
  if (pp > 1) part("pp", pp);
  switch (kind) {
    case LayoutKind::tsp: part("tsp", tsp); break;
    case LayoutKind::tp: part("tp", tp); break;
    case LayoutKind::sp: part("sp", sp); break;
    case LayoutKind::tp_sp: part("tp", tp); part("sp", sp); break;
    case LayoutKind::fsdp_sp: part("fsdp-sp", sp); break;
    case LayoutKind::dp: break;
  }
  return os.str();
}

LayoutSpec tsp_layout(int64_t tsp, int64_t dp, int64_t pp) {
  return {.kind = LayoutKind::tsp, .dp = dp, .pp = pp, .tsp = tsp};
}
LayoutSpec tp_layout(int64_t tp, int64_t dp, int64_t pp) {
  return {.kind = LayoutKind::tp, .dp = dp, .pp = pp, .tp = tp};
}
LayoutSpec sp_layout(int64_t sp, int64_t dp, int64_t pp) {
  return {.kind = LayoutKind::sp, .dp = dp, .pp = pp, .sp = sp};
}
LayoutSpec tp_sp_layout(int64_t tp, int64_t sp, int64_t dp, int64_t pp) {
  return {.kind = LayoutKind::tp_sp, .dp = dp, .pp = pp, .tp = tp, .sp = sp};
}
LayoutSpec dp_layout(int64_t dp, int64_t pp) { return {.kind = LayoutKind::dp, .dp = dp, .pp = pp}; }
LayoutSpec fsdp_sp_layout(int64_t sp, int64_t dp, int64_t pp) {
  return {.kind = LayoutKind::fsdp_sp, .dp = dp, .pp = pp, .sp = sp};
}

namespace {

// Axis tokens, longest first where one is a prefix of another.
struct AxisToken {
  std::string_view text;
  int slot;  // 0 dp, 1 pp, 2 sp, 3 tp, 4 tsp, 5 fsdp-sp
};
constexpr AxisToken kTokens[] = {{"fsdp-sp", 5}, {"tsp", 4}, {"tp", 3}, {"sp", 2}, {"dp", 0},
                                 {"pp", 1}};

LayoutKind kind_of(const std::array<bool, 6>& seen, const std::array<int64_t, 6>& deg) {
  if (seen[5]) return LayoutKind::fsdp_sp;
  if (seen[4]) return LayoutKind::tsp;
  if (deg[3] > 1 && deg[2] > 1) return LayoutKind::tp_sp;
  if (deg[3] > 1) return LayoutKind::tp;
  if (deg[2] > 1) return LayoutKind::sp;
  if (seen[3]) return LayoutKind::tp;
  if (seen[2]) return LayoutKind::sp;
  return LayoutKind::dp;
}

}  // namespace

LayoutSpec parse_layout(std::string_view text) {
  std::string s;
  for (char c : text) s += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  TSP_CHECK(!s.empty(), "empty layout name; expected e.g. tsp8, tp4xsp2, dp128xtsp8, fsdp-sp8");
  if (s == "single") return dp_layout(1);
  std::array<bool, 6> seen{};
  std::array<int64_t, 6> deg{1, 1, 1, 1, 1, 1};
  size_t i = 0;
  while (i < s.size()) {
    if (i > 0 && (s[i] == 'x' || s[i] == '*' || s[i] == '.')) ++i;
    const AxisToken* tok = nullptr;
    for (const AxisToken& t : kTokens) {
      if (s.compare(i, t.text.size(), t.text) == 0) { tok = &t; break; }
    }
    TSP_CHECK(tok != nullptr, "layout \"", text, "\": unknown axis at \"", s.substr(i),
              "\"; axes are dp, pp, tsp, tp, sp, fsdp-sp followed by a degree (e.g. tp4xsp2)");
    i += tok->text.size();
    size_t end = i;
    while (end < s.size() && std::isdigit(static_cast<unsigned char>(s[end]))) ++end;
    TSP_CHECK(end > i && end - i <= 9, "layout \"", text, "\": axis ", tok->text,
              " needs a degree (1 to 999999999)");
    TSP_CHECK(!seen[tok->slot], "layout \"", text, "\": axis ", tok->text, " given twice");
    seen[tok->slot] = true;
    deg[tok->slot] = std::stoll(s.substr(i, end - i));
    TSP_CHECK(deg[tok->slot] >= 1, "layout \"", text, "\": degree of ", tok->text, " must be >= 1");
    i = end;
  }
  TSP_CHECK(!(seen[4] && (seen[2] || seen[3] || seen[5])) && !(seen[5] && (seen[2] || seen[3])),
            "layout \"", text, "\": tsp and fsdp-sp each own the model-parallel group; they do "
            "not combine with tp, sp or each other (only with dp and pp)");
  LayoutSpec l{.kind = kind_of(seen, deg), .dp = deg[0], .pp = deg[1], .tp = deg[3], .sp = deg[2],
           .tsp = deg[4]};
  if (seen[5]) l.sp = deg[5];
  return l;
}

void validate(const LayoutSpec& l) {
  for (LayoutAxis a : kLayoutAxes) {
    TSP_CHECK(l.degree(a) >= 1, "layout ", l.name(), ": degree of ", axis_name(a),
              " must be >= 1, got ", l.degree(a));
  }
  const bool ok = [&] {
    switch (l.kind) {
      case LayoutKind::tsp: return l.tp == 1 && l.sp == 1;
      case LayoutKind::tp: return l.tsp == 1 && l.sp == 1;
      case LayoutKind::sp:
      case LayoutKind::fsdp_sp: return l.tsp == 1 && l.tp == 1;
      case LayoutKind::tp_sp: return l.tsp == 1;
      case LayoutKind::dp: return l.tsp == 1 && l.tp == 1 && l.sp == 1;
    }
    return false;
  }();
  TSP_CHECK(ok, "layout of kind ", layout_kind_name(l.kind), " cannot have degrees tsp=", l.tsp,
            " tp=", l.tp, " sp=", l.sp);
}

bool is_layout_kind_name(std::string_view s) {
  return s == "single" || s == "tsp" || s == "tp" || s == "sp" || s == "tp+sp" || s == "dp" ||
         s == "fsdp-sp";
}

LayoutSpec layout_from_flags(const LayoutFlags& f) {
  TSP_CHECK(f.tsp >= 1 && f.tp >= 1 && f.sp >= 1 && f.dp >= 1 && f.pp >= 1,
            "--tsp, --tp, --sp, --dp and --pp must be >= 1, got ", f.tsp, ", ", f.tp, ", ", f.sp, ", ", f.dp,
            " and ", f.pp);
  const std::string_view kind = f.layout;
  if (!is_layout_kind_name(kind)) {
    // A planner name carries its own degrees; the flags must not say something else.
    LayoutSpec l;
    try {
      l = parse_layout(kind);
    } catch (const InvalidArgument& e) {
      TSP_THROW(InvalidArgument, "--layout must be single, tsp, tp, sp, tp+sp, dp, fsdp-sp or a "
                "layout name such as tsp4, dp2xtsp2, tp2xsp2 (", e.what(), ")");
    }
    TSP_CHECK(f.tsp == 1 && f.tp == 1 && f.sp == 1 && f.dp == 1 && f.pp == 1, "--layout ", kind,
              " names its degrees; leave --tsp, --tp, --sp, --dp and --pp out (or use --layout ",
              layout_kind_name(l.kind), " with them)");
    return l;
  }
  // Each kind uses only its own degrees (dp composes with every distributed kind).
  const bool uses_tsp = kind == "tsp", uses_tp = kind == "tp" || kind == "tp+sp";
  const bool uses_sp = kind == "sp" || kind == "tp+sp" || kind == "fsdp-sp";
  TSP_CHECK((uses_tsp || f.tsp == 1) && (uses_tp || f.tp == 1) && (uses_sp || f.sp == 1) &&
                (kind != "single" || (f.dp == 1 && f.pp == 1)),
            "--layout ", kind, " does not use ", (!uses_tsp && f.tsp != 1) ? "--tsp" :
            (!uses_tp && f.tp != 1) ? "--tp" : (!uses_sp && f.sp != 1) ? "--sp" : f.dp != 1 ? "--dp" : "--pp",
            " (single: no degrees; tsp: --tsp; tp: --tp; sp and fsdp-sp: --sp; tp+sp: --tp and "
            "--sp; every distributed layout: --dp and --pp)");
  if (kind == "single") return dp_layout(1);
  if (kind == "tsp") return tsp_layout(f.tsp, f.dp, f.pp);
  if (kind == "tp") return tp_layout(f.tp, f.dp, f.pp);
  if (kind == "sp") return sp_layout(f.sp, f.dp, f.pp);
  if (kind == "tp+sp") return tp_sp_layout(f.tp, f.sp, f.dp, f.pp);
  if (kind == "fsdp-sp") return fsdp_sp_layout(f.sp, f.dp, f.pp);
  return dp_layout(f.dp, f.pp);
}

}  // namespace tsp
