// Layout evaluation, the comparison set and the exhaustive search.
#include "tsp/plan/search.h"

#include <algorithm>
#include <cstdio>

#include "tsp/core/check.h"

namespace tsp::plan {

std::string format_gib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GiB", static_cast<double>(bytes) / (1u << 30));
  return buf;
}

LayoutPlan plan_layout(const model::ModelConfig& config, const Workload& work,
                       const Layout& layout, const Cluster& cluster) {
  validate_sizes(config, work);
  validate(cluster);
  LayoutPlan p;
  p.layout = layout;
  p.problems = divisibility_problems(config, work, layout);
  if (!p.problems.empty()) {
    for (size_t i = 0; i < p.problems.size(); ++i) p.rejection += (i ? "; " : "") + p.problems[i];
    return p;
  }
  p.memory = memory(config, work, layout);
  p.layer = layer_traffic(config, work, layout);
  p.step = step_traffic(config, work, layout);
  p.time = step_time(config, work, layout, cluster);
  const int64_t have = cluster.memory_bytes(), need = p.memory.total();
  p.fits = need <= have;
  if (!p.fits) {
    p.rejection = "out of memory: needs " + format_gib(need) + " per device, has " +
                  format_gib(have) + " (" + format_gib(need - have) + " over)";
  }
  return p;
}

std::vector<Layout> comparison_layouts(int64_t devices, const Cluster& cluster) {
  TSP_CHECK(devices >= 1 && devices <= kMaxSearchDevices, "devices must lie in [1, ", kMaxSearchDevices,
            "], got ", devices);
  const int64_t g = std::min(devices, cluster.devices_per_node);
  TSP_CHECK(devices % g == 0, "devices ", devices, " is not a multiple of the node size ", g,
            " of cluster ", cluster.name);
  const int64_t dp = devices / g;
  std::vector<Layout> out;
  if (g > 1) {
    out.push_back(tsp_layout(g, dp));
    out.push_back(tp_layout(g, dp));
    for (int64_t t = g / 2; t >= 2; --t) {
      if (g % t == 0 && g / t > 1) out.push_back(tp_sp_layout(t, g / t, dp));
    }
    out.push_back(sp_layout(g, dp));
  }
  out.push_back(dp_layout(devices));
  if (g > 1) out.push_back(fsdp_sp_layout(g, dp));
  return out;
}

std::vector<int64_t> divisors(int64_t n) {
  TSP_CHECK(n >= 1, "divisors of ", n, ": n must be >= 1");
  std::vector<int64_t> small, large;
  for (int64_t d = 1; d <= n / d; ++d) {
    if (n % d != 0) continue;
    small.push_back(d);
    if (d != n / d) large.push_back(n / d);
  }
  small.insert(small.end(), large.rbegin(), large.rend());
  return small;
}

std::vector<Layout> enumerate_layouts(int64_t devices, const SearchOptions& o) {
  TSP_CHECK(devices >= 1 && devices <= kMaxSearchDevices, "devices must lie in [1, ", kMaxSearchDevices,
            "] for the search, got ", devices);
  TSP_CHECK(o.max_pp >= 1, "max_pp must be >= 1, got ", o.max_pp);
  // Only divisors can be degrees: O(sqrt(devices)) to list them, then work per divisor pair
  // (a prime count has two divisors, so --devices 999999937 is two layouts, not a billion loops).
  std::vector<Layout> out;
  for (const int64_t dp : divisors(devices)) {
    for (const int64_t pp : divisors(devices / dp)) {
      if (pp > o.max_pp) break;
      const int64_t m = devices / dp / pp;
      if (m == 1) {
        out.push_back(dp_layout(dp, pp));
        continue;
      }
      out.push_back(tsp_layout(m, dp, pp));
      out.push_back(tp_layout(m, dp, pp));
      const std::vector<int64_t> ds = divisors(m);
      for (auto t = ds.rbegin(); t != ds.rend(); ++t) {  // t = m/2 .. 2, as tp x sp with sp >= 2
        if (*t >= 2 && m / *t >= 2) out.push_back(tp_sp_layout(*t, m / *t, dp, pp));
      }
      out.push_back(sp_layout(m, dp, pp));
      out.push_back(fsdp_sp_layout(m, dp, pp));
    }
  }
  return out;
}

void rank_by_throughput(std::vector<LayoutPlan>& plans) {
  std::stable_sort(plans.begin(), plans.end(), [](const LayoutPlan& a, const LayoutPlan& b) {
    return a.time.tokens_per_s > b.time.tokens_per_s;
  });
}

SearchResult search(const model::ModelConfig& config, const Workload& work, int64_t devices,
                    const Cluster& cluster, const SearchOptions& options) {
  SearchResult r;
  for (const Layout& l : enumerate_layouts(devices, options)) {
    LayoutPlan p = plan_layout(config, work, l, cluster);
    (p.valid() ? r.ranked : r.rejected).push_back(std::move(p));
  }
  rank_by_throughput(r.ranked);
  return r;
}

}  // namespace tsp::plan
