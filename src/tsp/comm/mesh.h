// Mesh: the world's ranks arranged on named axes (dp, pp, sp, tp, tsp), built once from validated
// degrees and passed explicitly (there is no global mesh). It owns one sub-communicator per axis,
// each with its own TrafficLedger, and knows this rank's coordinates and ring neighbours.
//
// Axis order, outermost to innermost: dp, pp, sp, tp, tsp. A world rank is the mixed-radix number
//   rank = (((dp_c * pp + pp_c) * sp + sp_c) * tp + tp_c) * tsp + tsp_c
// so a tsp group (or a tp group when tsp = 1) is made of consecutive ranks, which mpirun places on
// the same host, while dp spans hosts (TSP.md §7). An axis communicator's rank equals this rank's
// coordinate on that axis. Degrees of 1 are allowed (the axis communicator then has one rank).
#pragma once

#include <array>
#include <cstdint>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tsp/comm/communicator.h"
#include "tsp/core/layout_spec.h"

namespace tsp::comm {

enum class MeshAxis : uint8_t { dp, pp, sp, tp, tsp };
inline constexpr int kNumMeshAxes = 5;
inline constexpr std::array<MeshAxis, kNumMeshAxes> kMeshAxes = {MeshAxis::dp, MeshAxis::pp,
                                                                  MeshAxis::sp, MeshAxis::tp,
                                                                  MeshAxis::tsp};
std::string_view mesh_axis_name(MeshAxis axis);

struct MeshDegrees {
  int dp = 1;
  int pp = 1;
  int sp = 1;
  int tp = 1;
  int tsp = 1;

  int operator[](MeshAxis axis) const;
  int64_t product() const;  // InvalidArgument if it overflows int64
  std::string str() const;  // "dp=2 x pp=1 x sp=1 x tp=1 x tsp=4"
};

// The mesh a layout runs on: its degrees, axis by axis (FSDP-SP on sp).
MeshDegrees mesh_degrees_of(const LayoutSpec& layout);

// Coordinates of one rank, indexed by MeshAxis.
using MeshCoords = std::array<int, kNumMeshAxes>;

// Pure functions of the layout (no MPI), used by Mesh and tested directly.
// Throws InvalidArgument unless every degree is >= 1 and their product equals world_size; the
// message shows the arithmetic ("dp=2 x ... x tsp=3 = 6, but the world has 4 ranks").
void validate_mesh_degrees(const MeshDegrees& degrees, int world_size);
MeshCoords mesh_coords_of(const MeshDegrees& degrees, int world_rank);
int mesh_world_rank_of(const MeshDegrees& degrees, const MeshCoords& coords);
// World ranks of the group along `axis` that contains `world_rank`, in axis-rank order.
std::vector<int> mesh_axis_group(const MeshDegrees& degrees, MeshAxis axis, int world_rank);

// One group along an axis whose ranks live on more than one host.
struct HostSpan {
  MeshAxis axis;
  std::vector<int> world_ranks;
  std::vector<std::string> hosts;  // distinct hosts of the group, in order of first appearance
  std::string str() const;         // "tsp group {0,1,2,3} spans hosts a, b"
};
// Every group of `axis` that spans hosts, given hosts[world_rank]. Pure: tested with fake lists.
std::vector<HostSpan> groups_spanning_hosts(const MeshDegrees& degrees, MeshAxis axis,
                                            std::span<const std::string> hosts);

class Mesh {
 public:
  // Collective over `world`: validates the degrees against world.size() (on every rank, so every
  // rank throws the same InvalidArgument) and splits one communicator per axis.
  Mesh(const Communicator& world, const MeshDegrees& degrees);
  Mesh(Mesh&&) noexcept = default;
  Mesh& operator=(Mesh&&) noexcept = default;

  const MeshDegrees& degrees() const { return degrees_; }
  int degree(MeshAxis axis) const { return degrees_[axis]; }
  const MeshCoords& coords() const { return coords_; }
  int coord(MeshAxis axis) const { return coords_[static_cast<int>(axis)]; }
  int world_rank() const { return world_.rank(); }
  int world_size() const { return world_.size(); }

  Communicator& world() { return world_; }
  Communicator& axis(MeshAxis axis) { return axes_[static_cast<int>(axis)]; }
  const Communicator& axis(MeshAxis axis) const { return axes_[static_cast<int>(axis)]; }
  // Collective over the world: the group of the ranks that differ from this one only on `axes`,
  // ranked by their coordinates on those axes as a mixed-radix number in mesh order (e.g. over pp
  // and tsp: pp * tsp_degree + tsp). A layout's replica group spanning pipeline stages.
  Communicator group_over(std::span<const MeshAxis> axes, std::string name) const;

  // Ring neighbours along `axis`, as ranks of that axis' communicator (= coordinates).
  int next_on(MeshAxis a) const { return axis(a).next_rank(); }
  int prev_on(MeshAxis a) const { return axis(a).prev_rank(); }

  // "mesh dp=1 x pp=1 x sp=1 x tp=1 x tsp=4, rank 2/4 at (dp 0, pp 0, sp 0, tp 0, tsp 2),
  //  tsp ring prev 1 next 3"
  std::string describe() const;

  // Traffic of every axis (and of the world communicator, label "world").
  TrafficCounters traffic(MeshAxis axis, CommOp op) const { return this->axis(axis).ledger().get(op); }
  void reset_traffic();
  std::string traffic_report() const;

 private:
  MeshDegrees degrees_;
  MeshCoords coords_{};
  Communicator world_;
  std::array<Communicator, kNumMeshAxes> axes_;
};

// Collective over `world`: host names (MPI's processor names) of all ranks, indexed by world rank,
// on every rank.
std::vector<std::string> gather_host_names(Communicator& world);
// Collective over the mesh's world: gathers host names and, on world rank 0, writes the rank ->
// host map and the mesh description to `os`, plus a warning for each tsp or tp group spanning
// hosts. Returns the warnings (on every rank).
std::vector<HostSpan> log_rank_host_map(Mesh& mesh, std::ostream& os);

}  // namespace tsp::comm
