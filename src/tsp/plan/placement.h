// Where a layout's groups land on nodes (tsp innermost, then tp, sp, pp, dp, as comm/mesh.h numbers
// ranks; consecutive ranks fill a node) and which link, bandwidth and latency a collective uses.
#pragma once

#include <cstdint>

#include "tsp/plan/cluster.h"
#include "tsp/plan/collective_bytes.h"
#include "tsp/plan/layout.h"
#include "tsp/plan/traffic.h"

namespace tsp::plan {

// Distance between consecutive members of an axis group: the product of the inner axes' degrees.
int64_t axis_stride(const Layout& layout, Axis axis);
// Nodes spanned by the group along `axis` that contains rank 0 (every group is a translate).
int64_t nodes_spanned(const Layout& layout, Axis axis, int64_t devices_per_node);

struct Link {
  double bytes_per_s = 0;  // per direction, as one rank sees it
  double latency_s = 0;    // per algorithm step
  bool inter_node = false;
};
// A group within one node uses the intra-node link: the device's switch bandwidth, or on a full
// mesh g-1 peer links for a collective and one link for point-to-point. A group spanning nodes
// is bounded by the per-device NIC.
Link collective_link(const Cluster& cluster, const Layout& layout, Axis axis, CollectiveOp op);
// Algorithm steps (latency terms) of one call on g ranks: 2(g-1) for all-reduce, 1 for
// point-to-point, g-1 otherwise (rings / pipelined chains).
int64_t latency_steps(CollectiveOp op, int64_t group);
// calls * steps * latency + max(bytes sent, bytes received) / bandwidth.
double collective_seconds(const Cluster& cluster, const Layout& layout, const CollectiveTraffic& t);

}  // namespace tsp::plan
