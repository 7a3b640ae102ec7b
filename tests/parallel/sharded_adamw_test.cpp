// ShardedAdamW, the one optimizer: on whole tensors it equals kernels::adamw_step applied by hand
// (weight decay on matrices only, f32 masters for bf16 weights); every rank of a TSP layout
// (D = 1, 2, 4) and of hand-made uneven row/column splits, simulated in one process, ends bitwise
// equal to the whole-tensor run.
#include "tsp/parallel/sharded_adamw.h"

#include <gtest/gtest.h>

#include <cstring>
#include <functional>

#include "tsp/core/error.h"
#include "tsp/model/model_weights.h"
#include "tsp/kernels/adamw.h"
#include "tsp/parallel/single_layout.h"
#include "tsp/parallel/tp_weights.h"

namespace tsp::parallel {
namespace {

// h = 32, H = 8 (d = 4), H_kv = 4, F = 64, V = 48: every size divisible by D = 4.
model::ModelConfig small_config(bool tied) {
  model::ModelConfigFields f;
  f.hidden_size = 32;
  f.intermediate_size = 64;
  f.num_hidden_layers = 2;
  f.num_attention_heads = 8;
  f.num_key_value_heads = 4;
  f.vocab_size = 48;
  f.max_position_embeddings = 64;
  f.tie_word_embeddings = tied;
  return model::ModelConfig(f);
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  if (!(a.shape() == b.shape()) || a.dtype() != b.dtype()) return false;
  const Tensor ca = Tensor::copy_of(a, a.dtype(), MemCategory::workspace);
  const Tensor cb = Tensor::copy_of(b, b.dtype(), MemCategory::workspace);
  return std::memcmp(ca.raw(), cb.raw(), ca.nbytes()) == 0;
}

// Every piece equals its part of the full tensors, byte for byte.
void expect_pieces_equal(const std::vector<ParamShard>& pieces, const model::ModelWeights& full,
                         const std::string& what) {
  for (const ParamShard& p : pieces) {
    EXPECT_TRUE(same_bytes(p.local, p.view_of_full(full.get(p.name)))) << what << " " << p.name;
  }
}

// One simulated rank: its weights, f32 gradient pieces and optimizer.
struct Rank {
  std::vector<ParamShard> weights;
  std::vector<ParamShard> grads;
  ShardedAdamW opt;
};

const ShardedAdamWConfig kShardedConfig{0.9, 0.95, 1e-8, 0.1};

// The whole tensors of a list of whole shards, as ModelWeights (a copy in their dtype).
model::ModelWeights full_of(const model::ModelConfig& config, const std::vector<ParamShard>& whole) {
  model::ModelWeights w(config, whole.front().local.dtype(), MemCategory::workspace);
  for (const ParamShard& s : whole) copy_shard_to_full(s, w.get(s.name));
  return w;
}

// Runs 3 steps of the reference and of every rank with the same gradients, then compares weights,
// moments and masters piece by piece.
void run_and_compare(const model::ModelConfig& config, DType dtype,
                     const std::function<std::vector<ParamShard>(const model::ModelWeights&, int)>& split,
                     int ranks) {
  model::ModelWeights ref_w = model::ModelWeights::initialize(config, dtype, 3);
  const std::vector<ParamShard> ref_shards = whole_shards(ref_w);
  ShardedAdamW ref(ref_shards, kShardedConfig);
  std::vector<Rank> sim;
  for (int r = 0; r < ranks; ++r) {
    std::vector<ParamShard> w = split(ref_w, r);
    std::vector<ParamShard> g = zeros_like_shards(w, DType::f32, MemCategory::grads);
    ShardedAdamW opt(w, kShardedConfig);
    sim.push_back({std::move(w), std::move(g), std::move(opt)});
  }
  const double lrs[] = {1e-2, 3e-3, 5e-4};
  for (int step = 0; step < 3; ++step) {
    const model::ModelWeights grad = model::ModelWeights::initialize(config, DType::f32, 100 + step);
    for (Rank& rank : sim) {
      for (const ParamShard& g : rank.grads) copy_shard_from_full(g, grad.get(g.name));
      rank.opt.step(rank.weights, rank.grads, lrs[step]);
    }
    ref.step(ref_shards, whole_shards(grad), lrs[step]);
  }
  for (int r = 0; r < ranks; ++r) {
    const std::string what = std::string(dtype_name(dtype)) + " rank " + std::to_string(r);
    const Rank& rank = sim[static_cast<size_t>(r)];
    EXPECT_EQ(rank.opt.steps(), 3);
    expect_pieces_equal(rank.weights, ref_w, what + " weights");
    expect_pieces_equal(rank.opt.exp_avg(), full_of(config, ref.exp_avg()), what + " exp_avg");
    expect_pieces_equal(rank.opt.exp_avg_sq(), full_of(config, ref.exp_avg_sq()), what + " exp_avg_sq");
    ASSERT_EQ(rank.opt.has_masters(), ref.has_masters());
    if (ref.has_masters()) expect_pieces_equal(rank.opt.masters(), full_of(config, ref.masters()), what + " masters");
  }
}

bool weights_bit_equal(const model::ModelWeights& a, const model::ModelWeights& b) {
  const auto na = a.named(), nb = b.named();
  if (na.size() != nb.size()) return false;
  for (size_t i = 0; i < na.size(); ++i)
    if (na[i].first != nb[i].first || !same_bytes(na[i].second, nb[i].second)) return false;
  return true;
}

// Two steps on whole tensors agree bit for bit with kernels::adamw_step applied by hand, tensor
// by tensor, with weight decay on matrices only.
TEST(ShardedAdamW, WholeTensorsMatchTheKernelAppliedByHand) {
  const model::ModelConfig cfg = small_config(false);
  model::ModelWeights w = model::ModelWeights::initialize(cfg, DType::f32, 1);
  const model::ModelWeights g1 = model::ModelWeights::initialize(cfg, DType::f32, 2);
  const model::ModelWeights g2 = model::ModelWeights::initialize(cfg, DType::f32, 3);
  // By hand.
  model::ModelWeights p(cfg, DType::f32, MemCategory::workspace);
  p.copy_from(w);
  model::ModelWeights m(cfg, DType::f32, MemCategory::workspace), v(cfg, DType::f32, MemCategory::workspace);
  const double lrs[2] = {1e-2, 5e-3};
  const model::ModelWeights* gs[2] = {&g1, &g2};
  for (int s = 0; s < 2; ++s) {
    const auto pn = p.named(), mn = m.named(), vn = v.named(), gn = gs[s]->named();
    for (size_t i = 0; i < pn.size(); ++i) {
      kernels::AdamWOptions o{.lr = static_cast<float>(lrs[s]), .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                              .weight_decay = pn[i].second.rank() == 2 ? 0.1f : 0.f};
      kernels::adamw_step(pn[i].second, mn[i].second, vn[i].second, gn[i].second, s + 1, o);
    }
  }
  const std::vector<ParamShard> ws = whole_shards(w);
  ShardedAdamW opt(ws, {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1});
  EXPECT_FALSE(opt.has_masters());
  opt.step(ws, whole_shards(g1), lrs[0]);
  opt.step(ws, whole_shards(g2), lrs[1]);
  EXPECT_EQ(opt.steps(), 2);
  EXPECT_TRUE(weights_bit_equal(w, p));
  EXPECT_TRUE(weights_bit_equal(full_of(cfg, opt.exp_avg()), m));
  EXPECT_TRUE(weights_bit_equal(full_of(cfg, opt.exp_avg_sq()), v));
}

TEST(ShardedAdamW, Bf16WeightsKeepFp32MastersAndGetTheRoundedCopy) {
  const model::ModelConfig cfg = small_config(false);
  model::ModelWeights w = model::ModelWeights::initialize(cfg, DType::bf16, 1);
  const model::ModelWeights g = model::ModelWeights::initialize(cfg, DType::f32, 2);
  const std::vector<ParamShard> ws = whole_shards(w);
  ShardedAdamW opt(ws, {});
  ASSERT_TRUE(opt.has_masters());
  EXPECT_EQ(opt.masters().front().local.dtype(), DType::f32);
  EXPECT_EQ(opt.masters().front().local.category(), MemCategory::optimizer);
  EXPECT_EQ(opt.exp_avg().front().local.category(), MemCategory::optimizer);
  opt.step(ws, whole_shards(g), 1e-2);
  model::ModelWeights rounded(cfg, DType::bf16, MemCategory::workspace);
  rounded.copy_from(full_of(cfg, opt.masters()));
  EXPECT_TRUE(weights_bit_equal(w, rounded));
  // The master moved by less than a bf16 ulp in some elements: it is not itself bf16-rounded.
  const Tensor m = opt.masters().front().local;  // the embedding's master
  bool finer = false;
  for (int64_t i = 0; i < m.numel() && !finer; ++i) finer = m.data<float>()[i] != round_to_bf16(m.data<float>()[i]);
  EXPECT_TRUE(finer);
}

TEST(ShardedAdamW, ZeroGradientLeavesNormGainsUndecayed) {
  const model::ModelConfig cfg = small_config(false);
  model::ModelWeights w = model::ModelWeights::initialize(cfg, DType::f32, 1);
  model::ModelWeights g(cfg, DType::f32, MemCategory::grads);
  const std::vector<ParamShard> ws = whole_shards(w);
  ShardedAdamW opt(ws, {.weight_decay = 0.5});
  opt.step(ws, whole_shards(g), 0.1);
  EXPECT_EQ(w.final_norm().item_f32(0), 1.0f);
  const model::ModelWeights w0 = model::ModelWeights::initialize(cfg, DType::f32, 1);
  EXPECT_EQ(w.embed().item_f32(0), w0.embed().item_f32(0) * static_cast<float>(1.0 - 0.1 * 0.5f));
}

TEST(ShardedAdamW, TspShardsMatchSingleRankBitwise) {
  for (bool tied : {false, true}) {
    const model::ModelConfig config = small_config(tied);
    for (DType dtype : {DType::f32, DType::bf16}) {
      for (int D : {1, 2, 4}) {
        SCOPED_TRACE(::testing::Message() << "D=" << D << " tied=" << tied << " " << dtype_name(dtype));
        // Each simulated rank keeps its TpWeights alive through the returned views.
        auto split = [D](const model::ModelWeights& full, int r) {
          return TpWeights::from_full(full, D, r).params();
        };
        run_and_compare(config, dtype, split, D);
      }
    }
  }
}

// An uneven hand-made layout over 3 ranks: matrices by rows or columns in pieces 1/2/rest
// (one rank may hold nothing), 1-D gains by rows too (so a 1-D piece is never decayed).
std::vector<ParamShard> uneven_split(const model::ModelWeights& full, int r, bool by_cols) {
  std::vector<ParamShard> out;
  for (const auto& [name, t] : full.named()) {
    ParamShard p;
    p.name = name;
    p.full_shape = t.shape();
    p.kind = by_cols && t.rank() == 2 ? ShardKind::cols : ShardKind::rows;
    const int64_t n = t.shape()[p.kind == ShardKind::cols ? 1 : 0];
    const int64_t cut[4] = {0, std::min<int64_t>(1, n), std::min<int64_t>(3, n), n};
    p.offset = cut[r];
    p.extent = cut[r + 1] - cut[r];
    p.local = Tensor::empty(p.local_shape(), t.dtype(), MemCategory::weights);
    copy_shard_from_full(p, t);
    out.push_back(std::move(p));
  }
  return out;
}

TEST(ShardedAdamW, UnevenRowAndColumnPiecesMatchSingleRankBitwise) {
  const model::ModelConfig config = small_config(false);
  for (DType dtype : {DType::f32, DType::bf16}) {
    for (bool by_cols : {false, true}) {
      SCOPED_TRACE(::testing::Message() << dtype_name(dtype) << (by_cols ? " columns" : " rows"));
      run_and_compare(
          config, dtype, [by_cols](const model::ModelWeights& full, int r) { return uneven_split(full, r, by_cols); },
          3);
    }
  }
}

TEST(ShardedAdamW, StateHasTheWeightsLayoutAndOptimizerMemory) {
  const model::ModelConfig config = small_config(false);
  const TpWeights w = TpWeights::from_full(model::ModelWeights::initialize(config, DType::bf16, 1), 2, 1);
  const std::vector<ParamShard> params = w.params();
  const int64_t before = MemoryLedger::process().stats(MemCategory::optimizer).live_bytes;
  ShardedAdamW opt(params, kShardedConfig);
  EXPECT_EQ(MemoryLedger::process().stats(MemCategory::optimizer).live_bytes - before, opt.bytes());
  EXPECT_EQ(opt.bytes(), 3 * local_elements(params) * 4);  // moments + masters, f32
  EXPECT_EQ(opt.weight_dtype(), DType::bf16);
  ASSERT_EQ(opt.exp_avg().size(), params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    for (const auto* list : {&opt.exp_avg(), &opt.exp_avg_sq(), &opt.masters()}) {
      const ParamShard& s = (*list)[i];
      EXPECT_EQ(s.name, params[i].name);
      EXPECT_EQ(s.kind, params[i].kind);
      EXPECT_EQ(s.offset, params[i].offset);
      EXPECT_EQ(s.extent, params[i].extent);
      EXPECT_EQ(s.local.shape(), params[i].local.shape());
      EXPECT_EQ(s.local.dtype(), DType::f32);
      EXPECT_EQ(s.local.category(), MemCategory::optimizer);
    }
    EXPECT_EQ(opt.options_for(params[i], 1e-3).weight_decay, params[i].full_shape.rank() >= 2 ? 0.1f : 0.f);
  }
  // f32 weights are their own masters.
  const TpWeights w32 = TpWeights::from_full(model::ModelWeights::initialize(config, DType::f32, 1), 2, 0);
  EXPECT_FALSE(ShardedAdamW(w32.params(), kShardedConfig).has_masters());
}

TEST(ShardedAdamW, RejectsMismatchedGradientsBeforeStepping) {
  const model::ModelConfig config = small_config(false);
  const TpWeights w = TpWeights::from_full(model::ModelWeights::initialize(config, DType::f32, 1), 2, 0);
  const std::vector<ParamShard> params = w.params();
  ShardedAdamW opt(params, kShardedConfig);
  std::vector<ParamShard> bf16_grads = zeros_like_shards(params, DType::bf16, MemCategory::grads);
  EXPECT_THROW(opt.step(params, bf16_grads, 1e-3), DTypeError);
  std::vector<ParamShard> other = zeros_like_shards(params, DType::f32, MemCategory::grads);
  other[3].offset += 1;
  EXPECT_THROW(opt.step(params, other, 1e-3), InvalidArgument);
  other.pop_back();
  EXPECT_THROW(opt.step(params, other, 1e-3), InvalidArgument);
  EXPECT_EQ(opt.steps(), 0);
  EXPECT_THROW(opt.set_steps(-1), InvalidArgument);
}

}  // namespace
}  // namespace tsp::parallel
