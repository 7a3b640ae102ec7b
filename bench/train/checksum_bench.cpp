// Checksum throughput of the training state: the v1 format's FNV-1a (byte by byte, reproduced
// here as the baseline) against XXH3-64 as the v2 format uses it (per chunk,
// detail::chunk_checksums). 256 MiB of f32 moments, bytes/s in the counters. An 8B model's state
// (96 GB of moments and masters) takes 96 GB / rate per save and per resume.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "tsp/train/train_state.h"

namespace {

constexpr size_t kBytes = size_t{256} << 20;

const std::vector<unsigned char>& buffer() {
  static const std::vector<unsigned char> b = [] {
    std::vector<unsigned char> v(kBytes);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (auto& c : v) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      c = static_cast<unsigned char>(x);
    }
    return v;
  }();
  return b;
}

uint64_t fnv1a64(const unsigned char* p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

void BM_Fnv1aByteByByte(benchmark::State& state) {
  const auto& b = buffer();
  for (auto _ : state) benchmark::DoNotOptimize(fnv1a64(b.data(), b.size()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(kBytes));
}
BENCHMARK(BM_Fnv1aByteByByte)->Unit(benchmark::kMillisecond);

void BM_Xxh3PerChunk(benchmark::State& state) {
  const auto& b = buffer();
  for (auto _ : state) benchmark::DoNotOptimize(tsp::train::detail::chunk_checksums(b.data(), b.size()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(kBytes));
}
BENCHMARK(BM_Xxh3PerChunk)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
