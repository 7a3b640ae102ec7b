// Exact resume: N steps, save, resume, M steps == N + M uninterrupted steps, bit for bit.
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "fp_bounds.h"
#include "parallel/layout_test_util.h"
#include "scratch_dir.h"
#include "tsp/core/checkpoint_dir.h"
#include "tsp/core/checkpoint_history.h"
#include "tsp/model/hf_checkpoint.h"
#include "tsp/kernels/adamw.h"
#include "tsp/train/train_state.h"
#include "tsp/train/trainer.h"
#include "train_test_util.h"

namespace tsp::train {
namespace {

using testing::pattern_tokens;
using testing::ScratchDir;
using testing::tiny_run;
using testing::tiny_train_config;

void expect_same_state(const Trainer& a, const Trainer& b) {
  EXPECT_EQ(a.step(), b.step());
  EXPECT_TRUE(testing::weights_bit_equal(testing::whole_weights(a), testing::whole_weights(b)));
  EXPECT_TRUE(testing::weights_bit_equal(testing::whole_of(a.config(), a.optimizer().exp_avg()), testing::whole_of(b.config(), b.optimizer().exp_avg())));
  EXPECT_TRUE(testing::weights_bit_equal(testing::whole_of(a.config(), a.optimizer().exp_avg_sq()), testing::whole_of(b.config(), b.optimizer().exp_avg_sq())));
  EXPECT_EQ(a.loader_state(), b.loader_state());
}

void check_exact_resume(DType dtype, bool recompute) {
  const int64_t n = 3, m = 3;
  RunConfig run = tiny_run(n + m);
  run.dtype = std::string(dtype_name(dtype));
  run.recompute = recompute;
  const model::ModelConfig cfg = tiny_train_config(dtype);
  const std::vector<int32_t> tokens = pattern_tokens(3000);

  Trainer straight(cfg, run, tokens);
  std::vector<double> losses;
  for (int64_t i = 0; i < n + m; ++i) losses.push_back(straight.train_step().loss);

  ScratchDir dir;
  const auto ckpt = dir / "ckpt";
  {
    Trainer first(cfg, run, tokens);
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(first.train_step().loss, losses[static_cast<size_t>(i)]);
    first.save_checkpoint(ckpt);
  }
  RunConfig resumed_run = run;
  resumed_run.resume = ckpt.string();
  Trainer resumed(cfg, resumed_run, tokens);
  EXPECT_EQ(resumed.step(), n);
  for (int64_t i = n; i < n + m; ++i) EXPECT_EQ(resumed.train_step().loss, losses[static_cast<size_t>(i)]) << i;
  expect_same_state(straight, resumed);
  EXPECT_EQ(straight.validate().loss, resumed.validate().loss);
}

TEST(Resume, BitExactF32) { check_exact_resume(DType::f32, false); }
TEST(Resume, BitExactF32Recompute) { check_exact_resume(DType::f32, true); }
TEST(Resume, BitExactBf16WithMasters) { check_exact_resume(DType::bf16, false); }

TEST(Resume, CheckpointIsAPlainHfCheckpointPlusState) {
  ScratchDir dir;
  const model::ModelConfig cfg = tiny_train_config();
  Trainer t(cfg, tiny_run(2), pattern_tokens(3000));
  t.train_step();
  t.save_checkpoint(dir / "c");
  EXPECT_TRUE(std::filesystem::exists(dir / "c" / "config.json"));
  EXPECT_TRUE(std::filesystem::exists(dir / "c" / "model.safetensors"));
  EXPECT_TRUE(std::filesystem::exists(dir / "c" / kTrainStateFileName));
  const model::HfCheckpoint ck(dir / "c");
  EXPECT_EQ(ck.config(), cfg);
  model::ModelWeights w(cfg, DType::f32, MemCategory::weights);
  for (const auto& [name, tensor] : w.named()) ck.read_into(name, tensor);
  EXPECT_TRUE(testing::weights_bit_equal(w, testing::whole_weights(t)));

  // --init from it starts a fresh run (step 0) with those weights.
  RunConfig init = tiny_run(2);
  init.init = (dir / "c").string();
  Trainer from_init(cfg, init, pattern_tokens(3000));
  EXPECT_EQ(from_init.step(), 0);
  EXPECT_TRUE(testing::weights_bit_equal(testing::whole_weights(from_init), testing::whole_weights(t)));
}

TEST(Resume, RefusesChangedDataSettingsAndPlainHfDirectories) {
  ScratchDir dir;
  const model::ModelConfig cfg = tiny_train_config();
  Trainer t(cfg, tiny_run(2), pattern_tokens(3000));
  t.train_step();
  t.save_checkpoint(dir / "c");
  RunConfig other = tiny_run(2);
  other.resume = (dir / "c").string();
  other.seq = 8;
  try {
    Trainer bad(cfg, other, pattern_tokens(3000));
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("--seq 16 (checkpoint) vs 8 (now)"), std::string::npos) << e.what();
  }
  std::filesystem::remove(dir / "c" / kTrainStateFileName);
  other.seq = 16;
  EXPECT_THROW(Trainer(cfg, other, pattern_tokens(3000)), IoError);
}

// The message of the exception a resume with `run` (model from the checkpoint, as tsp train does)
// throws, or "" when it resumes.
std::string resume_error(const RunConfig& run, const std::vector<int32_t>& tokens) {
  try {
    Trainer t(model_config_for_run(run), run, tokens);
    return "";
  } catch (const Error& e) {
    return e.what();
  }
}

std::filesystem::path saved_after_one_step(const ScratchDir& dir, const std::vector<int32_t>& tokens) {
  Trainer t(tiny_train_config(), tiny_run(4), tokens);
  t.train_step();
  t.save_checkpoint(dir / "c");
  return dir / "c";
}

void edit_config_json(const std::filesystem::path& ckpt, const char* field, double value) {
  std::ifstream in(ckpt / "config.json");
  nlohmann::json j = nlohmann::json::parse(in);
  j[field] = value;
  std::ofstream(ckpt / "config.json", std::ios::trunc) << j.dump(2) << "\n";
}

TEST(Resume, RefusesAnEditedConfigJsonNamingTheField) {
  const std::vector<int32_t> tokens = pattern_tokens(3000);
  for (auto [field, value] : std::vector<std::pair<const char*, double>>{{"rms_norm_eps", 1e-6}, {"rope_theta", 500000.0}}) {
    ScratchDir dir;
    const auto ckpt = saved_after_one_step(dir, tokens);
    RunConfig run = tiny_run(4);
    run.resume = ckpt.string();
    ASSERT_EQ(resume_error(run, tokens), "");  // unedited: resumes
    edit_config_json(ckpt, field, value);
    const std::string msg = resume_error(run, tokens);
    EXPECT_NE(msg.find(std::string("config.json ") + field + ": "), std::string::npos) << msg;
    EXPECT_NE(msg.find("(checkpoint) vs"), std::string::npos) << msg;
  }
}

TEST(Resume, RefusesChangedFixedSettingsNamingThemAndAcceptsStepsAndLr) {
  const std::vector<int32_t> tokens = pattern_tokens(3000);
  ScratchDir dir;
  const auto ckpt = saved_after_one_step(dir, tokens);
  RunConfig base = tiny_run(4);
  base.resume = ckpt.string();
  struct Case {
    const char* expect;
    std::function<void(RunConfig&)> change;
  };
  const std::vector<Case> refused = {
      {"--seq 16 (checkpoint) vs 8 (now)", [](RunConfig& r) { r.seq = 8; }},
      {"--batch 4 (checkpoint) vs 8 (now)", [](RunConfig& r) { r.batch = 8; }},
      {"--dtype f32 (checkpoint) vs bf16 (now)", [](RunConfig& r) { r.dtype = "bf16"; }},
      {"--seed 11 (checkpoint) vs 12 (now)", [](RunConfig& r) { r.seed = 12; }},
      {"--clip 0.5 (checkpoint) vs 1 (now)", [](RunConfig& r) { r.clip = 1; }},
  };
  for (const Case& c : refused) {
    RunConfig r = base;
    c.change(r);
    const std::string msg = resume_error(r, tokens);
    EXPECT_NE(msg.find(c.expect), std::string::npos) << c.expect << ": " << msg;
  }
  // Other tokens under the same --data name: the fingerprint differs.
  const std::string msg = resume_error(base, pattern_tokens(3000, 40, 6));
  EXPECT_NE(msg.find("--data"), std::string::npos) << msg;
  EXPECT_NE(msg.find("other tokens"), std::string::npos) << msg;
  // What a resume may change: the schedule's length and learning rates, cadences, layout knobs.
  RunConfig ok = base;
  ok.steps = 10;
  ok.lr = 5e-3;
  ok.min_lr = 1e-4;
  ok.warmup = 0;
  ok.eval_every = 3;
  ok.save_every = 2;
  ok.log_every = 5;
  ok.grad_accum = 4;
  ok.recompute = true;
  Trainer t(model_config_for_run(ok), ok, tokens);
  EXPECT_EQ(t.step(), 1);
}

// --keep-checkpoints: step directories, "latest", pruning of our own old ones only.
TEST(Resume, KeepCheckpointsLeavesTheLastKAndLatestAndNothingForeignIsTouched) {
  ScratchDir dir;
  const auto run_dir = dir / "run";
  std::filesystem::create_directories(run_dir / "mine");
  testing::write_bytes(run_dir / "mine" / "notes.txt", "precious");
  std::filesystem::create_directories(run_dir / "step-000000");  // the user's, not a checkpoint
  testing::write_bytes(run_dir / "step-000000" / "data.bin", "also precious");
  RunConfig run = tiny_run(5);
  run.save_every = 1;
  run.keep_checkpoints = 2;
  run.checkpoint_dir = run_dir.string();
  Trainer t(tiny_train_config(), run, pattern_tokens(3000));
  t.run();
  std::set<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(run_dir)) names.insert(e.path().filename().string());
  EXPECT_EQ(names, (std::set<std::string>{"latest", "mine", "step-000000", "step-000004", "step-000005"}));
  EXPECT_EQ(testing::read_bytes(run_dir / "latest"), "step-000005\n");
  EXPECT_TRUE(is_engine_checkpoint(run_dir / "step-000004"));
  EXPECT_TRUE(is_engine_checkpoint(run_dir / "step-000005"));
  EXPECT_EQ(testing::read_bytes(run_dir / "mine" / "notes.txt"), "precious");
  EXPECT_EQ(testing::read_bytes(run_dir / "step-000000" / "data.bin"), "also precious");
  EXPECT_EQ(read_train_state_info(resolve_checkpoint_dir(run_dir) / kTrainStateFileName).step, 5);
  // The run directory as a single-checkpoint --checkpoint-dir: refused before training, untouched.
  RunConfig single = tiny_run(5);
  single.checkpoint_dir = run_dir.string();
  try {
    Trainer again(tiny_train_config(), single, pattern_tokens(3000));
    ADD_FAILURE() << "no refusal";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("is a run directory"), std::string::npos) << e.what();
  }
  EXPECT_EQ(testing::read_bytes(run_dir / "latest"), "step-000005\n");
}

