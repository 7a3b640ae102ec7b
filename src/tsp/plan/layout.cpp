// The divisibility rules of every scheme (the layout registry itself is core/layout_spec).
#include "tsp/plan/layout.h"

#include <sstream>

#include "tsp/core/check.h"

namespace tsp::plan {

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
