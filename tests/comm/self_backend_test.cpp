// The one-process transport (comm/self/): every collective over a group of one is the identity or
// a copy, messages to oneself arrive in order per tag, a receive nothing will answer fails at once
// instead of hanging, and a mesh of degree 1 builds over it, all without MPI.
#include "tsp/comm/self/self_backend.h"

#include <gtest/gtest.h>

#include <array>
#include <vector>

#include "tsp/comm/collectives.h"
#include "tsp/comm/mesh.h"
#include "tsp/core/error.h"

namespace tsp::comm {
namespace {

Tensor iota(int64_t n, DType dtype, float start = 1.f) {
  Tensor t = Tensor::empty(Shape{n}, DType::f32, MemCategory::workspace);
  for (int64_t i = 0; i < n; ++i) t.data<float>()[i] = start + static_cast<float>(i);  // exact in bf16
  return Tensor::copy_of(t, dtype, MemCategory::workspace);
}

void expect_equal(const Tensor& got, const Tensor& want) {
  ASSERT_EQ(got.numel(), want.numel());
  for (int64_t i = 0; i < got.numel(); ++i) EXPECT_EQ(got.item_f32(i), want.item_f32(i)) << i;
}

TEST(SelfTransport, IsRankZeroOfOne) {
  Communicator self = self_communicator("solo");
  EXPECT_EQ(self.rank(), 0);
  EXPECT_EQ(self.size(), 1);
  EXPECT_EQ(self.name(), "solo");
  EXPECT_EQ(self.world_ranks(), std::vector<int>{0});
  Communicator copy = self.dup("copy");
  Communicator part = self.split(3, 0, "part");
  EXPECT_EQ(copy.size(), 1);
  EXPECT_EQ(part.size(), 1);
  self.barrier();
}

TEST(SelfTransport, CollectivesOfOneAreIdentitiesOrCopies) {
  Communicator self = self_communicator();
  for (DType dtype : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dtype));
    const Tensor x0 = iota(96, dtype);
    Tensor x = Tensor::copy_of(x0, dtype, MemCategory::workspace);
    all_reduce(self, x);
    expect_equal(x, x0);
    broadcast(self, x, 0);
    reduce(self, x, 0, ReduceOp::max);
    expect_equal(x, x0);
    Tensor out = Tensor::zeros(Shape{96}, dtype, MemCategory::workspace);
    all_gather(self, x0, out);
    expect_equal(out, x0);
    for (ReduceScatterAlgo algo : {ReduceScatterAlgo::mpi, ReduceScatterAlgo::ring}) {
      Tensor rs = Tensor::zeros(Shape{96}, dtype, MemCategory::workspace);
      reduce_scatter(self, x0, rs, ReduceOp::sum, algo);
      expect_equal(rs, x0);
    }
    Tensor a2a = Tensor::zeros(Shape{96}, dtype, MemCategory::workspace);
    all_to_all(self, x0, a2a);
    expect_equal(a2a, x0);
    const std::array<int64_t, 1> counts{96};
    Tensor gv = Tensor::zeros(Shape{96}, dtype, MemCategory::workspace);
    all_gather_v(self, x0, gv, counts);
    expect_equal(gv, x0);
    Tensor av = Tensor::zeros(Shape{96}, dtype, MemCategory::workspace);
    all_to_all_v(self, x0, counts, av, counts);
    expect_equal(av, x0);
    Tensor nb = Tensor::zeros(Shape{96}, dtype, MemCategory::workspace);
    Request r = iall_gather(self, x0, nb);
    r.wait();
    expect_equal(nb, x0);
  }
}

TEST(SelfTransport, MessagesToOneselfArriveInOrderPerTag) {
  Communicator self = self_communicator();
  const Tensor a = iota(8, DType::f32, 10.f), b = iota(8, DType::f32, 20.f), c = iota(8, DType::f32, 30.f);
  send(self, a, 0, /*tag=*/1);
  send(self, b, 0, /*tag=*/2);
  send(self, c, 0, /*tag=*/1);
  Tensor got = Tensor::zeros(Shape{8}, DType::f32, MemCategory::workspace);
  recv(self, got, 0, 2);
  expect_equal(got, b);
  recv(self, got, 0, 1);
  expect_equal(got, a);
  recv(self, got, 0, 1);
  expect_equal(got, c);
  // A receive posted before its send completes once the send is made.
  Request pending = irecv(self, got, 0, 5);
  Request sent = isend(self, b, 0, 5);
  sent.wait();
  pending.wait();
  expect_equal(got, b);
  // The ring of one: rank 0's next and previous are itself.
  Tensor shifted = Tensor::zeros(Shape{8}, DType::f32, MemCategory::workspace);
  ring_shift(self, a, shifted);
  expect_equal(shifted, a);
}

TEST(SelfTransport, AReceiveNothingWillAnswerFailsInsteadOfHanging) {
  Communicator self = self_communicator();
  Tensor got = Tensor::zeros(Shape{4}, DType::f32, MemCategory::workspace);
  EXPECT_THROW(recv(self, got, 0, 7), CommError);
  // A message longer than the receive buffer is refused too.
  send(self, iota(6, DType::f32), 0, 8);
  EXPECT_THROW(recv(self, got, 0, 8), CommError);
}

TEST(SelfTransport, AMeshOfOneBuildsOverIt) {
  Mesh mesh(self_communicator(), MeshDegrees{});
  EXPECT_EQ(mesh.world_size(), 1);
  for (MeshAxis axis : kMeshAxes) {
    EXPECT_EQ(mesh.axis(axis).size(), 1);
    EXPECT_EQ(mesh.coord(axis), 0);
  }
  EXPECT_THROW(Mesh(self_communicator(), MeshDegrees{.tsp = 2}), InvalidArgument);
}

}  // namespace
}  // namespace tsp::comm