TEST(Resume, FromARunDirectoryOrAStepDirectoryReproducesTheUninterruptedLosses) {
  const std::vector<int32_t> tokens = pattern_tokens(3000);
  RunConfig run = tiny_run(6);
  Trainer straight(tiny_train_config(), run, tokens);
  std::vector<double> losses;
  for (int i = 0; i < 6; ++i) losses.push_back(straight.train_step().loss);

  ScratchDir dir;
  const auto run_dir = dir / "run";
  run.checkpoint_dir = run_dir.string();
  run.keep_checkpoints = 3;
  {
    Trainer first(tiny_train_config(), run, tokens);
    for (int i = 0; i < 4; ++i) {
      EXPECT_EQ(first.train_step().loss, losses[static_cast<size_t>(i)]);
      if (i >= 2) {
        EXPECT_EQ(save_run_checkpoint(first, run), run_dir / checkpoint_step_dir_name(i + 1));
      }
    }
  }
  ASSERT_EQ(testing::read_bytes(run_dir / "latest"), "step-000004\n");
  for (auto [from, at] : std::vector<std::pair<std::filesystem::path, int>>{{run_dir, 4}, {run_dir / "step-000003", 3}}) {
    RunConfig r = tiny_run(6);
    r.resume = from.string();
    Trainer resumed(model_config_for_run(r), r, tokens);
    ASSERT_EQ(resumed.step(), at) << from;
    for (int i = at; i < 6; ++i) EXPECT_EQ(resumed.train_step().loss, losses[static_cast<size_t>(i)]) << from << " " << i;
    expect_same_state(straight, resumed);
  }
}

