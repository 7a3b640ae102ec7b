// The tensor-parallel decode under mpirun (T = world size: 1, 2, 4) against the single-rank engine:
// logits at every step, generated tokens, batches, a KV cache of exactly 1/T, traffic, errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "infer_test_util.h"
#include "parallel/layout_test_util.h"
#include "tsp/comm/collectives.h"
#include "tsp/core/memory.h"
#include "tsp/infer/generate.h"
#include "tsp/infer/single/decode_step.h"
#include "tsp/infer/single/prefill.h"
#include "tsp/infer/tp/tp_decode.h"
#include "tsp/infer/sharded/sharded_generate.h"

namespace tsp::infer {
namespace {

namespace it = tsp::infer::testing;
using parallel::TpWeights;
using Prompts = std::vector<std::vector<int32_t>>;

// h = 64, H = 8 (d = 8), H_kv = 8 or 4, F = 128, V = 96: divisible by T = 1, 2, 4.
model::ModelConfig config_of(bool gqa, bool tied, int64_t kv_heads = 0, bool qkv_bias = false) {
  model::ModelConfigFields f =
      tsp::testing::tiny_config({.gqa = gqa, .tied = tied, .qkv_bias = qkv_bias}).fields();
  if (kv_heads > 0) f.num_key_value_heads = kv_heads;
  return model::ModelConfig(f);
}

int64_t kv_live_bytes() { return MemoryLedger::process().stats(MemCategory::kv_cache).live_bytes; }

std::vector<Tensor> single_rank_logits(const model::ModelWeights& w, const Prompts& prompts,
                                       const Prompts& forced, int64_t capacity) {
  KvCache cache(w.config(), w.dtype(), static_cast<int64_t>(prompts.size()), capacity);
  std::vector<Tensor> out{prefill(w, prompts, cache)};
  for (const auto& step : forced) out.push_back(decode_step(w, step, cache));
  return out;
}

std::vector<Tensor> tp_logits(comm::Communicator& world, const TpWeights& w, const Prompts& prompts,
                              const Prompts& forced, int64_t capacity) {
  TpDecoder dec(world, w, static_cast<int64_t>(prompts.size()), capacity);
  std::vector<Tensor> out{dec.prefill(prompts)};
  for (const auto& step : forced) out.push_back(dec.decode_step(step));
  return out;
}

Prompts forced_tokens(int64_t steps, int64_t batch, int64_t vocab, uint64_t seed) {
  Prompts f;
  for (int64_t t = 0; t < steps; ++t) f.push_back(it::random_tokens(batch, vocab, seed + static_cast<uint64_t>(t)));
  return f;
}

double expect_logits_close(const std::vector<Tensor>& got, const std::vector<Tensor>& want, double tol) {
  EXPECT_EQ(got.size(), want.size());
  double worst = 0;
  for (size_t t = 0; t < std::min(got.size(), want.size()); ++t)
    for (int64_t b = 0; b < want[t].dim(0); ++b) {
      const double e = it::row_error(it::row(got[t], b), it::row(want[t], b));
      worst = std::max(worst, e);
      EXPECT_LE(e, tol) << "step " << t << " sequence " << b;
    }
  return worst;
}

struct LogitsCase {
  const char* name;
  bool gqa, tied;
  DType dtype;
  int64_t prompt_len;
  bool qkv_bias = false;  // Qwen2: q/k/v projection biases
};
void PrintTo(const LogitsCase& c, std::ostream* os) { *os << c.name; }

class TpDecodeLogits : public ::testing::TestWithParam<LogitsCase> {};

// The TP decode has the single-rank decode's rounding points exactly (each head's attention is
// whole on one rank; only the o_proj and MLP sums run over ranks, in fp32): fp32 the derived
// it::f32_logits_tol, bf16 3e-2 for a rounding flipped by the reordered sums (observed 0 here).
TEST_P(TpDecodeLogits, EveryStepEqualsSingleRank) {
  const LogitsCase& k = GetParam();
  comm::Communicator world = comm::Communicator::world();
  const model::ModelConfig c = config_of(k.gqa, k.tied, 0, k.qkv_bias);
  const model::ModelWeights full = it::random_weights(c, 41, k.dtype);
  const TpWeights shards = TpWeights::from_full(full, world.size(), world.rank());
  const Prompts prompts{it::random_tokens(k.prompt_len, c.vocab_size(), 3)};
  const Prompts forced = forced_tokens(12, 1, c.vocab_size(), 100);
  const int64_t capacity = k.prompt_len + 12;
  const double worst = expect_logits_close(tp_logits(world, shards, prompts, forced, capacity),
                                           single_rank_logits(full, prompts, forced, capacity),
                                           k.dtype == DType::f32 ? it::f32_logits_tol(c, capacity) : 3e-2);
  if (world.rank() == 0) std::printf("  [%s] T=%d worst logits error %.2e\n", k.name, world.size(), worst);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, TpDecodeLogits,
    ::testing::Values(LogitsCase{"f32_gqa_untied_len13", true, false, DType::f32, 13},
                      LogitsCase{"f32_mha_tied_len16", false, true, DType::f32, 16},
                      LogitsCase{"f32_gqa_tied_len1", true, true, DType::f32, 1},
                      LogitsCase{"bf16_gqa_untied_len13", true, false, DType::bf16, 13},
                      // Qwen2: each tp rank adds its heads' q/k/v bias entries.
                      LogitsCase{"f32_gqa_qkv_bias_tied_len13", true, true, DType::f32, 13, true}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(TpDecode, BatchOfDifferentLengthsEqualsSingleRank) {
  comm::Communicator world = comm::Communicator::world();
  const model::ModelConfig c = config_of(true, false);
  const model::ModelWeights full = it::random_weights(c, 42);
  const TpWeights shards = TpWeights::from_full(full, world.size(), world.rank());
  const Prompts prompts{it::random_tokens(5, c.vocab_size(), 1), it::random_tokens(12, c.vocab_size(), 2),
                        it::random_tokens(1, c.vocab_size(), 3)};
  const Prompts forced = forced_tokens(10, 3, c.vocab_size(), 200);
  expect_logits_close(tp_logits(world, shards, prompts, forced, 22),
                      single_rank_logits(full, prompts, forced, 22), it::f32_logits_tol(c, 22));
}

TEST(TpDecode, GreedyAndSampledGenerationEqualSingleRank) {
  comm::Communicator world = comm::Communicator::world();
  const model::ModelConfig c = config_of(false, true);
  const model::ModelWeights full = it::random_weights(c, 43);
  const TpWeights shards = TpWeights::from_full(full, world.size(), world.rank());
  const std::vector<Prompts> batches{
      {it::random_tokens(13, c.vocab_size(), 4)},
      {it::random_tokens(5, c.vocab_size(), 5), it::random_tokens(12, c.vocab_size(), 6),
       it::random_tokens(1, c.vocab_size(), 7)}};
  std::vector<GenerateOptions> options(2);
  options[0].max_new_tokens = 20;
  options[0].sampling.greedy = true;
  options[1].max_new_tokens = 20;
  options[1].sampling = {.temperature = 0.9f, .top_k = 20, .top_p = 0.95f, .seed = 5};
  options[1].eos_id = 7;
  for (const Prompts& prompts : batches)
    for (const GenerateOptions& o : options) {
      const Generation want = generate(full, prompts, o);
      const Generation got = sharded_generate(LayoutKind::tp, world, shards, prompts, o);
      EXPECT_EQ(got.tokens, want.tokens) << "batch of " << prompts.size() << ", greedy " << o.sampling.greedy;
      EXPECT_EQ(got.stats.decode_tokens, want.stats.decode_tokens);
    }
}

TEST(TpDecode, KvCacheIsExactlyOneTthOfSingleRank) {
  comm::Communicator world = comm::Communicator::world();
  const int T = world.size();
  for (const DType dt : {DType::f32, DType::bf16}) {
    const model::ModelConfig c = config_of(true, false);
    const model::ModelWeights full = it::random_weights(c, 44, dt);
    const TpWeights shards = TpWeights::from_full(full, T, world.rank());
    const int64_t live0 = kv_live_bytes();
    TpDecoder dec(world, shards, 2, 30);
    dec.prefill({it::random_tokens(13, c.vocab_size(), 1), it::random_tokens(4, c.vocab_size(), 2)});
    EXPECT_EQ(dec.cache().bytes() * T, KvCache::bytes_for(c, dt, 2, 30));
    EXPECT_EQ(kv_live_bytes() - live0, dec.cache().allocated_bytes());
    EXPECT_EQ(dec.cache().length(0), 13);
    EXPECT_EQ(dec.cache().length(1), 4);
  }
}

TEST(TpDecode, TrafficPerDecodedTokenIsTwoAllReducesOfBhPerLayer) {
  comm::Communicator world = comm::Communicator::world();
  const int T = world.size();
  for (const DType dt : {DType::f32, DType::bf16})
    for (const int64_t B : {1, 3}) {
      const model::ModelConfig c = config_of(true, false);
      const model::ModelWeights full = it::random_weights(c, 45, dt);
      const TpWeights shards = TpWeights::from_full(full, T, world.rank());
      Prompts prompts;
      for (int64_t b = 0; b < B; ++b) prompts.push_back(it::random_tokens(9 + 4 * b, c.vocab_size(), 20 + b));
      TpDecoder dec(world, shards, B, 40);
      dec.prefill(prompts);
      world.ledger().reset();
      dec.decode_step(it::random_tokens(B, c.vocab_size(), 31));
      const comm::TrafficLedger& led = world.ledger();
      const int64_t L = c.num_hidden_layers(), h = c.hidden_size();
      const int64_t reduce = 2 * (T - 1) * 4 * B * h / T;  // f32 on the wire, also for bf16
      EXPECT_EQ(led.get(comm::CommOp::all_reduce).calls, 2 * L + 1);
      EXPECT_EQ(led.get(comm::CommOp::all_reduce).bytes_received, (2 * L + 1) * reduce);
      EXPECT_EQ(led.get(comm::CommOp::all_gather).calls, 1);
      EXPECT_EQ(led.get(comm::CommOp::all_gather).bytes_received, (T - 1) * 4 * B * c.vocab_size() / T);
      EXPECT_EQ(led.total().calls, 2 * L + 2) << "no other collective";
    }
}

TEST(TpDecode, ErrorsAreClearOnEveryRankBeforeAllocating) {
  comm::Communicator world = comm::Communicator::world();
  const int T = world.size();
  const model::ModelConfig c = config_of(true, false);
  const model::ModelWeights full = it::random_weights(c, 46);
  const TpWeights shards = TpWeights::from_full(full, T, world.rank());
  GenerateOptions o;
  o.sampling.greedy = true;
  o.max_new_tokens = 10;
  const int64_t live0 = kv_live_bytes();
  EXPECT_THROW(sharded_generate(LayoutKind::tp, world, shards, {std::vector<int32_t>{}}, o),
               InvalidArgument);
  try {
    sharded_generate(LayoutKind::tp, world, shards, {it::random_tokens(250, c.vocab_size(), 1)}, o);
    ADD_FAILURE() << "a prompt beyond the position limit must be refused";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("= 260 positions exceeds the model's max_position_embeddings 256"),
              std::string::npos) << e.what();
  }
  EXPECT_EQ(kv_live_bytes(), live0);
  if (T > 1) {
    try {
      TpDecoder::head_group_config(config_of(true, false, 1), T);
      ADD_FAILURE() << "H_kv = 1 at tp " << T << " must be refused";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("tp: num_key_value_heads H_kv=1 is not divisible by the tp degree"),
                std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace tsp::infer
