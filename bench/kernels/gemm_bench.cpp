// GEMM throughput at the shapes of h=512 and h=1024 Llama blocks with 2048-8192 tokens:
// forward x @ W^T (qkv, o, gate/up, down), backward dX = dY @ W and dW = dY^T @ X, f32 and bf16.
#include <benchmark/benchmark.h>

#include "bench_util.h"
#include "tsp/core/random.h"
#include "tsp/kernels/gemm.h"

namespace tsp::bench {
namespace {

enum class Pass { fwd, bwd_data, bwd_weight };

// args: tokens T, in features K, out features N, dtype (0 f32, 1 bf16), pass.
void BM_Gemm(benchmark::State& state) {
  const int64_t t = state.range(0), in = state.range(1), out = state.range(2);
  const DType dt = state.range(3) ? DType::bf16 : DType::f32;
  const auto pass = static_cast<Pass>(state.range(4));
  Rng rng(1);
  Tensor x = Tensor::empty({t, in}, dt, MemCategory::activations);
  Tensor w = Tensor::empty({out, in}, dt, MemCategory::weights);
  Tensor dy = Tensor::empty({t, out}, dt, MemCategory::activations);
  fill_normal(x, rng);
  fill_normal(w, rng);
  fill_normal(dy, rng);
  Tensor y = Tensor::empty({t, out}, dt, MemCategory::activations);
  Tensor dx = Tensor::empty({t, in}, dt, MemCategory::activations);
  Tensor dw = Tensor::zeros({out, in}, DType::f32, MemCategory::grads);  // fp32 accumulation
  auto run = [&] {
    switch (pass) {
      case Pass::fwd: kernels::gemm(x, w, y, {.trans_b = true}); break;
      case Pass::bwd_data: kernels::gemm(dy, w, dx); break;
      case Pass::bwd_weight: kernels::gemm(dy, x, dw, {.trans_a = true, .beta = 1.f}); break;
    }
  };
  run();
  for (auto _ : state) run();
  report_flops(state, 2.0 * t * in * out, dt);
}

void GemmArgs(benchmark::internal::Benchmark* b) {
  for (int64_t h : {512, 1024})
    for (int64_t t : {2048, 8192})
      for (int64_t dt : {0, 1}) {
        b->Args({t, h, 3 * h, dt, 0});      // fused q,k,v projection (MHA)
        b->Args({t, h, h, dt, 0});          // o_proj
        b->Args({t, h, 8 * h, dt, 0});      // fused gate,up
        b->Args({t, 4 * h, h, dt, 0});      // down_proj
        b->Args({t, h, 4 * h, dt, 1});      // dX of gate (dY [T,4h] @ W [4h,h])
        b->Args({t, h, 4 * h, dt, 2});      // dW of gate (dY^T @ X)
      }
  b->ArgNames({"T", "in", "out", "bf16", "pass"});
}

BENCHMARK(BM_Gemm)->Apply(GemmArgs)->Unit(benchmark::kMillisecond)->MinTime(0.2);

}  // namespace
}  // namespace tsp::bench
