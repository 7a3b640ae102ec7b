// The distributed trainer (--layout tsp, dp x tsp) against the single-rank trainer under mpirun:
// losses and weights after 3 AdamW steps (with clipping and gradient accumulation), and
// checkpoints that move between layouts and degrees (tsp D -> single-rank and back) and then
// continue with the same losses as an uninterrupted run.
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "parallel/layout_test_util.h"
#include "scratch_dir.h"
#include "train/train_state_edit.h"
#include "train/train_test_util.h"
#include "tsp/core/checkpoint_history.h"
#include "tsp/model/safetensors.h"
#include "tsp/comm/collectives.h"
#include "tsp/comm/mesh.h"
#include "tsp/comm/mpi/mpi_backend.h"
#include "tsp/kernels/adamw.h"
#include "tsp/train/train_state.h"
#include "tsp/train/trainer.h"

namespace tsp::train {
namespace {

model::ModelConfig config_for(DType dtype, bool tied, bool qkv_bias = false) {
  model::ModelConfigFields f = testing::tiny_config({.gqa = true, .tied = tied, .qkv_bias = qkv_bias}).fields();
  f.torch_dtype = dtype;
  return model::ModelConfig(f);
}

// Tolerances after optimizer steps (derived, tests/fp_bounds.h and parallel/layout_test_util.h).
// The layouts differ from single-rank only in fp32 summation order: each gradient element within
// grad_tol (|g| + rms of its tensor), grad_tol = 2 gamma of the chain of fp32 reductions of one
// step (f32_grad_tol below). AdamW's normalised update u = m / (sqrt(v) + eps) moves by up to
// ~dg / (sqrt(v) + eps) when g moves by dg, i.e. by up to dg / eps for an element whose gradients
// are near zero (at initialisation the q/k gradients are ~1e-8): testing::AdamWDrift bounds each
// weight's drift element by element from the reference's gradients and second moments, to first
// order in lr. These tests use eps = 1e-5 (not the default 1e-8) so that this amplification stays
// below 1 for every element; a missing or doubled gradient term moves updates by O(1) and fails.
constexpr double kAdamEps = 1e-5;
// bf16: gradients agree within 3e-2 (|g| + rms of the tensor) (bf16 activations, as in
// tsp_model_mpi_test), and the same AdamWDrift carries that through the optimizer element by
// element; each weight may differ by that drift plus 1e-2 (|w| + rms) for the re-rounding of its
// fp32 master to bf16 (one bf16 ulp is 2^-8 = 3.9e-3 relative). (A flat 1e-3 of the summed learning
// rates used to stand in for the drift; it was not derived, and a near-zero gradient element whose
// sign moved with the summation order of a single-pass RMSNorm moved by ~3 lr, as AdamW's
// normalised update allows.)
constexpr double kBf16GradTolerance = 3e-2;

// grad_tol for the trainer's step: tiny_run's batch 4 x seq 16 (T = 64 tokens in the step), 2
// micro-batches accumulated (+2), reduce-scatters and all-reduces over <= 4 ranks and 2 dp
// replicas (+6), the loss's float cast (+2), clipping (+2): 2 gamma = 2 * 3000 * 2^-24 ~ 3.6e-4.
double f32_grad_tol(const model::ModelConfig& c, const RunConfig& r) {
  return 2 * testing::model_chain(c, r.seq, r.batch * r.seq, /*backward=*/true, /*extra=*/12).gamma;
}
double f32_loss_tol(const model::ModelConfig& c, const RunConfig& r) {
  return 2 * testing::model_chain(c, r.seq, r.batch * r.seq, /*backward=*/false, /*extra=*/12).gamma;
}

struct LayoutSpec {
  std::string layout;
  int dp = 1, tp = 1, sp = 1, tsp = 1, pp = 1;
  std::string name() const {
    return layout + " dp" + std::to_string(dp) + " tp" + std::to_string(tp) + " sp" +
           std::to_string(sp) + " tsp" + std::to_string(tsp) + " pp" + std::to_string(pp);
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
  r.pp = l.pp;
  return r;
}

RunConfig run_for(DType dtype, int dp, int tsp) { return run_for(dtype, {"tsp", dp, 1, 1, tsp}); }

RunConfig single(RunConfig r) {
  r.layout = "single";
  r.dp = r.tp = r.sp = r.tsp = r.pp = 1;
  return r;
}

// The layouts this world size W runs (tiny_run's batch 4 in 2 micro-batches allows dp <= 2):
// tsp W, dp 2 x tsp W/2, tp W, sp W, fsdp-sp W, and dp W (W <= 2) or dp 2 x sp 2 and
// tp 2 x sp 2 (W = 4); with pipeline stages (the tiny model's 2 layers, one per stage; the 2
// micro-batches in flight at once on the first stage, 1F1B): pp 2 (W = 2), tsp 2 x pp 2,
// tp 2 x pp 2, dp 2 x pp 2 and fsdp-sp 2 x pp 2 (W = 4).
std::vector<LayoutSpec> layouts(int W) {
  std::vector<LayoutSpec> v{{"tsp", 1, 1, 1, W}, {"tp", 1, W, 1, 1}, {"sp", 1, 1, W, 1},
                            {"fsdp-sp", 1, 1, W, 1}};
  if (W >= 2) v.push_back({"tsp", 2, 1, 1, W / 2});
  if (W <= 2) v.push_back({"dp", W, 1, 1, 1});
  if (W == 2) v.push_back({"dp", 1, 1, 1, 1, 2});
  if (W == 4) {
    v.push_back({"sp", 2, 1, 2, 1});
    v.push_back({"tp+sp", 1, 2, 2, 1});
    v.push_back({"tsp", 1, 1, 1, 2, 2});
    v.push_back({"tp", 1, 2, 1, 1, 2});
    v.push_back({"dp", 2, 1, 1, 1, 2});
    v.push_back({"fsdp-sp", 1, 1, 2, 1, 2});
  }
  return v;
}

// The gradient of the mean validation loss (the windows Trainer::validate evaluates) at the
// reference's weights.
model::ModelWeights validation_gradient(const Trainer& reference, DType dtype) {
  const RunConfig& r = reference.run_config();
  model::Transformer model(reference.config(), {.dtype = dtype});
  model::ModelWeights g(reference.config(), DType::f32, MemCategory::grads);
  const model::ModelWeights w = testing::whole_weights(reference);
  const EvalMetrics m = evaluate_loss(
      [&](const Tensor& in, const Tensor& tg) { return model.forward_backward(w, in, tg, g, 1.f); },
      reference.val_tokens(), r.batch, r.seq, r.eval_batches);
  for (auto& [name, t] : g.named())
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] /= static_cast<float>(m.tokens);
  return g;
}

// Losses, norms and weights after each of 3 steps (with clipping and 2 micro-batches), and the
// first step's gradients. fp32: the derived bounds above; the loss of step s > 1 is taken at
// weights that already drifted by AdamWDrift::bound(), which moves the mean loss by at most
// sum_i |G_i| bound_i (first order; G the unclipped gradient of the mean loss at those weights:
// the reference's clipped gradient divided by the clip factor). The gradient norm is compared at
// step 1, where both engines start from the same weights (later norms follow drifted weights,
// whose effect on a gradient has no derived bound here; the weights and losses are checked).
// bf16: weights are re-rounded from fp32 masters after each step, so a master that differs in its
// last bits can round to the neighbouring bf16 value: one bf16 ulp (2^-8 relative), so 1e-2, plus
// the AdamWDrift bound of kBf16GradTolerance; losses 1e-3, gradient norms 1e-2, gradients 3e-2
// (bf16 activations, as in tsp_model_mpi_test).
void check_steps_match(DType dtype, bool tied, bool qkv_bias = false) {
  comm::Communicator world = comm::Communicator::world();
  const model::ModelConfig config = config_for(dtype, tied, qkv_bias);
  const std::vector<int32_t> tokens = testing::pattern_tokens(6000, 90);
  for (const LayoutSpec& l : layouts(world.size())) {
    SCOPED_TRACE(l.name());
    const RunConfig run = run_for(dtype, l);
    Trainer reference(config, single(run), tokens);
    comm::Mesh mesh(world, mesh_degrees_for(run));
    Trainer trainer(mesh, config, run, tokens);
    const bool f32 = dtype == DType::f32;
    const double grad_tol = f32 ? f32_grad_tol(config, run) : kBf16GradTolerance;
    const double loss_tol = f32 ? f32_loss_tol(config, run) : 1e-3;
    const kernels::AdamWConfig adam;  // the trainer's betas (run_for sets only eps)
    testing::AdamWDrift drift(config, adam.beta1, adam.beta2, kAdamEps);
    double lr_sum = 0;
    for (int s = 0; s < 3; ++s) {
      const StepMetrics want = reference.train_step();
      const StepMetrics got = trainer.train_step();
      // The reference's gradient of this step, unclipped, is that of the loss at its weights.
      const double clip_factor = want.clipped ? run.clip / (want.grad_norm + 1e-6) : 1.0;
      const double weight_drift = f32 ? drift.loss_change(testing::whole_grads(reference)) / clip_factor : 0.0;
      EXPECT_NEAR(got.loss, want.loss, loss_tol * want.loss + weight_drift) << "step " << s + 1;
      if (!f32) {
        EXPECT_NEAR(got.grad_norm, want.grad_norm, 1e-2 * want.grad_norm) << "step " << s + 1;
      } else if (s == 0) {  // |dg|_2 <= grad_tol (|g|_2 + sum_t sqrt(n_t) rms_t) <= 2 grad_tol |g|_2
        EXPECT_NEAR(got.grad_norm, want.grad_norm, 2 * grad_tol * want.grad_norm) << "step " << s + 1;
      }
      EXPECT_EQ(got.clipped, want.clipped) << "step " << s + 1;
      EXPECT_EQ(got.tokens, want.tokens);
      if (s == 0)  // later steps' gradients follow the (tolerably) different weights
        testing::expect_shards_match(trainer.layout().grads(), testing::whole_grads(reference), grad_tol, 1.0,
                                     "gradients of step 1 (after clipping)");
      lr_sum += want.lr;
      const auto& opt = reference.optimizer();
      drift.add_step(testing::whole_grads(reference), testing::whole_of(reference.config(), opt.exp_avg_sq()), testing::whole_weights(reference), want.lr, grad_tol);
      testing::expect_shards_match(trainer.layout().weights(), testing::whole_weights(reference), f32 ? 0.0 : 1e-2, 1.0,
                                   "weights after step " + std::to_string(s + 1), 0.0, &drift.bound());
      if (f32 && world.rank() == 0 && s == 2) {  // the size of the derived weight bound, for the log
        std::vector<float> b;
        for (const auto& [name, t] : drift.bound().named())
          for (int64_t i = 0; i < t.numel(); ++i) b.push_back(t.data<float>()[i]);
        std::sort(b.begin(), b.end());
        std::printf("  [%s %s] weight bound / summed lr after 3 steps: median %.2g, max %.2g; loss tol %.2g\n",
                    l.name().c_str(), tied ? "tied" : "untied", b[b.size() / 2] / lr_sum, b.back() / lr_sum,
                    loss_tol * want.loss + weight_drift);
      }
    }
    const EvalMetrics ve = reference.validate(), vg = trainer.validate();
    // The validation loss at the final weights, which drifted by at most drift.bound(): the
    // forward bound plus sum_i |dL_val/dw_i| bound_i (first order), with the gradient of the mean
    // validation loss at the reference's weights over the same windows.
    const double val_drift = f32 ? drift.loss_change(validation_gradient(reference, dtype)) : 0.0;
    EXPECT_NEAR(vg.loss, ve.loss, loss_tol * ve.loss + val_drift);
    EXPECT_EQ(vg.tokens, ve.tokens);
  }
}

TEST(DistributedTrainer, ThreeStepsEqualSingleRankF32) { check_steps_match(DType::f32, false); }
TEST(DistributedTrainer, ThreeStepsEqualSingleRankTiedF32) { check_steps_match(DType::f32, true); }
TEST(DistributedTrainer, ThreeStepsEqualSingleRankBf16) { check_steps_match(DType::bf16, false); }
// Qwen2's q/k/v biases through every layout's optimizer step (1-D: not decayed).
TEST(DistributedTrainer, ThreeStepsEqualSingleRankQkvBiasTiedF32) { check_steps_match(DType::f32, true, true); }

// A directory name shared by every rank (rank 0 creates it).
std::filesystem::path shared_dir(comm::Communicator& world, const testing::ScratchDir& mine) {
  std::string name = mine.path().string();
  int len = static_cast<int>(name.size());
  MPI_Bcast(&len, 1, MPI_INT, 0, comm::mpi::handle_of(world));
  name.resize(static_cast<size_t>(len));
  MPI_Bcast(name.data(), len, MPI_CHAR, 0, comm::mpi::handle_of(world));
  return name;
}

// The uninterrupted single-rank run of `steps` steps, and the derived tolerance of each step's
// loss for a run that reaches that step through any layouts (any fp32 summation order; checkpoints
// are exact): the forward bound plus the first-order effect of the weights' AdamW drift so far
// (|G|_i bound_i, G this step's unclipped gradient at the reference's weights), and the drift
// bound after the last step.
struct ReferenceRun {
  std::vector<double> loss, tol;
  std::unique_ptr<Trainer> trainer;
  std::unique_ptr<testing::AdamWDrift> drift;
};
ReferenceRun reference_run(const model::ModelConfig& config, const RunConfig& run,
                           const std::vector<int32_t>& tokens, int steps) {
  ReferenceRun r;
  r.trainer = std::make_unique<Trainer>(config, single(run), tokens);
  const kernels::AdamWConfig adam;  // the trainer's betas (run_for sets only eps)
  r.drift = std::make_unique<testing::AdamWDrift>(config, adam.beta1, adam.beta2, kAdamEps);
  const double grad_tol = f32_grad_tol(config, run), loss_tol = f32_loss_tol(config, run);
  for (int s = 0; s < steps; ++s) {
    const StepMetrics m = r.trainer->train_step();
    const double clip_factor = m.clipped ? run.clip / (m.grad_norm + 1e-6) : 1.0;
    r.loss.push_back(m.loss);
    r.tol.push_back(loss_tol * m.loss + r.drift->loss_change(testing::whole_grads(*r.trainer)) / clip_factor);
    const auto& opt = r.trainer->optimizer();
    r.drift->add_step(testing::whole_grads(*r.trainer), testing::whole_of(r.trainer->config(), opt.exp_avg_sq()), testing::whole_weights(*r.trainer), m.lr, grad_tol);
  }
  return r;
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
  const ReferenceRun ref = reference_run(config, run, tokens, 5);
  const std::vector<double>& want = ref.loss;

  const std::filesystem::path tsp_ckpt = root / "from_tsp";
  {
    comm::Mesh mesh(world, {.tsp = world.size()});
    Trainer trainer(mesh, config, run, tokens);
    for (int s = 0; s < 2; ++s) EXPECT_NEAR(trainer.train_step().loss, want[s], ref.tol[s]);
    trainer.save_checkpoint(tsp_ckpt);
  }
  const std::filesystem::path single_ckpt = root / "from_single";
  {
    RunConfig resume = single(run);
    resume.resume = tsp_ckpt.string();
    Trainer trainer(config, resume, tokens);
    ASSERT_EQ(trainer.step(), 2);
    for (int s = 2; s < 4; ++s) EXPECT_NEAR(trainer.train_step().loss, want[s], ref.tol[s]);
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
    Trainer trainer(mesh, config, resume, tokens);
    ASSERT_EQ(trainer.step(), 4);
    EXPECT_NEAR(trainer.train_step().loss, want[4], ref.tol[4]) << "dp " << dp << " x tsp " << tsp;
    testing::expect_shards_match(trainer.layout().weights(), testing::whole_weights(*ref.trainer), 0.0, 1.0,
                                 "weights at step 5 after two layout changes", 0.0, &ref.drift->bound());
  }
}

// Issue #6's chain: tsp W trains 2 steps and saves; tp 2 x sp W/2 (tp W at 2 ranks) resumes for
// one step and saves; fsdp-sp W resumes for one step and saves; pipeline stages (pp 2 at 2 ranks,
// tsp 2 x pp 2 at 4; the tied embedding on both ends) resume for one step and save; a single-rank
// run resumes for the 6th. Every loss equals the uninterrupted single-rank run's.
TEST(DistributedTrainer, CheckpointChainAcrossEveryLayout) {
  comm::Communicator world = comm::Communicator::world();
  const int W = world.size();
  const model::ModelConfig config = config_for(DType::f32, true);
  const std::vector<int32_t> tokens = testing::pattern_tokens(6000, 90);
  const testing::ScratchDir scratch;
  const std::filesystem::path root = shared_dir(world, scratch);
  RunConfig base = run_for(DType::f32, 1, W);
  base.steps = 6;
  const ReferenceRun ref = reference_run(config, base, tokens, 6);
  const std::vector<double>& want = ref.loss;

  std::vector<std::pair<LayoutSpec, int>> chain = {
      {{"tsp", 1, 1, 1, W}, 2},
      {W == 4 ? LayoutSpec{"tp+sp", 1, 2, 2, 1} : LayoutSpec{"tp", 1, W, 1, 1}, 1},
      {{"fsdp-sp", 1, 1, W, 1}, 1}};
  if (W >= 2) chain.push_back({LayoutSpec{"tsp", 1, 1, 1, W / 2, 2}, 1});
  std::filesystem::path previous;
  int step = 0;
  for (size_t i = 0; i < chain.size(); ++i) {
    RunConfig run = run_for(DType::f32, chain[i].first);
    run.steps = 6;
    run.resume = previous.string();
    comm::Mesh mesh(world, mesh_degrees_for(run));
    Trainer trainer(mesh, config, run, tokens);
    ASSERT_EQ(trainer.step(), step) << chain[i].first.name();
    for (int s = 0; s < chain[i].second; ++s, ++step)
      EXPECT_NEAR(trainer.train_step().loss, want[static_cast<size_t>(step)], ref.tol[static_cast<size_t>(step)])
          << chain[i].first.name() << " step " << step + 1;
    previous = root / ("ckpt" + std::to_string(i));
    trainer.save_checkpoint(previous);
  }
  RunConfig last = single(base);
  last.resume = previous.string();
  Trainer trainer(config, last, tokens);
  ASSERT_EQ(trainer.step(), step);
  EXPECT_NEAR(trainer.train_step().loss, want[static_cast<size_t>(step)], ref.tol[static_cast<size_t>(step)])
      << "single after the chain";
  world.barrier();  // every rank is done with the directories before rank 0 removes them
}

// Issue #13: --checkpoint-dir is checked before the first step on the rank that writes, and a
// refusal reaches every rank as the same exception with the same message (no rank hangs): a
// directory with a config.json and a user's files (which survive), a path under /proc.
TEST(DistributedTrainer, UnusableCheckpointDirIsRefusedOnEveryRankBeforeTraining) {
  comm::Communicator world = comm::Communicator::world();
  const model::ModelConfig config = config_for(DType::f32, false);
  const std::vector<int32_t> tokens = testing::pattern_tokens(6000, 90);
  const testing::ScratchDir scratch;
  const std::filesystem::path root = shared_dir(world, scratch);
  const std::filesystem::path home = root / "home";
  if (world.rank() == 0) {
    std::filesystem::create_directories(home / "sub");
    model::save_config(config, home / "config.json");
    testing::write_bytes(home / "notes.txt", "precious");
    testing::write_bytes(home / "sub" / "more.txt", "also precious");
  }
  world.barrier();
  std::vector<std::pair<int, int>> meshes{{1, world.size()}};
  if (world.size() >= 2) meshes.push_back({2, world.size() / 2});  // only rank 0 of dp 0 writes
  for (auto [dp, tsp] : meshes) {
    SCOPED_TRACE(::testing::Message() << "dp " << dp << " x tsp " << tsp);
    RunConfig run = run_for(DType::f32, dp, tsp);
    run.checkpoint_dir = home.string();
    comm::Mesh mesh(world, {.dp = dp, .tsp = tsp});
    std::string message;
    try {
      Trainer trainer(mesh, config, run, tokens);
      ADD_FAILURE() << "no refusal";
    } catch (const InvalidArgument& e) {
      message = e.what();
    }
    EXPECT_NE(message.find("--checkpoint-dir: refusing to replace " + home.string() + ": it holds \"notes.txt\""),
              std::string::npos)
        << message;
    run.checkpoint_dir = "/proc/tsp_distributed_checkpoint";
    message.clear();
    try {
      Trainer trainer(mesh, config, run, tokens);
      ADD_FAILURE() << "no refusal";
    } catch (const IoError& e) {
      message = e.what();
    }
    EXPECT_NE(message.find("checkpoint directory /proc/tsp_distributed_checkpoint is not writable"), std::string::npos)
        << message;
  }
  world.barrier();
  if (world.rank() == 0) {
    EXPECT_EQ(testing::read_bytes(home / "notes.txt"), "precious");
    EXPECT_EQ(testing::read_bytes(home / "sub" / "more.txt"), "also precious");
  }
  world.barrier();
}

// Issue #13 items 8, 13, 14 sharded: --keep-checkpoints under mpirun (the writing rank updates
// "latest"), a resume from the run directory continues exactly, and an edited config.json, an
// edited step or a flipped data byte is refused with the same message on every rank (each rank
// verifies the chunks it reads; a refusal anywhere is everyone's, so no rank hangs).
template <class E>
std::string resume_refusal(comm::Mesh& mesh, const RunConfig& r, const std::vector<int32_t>& tokens) {
  try {
    Trainer t(mesh, model_config_for_run(r), r, tokens);
  } catch (const E& e) {
    return e.what();
  }
  return "no refusal";
}

TEST(DistributedTrainer, ResumeFromARunDirectoryAndRefusalsOfEditsOnEveryRank) {
  comm::Communicator world = comm::Communicator::world();
  const model::ModelConfig config = config_for(DType::f32, false);
  const std::vector<int32_t> tokens = testing::pattern_tokens(6000, 90);
  const testing::ScratchDir scratch;
  const std::filesystem::path root = shared_dir(world, scratch);
  RunConfig run = run_for(DType::f32, 1, world.size());
  run.steps = 4;
  run.checkpoint_dir = (root / "run").string();
  run.keep_checkpoints = 2;
  comm::Mesh mesh(world, {.tsp = world.size()});
  Trainer first(mesh, config, run, tokens);
  for (int s = 0; s < 3; ++s) {
    first.train_step();
    save_run_checkpoint(first, run);
  }
  world.barrier();  // "latest" is written by one rank after the save's barrier
  if (world.rank() == 0) {
    EXPECT_EQ(testing::read_bytes(root / "run" / "latest"), "step-000003\n");
    EXPECT_FALSE(std::filesystem::exists(root / "run" / "step-000001"));
  }
  RunConfig r = run;
  r.resume = (root / "run").string();
  {
    Trainer resumed(mesh, model_config_for_run(r), r, tokens);
    ASSERT_EQ(resumed.step(), 3);
    EXPECT_EQ(resumed.train_step().loss, first.train_step().loss);  // same layout: exact
  }
  world.barrier();
  const std::filesystem::path step3 = root / "run" / "step-000003";
  const std::string clean_config = testing::read_bytes(step3 / "config.json");
  const std::string clean_state = testing::read_bytes(step3 / kTrainStateFileName);
  // config.json's rope_theta edited: named, on every rank.
  if (world.rank() == 0) {
    std::string edited = clean_config;
    const size_t at = edited.find("\"rope_theta\": ");
    ASSERT_NE(at, std::string::npos);
    edited.insert(at + 14, "1");  // 10000.0 -> 110000.0
    testing::write_bytes(step3 / "config.json", edited);
  }
  world.barrier();
  std::string msg = resume_refusal<InvalidArgument>(mesh, r, tokens);
  EXPECT_NE(msg.find("config.json rope_theta: "), std::string::npos) << msg;
  world.barrier();
  // The step inside the state's metadata edited: the metadata checksum.
  if (world.rank() == 0) {
    testing::write_bytes(step3 / "config.json", clean_config);
    testing::edit_train_state_json(step3 / kTrainStateFileName, [](nlohmann::json& st) { st["step"] = 2; });
  }
  world.barrier();
  msg = resume_refusal<IoError>(mesh, r, tokens);
  EXPECT_NE(msg.find("checksum mismatch in the metadata"), std::string::npos) << msg;
  world.barrier();
  // One byte of the last tensor's last row flipped: found by the rank(s) that read that row.
  if (world.rank() == 0) {
    std::string bytes = clean_state;
    const model::TensorInfo last = [&] {
      testing::write_bytes(step3 / kTrainStateFileName, clean_state);
      return model::SafetensorsReader(step3 / kTrainStateFileName).tensors().back();
    }();
    bytes[static_cast<size_t>(last.file_end - 2)] ^= 0x01;
    testing::write_bytes(step3 / kTrainStateFileName, bytes);
  }
  world.barrier();
  msg = resume_refusal<IoError>(mesh, r, tokens);
  EXPECT_NE(msg.find("checksum mismatch in tensor"), std::string::npos) << msg;
  world.barrier();
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
  // --layout single is the mesh of one: refused on more ranks, naming the way out.
  const RunConfig one = single(run_for(DType::f32, 1, 1));
  validate_distributed_run(config, one, {});
  try {
    validate_distributed_run(config, one, {.dp = 2});
    ADD_FAILURE() << "--layout single accepted on 2 ranks";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("--layout single runs on one process"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tsp::train
