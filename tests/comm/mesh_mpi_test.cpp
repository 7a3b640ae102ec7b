// Mesh under mpirun: degree validation (pure and collective), coordinates and axis groups, axis
// communicators and ring neighbours, host-span detection on fake host lists, per-axis ledgers.
#include "tsp/comm/mesh.h"

#include <gtest/gtest.h>

#include <sstream>
#include <string>

#include "mpi_test_util.h"
#include "tsp/comm/collectives.h"

namespace tsp::comm {
namespace {

TEST(MeshDegreesTest, ValidationShowsTheArithmetic) {
  try {
    validate_mesh_degrees(MeshDegrees{.dp = 2, .tsp = 3}, 4);
    FAIL() << "expected InvalidArgument";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("dp=2 x pp=1 x sp=1 x tp=1 x tsp=3 = 6, but the world has 4 ranks"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(validate_mesh_degrees(MeshDegrees{.tsp = 0}, 1), InvalidArgument);
  EXPECT_THROW(validate_mesh_degrees(MeshDegrees{.dp = -2, .tsp = -2}, 4), InvalidArgument);
  EXPECT_NO_THROW(validate_mesh_degrees(MeshDegrees{.dp = 2, .tsp = 2}, 4));
  EXPECT_NO_THROW(validate_mesh_degrees(MeshDegrees{}, 1));
}

// Absurd degrees are rejected with the arithmetic, never by overflowing (undefined behaviour):
// the product is computed overflow-checked and reported exactly while it fits an int64.
TEST(MeshDegreesTest, AbsurdDegreesDoNotOverflow) {
  auto message = [](const MeshDegrees& d, int world) -> std::string {
    try {
      validate_mesh_degrees(d, world);
    } catch (const InvalidArgument& e) {
      return e.what();
    }
    return "no exception";
  };
  constexpr int kHuge = 1 << 30;
  const std::string two = message(MeshDegrees{.dp = kHuge, .tsp = kHuge}, 4);
  EXPECT_NE(two.find("dp=1073741824 x pp=1 x sp=1 x tp=1 x tsp=1073741824 = 1152921504606846976, "
                     "but the world has 4 ranks"),
            std::string::npos)
      << two;
  const MeshDegrees all{.dp = kHuge, .pp = kHuge, .sp = kHuge, .tp = kHuge, .tsp = kHuge};
  const std::string five = message(all, 4);
  EXPECT_NE(five.find("tsp=1073741824 = more than 2^63, but the world has 4 ranks"), std::string::npos)
      << five;
  EXPECT_THROW((void)all.product(), InvalidArgument);
  EXPECT_THROW((void)mesh_coords_of(all, 0), InvalidArgument);
  const MeshDegrees big{.dp = 2147483647, .tsp = 2};
  EXPECT_NE(message(big, 4).find("= 4294967294, but the world has 4 ranks"), std::string::npos)
      << message(big, 4);
}

TEST(MeshDegreesTest, CoordinatesRoundTripWithTspInnermost) {
  const MeshDegrees d{.dp = 2, .pp = 3, .sp = 1, .tp = 2, .tsp = 2};
  for (int r = 0; r < 24; ++r) EXPECT_EQ(mesh_world_rank_of(d, mesh_coords_of(d, r)), r);
  // 13 = (((dp 1 * 3 + pp 0) * 1 + sp 0) * 2 + tp 0) * 2 + tsp 1
  EXPECT_EQ(mesh_coords_of(d, 13), (MeshCoords{1, 0, 0, 0, 1}));
  EXPECT_EQ(mesh_coords_of(d, 7), (MeshCoords{0, 1, 0, 1, 1}));
  EXPECT_EQ(mesh_axis_group(d, MeshAxis::tsp, 13), (std::vector<int>{12, 13}));
  EXPECT_EQ(mesh_axis_group(d, MeshAxis::tp, 13), (std::vector<int>{13, 15}));
  EXPECT_EQ(mesh_axis_group(d, MeshAxis::dp, 13), (std::vector<int>{1, 13}));
  EXPECT_EQ(mesh_axis_group(d, MeshAxis::sp, 13), (std::vector<int>{13}));
}

TEST(MeshDegreesTest, HostSpansOnFakeHostLists) {
  const MeshDegrees d{.dp = 2, .tsp = 4};
  const std::vector<std::string> good = {"a", "a", "a", "a", "b", "b", "b", "b"};
  EXPECT_TRUE(groups_spanning_hosts(d, MeshAxis::tsp, good).empty());
  EXPECT_EQ(groups_spanning_hosts(d, MeshAxis::dp, good).size(), 4u);  // dp spans hosts: expected
  const std::vector<std::string> bad = {"a", "a", "a", "b", "b", "b", "c", "c"};
  const std::vector<HostSpan> spans = groups_spanning_hosts(d, MeshAxis::tsp, bad);
  ASSERT_EQ(spans.size(), 2u);
  EXPECT_EQ(spans[0].world_ranks, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(spans[0].hosts, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(spans[1].str(), "tsp group {4,5,6,7} spans hosts b, c");
  EXPECT_THROW(groups_spanning_hosts(d, MeshAxis::tsp, std::vector<std::string>(3, "a")),
               InvalidArgument);
}

class MeshTest : public ::testing::Test {
 protected:
  Communicator world = Communicator::world();
  int D = world.size();
  int me = world.rank();
};

TEST_F(MeshTest, TspAxisOverTheWholeWorld) {
  Mesh mesh(world, MeshDegrees{.tsp = D});
  EXPECT_EQ(mesh.axis(MeshAxis::tsp).size(), D);
  EXPECT_EQ(mesh.coord(MeshAxis::tsp), me);
  EXPECT_EQ(mesh.axis(MeshAxis::dp).size(), 1);
  EXPECT_EQ(mesh.next_on(MeshAxis::tsp), (me + 1) % D);
  EXPECT_EQ(mesh.prev_on(MeshAxis::tsp), (me + D - 1) % D);
  EXPECT_NE(mesh.describe().find("tsp=" + std::to_string(D)), std::string::npos) << mesh.describe();
  EXPECT_NE(mesh.describe().find("rank " + std::to_string(me) + "/"), std::string::npos);
}

TEST_F(MeshTest, DpByTspGroupsAreConsecutiveRanks) {
  if (D % 2 != 0) GTEST_SKIP() << "needs an even world";
  Mesh mesh(world, MeshDegrees{.dp = 2, .tsp = D / 2});
  EXPECT_EQ(mesh.coord(MeshAxis::dp), me / (D / 2));
  EXPECT_EQ(mesh.coord(MeshAxis::tsp), me % (D / 2));
  // The tsp group's all-gather of world ranks is the run of consecutive ranks.
  Communicator& tsp = mesh.axis(MeshAxis::tsp);
  Tensor mine = Tensor::empty({1}, DType::i32, MemCategory::workspace);
  mine.data<int32_t>()[0] = me;
  Tensor all = Tensor::empty({tsp.size()}, DType::i32, MemCategory::workspace);
  all_gather(tsp, mine, all);
  for (int k = 0; k < tsp.size(); ++k) EXPECT_EQ(all.data<int32_t>()[k], (me / (D / 2)) * (D / 2) + k);
  // Traffic is accounted on the axis it used.
  mesh.reset_traffic();
  Tensor g = Tensor::zeros({8}, DType::f32, MemCategory::workspace);
  all_reduce(mesh.axis(MeshAxis::dp), g);
  EXPECT_EQ(mesh.traffic(MeshAxis::dp, CommOp::all_reduce).calls, 1);
  EXPECT_EQ(mesh.traffic(MeshAxis::dp, CommOp::all_reduce).bytes_received, 2 * 1 * 32 / 2);
  EXPECT_EQ(mesh.traffic(MeshAxis::tsp, CommOp::all_reduce).calls, 0);
  EXPECT_NE(mesh.traffic_report().find("dp all_reduce: 1 calls"), std::string::npos)
      << mesh.traffic_report();
}

TEST_F(MeshTest, ImpossibleDegreesThrowOnEveryRank) {
  EXPECT_THROW(Mesh(world, MeshDegrees{.tsp = D + 1}), InvalidArgument);
  EXPECT_THROW(Mesh(world, MeshDegrees{.dp = 0, .tsp = D}), InvalidArgument);
  EXPECT_THROW(Mesh(world, MeshDegrees{.dp = D, .tsp = 2}), InvalidArgument);
}

TEST_F(MeshTest, RankHostMapOnOneMachineHasNoWarnings) {
  Mesh mesh(world, MeshDegrees{.tsp = D});
  std::ostringstream log;
  const std::vector<HostSpan> spans = log_rank_host_map(mesh, log);
  EXPECT_TRUE(spans.empty());
  if (me == 0) {
    EXPECT_NE(log.str().find("rank " + std::to_string(D - 1) + " -> host "), std::string::npos) << log.str();
  } else {
    EXPECT_EQ(log.str(), "");
  }
  const std::vector<std::string> hosts = gather_host_names(mesh.world());
  EXPECT_EQ(static_cast<int>(hosts.size()), D);
}

TEST_F(MeshTest, CommunicatorIsMoveOnlyAndSplits) {
  static_assert(!std::is_copy_constructible_v<Communicator>);
  Communicator a = Communicator::world();
  const MPI_Comm h = mpi::handle_of(a);
  Communicator b = std::move(a);
  EXPECT_FALSE(a.valid());
  EXPECT_EQ(mpi::handle_of(b), h);
  EXPECT_NE(mpi::handle_of(b), MPI_COMM_WORLD);  // the library dups world
  Communicator halves = b.split(me % 2, me, "parity");
  EXPECT_EQ(halves.size(), (D + 1 - me % 2) / 2);
  EXPECT_EQ(halves.rank(), me / 2);
  EXPECT_EQ(halves.name(), "parity");
  halves.barrier();
  EXPECT_EQ(halves.ledger().get(CommOp::barrier).calls, 1);
  halves.free();
  EXPECT_FALSE(halves.valid());
  EXPECT_THROW(b.split(-1, 0, "bad"), InvalidArgument);
}

}  // namespace
}  // namespace tsp::comm