TEST(Trainer, ForwardLossEqualsForwardBackwardLoss) {
  const model::ModelConfig cfg = tiny_train_config();
  const model::ModelWeights w = model::ModelWeights::initialize(cfg, DType::f32, 3);
  model::ModelWeights g(cfg, DType::f32, MemCategory::grads);
  model::Transformer t(cfg);
  const std::vector<int32_t> tokens = pattern_tokens(200);
  Tensor in = Tensor::empty(Shape{2, 16}, DType::i32, MemCategory::activations);
  Tensor tg = Tensor::empty(Shape{2, 16}, DType::i32, MemCategory::activations);
  for (int64_t i = 0; i < 32; ++i) {
    in.data<int32_t>()[i] = tokens[static_cast<size_t>(i)];
    tg.data<int32_t>()[i] = tokens[static_cast<size_t>(i + 1)];
  }
  const model::LossSum a = t.forward(w, in, tg);
  const model::LossSum b = t.forward_backward(w, in, tg, g, 1.f / 32);
  EXPECT_EQ(a.n_valid, 32);
  EXPECT_NEAR(a.loss_sum, b.loss_sum, 1e-9 * b.loss_sum);
}

TEST(Trainer, GradientAccumulationMatchesOneBigBatch) {
  const model::ModelConfig cfg = tiny_train_config();
  RunConfig one = tiny_run(1), four = tiny_run(1);
  one.grad_accum = 1;
  four.grad_accum = 4;
  Trainer a(cfg, one, pattern_tokens(3000));
  Trainer b(cfg, four, pattern_tokens(3000));
  const StepMetrics ma = a.train_step();
  const StepMetrics mb = b.train_step();
  // Same weights, same tokens, other GEMM shapes (4 micro-batches of 1 row vs 1 of 4), i.e. other
  // summation orders: derived bounds (tests/fp_bounds.h). Each run's loss and gradients are within
  // gamma = (sum of the lengths of the chained fp32 reductions of the step: L 2, h 32, F 64, V 48,
  // S 16, T 64, +4 for the micro-batch accumulation and +2 for clipping) 2^-24 of exact, relative to
  // the magnitude of the summed terms (the loss itself; |g| + rms of its tensor), so they differ by
  // <= 2 gamma; the gradient norm by <= 2 gamma (|g|_2 + sum_t sqrt(n_t) rms_t) <= 4 gamma |g|_2.
  const model::ModelConfig& c = cfg;
  const int64_t S = one.seq, T = one.batch * one.seq;
  const double loss_tol = 2 * testing::model_chain(c, S, T, /*backward=*/false, /*extra=*/6).gamma;
  const double grad_tol = 2 * testing::model_chain(c, S, T, /*backward=*/true, /*extra=*/6).gamma;
  EXPECT_NEAR(ma.loss, mb.loss, loss_tol * ma.loss);
  EXPECT_NEAR(ma.grad_norm, mb.grad_norm, 2 * grad_tol * ma.grad_norm);
  EXPECT_EQ(ma.tokens, mb.tokens);
  // Weights after the step: AdamW's first update lr g / (|g| + eps) amplifies the gradient
  // difference of a near-zero gradient (eps = 1e-8 here): testing::AdamWDrift's derived bound,
  // element by element from a's gradients and second moments.
  const kernels::AdamWConfig adam;
  testing::AdamWDrift drift(c, adam.beta1, adam.beta2, one.adam_eps);
  drift.add_step(testing::whole_grads(a), testing::whole_of(a.config(), a.optimizer().exp_avg_sq()), testing::whole_weights(a), ma.lr, grad_tol);
  const auto wa = testing::whole_weights(a).named();
  const auto wb = testing::whole_weights(b).named();
  const auto bound = drift.bound().named();
  for (size_t i = 0; i < wa.size(); ++i) {
    for (int64_t j = 0; j < wa[i].second.numel(); ++j) {
      ASSERT_NEAR(wa[i].second.item_f32(j), wb[i].second.item_f32(j), bound[i].second.item_f32(j))
          << wa[i].first << " element " << j << " gradient " << testing::whole_grads(a).get(wa[i].first).item_f32(j);
    }
  }
}

