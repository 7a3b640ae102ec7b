// The planner against the engine, on small models under mpirun (1, 2, 4 ranks): for every layout
// the engine runs, the planner's bytes per collective equal the measured traffic ledger exactly
// (the embedding's all-to-all, which depends on which rank owns each token id and which the
// planner models by its expectation, within 25% for these few tokens), and its memory per
// category is within 5% of the measured peak.
#include <gtest/gtest.h>

#include <cmath>

#include "parallel/layout_test_util.h"
#include "tsp/comm/mesh.h"
#include "tsp/parallel/sharded_adamw.h"
#include "tsp/parallel/tsp_model.h"
#include "tsp/parallel/sharded_grad.h"
#include "tsp/parallel/zigzag.h"
#include "tsp/train/trainer.h"
#include "tsp/plan/memory_model.h"
#include "tsp/plan/traffic.h"

namespace tsp::plan {
namespace {

using comm::CommOp;

CollectiveOp plan_op(CommOp op) {
  switch (op) {
    case CommOp::broadcast: return CollectiveOp::broadcast;
    case CommOp::reduce: return CollectiveOp::reduce;
    case CommOp::all_reduce: return CollectiveOp::all_reduce;
    case CommOp::all_gather: return CollectiveOp::all_gather;
    case CommOp::reduce_scatter: return CollectiveOp::reduce_scatter;
    case CommOp::all_to_all: return CollectiveOp::all_to_all;
    case CommOp::send: return CollectiveOp::send;
    case CommOp::recv: return CollectiveOp::recv;
    default: return CollectiveOp::sendrecv;
  }
}

// One micro-batch (forward + backward) of the planner on `axis` for `op`, for this rank.
TrafficTotals predicted(const model::ModelConfig& c, const Workload& w, const Layout& layout,
                        const RankCoords& rank, Axis axis, CollectiveOp op) {
  const LayerTraffic layer = layer_traffic(c, w, layout, rank);
  const StepTraffic step = step_traffic(c, w, layout, rank);
  TrafficTotals t;
  for (const PhaseTraffic* p : {&layer.forward, &layer.backward, &layer.recompute})
    for (const CollectiveTraffic& x : *p)
      if (x.axis == axis && x.op == op)
        for (int64_t l = 0; l < c.num_hidden_layers() / layout.pp; ++l) t += x;  // this stage's layers
  for (const PhaseTraffic* p : {&step.forward, &step.backward, &step.pipeline})
    for (const CollectiveTraffic& x : *p)
      if (x.axis == axis && x.op == op) t += x;
  return t;
}

void expect_memory_close(const MemoryEstimate& plan, MemCategory c, int64_t measured,
                         const std::string& what) {
  const double p = static_cast<double>(plan[c]), m = static_cast<double>(measured);
  EXPECT_LE(std::fabs(p - m), 0.05 * std::max(m, 1.0))
      << what << " " << mem_category_name(c) << ": planner " << p << " B, measured peak " << m << " B";
}

void check_tsp(DType dtype, bool recompute, const testing::TinyModel& tiny = {.gqa = true, .layers = 2}) {
  comm::Communicator world = comm::Communicator::world();
  const int D = world.size();
  const model::ModelConfig config = testing::tiny_config(tiny);
  const int64_t B = 2, S = 64;
  const testing::Batch b = testing::random_batch(B, S, config.vocab_size(), 4);
  Workload work;
  work.batch = B;
  work.seq = S;
  work.precision = precision_preset(dtype == DType::f32 ? "fp32" : "bf16");
  work.recompute = recompute ? Recompute::full : Recompute::none;
  work.vocab_chunk = 40;
  const Layout layout = tsp_layout(D);
  const RankCoords rank{.tsp = world.rank()};
  const std::string what = std::string("tsp") + std::to_string(D) + (recompute ? " recompute " : " ") +
                           std::string(dtype_name(dtype));

  MemoryLedger& ledger = MemoryLedger::process();
  ledger.reset_peaks();
  const int64_t base_w = ledger.stats(MemCategory::weights).live_bytes;
  const int64_t base_g = ledger.stats(MemCategory::grads).live_bytes;
  const int64_t base_o = ledger.stats(MemCategory::optimizer).live_bytes;
  const int64_t base_a = ledger.stats(MemCategory::activations).live_bytes;
  const int64_t base_c = ledger.stats(MemCategory::comm).live_bytes;
  const parallel::TpWeights w = parallel::TpWeights::initialize(config, dtype, 2, D, world.rank());
  parallel::TpWeights grads(config, DType::f32, D, world.rank(), MemCategory::grads);
  const parallel::ShardedAdamW adam(w.params(), {});
  const parallel::Zigzag z(S, D, world.rank());
  const Tensor tok = z.take_local(b.tokens, MemCategory::workspace);
  const Tensor tgt = z.take_local(b.targets, MemCategory::workspace);
  parallel::TspTransformer model(world, config, {.dtype = dtype, .recompute = recompute, .vocab_chunk = 40});
  world.ledger().reset();
  model.forward_backward(w, tok, tgt, S, grads, 0.01f);

  for (CommOp op : {CommOp::broadcast, CommOp::reduce, CommOp::all_reduce, CommOp::all_gather,
                    CommOp::reduce_scatter, CommOp::sendrecv}) {
    const TrafficTotals want = predicted(config, work, layout, rank, Axis::tsp, plan_op(op));
    const comm::TrafficCounters got = world.ledger().get(op);
    EXPECT_EQ(got.bytes_received, want.bytes_received) << what << " " << comm::comm_op_name(op);
    EXPECT_EQ(got.bytes_sent, want.bytes_sent) << what << " " << comm::comm_op_name(op);
  }
  const TrafficTotals a2a = predicted(config, work, layout, rank, Axis::tsp, CollectiveOp::all_to_all);
  const comm::TrafficCounters got_a2a = world.ledger().get(CommOp::all_to_all);
  EXPECT_LE(std::fabs(static_cast<double>(got_a2a.bytes_received - a2a.bytes_received)),
            0.25 * static_cast<double>(std::max<int64_t>(a2a.bytes_received, 1)))
      << what << " all_to_all: measured " << got_a2a.bytes_received << ", expected value "
      << a2a.bytes_received;

  // This rank's pipeline stage (the whole model without pp).
  const MemoryEstimate mem = memory_of_stage(config, work, layout, rank.pp);
  expect_memory_close(mem, MemCategory::weights, ledger.stats(MemCategory::weights).peak_bytes - base_w, what);
  expect_memory_close(mem, MemCategory::grads, ledger.stats(MemCategory::grads).peak_bytes - base_g, what);
  expect_memory_close(mem, MemCategory::optimizer, ledger.stats(MemCategory::optimizer).peak_bytes - base_o, what);
  expect_memory_close(mem, MemCategory::activations,
                      ledger.stats(MemCategory::activations).peak_bytes - base_a, what);
  if (D > 1)
    expect_memory_close(mem, MemCategory::comm, ledger.stats(MemCategory::comm).peak_bytes - base_c, what);
}

TEST(PlanVsEngine, TspF32) { check_tsp(DType::f32, false); }
TEST(PlanVsEngine, TspBf16) { check_tsp(DType::bf16, false); }
TEST(PlanVsEngine, TspRecompute) { check_tsp(DType::f32, true); }
// head_dim 16 with h 64: the planner's weight, K/V and activation sizes follow H d, not h.
TEST(PlanVsEngine, TspWideHeads) { check_tsp(DType::f32, false, {.gqa = true, .layers = 2, .head_dim = 16}); }
// Qwen2: the q/k/v biases ride in the broadcast attention shard and its reduced gradient.
TEST(PlanVsEngine, TspQkvBias) { check_tsp(DType::f32, false, {.gqa = true, .layers = 2, .qkv_bias = true}); }

comm::MeshAxis mesh_axis(Axis a) {
  switch (a) {
    case Axis::dp: return comm::MeshAxis::dp;
    case Axis::pp: return comm::MeshAxis::pp;
    case Axis::sp: return comm::MeshAxis::sp;
    case Axis::tp: return comm::MeshAxis::tp;
    case Axis::tsp: return comm::MeshAxis::tsp;
  }
  return comm::MeshAxis::dp;
}

// Any layout through the trainer's factory: one micro-batch forward + backward, the layout's
// reductions and the dp gradient sum, against the planner's micro-batch traffic plus its
// gradient synchronisation, per mesh axis and operation; memory per category as above.
void check_layout(const std::string& name, DType dtype,
                  const testing::TinyModel& tiny = {.gqa = true, .layers = 2}) {
  comm::Communicator world = comm::Communicator::world();
  const Layout layout = parse_layout(name);
  if (layout.devices() != world.size()) GTEST_SKIP() << name << " needs " << layout.devices() << " ranks";
  const model::ModelConfig config = testing::tiny_config(tiny);
  const int64_t B = 4, S = 64;
  train::RunConfig run;
  run.layout = std::string(layout_kind_name(layout.kind));
  run.dp = layout.dp;
  run.tp = layout.tp;
  run.sp = layout.sp;
  run.tsp = layout.tsp;
  run.pp = layout.pp;
  run.batch = B;
  run.seq = S;
  run.dtype = dtype == DType::f32 ? "f32" : "bf16";
  comm::Mesh mesh(world, train::mesh_degrees_for(run));
  Workload work;
  work.batch = B / layout.dp;
  work.seq = S;
  work.precision = precision_preset(dtype == DType::f32 ? "fp32" : "bf16");
  const RankCoords rank{.dp = mesh.coord(comm::MeshAxis::dp), .pp = mesh.coord(comm::MeshAxis::pp),
                        .sp = mesh.coord(comm::MeshAxis::sp), .tp = mesh.coord(comm::MeshAxis::tp),
                        .tsp = mesh.coord(comm::MeshAxis::tsp)};
  const testing::Batch all = testing::random_batch(B, S, config.vocab_size(), 4);
  const testing::Batch mine = testing::batch_rows(all, rank.dp * work.batch, work.batch);

  MemoryLedger& ledger = MemoryLedger::process();
  ledger.reset_peaks();
  std::array<int64_t, kNumMemCategories> base{};
  for (int c = 0; c < kNumMemCategories; ++c)
    base[static_cast<size_t>(c)] = ledger.stats(static_cast<MemCategory>(c)).live_bytes;
  std::unique_ptr<parallel::Layout> engine = train::make_layout(mesh, config, run);
  const parallel::ShardedAdamW adam(engine->weights(), {});
  mesh.reset_traffic();
  engine->forward_backward(mine.tokens, mine.targets, 0.01f);
  engine->sync_grads(mesh.axis(comm::MeshAxis::dp));

  const StepTraffic step = step_traffic(config, work, layout, rank);
  for (Axis axis : {Axis::dp, Axis::pp, Axis::sp, Axis::tp, Axis::tsp}) {
    for (CommOp op : {CommOp::broadcast, CommOp::reduce, CommOp::all_reduce, CommOp::all_gather,
                      CommOp::reduce_scatter, CommOp::sendrecv, CommOp::send, CommOp::recv}) {
      TrafficTotals want = predicted(config, work, layout, rank, axis, plan_op(op));
      want.bytes_sent += totals(step.gradient_sync, axis, plan_op(op)).bytes_sent;
      want.bytes_received += totals(step.gradient_sync, axis, plan_op(op)).bytes_received;
      const comm::TrafficCounters got = mesh.traffic(mesh_axis(axis), op);
      EXPECT_EQ(got.bytes_sent, want.bytes_sent) << name << " " << axis_name(axis) << " " << comm::comm_op_name(op);
      EXPECT_EQ(got.bytes_received, want.bytes_received)
          << name << " " << axis_name(axis) << " " << comm::comm_op_name(op);
    }
  }
  // This rank's pipeline stage (the whole model without pp).
  const MemoryEstimate mem = memory_of_stage(config, work, layout, rank.pp);
  for (MemCategory c : {MemCategory::weights, MemCategory::grads, MemCategory::optimizer,
                        MemCategory::activations, MemCategory::comm}) {
    const int64_t measured = ledger.stats(c).peak_bytes - base[static_cast<size_t>(c)];
    if (c == MemCategory::comm && measured == 0 && mem[c] == 0) continue;
    expect_memory_close(mem, c, measured, name);
  }
}

TEST(PlanVsEngine, TensorParallel) {
  comm::Communicator world = comm::Communicator::world();
  check_layout("tp" + std::to_string(world.size()), DType::f32);
}
TEST(PlanVsEngine, SequenceParallel) {
  comm::Communicator world = comm::Communicator::world();
  check_layout("sp" + std::to_string(world.size()), DType::f32);
}
TEST(PlanVsEngine, DataParallel) {
  comm::Communicator world = comm::Communicator::world();
  if (world.size() == 1) GTEST_SKIP() << "dp1 is the single-rank engine";
  check_layout("dp" + std::to_string(world.size()), DType::f32);
}
TEST(PlanVsEngine, FsdpOverSp) {
  comm::Communicator world = comm::Communicator::world();
  check_layout("fsdp-sp" + std::to_string(world.size()), DType::f32);
}
TEST(PlanVsEngine, FsdpOverSpQkvBias) {
  comm::Communicator world = comm::Communicator::world();
  check_layout("fsdp-sp" + std::to_string(world.size()), DType::f32, {.gqa = true, .layers = 2, .qkv_bias = true});
}
TEST(PlanVsEngine, TensorParallelQkvBias) {
  comm::Communicator world = comm::Communicator::world();
  check_layout("tp" + std::to_string(world.size()), DType::bf16, {.gqa = true, .layers = 2, .qkv_bias = true});
}
TEST(PlanVsEngine, TpTimesSp) { check_layout("tp2xsp2", DType::f32); }
TEST(PlanVsEngine, DpTimesTsp) { check_layout("dp2xtsp2", DType::bf16); }
// Pipeline stages (docs/pipeline.md): the stage-to-stage sends and receives of one micro-batch
// byte for byte, and each stage's memory within 5% of memory_of_stage (a 4-layer model, 2 layers
// per stage at pp 2; 1 at pp 4). Tied: the embedding's gradient exchange between the two ends.
TEST(PlanVsEngine, Pipeline) {
  comm::Communicator world = comm::Communicator::world();
  if (world.size() == 1) GTEST_SKIP() << "pp1 is the single-rank engine";
  check_layout("pp" + std::to_string(world.size()), DType::f32, {.gqa = true, .layers = 4});
  check_layout("pp" + std::to_string(world.size()), DType::bf16, {.gqa = true, .tied = true, .layers = 4});
}
TEST(PlanVsEngine, TspTimesPipeline) {
  check_layout("tsp2xpp2", DType::f32, {.gqa = true, .layers = 4});
  check_layout("tsp2xpp2", DType::f32, {.gqa = true, .tied = true, .layers = 4});
}
TEST(PlanVsEngine, FsdpTimesPipeline) {
  check_layout("fsdp-sp2xpp2", DType::f32, {.gqa = true, .layers = 4});
  check_layout("fsdp-sp2xpp2", DType::bf16, {.gqa = true, .tied = true, .layers = 4});
}
TEST(PlanVsEngine, TpTimesPipeline) { check_layout("tp2xpp2", DType::bf16, {.gqa = true, .tied = true, .layers = 4}); }

}  // namespace
}  // namespace tsp::plan
