// Group placement on nodes and link selection.
#include "tsp/plan/placement.h"

#include <algorithm>
#include <set>

namespace tsp::plan {

int64_t axis_stride(const Layout& l, Axis axis) {
  // kAxes is ordered outermost (dp) to innermost (tsp): multiply the degrees after `axis`.
  int64_t stride = 1;
  bool inner = false;
  for (Axis a : kAxes) {
    if (inner) stride *= l.degree(a);
    if (a == axis) inner = true;
  }
  return stride;
}

int64_t nodes_spanned(const Layout& l, Axis axis, int64_t devices_per_node) {
  const int64_t stride = axis_stride(l, axis), g = l.degree(axis);
  std::set<int64_t> nodes;
  for (int64_t i = 0; i < g; ++i) nodes.insert(i * stride / devices_per_node);
  return static_cast<int64_t>(nodes.size());
}

Link collective_link(const Cluster& c, const Layout& l, Axis axis, CollectiveOp op) {
  const int64_t g = l.degree(axis);
  if (nodes_spanned(l, axis, c.devices_per_node) > 1) {
    return {.bytes_per_s = c.inter_node_bandwidth_gbs * 1e9,
            .latency_s = c.inter_node_latency_us * 1e-6, .inter_node = true};
  }
  double bw = c.intra_node_bandwidth_gbs * 1e9;
  const bool p2p = op == CollectiveOp::send || op == CollectiveOp::recv ||
                   op == CollectiveOp::sendrecv;
  if (c.intra_node_topology == IntraNodeTopology::full_mesh && !p2p) {
    bw *= static_cast<double>(std::max<int64_t>(g - 1, 1));
  }
  return {.bytes_per_s = bw, .latency_s = c.intra_node_latency_us * 1e-6, .inter_node = false};
}

int64_t latency_steps(CollectiveOp op, int64_t g) {
  switch (op) {
    case CollectiveOp::all_reduce: return 2 * (g - 1);
    case CollectiveOp::send:
    case CollectiveOp::recv:
    case CollectiveOp::sendrecv: return 1;
    default: return g - 1;
  }
}

double collective_seconds(const Cluster& c, const Layout& l, const CollectiveTraffic& t) {
  const Link link = collective_link(c, l, t.axis, t.op);
  const double bytes = static_cast<double>(std::max(t.bytes_sent, t.bytes_received));
  return static_cast<double>(t.calls * latency_steps(t.op, t.group)) * link.latency_s +
         bytes / link.bytes_per_s;
}

}  // namespace tsp::plan
