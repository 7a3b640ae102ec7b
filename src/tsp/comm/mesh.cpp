// Mesh layout arithmetic, axis communicators, and the rank -> host map.
#include "tsp/comm/mesh.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <sstream>
#include <string>

#include "tsp/comm/mpi/mpi_backend.h"
#include "tsp/comm/mpi_environment.h"
#include "tsp/comm/watchdog.h"
#include "tsp/core/check.h"

namespace tsp::comm {

std::string_view mesh_axis_name(MeshAxis axis) {
  switch (axis) {
    case MeshAxis::dp: return "dp";
    case MeshAxis::pp: return "pp";
    case MeshAxis::sp: return "sp";
    case MeshAxis::tp: return "tp";
    case MeshAxis::tsp: return "tsp";
  }
  return "?";
}

int MeshDegrees::operator[](MeshAxis axis) const {
  switch (axis) {
    case MeshAxis::dp: return dp;
    case MeshAxis::pp: return pp;
    case MeshAxis::sp: return sp;
    case MeshAxis::tp: return tp;
    case MeshAxis::tsp: return tsp;
  }
  return 0;
}

namespace {
// The product of the degrees, or nullopt if it overflows int64 (five ints can reach 2^155).
std::optional<int64_t> checked_product(const MeshDegrees& d) {
  int64_t p = 1;
  for (MeshAxis a : kMeshAxes)
    if (__builtin_mul_overflow(p, static_cast<int64_t>(d[a]), &p)) return std::nullopt;
  return p;
}
}  // namespace

int64_t MeshDegrees::product() const {
  const std::optional<int64_t> p = checked_product(*this);
  TSP_CHECK(p.has_value(), "mesh degrees ", str(), ": product overflows int64");
  return *p;
}

std::string MeshDegrees::str() const {
  std::ostringstream os;
  for (int i = 0; i < kNumMeshAxes; ++i)
    os << (i ? " x " : "") << mesh_axis_name(kMeshAxes[i]) << "=" << (*this)[kMeshAxes[i]];
  return os.str();
}

void validate_mesh_degrees(const MeshDegrees& degrees, int world_size) {
  for (MeshAxis a : kMeshAxes)
    TSP_CHECK(degrees[a] >= 1, "mesh degree ", mesh_axis_name(a), "=", degrees[a],
              " must be >= 1 (mesh ", degrees.str(), ")");
  // Overflow-checked: absurd degrees (e.g. five of 2^30) must give this message, not undefined
  // behaviour; a product beyond int64 is reported as such.
  const std::optional<int64_t> p = checked_product(degrees);
  TSP_CHECK(p && *p == world_size, "mesh degrees ", degrees.str(), " = ",
            p ? std::to_string(*p) : std::string("more than 2^63"), ", but the world has ",
            world_size, " ranks");
}

MeshDegrees mesh_degrees_of(const LayoutSpec& l) {
  validate(l);
  const auto narrow = [](int64_t d) {
    TSP_CHECK(d <= INT32_MAX, "layout degree ", d, " exceeds the ranks an MPI world can have");
    return static_cast<int>(d);
  };
  return {.dp = narrow(l.dp), .pp = narrow(l.pp), .sp = narrow(l.sp), .tp = narrow(l.tp),
          .tsp = narrow(l.tsp)};
}

MeshCoords mesh_coords_of(const MeshDegrees& degrees, int world_rank) {
  TSP_CHECK(world_rank >= 0 && world_rank < degrees.product(), "rank ", world_rank,
            " outside mesh ", degrees.str());
  MeshCoords c{};
  int r = world_rank;
  for (int i = kNumMeshAxes - 1; i >= 0; --i) {  // innermost axis varies fastest
    const int d = degrees[kMeshAxes[i]];
    c[i] = r % d;
    r /= d;
  }
  return c;
}

int mesh_world_rank_of(const MeshDegrees& degrees, const MeshCoords& coords) {
  int r = 0;
  for (int i = 0; i < kNumMeshAxes; ++i) {
    const int d = degrees[kMeshAxes[i]];
    TSP_CHECK(coords[i] >= 0 && coords[i] < d, "coordinate ", coords[i], " on axis ",
              mesh_axis_name(kMeshAxes[i]), " outside degree ", d);
    r = r * d + coords[i];
  }
  return r;
}

std::vector<int> mesh_axis_group(const MeshDegrees& degrees, MeshAxis axis, int world_rank) {
  MeshCoords c = mesh_coords_of(degrees, world_rank);
  std::vector<int> group;
  for (int k = 0; k < degrees[axis]; ++k) {
    c[static_cast<int>(axis)] = k;
    group.push_back(mesh_world_rank_of(degrees, c));
  }
  return group;
}

std::string HostSpan::str() const {
  std::ostringstream os;
  os << mesh_axis_name(axis) << " group {";
  for (size_t i = 0; i < world_ranks.size(); ++i) os << (i ? "," : "") << world_ranks[i];
  os << "} spans hosts ";
  for (size_t i = 0; i < hosts.size(); ++i) os << (i ? ", " : "") << hosts[i];
  return os.str();
}

std::vector<HostSpan> groups_spanning_hosts(const MeshDegrees& degrees, MeshAxis axis,
                                            std::span<const std::string> hosts) {
  TSP_CHECK(static_cast<int64_t>(hosts.size()) == degrees.product(), "host list of ",
            hosts.size(), " ranks for mesh ", degrees.str());
  std::vector<HostSpan> spans;
  for (int r = 0; r < static_cast<int>(hosts.size()); ++r) {
    std::vector<int> group = mesh_axis_group(degrees, axis, r);
    if (group.front() != r) continue;  // visit each group once, from its first rank
    std::vector<std::string> distinct;
    for (int g : group)
      if (std::find(distinct.begin(), distinct.end(), hosts[g]) == distinct.end())
        distinct.push_back(hosts[g]);
    if (distinct.size() > 1) spans.push_back(HostSpan{axis, std::move(group), std::move(distinct)});
  }
  return spans;
}

Mesh::Mesh(const Communicator& world, const MeshDegrees& degrees) : degrees_(degrees) {
  TSP_CHECK(world.valid(), "Mesh needs a valid world communicator");
  validate_mesh_degrees(degrees, world.size());
  world_ = world.dup("world");
  coords_ = mesh_coords_of(degrees, world_.rank());
  for (int i = 0; i < kNumMeshAxes; ++i) {
    // Color: the rank with this axis' coordinate zeroed identifies the group; key: the coordinate.
    MeshCoords base = coords_;
    base[i] = 0;
    axes_[i] = world_.split(mesh_world_rank_of(degrees, base), coords_[i],
                            std::string(mesh_axis_name(kMeshAxes[i])));
    TSP_ASSERT(axes_[i].rank() == coords_[i] && axes_[i].size() == degrees[kMeshAxes[i]],
               "axis ", mesh_axis_name(kMeshAxes[i]), " communicator rank ", axes_[i].rank(),
               " size ", axes_[i].size());
  }
}

Communicator Mesh::group_over(std::span<const MeshAxis> axes, std::string name) const {
  MeshCoords base = coords_;
  int key = 0;
  for (int i = 0; i < kNumMeshAxes; ++i) {  // mesh order: the first listed axis is outermost
    if (std::find(axes.begin(), axes.end(), kMeshAxes[i]) == axes.end()) continue;
    base[i] = 0;
    key = key * degrees_[kMeshAxes[i]] + coords_[i];
  }
  return world_.split(mesh_world_rank_of(degrees_, base), key, std::move(name));
}

std::string Mesh::describe() const {
  std::ostringstream os;
  os << "mesh " << degrees_.str() << ", rank " << world_.rank() << "/" << world_.size() << " at (";
  for (int i = 0; i < kNumMeshAxes; ++i)
    os << (i ? ", " : "") << mesh_axis_name(kMeshAxes[i]) << " " << coords_[i];
  os << "), tsp ring prev " << prev_on(MeshAxis::tsp) << " next " << next_on(MeshAxis::tsp);
  return os.str();
}

void Mesh::reset_traffic() {
  world_.ledger().reset();
  for (Communicator& c : axes_) c.ledger().reset();
}

std::string Mesh::traffic_report() const {
  std::string out = world_.ledger().report("world");
  for (const Communicator& c : axes_) out += c.ledger().report(c.name());
  return out;
}

std::vector<std::string> gather_host_names(Communicator& world) {
  char name[MPI_MAX_PROCESSOR_NAME] = {};
  int len = 0;
  check_mpi(MPI_Get_processor_name(name, &len), "MPI_Get_processor_name");
  std::vector<char> all(static_cast<size_t>(MPI_MAX_PROCESSOR_NAME) * world.size());
  const InFlight watch(world, "all_gather(host names)",
                       static_cast<int64_t>(all.size()));
  check_mpi(MPI_Allgather(name, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, all.data(), MPI_MAX_PROCESSOR_NAME,
                          MPI_CHAR, mpi::handle_of(world)),
            "MPI_Allgather(host names)");
  std::vector<std::string> hosts;
  for (int r = 0; r < world.size(); ++r) {
    const char* p = all.data() + static_cast<size_t>(r) * MPI_MAX_PROCESSOR_NAME;
    hosts.emplace_back(p, strnlen(p, MPI_MAX_PROCESSOR_NAME));
  }
  return hosts;
}

std::vector<HostSpan> log_rank_host_map(Mesh& mesh, std::ostream& os) {
  const std::vector<std::string> hosts = gather_host_names(mesh.world());
  std::vector<HostSpan> spans;
  for (MeshAxis a : {MeshAxis::tsp, MeshAxis::tp}) {
    std::vector<HostSpan> s = groups_spanning_hosts(mesh.degrees(), a, hosts);
    spans.insert(spans.end(), s.begin(), s.end());
  }
  if (mesh.world_rank() == 0) {
    os << mesh.describe() << "\n";
    for (int r = 0; r < static_cast<int>(hosts.size()); ++r) {
      const MeshCoords c = mesh_coords_of(mesh.degrees(), r);
      os << "rank " << r << " -> host " << hosts[r] << " (";
      for (int i = 0; i < kNumMeshAxes; ++i)
        os << (i ? " " : "") << mesh_axis_name(kMeshAxes[i]) << " " << c[i];
      os << ")\n";
    }
    for (const HostSpan& s : spans)
      os << "WARNING: " << s.str() << ": its collectives cross the network; keep tsp/tp inside one"
         << " host (consecutive ranks on the same node)\n";
    os.flush();
  }
  return spans;
}

}  // namespace tsp::comm
