// Evaluating layouts on a cluster: one layout's full plan (memory, traffic, time, or why it is
// rejected), the comparison set, and the exhaustive search over factorisations.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tsp/model/model_config.h"
#include "tsp/plan/cluster.h"
#include "tsp/plan/layout.h"
#include "tsp/plan/memory_model.h"
#include "tsp/plan/time_model.h"
#include "tsp/plan/traffic.h"
#include "tsp/plan/workload.h"

namespace tsp::plan {

struct LayoutPlan {
  Layout layout;
  std::vector<std::string> problems;  // divisibility problems; when non-empty nothing else is set
  bool fits = false;                  // memory total <= the device's memory
  std::string rejection;              // empty for a valid plan, else why it was rejected
  MemoryEstimate memory;
  LayerTraffic layer;                 // rank 0 of every axis
  StepTraffic step;
  StepTime time;

  bool valid() const { return rejection.empty(); }
};

// Everything about one layout. Never throws for an unsuitable layout: it is rejected with a
// reason ("out of memory: needs 219.3 GiB per device, has 192.0 GiB (27.3 GiB over)", or the
// divisibility problems). Time is predicted even when memory does not fit.
LayoutPlan plan_layout(const model::ModelConfig& config, const Workload& work,
                       const Layout& layout, const Cluster& cluster);

// The comparison of the TSP study for `devices` devices: with G = min(devices, devices_per_node)
// devices per model replica and dp = devices / G: TSP G, TP G, every TP x SP with both > 1
// (4x2, 2x4 for G = 8), SP G, FSDP-SP G (all with dp), and pure DP over all devices.
// Throws InvalidArgument when devices is not a multiple of G.
std::vector<Layout> comparison_layouts(int64_t devices, const Cluster& cluster);

// The largest device count the search and the comparison accept (2^20 = 1,048,576): far above
// any cluster, and it keeps the enumeration (O(sqrt(devices)) per divisor) instant.
inline constexpr int64_t kMaxSearchDevices = int64_t{1} << 20;

// Every divisor of n >= 1, ascending, in O(sqrt(n)).
std::vector<int64_t> divisors(int64_t n);

struct SearchOptions {
  int64_t max_pp = 1;  // largest pipeline degree tried (1: no pipeline)
};
// Every layout of exactly `devices` devices: dp x pp x (tsp | tp | sp | tp x sp | fsdp-sp) for
// every factorisation with pp <= max_pp, and pure dp (x pp). Throws InvalidArgument unless
// 1 <= devices <= kMaxSearchDevices.
std::vector<Layout> enumerate_layouts(int64_t devices, const SearchOptions& options = {});

struct SearchResult {
  std::vector<LayoutPlan> ranked;    // valid plans, fastest (tokens/s) first
  std::vector<LayoutPlan> rejected;  // with their reasons, in enumeration order
};
SearchResult search(const model::ModelConfig& config, const Workload& work, int64_t devices,
                    const Cluster& cluster, const SearchOptions& options = {});

// Helpers shared with the report: bytes as "12.3 GiB" and the sorted ranking rule.
std::string format_gib(int64_t bytes);
void rank_by_throughput(std::vector<LayoutPlan>& plans);

}  // namespace tsp::plan
