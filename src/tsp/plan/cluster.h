// A cluster description: devices per node, memory, achieved matmul throughput, intra- and
// inter-node links; built-in presets (mi300x, h100), JSON files, and the calibrated `local` file.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace tsp::plan {

// How devices of one node reach each other. switched: every device has `intra_node_bandwidth`
// into a switch (NVSwitch), whatever the group. full_mesh: one link of that bandwidth to each
// peer (Infinity Fabric), so a collective over g devices of a node can use g-1 links, a
// point-to-point transfer one.
enum class IntraNodeTopology { switched, full_mesh };
std::string_view topology_name(IntraNodeTopology t);  // "switch", "full_mesh"

struct Cluster {
  std::string name;
  std::string description;  // where the numbers come from
  int64_t devices_per_node = 1;
  double memory_per_device_gib = 0;  // usable memory per device, GiB
  double matmul_tflops_bf16 = 0;     // ACHIEVED dense matmul rate per device, bf16 inputs
  double matmul_tflops_fp32 = 0;     // ACHIEVED dense matmul rate per device, fp32
  // ACHIEVED rate of the causal attention's FLOPs; 0: the matmul rate (the presets). A small
  // model's attention (long S, short heads) and its matmuls (narrow h) can run at different rates.
  double attention_tflops_bf16 = 0;
  double attention_tflops_fp32 = 0;
  IntraNodeTopology intra_node_topology = IntraNodeTopology::switched;
  double intra_node_bandwidth_gbs = 0;  // GB/s (1e9 B/s) per direction: per device or per link
  double intra_node_latency_us = 0;
  double inter_node_bandwidth_gbs = 0;  // GB/s per direction per device (its NIC)
  double inter_node_latency_us = 0;
  // Whether transfers between nodes move while the ranks compute. true: the NIC or the MPI
  // library progresses posted operations by itself (RDMA, a progress thread). false: they move
  // only inside MPI calls, as Open MPI's TCP transport does (a posted message larger than the
  // eager limit waits for the receiver's next MPI call): overlappable collectives between nodes
  // then hide only their eager part (below) and add the rest (docs/cluster.md measures it).
  bool inter_node_background_progress = true;
  // Without background progress: the bytes of each message between nodes that still move when it
  // is posted, before any MPI call waits for it. Open MPI's TCP transport sends a message up to its
  // eager limit (btl_tcp_eager_limit, 64 KiB) whole, and a larger one's first fragment of that
  // size with the rendezvous header; the rest needs the receiver's answer, i.e. MPI calls. So a
  // message of m bytes overlaps compute by min(m, eager) / m of its time.
  int64_t inter_node_eager_bytes = 65536;

  int64_t memory_bytes() const;                 // memory_per_device_gib * 2^30
  double matmul_flops(bool bf16_math) const;    // FLOP/s
  double attention_flops(bool bf16_math) const; // FLOP/s (the matmul rate unless given)
};

// Throws InvalidArgument naming the field unless every number is positive (latencies >= 0).
void validate(const Cluster& cluster);

// "mi300x", "h100". Throws InvalidArgument listing the presets (and `local`, a file).
Cluster cluster_preset(std::string_view name);
std::vector<std::string> cluster_preset_names();

// JSON object with the fields above ("intra_node_topology": "switch" or "full_mesh", optional,
// default "switch"; "inter_node_progress": "background" (default) or "in_calls";
// "inter_node_eager_bytes" optional, default 65536, written with "in_calls"; "name" and
// "description" optional). Malformed JSON, a missing field, a field
// of the wrong type or an unknown field -> IoError naming `source` and the field; values out of
// range -> InvalidArgument naming `source` and the field.
Cluster cluster_from_json(std::string_view json_text, std::string_view source = "<string>");
std::string cluster_to_json(const Cluster& cluster);
Cluster load_cluster(const std::filesystem::path& path);
void save_cluster(const Cluster& cluster, const std::filesystem::path& path);  // atomic

// Where `tsp plan --calibrate` writes and `--cluster local` reads: $TSP_LOCAL_CLUSTER if set,
// else $XDG_CACHE_HOME/tsp/local_cluster.json, else $HOME/.cache/tsp/local_cluster.json.
std::filesystem::path default_local_cluster_path();

// A preset name, "local" (the calibrated file; IoError telling to run --calibrate if missing),
// or the path of a JSON file.
Cluster resolve_cluster(std::string_view name_or_path);

}  // namespace tsp::plan
