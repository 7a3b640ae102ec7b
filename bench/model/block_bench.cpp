// Decoder-block benchmark: one Llama block forward + backward (block_forward / block_backward of
// decoder_block.h, exactly what Transformer runs per layer) at h = 512, H = 8 (d = 64), F = 2048,
// S = 2048, B = 1, fp32 and bf16 storage; plus the whole 1-layer model (embedding, block, final
// norm, V = 256 head) through Transformer::forward_backward, with and without recomputation.
// Run with OMP_NUM_THREADS=1. Counters: tokens/s (the metric; PyTorch 1.13 does ~0.9k
// tokens/s fp32 for the same block on this Zen 3 with OpenBLAS: bench/compare_block.sh), GFLOP/s, and the MemoryLedger's
// activations peak in MiB. FLOPs: GEMMs 2 T (h (H + 2 H_kv) d + H d h + 3 h F) forward, 2x that
// backward; causal attention 4 d S^2 / 2 per head forward, 2.5x that backward. Rates use CPU time.
#include <benchmark/benchmark.h>

#include "tsp/core/memory.h"
#include "tsp/core/random.h"
#include "tsp/core/tensor.h"
#include "tsp/model/decoder_block.h"
#include "tsp/model/transformer.h"

namespace {

using namespace tsp;
using namespace tsp::model;

constexpr int64_t kH = 512, kHeads = 8, kF = 2048, kS = 2048, kB = 1, kVocab = 256;

ModelConfig block_config(int64_t layers = 1) {
  ModelConfigFields f;
  f.hidden_size = kH;
  f.intermediate_size = kF;
  f.num_hidden_layers = layers;
  f.num_attention_heads = kHeads;
  f.num_key_value_heads = kHeads;
  f.vocab_size = kVocab;
  f.max_position_embeddings = kS;
  return ModelConfig(f);
}

double block_flops(const ModelConfig& c, bool backward) {
  const double T = kB * kS, h = c.hidden_size(), F = c.intermediate_size();
  const double gemm = 2 * T * (h * (c.q_dim() + 2 * c.kv_dim()) + c.q_dim() * h + 3 * h * F);
  const double attn = 4.0 * c.head_dim() * kS * kS / 2 * c.num_attention_heads() * kB;
  return backward ? 3 * gemm + 3.5 * attn : gemm + attn;
}

void set_counters(benchmark::State& state, double flops, int64_t act_peak) {
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(kB * kS), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["act_MiB"] = static_cast<double>(act_peak) / (1 << 20);
}

// range(0): 0 = f32, 1 = bf16; range(1): 0 = forward only, 1 = forward + backward.
void BM_DecoderBlock(benchmark::State& state) {
  const DType dt = state.range(0) ? DType::bf16 : DType::f32;
  const bool backward = state.range(1) != 0;
  const ModelConfig c = block_config();
  const ModelWeights w = ModelWeights::initialize(c, dt, 1);
  ModelWeights g(c, DType::f32, MemCategory::grads);
  const BlockContext ctx(c, dt, kB, kS);
  const int64_t T = kB * kS;
  Rng rng(2);
  Tensor x = Tensor::empty({T, kH}, dt, MemCategory::activations);
  Tensor x_out = Tensor::empty({T, kH}, dt, MemCategory::activations);
  Tensor dx0 = Tensor::empty({T, kH}, DType::f32, MemCategory::workspace);
  Tensor dx = Tensor::empty({T, kH}, DType::f32, MemCategory::workspace);
  fill_normal(x, rng);
  fill_normal(dx0, rng, 0.f, 1e-3f);
  MemoryLedger& ledger = MemoryLedger::process();
  const int64_t live = ledger.stats(MemCategory::activations).live_bytes;
  ledger.reset_peaks();
  for (auto _ : state) {
    BlockActivations acts;
    block_forward(ctx, w.layers()[0], x, x_out, acts);
    if (backward) {
      dx.copy_from(dx0);
      block_backward(ctx, w.layers()[0], x, acts, dx, g.layers()[0]);
    }
  }
  // Saved activations of the block (its input x and output excluded: they belong to the caller).
  set_counters(state, block_flops(c, backward),
               ledger.stats(MemCategory::activations).peak_bytes - live);
}
BENCHMARK(BM_DecoderBlock)
    ->ArgNames({"bf16", "bwd"})
    ->Args({0, 1})
    ->Args({1, 1})
    ->Args({0, 0})
    ->Args({1, 0})
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2.0);

// range(0): dtype as above; range(1): recompute.
void BM_Model1Layer(benchmark::State& state) {
  const DType dt = state.range(0) ? DType::bf16 : DType::f32;
  const ModelConfig c = block_config();
  const ModelWeights w = ModelWeights::initialize(c, dt, 1);
  ModelWeights g(c, DType::f32, MemCategory::grads);
  const TransformerOptions opt{.dtype = dt, .recompute = state.range(1) != 0};
  Transformer model(c, opt);
  Tensor tokens = Tensor::empty({kB, kS}, DType::i32, MemCategory::workspace);
  Tensor targets = Tensor::empty({kB, kS}, DType::i32, MemCategory::workspace);
  Rng rng(3);
  for (int64_t i = 0; i < kB * kS; ++i) {
    tokens.data<int32_t>()[i] = static_cast<int32_t>(rng.below(kVocab));
    targets.data<int32_t>()[i] = static_cast<int32_t>(rng.below(kVocab));
  }
  MemoryLedger& ledger = MemoryLedger::process();
  const int64_t live = ledger.stats(MemCategory::activations).live_bytes;
  ledger.reset_peaks();
  for (auto _ : state) model.forward_backward(w, tokens, targets, g, 1.f / (kB * kS));
  const int64_t peak = ledger.stats(MemCategory::activations).peak_bytes - live;
  set_counters(state, block_flops(c, true) * (opt.recompute ? 4.0 / 3.0 : 1.0), peak);
  state.counters["pred_MiB"] =
      static_cast<double>(predicted_activation_peak_bytes(c, opt, kB, kS)) / (1 << 20);
}
BENCHMARK(BM_Model1Layer)
    ->ArgNames({"bf16", "recompute"})
    ->Args({0, 0})
    ->Args({0, 1})
    ->Args({1, 0})
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2.0);

}  // namespace

BENCHMARK_MAIN();
