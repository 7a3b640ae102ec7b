// Gradient reductions under mpirun (1, 2, 4 ranks): norm and clipping equal the single-rank ones
// on the full gradient; replicated and dp sums are exact, in the promised number of calls.
#include "tsp/parallel/sharded_grad.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>

#include "fp_bounds.h"
#include "tsp/comm/collectives.h"
#include "tsp/core/error.h"
#include "tsp/model/model_weights.h"
#include "tsp/parallel/sharded_adamw.h"
#include "tsp/comm/self/self_backend.h"
#include "tsp/parallel/single_layout.h"
#include "tsp/parallel/tp_weights.h"

namespace tsp::parallel {
namespace {

// h = 32, H = 8, H_kv = 4, F = 64, V = 48: divisible by D = 1, 2, 4.
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

// This rank's TSP gradient pieces of `full` (f32, category grads).
std::vector<ParamShard> grad_pieces(const model::ModelWeights& full, int D, int rank) {
  return TpWeights::from_full(full, D, rank, MemCategory::grads).params();
}

// A gradient with magnitudes spread over several decades, so that clipping has work to do.
model::ModelWeights random_grads(const model::ModelConfig& config, uint64_t seed) {
  model::ModelWeights g = model::ModelWeights::initialize(config, DType::f32, seed);
  int k = 0;
  for (const auto& [name, t] : g.named()) {
    float* p = t.data<float>();
    const float scale = std::ldexp(1.f, (k++ % 7) - 2);
    for (int64_t i = 0; i < t.numel(); ++i) p[i] *= scale;
  }
  return g;
}

TEST(ShardedGrad, GlobalNormEqualsSingleRank) {
  comm::Communicator world = comm::Communicator::world();
  for (bool tied : {false, true}) {
    const model::ModelWeights full = random_grads(small_config(tied), 21);
    const std::vector<ParamShard> grads = grad_pieces(full, world.size(), world.rank());
    comm::Communicator self = comm::self_communicator();  // one process, whole tensors
    const double want = global_grad_norm(self, whole_shards(full));
    const double got = global_grad_norm(world, grads);
    // Sums of non-negative squares in double in another grouping (per rank, then over ranks):
    // within gamma_P (double) of exact relative to the norm for P elements, plus the ranks' sum.
    int64_t n = 0;
    for (const auto& [name, t] : full.named()) n += t.numel();
    EXPECT_NEAR(got, want, 2 * testing::gamma_n(n + world.size() + 2, testing::kUnitF64) * want) << "tied=" << tied;
    if (world.size() == 1) {
      EXPECT_EQ(got, want);  // same blocks, same order
    }
    // Every rank got the same bits.
    Tensor lo = Tensor::empty(Shape{1}, DType::i64, MemCategory::workspace);
    lo.data<int64_t>()[0] = std::bit_cast<int64_t>(got);
    Tensor hi = Tensor::copy_of(lo, DType::i64, MemCategory::workspace);
    comm::all_reduce(world, lo, comm::ReduceOp::min);
    comm::all_reduce(world, hi, comm::ReduceOp::max);
    EXPECT_EQ(lo.data<int64_t>()[0], hi.data<int64_t>()[0]);
  }
}

TEST(ShardedGrad, ClippingEqualsSingleRankBitwise) {
  comm::Communicator world = comm::Communicator::world();
  const model::ModelConfig config = small_config(false);
  for (double max_norm : {0.05, 0.0, -1.0, 1e6}) {
    SCOPED_TRACE(::testing::Message() << "max_norm=" << max_norm);
    model::ModelWeights full = random_grads(config, 33);
    const std::vector<ParamShard> grads = grad_pieces(full, world.size(), world.rank());
    const ClipResult got = clip_grad_norm(world, grads, max_norm);
    comm::Communicator self = comm::self_communicator();  // one process, whole tensors
    const ClipResult want = clip_grad_norm(self, whole_shards(full), max_norm);
    int64_t n = 0;  // as in GlobalNormEqualsSingleRank
    for (const auto& [name, t] : full.named()) n += t.numel();
    EXPECT_NEAR(got.norm, want.norm, 2 * testing::gamma_n(n + world.size() + 2, testing::kUnitF64) * want.norm);
    EXPECT_EQ(got.clipped, want.clipped);
    EXPECT_EQ(static_cast<float>(got.scale), static_cast<float>(want.scale));
    for (const ParamShard& g : grads) EXPECT_TRUE(same_bytes(g.local, g.view_of_full(full.get(g.name)))) << g.name;
  }
}

TEST(ShardedGrad, NonFiniteNormIsReportedUnclipped) {
  comm::Communicator world = comm::Communicator::world();
  model::ModelWeights full = random_grads(small_config(false), 5);
  full.get("model.norm.weight").data<float>()[3] = INFINITY;
  const std::vector<ParamShard> grads = grad_pieces(full, world.size(), world.rank());
  const ClipResult r = clip_grad_norm(world, grads, 1.0);
  EXPECT_TRUE(std::isinf(r.norm));
  EXPECT_FALSE(r.clipped);
}

// Rank-dependent small integers: sums over <= 4 ranks are exact in f32.
float value(int rank, int64_t tensor, int64_t i) { return static_cast<float>(1 + rank * 3 + (tensor + i) % 11); }
float sum_value(int ranks, int64_t tensor, int64_t i) {
  float s = 0;
  for (int r = 0; r < ranks; ++r) s += value(r, tensor, i);
  return s;
}

void fill_rank_values(const std::vector<ParamShard>& grads, int rank) {
  for (size_t k = 0; k < grads.size(); ++k) {
    float* p = grads[k].local.data<float>();
    for (int64_t i = 0; i < grads[k].local.numel(); ++i) p[i] = value(rank, static_cast<int64_t>(k), i);
  }
}

TEST(ShardedGrad, ReplicatedGradsAreSummedInOneCall) {
  comm::Communicator world = comm::Communicator::world();
  const int D = world.size();
  const model::ModelWeights full = random_grads(small_config(false), 2);
  const std::vector<ParamShard> grads = grad_pieces(full, D, world.rank());
  fill_rank_values(grads, world.rank());
  world.ledger().reset();
  sum_replicated_grads(world, grads);
  EXPECT_EQ(world.ledger().get(comm::CommOp::all_reduce).calls, D > 1 ? 1 : 0);
  EXPECT_EQ(world.ledger().total().calls, D > 1 ? 1 : 0);
  for (size_t k = 0; k < grads.size(); ++k) {
    const float* p = grads[k].local.data<float>();
    const bool rep = grads[k].kind == ShardKind::replicated;
    for (int64_t i = 0; i < grads[k].local.numel(); ++i) {
      const int64_t kk = static_cast<int64_t>(k);
      const float want = rep ? sum_value(D, kk, i) : value(world.rank(), kk, i);
      ASSERT_EQ(p[i], want) << grads[k].name << " element " << i;
    }
  }
}

// A gradient list of `sizes` (1-D f32 tensors as row shards of themselves).
std::vector<ParamShard> flat_grads(const std::vector<int64_t>& sizes) {
  std::vector<ParamShard> out;
  for (size_t k = 0; k < sizes.size(); ++k) {
    ParamShard p;
    p.name = "g";  // appended: GCC 12 warns (-Wrestrict) on "g" + string
    p.name += std::to_string(k);
    p.full_shape = Shape{sizes[k]};
    p.kind = ShardKind::rows;
    p.extent = sizes[k];
    p.local = Tensor::empty(p.full_shape, DType::f32, MemCategory::grads);
    out.push_back(std::move(p));
  }
  return out;
}

TEST(ShardedGrad, ReplicasAreSummedWithABoundedStagingBuffer) {
  comm::Communicator world = comm::Communicator::world();
  const int D = world.size();
  constexpr int64_t cap = kGradStagingBytes / 4;  // elements
  // Expected all_reduce calls (D > 1): {1000, 3000} flushed when cap - 10 does not fit; cap + 17
  // reduced in place in 2 chunks (the staging keeps cap - 10); 5 still fits next to cap - 10; 7
  // does not: flush {cap - 10, 5}; {7} at the end. 5 calls in all.
  const std::vector<int64_t> sizes = {1000, 3000, cap - 10, cap + 17, 5, 0, 7};
  const std::vector<ParamShard> grads = flat_grads(sizes);
  fill_rank_values(grads, world.rank());
  world.ledger().reset();
  MemoryLedger::process().reset_peaks();
  const int64_t comm_live = MemoryLedger::process().stats(MemCategory::comm).live_bytes;
  sum_over_replicas(world, grads);
  if (D == 1) {
    EXPECT_EQ(world.ledger().total().calls, 0);
  } else {
    EXPECT_EQ(world.ledger().get(comm::CommOp::all_reduce).calls, 5);
    // Staging never exceeds the bound.
    EXPECT_LE(MemoryLedger::process().stats(MemCategory::comm).peak_bytes - comm_live, kGradStagingBytes + 64);
  }
  for (size_t k = 0; k < grads.size(); ++k) {
    const float* p = grads[k].local.data<float>();
    for (int64_t i = 0; i < grads[k].local.numel(); ++i) {
      if (p[i] != sum_value(D, static_cast<int64_t>(k), i)) {
        ADD_FAILURE() << grads[k].name << " element " << i << " is " << p[i];
        break;
      }
    }
  }
}

TEST(ShardedGrad, RejectsNonF32OrStridedGradientsOnEveryRank) {
  comm::Communicator world = comm::Communicator::world();
  const model::ModelWeights full = random_grads(small_config(false), 2);
  std::vector<ParamShard> grads = grad_pieces(full, world.size(), world.rank());
  std::vector<ParamShard> bf = zeros_like_shards(grads, DType::bf16, MemCategory::grads);
  EXPECT_THROW(global_grad_norm(world, bf), DTypeError);
  EXPECT_THROW(sum_over_replicas(world, bf), DTypeError);
  EXPECT_THROW(sum_replicated_grads(world, bf), DTypeError);
  grads[1].local = Tensor::zeros(Shape{4, 8}, DType::f32, MemCategory::grads).transpose(0, 1);
  EXPECT_THROW(clip_grad_norm(world, grads, 1.0), LayoutError);
  // The group still works afterwards (nobody is left waiting).
  world.barrier();
}

}  // namespace
}  // namespace tsp::parallel
