// Names of the communication-wait sites, as the benchmarks print them.
#include "tsp/parallel/comm_clock.h"

namespace tsp::parallel {

std::string_view comm_site_name(CommSite site) {
  switch (site) {
    case CommSite::weight_fetch: return "weight shards";
    case CommSite::kv_gather: return "K/V gather";
    case CommSite::kv_reduce_scatter: return "dK/dV reduce-scatter";
    case CommSite::grad_reduce: return "weight-grad reduce";
    case CommSite::activations: return "TP activations";
    case CommSite::vocab: return "vocab exchange";
    case CommSite::replica_sum: return "replica grad sum";
    case CommSite::pipeline: return "pipeline stages";
    case CommSite::other: return "other";
  }
  return "?";
}

}  // namespace tsp::parallel