TEST(Trainer, LossFallsAndRunWritesMetricsAndCheckpoints) {
  ScratchDir dir;
  RunConfig run = tiny_run(30);
  run.eval_every = 10;
  run.save_every = 10;
  run.checkpoint_dir = (dir / "ck").string();
  run.metrics = (dir / "m.jsonl").string();
  std::ostringstream log;
  Trainer t(tiny_train_config(), run, pattern_tokens(3000), {.log = &log});
  const double before = t.validate().loss;
  const EvalMetrics end = t.run();
  EXPECT_LT(end.loss, before - 0.5) << log.str();
  EXPECT_EQ(t.step(), 30);
  EXPECT_NE(log.str().find("step 30/30 | loss"), std::string::npos) << log.str();
  EXPECT_NE(log.str().find("val step 10 | val_loss"), std::string::npos) << log.str();
  EXPECT_NE(log.str().find("unigram"), std::string::npos);
  const std::string metrics = testing::read_bytes(dir / "m.jsonl");
  // 30 steps, val at 10, 20, 30, and one memory record (per rank) at the end of the run.
  EXPECT_EQ(std::count(metrics.begin(), metrics.end(), '\n'), 30 + 3 + 1);
  EXPECT_NE(metrics.find("\"type\":\"memory\""), std::string::npos) << metrics;
  EXPECT_EQ(read_train_state_info(dir / "ck" / kTrainStateFileName).step, 30);
}

}  // namespace
}  // namespace tsp::train
