// The distributed trainer (--layout tsp, dp x tsp) against the single-rank trainer under mpirun:
// losses and weights after 3 AdamW steps (with clipping and gradient accumulation), and
// checkpoints that move between layouts and degrees (tsp D -> single-rank and back) and then
// continue with the same losses as an uninterrupted run.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <string>

#include "parallel/layout_test_util.h"
#include "scratch_dir.h"
#include "train/train_test_util.h"
#include "tsp/comm/collectives.h"
#include "tsp/comm/mesh.h"
#include "tsp/train/distributed_trainer.h"
#include "tsp/train/trainer.h"

namespace tsp::train {
namespace {

model::ModelConfig config_for(DType dtype, bool tied) {
  model::ModelConfigFields f = testing::tiny_config({.gqa = true, .tied = tied}).fields();
  f.torch_dtype = dtype;
  return model::ModelConfig(f);
}

// Tolerances after optimizer steps. The layouts differ from single-rank only in fp32 summation
// order: gradients within 1e-5 of the tensor's scale (tsp_model_mpi_test). AdamW's normalised
// update u = m / (sqrt(v) + eps) moves by eps * dg / (|g| + eps)^2 when g moves by dg, i.e. by up
// to dg / eps for an element whose gradient is near zero: at initialisation the q/k gradients
// are ~1e-8, so with the default eps = 1e-8 a 1e-11 gradient difference moves such an update by
// ~1e-3 of its size (measured 2.4e-4 at step 1, 1.3e-3 by step 3 as the next gradients follow
// the weights). These tests use eps = 1e-5 (measured: <= 7e-5 of an update per step) and allow
// each weight to differ by kUpdateTolerance = 1e-3 of the learning rates summed over the steps
// (plus 1e-5 relative); a missing or doubled gradient term moves updates by O(1) and fails.
constexpr double kAdamEps = 1e-5;
constexpr double kUpdateTolerance = 1e-3;

struct LayoutSpec {
  std::string layout;
  int dp = 1, tp = 1, sp = 1, tsp = 1;
  std::string name() const {
    return layout + " dp" + std::to_string(dp) + " tp" + std::to_string(tp) + " sp" +
           std::to_string(sp) + " tsp" + std::to_string(tsp);
  }
};

RunConfig run_for(DType dtype, const LayoutSpec& l) {
  RunConfig r = testing::tiny_run(3);
  r.dtype = dtype == DType::f32 ? "f32" : "bf16";
  r.adam_eps = kAdamEps;
  r.layout = l.layout;
  r.dp = l.dp;
  r.tp = l.tp;
  r.sp = l.sp;
  r.tsp = l.tsp;
  return r;
}

RunConfig run_for(DType dtype, int dp, int tsp) { return run_for(dtype, {"tsp", dp, 1, 1, tsp}); }

RunConfig single(RunConfig r) {
  r.layout = "single";
  r.dp = r.tp = r.sp = r.tsp = 1;
  return r;
}

// The layouts this world size W runs (tiny_run's batch 4 in 2 micro-batches allows dp <= 2):
// tsp W, dp 2 x tsp W/2, tp W, sp W, fsdp-sp W, and dp W (W <= 2) or dp 2 x sp 2 and
// tp 2 x sp 2 (W = 4).
std::vector<LayoutSpec> layouts(int W) {
  std::vector<LayoutSpec> v{{"tsp", 1, 1, 1, W}, {"tp", 1, W, 1, 1}, {"sp", 1, 1, W, 1},
                            {"fsdp-sp", 1, 1, W, 1}};
  if (W >= 2) v.push_back({"tsp", 2, 1, 1, W / 2});
  if (W <= 2) v.push_back({"dp", W, 1, 1, 1});
  if (W == 4) {
    v.push_back({"sp", 2, 1, 2, 1});
    v.push_back({"tp+sp", 1, 2, 2, 1});
  }
  return v;
}

// Losses, norms and weights after each of 3 steps (with clipping and 2 micro-batches), and the
// first step's gradients. bf16 weights are re-rounded from fp32 masters after each step, so a
// master that differs in its last bits can round to the neighbouring bf16 value: one bf16 ulp
// (2^-8 relative), so 1e-2; bf16 losses/gradients 1e-3 / 3e-2 as in tsp_model_mpi_test.
void check_steps_match(DType dtype, bool tied) {
  comm::Communicator world = comm::Communicator::world();
  const model::ModelConfig config = config_for(dtype, tied);
  const std::vector<int32_t> tokens = testing::pattern_tokens(6000, 90);
  for (const LayoutSpec& l : layouts(world.size())) {
    SCOPED_TRACE(l.name());
    const RunConfig run = run_for(dtype, l);
    Trainer reference(config, single(run), tokens);
    comm::Mesh mesh(world, mesh_degrees_for(run));
    DistributedTrainer trainer(mesh, config, run, tokens);
    const bool f32 = dtype == DType::f32;
    double lr_sum = 0;
    for (int s = 0; s < 3; ++s) {
      const StepMetrics want = reference.train_step();
      const StepMetrics got = trainer.train_step();
      EXPECT_NEAR(got.loss, want.loss, (f32 ? 1e-5 : 1e-3) * want.loss) << "step " << s + 1;
      EXPECT_NEAR(got.grad_norm, want.grad_norm, (f32 ? 1e-5 : 1e-2) * want.grad_norm) << "step " << s + 1;
      EXPECT_EQ(got.clipped, want.clipped) << "step " << s + 1;
      EXPECT_EQ(got.tokens, want.tokens);
      lr_sum += want.lr;
      if (s == 0)  // later steps' gradients follow the (tolerably) different weights
        testing::expect_shards_match(trainer.layout().grads(), reference.grads(), f32 ? 1e-5 : 3e-2,
                                     1.0, "gradients of step 1 (after clipping)");
      testing::expect_shards_match(trainer.layout().weights(), reference.weights(), f32 ? 1e-5 : 1e-2,
                                   1.0, "weights after step " + std::to_string(s + 1),
                                   kUpdateTolerance * lr_sum);
    }
    const EvalMetrics ve = reference.validate(), vg = trainer.validate();
    EXPECT_NEAR(vg.loss, ve.loss, (dtype == DType::f32 ? 1e-5 : 1e-3) * ve.loss);
    EXPECT_EQ(vg.tokens, ve.tokens);
  }
}

TEST(DistributedTrainer, ThreeStepsEqualSingleRankF32) { check_steps_match(DType::f32, false); }
TEST(DistributedTrainer, ThreeStepsEqualSingleRankTiedF32) { check_steps_match(DType::f32, true); }
TEST(DistributedTrainer, ThreeStepsEqualSingleRankBf16) { check_steps_match(DType::bf16, false); }

// A directory name shared by every rank (rank 0 creates it).
std::filesystem::path shared_dir(comm::Communicator& world, const testing::ScratchDir& mine) {
  std::string name = mine.path().string();
  int len = static_cast<int>(name.size());
  MPI_Bcast(&len, 1, MPI_INT, 0, world.handle());
  name.resize(static_cast<size_t>(len));
  MPI_Bcast(name.data(), len, MPI_CHAR, 0, world.handle());
  return name;
}

// tsp (D = world) trains 2 steps and saves; a single-rank run resumes from that checkpoint for 2
// more steps; its losses equal an uninterrupted single-rank run's steps 3-4. Then the reverse:
// the single-rank checkpoint at step 4 resumes under tsp (and dp x tsp) for step 5.
TEST(DistributedTrainer, CheckpointsMoveBetweenLayoutsAndDegrees) {
  comm::Communicator world = comm::Communicator::world();
  const model::ModelConfig config = config_for(DType::f32, false);
  const std::vector<int32_t> tokens = testing::pattern_tokens(6000, 90);
  const testing::ScratchDir scratch;
  const std::filesystem::path root = shared_dir(world, scratch);
  RunConfig run = run_for(DType::f32, 1, world.size());
  run.steps = 5;
  // Uninterrupted single-rank reference.
  Trainer uninterrupted(config, single(run), tokens);
  std::vector<double> want;
  for (int s = 0; s < 5; ++s) want.push_back(uninterrupted.train_step().loss);

  const std::filesystem::path tsp_ckpt = root / "from_tsp";
  {
    comm::Mesh mesh(world, {.tsp = world.size()});
    DistributedTrainer trainer(mesh, config, run, tokens);
    for (int s = 0; s < 2; ++s) EXPECT_NEAR(trainer.train_step().loss, want[s], 1e-5 * want[s]);
    trainer.save_checkpoint(tsp_ckpt);
  }
  const std::filesystem::path single_ckpt = root / "from_single";
  {
    RunConfig resume = single(run);
    resume.resume = tsp_ckpt.string();
    Trainer trainer(config, resume, tokens);
    ASSERT_EQ(trainer.step(), 2);
    for (int s = 2; s < 4; ++s) EXPECT_NEAR(trainer.train_step().loss, want[s], 1e-5 * want[s]);
    world.barrier();  // every rank has read tsp_ckpt before rank 0 writes the next one
    if (world.rank() == 0) trainer.save_checkpoint(single_ckpt);
    world.barrier();
  }
  for (auto [dp, tsp] : std::vector<std::pair<int, int>>{{1, world.size()}, {2, world.size() / 2}}) {
    if (tsp == 0) continue;
    RunConfig resume = run_for(DType::f32, dp, tsp);
    resume.steps = 5;
    resume.resume = single_ckpt.string();
    resume.checkpoint_dir = (root / ("again_" + std::to_string(dp))).string();
    comm::Mesh mesh(world, {.dp = dp, .tsp = tsp});
    DistributedTrainer trainer(mesh, config, resume, tokens);
    ASSERT_EQ(trainer.step(), 4);
    EXPECT_NEAR(trainer.train_step().loss, want[4], 1e-5 * want[4]) << "dp " << dp << " x tsp " << tsp;
    double lr_sum = 0;
    for (int64_t s = 1; s <= 5; ++s) lr_sum += uninterrupted.lr_for_step(s);
    testing::expect_shards_match(trainer.layout().weights(), uninterrupted.weights(), 1e-5, 1.0,
                                 "weights at step 5 after two layout changes",
                                 kUpdateTolerance * lr_sum);
  }
}

// Issue #6's chain: tsp W trains 2 steps and saves; tp 2 x sp W/2 (tp W at 2 ranks) resumes for
// one step and saves; fsdp-sp W resumes for one step and saves; a single-rank run resumes for the
// 5th. Every loss equals the uninterrupted single-rank run's.
TEST(DistributedTrainer, CheckpointChainAcrossEveryLayout) {
  comm::Communicator world = comm::Communicator::world();
  const int W = world.size();
  const model::ModelConfig config = config_for(DType::f32, true);
  const std::vector<int32_t> tokens = testing::pattern_tokens(6000, 90);
  const testing::ScratchDir scratch;
  const std::filesystem::path root = shared_dir(world, scratch);
  RunConfig base = run_for(DType::f32, 1, W);
  base.steps = 5;
  Trainer uninterrupted(config, single(base), tokens);
  std::vector<double> want;
  for (int s = 0; s < 5; ++s) want.push_back(uninterrupted.train_step().loss);

  const std::vector<std::pair<LayoutSpec, int>> chain = {
      {{"tsp", 1, 1, 1, W}, 2},
      {W == 4 ? LayoutSpec{"tp+sp", 1, 2, 2, 1} : LayoutSpec{"tp", 1, W, 1, 1}, 1},
      {{"fsdp-sp", 1, 1, W, 1}, 1}};
  std::filesystem::path previous;
  int step = 0;
  for (size_t i = 0; i < chain.size(); ++i) {
    RunConfig run = run_for(DType::f32, chain[i].first);
    run.steps = 5;
    run.resume = previous.string();
    comm::Mesh mesh(world, mesh_degrees_for(run));
    DistributedTrainer trainer(mesh, config, run, tokens);
    ASSERT_EQ(trainer.step(), step) << chain[i].first.name();
    for (int s = 0; s < chain[i].second; ++s, ++step)
      EXPECT_NEAR(trainer.train_step().loss, want[static_cast<size_t>(step)],
                  1e-5 * want[static_cast<size_t>(step)])
          << chain[i].first.name() << " step " << step + 1;
    previous = root / ("ckpt" + std::to_string(i));
    trainer.save_checkpoint(previous);
  }
  RunConfig last = single(base);
  last.resume = previous.string();
  Trainer trainer(config, last, tokens);
  ASSERT_EQ(trainer.step(), 4);
  EXPECT_NEAR(trainer.train_step().loss, want[4], 1e-5 * want[4]) << "single after the chain";
  world.barrier();  // every rank is done with the directories before rank 0 removes them
}

// Bad degrees or sizes: a clear InvalidArgument on every rank before anything is allocated.
TEST(DistributedTrainer, InvalidDegreesAreRejected) {
  comm::Communicator world = comm::Communicator::world();
  const model::ModelConfig config = config_for(DType::f32, false);
  RunConfig run = run_for(DType::f32, 1, world.size());
  EXPECT_THROW(validate_distributed_run(config, run, {.tsp = world.size() + 1}), InvalidArgument);
  run.seq = 2 * world.size() + (world.size() > 1 ? 1 : 0) + 0;  // not a multiple of 2D unless D == 1
  if (world.size() > 1) {
    try {
      validate_distributed_run(config, run, {.tsp = world.size()});
      ADD_FAILURE() << "no error for --seq " << run.seq;
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("is not divisible by 2*D"), std::string::npos) << e.what();
    }
  }
  run = run_for(DType::f32, 3, 1);  // --batch 4 is not divisible by dp 3 x grad-accum 2
  EXPECT_THROW(validate_distributed_run(config, run, {.dp = 3}), InvalidArgument);
}

}  // namespace
}  // namespace tsp::train
