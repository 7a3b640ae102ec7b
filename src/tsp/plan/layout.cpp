// Layout naming, parsing and the divisibility rules of every scheme.
#include "tsp/plan/layout.h"

#include <cctype>
#include <sstream>

#include "tsp/core/check.h"

namespace tsp::plan {

std::string_view axis_name(Axis axis) {
  switch (axis) {
    case Axis::dp: return "dp";
    case Axis::pp: return "pp";
    case Axis::sp: return "sp";
    case Axis::tp: return "tp";
    case Axis::tsp: return "tsp";
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

int64_t Layout::degree(Axis axis) const {
  switch (axis) {
    case Axis::dp: return dp;
    case Axis::pp: return pp;
    case Axis::sp: return sp;
    case Axis::tp: return tp;
    case Axis::tsp: return tsp;
  }
  return 1;
}

int64_t Layout::weight_shards() const {
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

std::string Layout::name() const {
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

Layout tsp_layout(int64_t tsp, int64_t dp, int64_t pp) {
  return {.kind = LayoutKind::tsp, .dp = dp, .pp = pp, .tsp = tsp};
}
Layout tp_layout(int64_t tp, int64_t dp, int64_t pp) {
  return {.kind = LayoutKind::tp, .dp = dp, .pp = pp, .tp = tp};
}
Layout sp_layout(int64_t sp, int64_t dp, int64_t pp) {
  return {.kind = LayoutKind::sp, .dp = dp, .pp = pp, .sp = sp};
}
Layout tp_sp_layout(int64_t tp, int64_t sp, int64_t dp, int64_t pp) {
  return {.kind = LayoutKind::tp_sp, .dp = dp, .pp = pp, .tp = tp, .sp = sp};
}
Layout dp_layout(int64_t dp, int64_t pp) { return {.kind = LayoutKind::dp, .dp = dp, .pp = pp}; }
Layout fsdp_sp_layout(int64_t sp, int64_t dp, int64_t pp) {
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

Layout parse_layout(std::string_view text) {
  std::string s;
  for (char c : text) s += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  TSP_CHECK(!s.empty(), "empty layout name; expected e.g. tsp8, tp4xsp2, dp128xtsp8, fsdp-sp8");
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
  Layout l{.kind = kind_of(seen, deg), .dp = deg[0], .pp = deg[1], .tp = deg[3], .sp = deg[2],
           .tsp = deg[4]};
  if (seen[5]) l.sp = deg[5];
  return l;
}

void validate(const Layout& l) {
  for (Axis a : kAxes) {
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

namespace {

void need_divisible(std::vector<std::string>& out, int64_t size, const char* what, int64_t n,
                    std::string_view axis) {
  if (n > 1 && size % n != 0) {
    std::ostringstream os;
    os << size << ' ' << what << " not divisible by " << axis << '=' << n;
    out.push_back(os.str());
  }
}

void need_zigzag(std::vector<std::string>& out, int64_t seq, int64_t n, std::string_view axis) {
  if (n > 1 && seq % (2 * n) != 0) {
    std::ostringstream os;
    os << "sequence length " << seq << " not divisible by 2*" << axis << '=' << 2 * n
       << " (zigzag split)";
    out.push_back(os.str());
  }
}

}  // namespace

std::vector<std::string> divisibility_problems(const model::ModelConfig& c, const Workload& w,
                                               const Layout& l) {
  validate(l);
  std::vector<std::string> out;
  const int64_t shards = l.kind == LayoutKind::tsp ? l.tsp : l.tp;  // head/vocab sharding degree
  const std::string_view axis = l.kind == LayoutKind::tsp ? "tsp" : "tp";
  need_divisible(out, c.num_attention_heads(), "attention heads are", shards, axis);
  need_divisible(out, c.num_key_value_heads(), "key/value heads are", shards, axis);
  need_divisible(out, c.intermediate_size(), "intermediate size is", shards, axis);
  need_divisible(out, c.vocab_size(), "vocabulary size is", shards, axis);
  if (l.kind == LayoutKind::tsp) need_zigzag(out, w.seq, l.tsp, "tsp");
  need_zigzag(out, w.seq, l.sp, l.kind == LayoutKind::fsdp_sp ? "fsdp-sp" : "sp");
  need_divisible(out, c.num_hidden_layers(), "layers are", l.pp, "pp");
  return out;
}

void require_divisible(const model::ModelConfig& c, const Workload& w, const Layout& l) {
  const std::vector<std::string> problems = divisibility_problems(c, w, l);
  if (problems.empty()) return;
  std::ostringstream os;
  for (size_t i = 0; i < problems.size(); ++i) os << (i ? "; " : "") << problems[i];
  TSP_THROW(InvalidArgument, "layout ", l.name(), " does not fit: ", os.str());
}

}  // namespace tsp::plan
