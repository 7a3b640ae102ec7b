// Human-readable tables and JSON of layout plans: memory per category, bytes per layer, predicted
// time, the best layout and why the others were rejected.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tsp/model/model_config.h"
#include "tsp/plan/cluster.h"
#include "tsp/plan/search.h"
#include "tsp/plan/workload.h"

namespace tsp::plan {

// What was planned, printed as a header and stored in the JSON.
struct ReportContext {
  std::string model_name;  // preset name or config path
  model::ModelConfig config;
  Workload work;
  Cluster cluster;
  int64_t devices = 1;
};

// Header, a memory table (GiB per category, total, fits), a traffic/time table (received bytes
// per layer per device for forward / backward / recompute, step time, tokens/s, dominant term),
// then the rejected layouts with their reasons. detail adds every collective of every layout.
std::string format_plans(const ReportContext& ctx, const std::vector<LayoutPlan>& plans,
                         bool detail = false);
// The best valid layout first, then the ranking (at most `top` rows; 0 = all) and the rejected.
std::string format_search(const ReportContext& ctx, const SearchResult& result, int64_t top,
                          bool detail = false);
// Everything as one JSON document (pretty-printed); `best` is the search winner or empty.
std::string plans_to_json(const ReportContext& ctx, const std::vector<LayoutPlan>& plans,
                          const std::string& best = "");

}  // namespace tsp::plan
