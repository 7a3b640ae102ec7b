// The accounting allocator against the kernel's view of memory: over one training step, the
// ledger's peak growth must match the growth of the process peak RSS (VmHWM) within 5%; and with
// buffers reused across steps (page arena), steady-state steps take almost no page faults.
#include <gtest/gtest.h>
#include <omp.h>
#include <sys/resource.h>

#include <string>

#include "tsp/core/memory.h"
#include "tsp/core/random.h"
#include "tsp/model/model_config.h"
#include "tsp/model/model_weights.h"
#include "tsp/model/transformer.h"

namespace tsp::model {
namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;  // ASan's shadow memory and quarantine make RSS meaningless
#else
constexpr bool kSanitized = false;
#endif

Tensor random_ids(int64_t b, int64_t s, int64_t vocab, uint64_t seed) {
  Tensor t = Tensor::empty({b, s}, DType::i32, MemCategory::activations);
  Rng rng(seed);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<int32_t>()[i] = static_cast<int32_t>(rng.below(vocab));
  return t;
}

struct SmallModel {
  ModelConfig config;
  ModelWeights w, grads;
  Transformer model;
  Tensor tokens, targets;
  static ModelConfig make_config() {
    ModelConfigFields f;
    f.hidden_size = 256;
    f.intermediate_size = 1024;
    f.num_hidden_layers = 2;
    f.num_attention_heads = 4;
    f.num_key_value_heads = 4;
    f.vocab_size = 320;
    f.max_position_embeddings = 1024;
    return ModelConfig(f);
  }
  SmallModel()
      : config(make_config()),
        w(ModelWeights::initialize(config, DType::f32, 1)),
        grads(config, DType::f32, MemCategory::grads),
        model(config),
        tokens(random_ids(2, 1024, 320, 2)),
        targets(random_ids(2, 1024, 320, 3)) {}
  void step() { model.forward_backward(w, tokens, targets, grads, 1.f / 2048); }
};

struct OneThread {
  int n = omp_get_max_threads();
  OneThread() { omp_set_num_threads(1); }
  ~OneThread() { omp_set_num_threads(n); }
};

int64_t minor_faults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

TEST(MemoryAccounting, LedgerPeakMatchesRssGrowthOverAStep) {
  if (kSanitized) GTEST_SKIP() << "RSS is not comparable under AddressSanitizer";
  // One thread, as each rank runs: oneDNN's AVX2 GEMM driver mallocs its packing buffers per
  // OpenMP thread outside the user scratchpad (~2 MiB each), the one allocation the ledger cannot
  // see; at 2 threads the RSS growth exceeds the ledger's by ~5.5% (measured), at 1 by ~1.3%.
  const OneThread one_thread;
  SmallModel m;
  // Warm-up: oneDNN primitives and the per-thread GEMM scratchpad are created once.
  m.step();

  MemoryLedger& ledger = MemoryLedger::process();
  // The warm-up's freed buffers stay mapped for reuse; the cross-check starts from live bytes.
  ledger.release_cached();
  ledger.reset_peaks();
  const int64_t live_before = ledger.total().live_bytes;
  const int64_t rss_before = process_rss_bytes();
  if (!reset_process_peak_rss()) GTEST_SKIP() << "/proc/self/clear_refs is not writable here";
  m.step();
  const double ledger_growth = static_cast<double>(ledger.total().peak_bytes - live_before);
  const double rss_growth = static_cast<double>(process_peak_rss_bytes() - rss_before);
  RecordProperty("ledger_growth_bytes", std::to_string(static_cast<int64_t>(ledger_growth)));
  RecordProperty("rss_growth_bytes", std::to_string(static_cast<int64_t>(rss_growth)));
  ASSERT_GT(ledger_growth, 32.0 * (1 << 20)) << "the step should allocate tens of MiB";
  // 5% is the bound; the residue is allocator rounding, stacks and page granularity.
  EXPECT_NEAR(rss_growth, ledger_growth, 0.05 * ledger_growth)
      << "ledger peak growth " << ledger_growth / (1 << 20) << " MiB, RSS peak growth "
      << rss_growth / (1 << 20) << " MiB\n"
      << ledger.report();
}

TEST(MemoryAccounting, SteadyStateStepsTakeAlmostNoPageFaults) {
  if (kSanitized) GTEST_SKIP() << "no page arena under AddressSanitizer";
  const OneThread one_thread;
  SmallModel m;
  MemoryLedger& ledger = MemoryLedger::process();
  ledger.reset_peaks();
  const int64_t live_before = ledger.total().live_bytes;
  m.step();  // maps the step's buffers (and creates oneDNN primitives)
  m.step();
  const int64_t step_bytes = ledger.total().peak_bytes - live_before;
  ASSERT_GT(step_bytes, 32ll << 20) << "the step's buffers should be tens of MiB";
  constexpr int kSteps = 3;
  const int64_t faults_before = minor_faults();
  for (int i = 0; i < kSteps; ++i) m.step();
  const double faults_per_step = static_cast<double>(minor_faults() - faults_before) / kSteps;
  const double pages_per_step = static_cast<double>(step_bytes) / 4096;
  RecordProperty("faults_per_step", std::to_string(faults_per_step));
  RecordProperty("step_pages", std::to_string(pages_per_step));
  // Without reuse every page of the step's buffers faults once per step (~pages_per_step faults).
  // What may remain: blocks under 1 MiB that glibc trims and re-grows, and oneDNN's own GEMM
  // buffers outside the ledger. Bound: 1 fault per 32 pages, i.e. >= 97% of the faults gone.
  EXPECT_LT(faults_per_step, pages_per_step / 32)
      << faults_per_step << " minor faults per step for " << pages_per_step << " pages of buffers";
}

}  // namespace
}  // namespace tsp::model
