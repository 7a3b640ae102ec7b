// The startup memory check: planner prediction x local ranks vs available memory.
#include "tsp/train/memory_check.h"

#include <cstdio>
#include <string>

#include "tsp/core/check.h"
#include "tsp/core/checked_math.h"
#include "tsp/plan/memory_model.h"

namespace tsp::train {

namespace {

std::string gib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(bytes) / static_cast<double>(int64_t{1} << 30));
  return buf;
}

}  // namespace

plan::Workload workload_of_run(const RunConfig& run) {
  plan::Workload w;
  w.batch = run.micro_batch();
  w.seq = run.seq;
  w.micro_batches = run.grad_accum;
  w.precision = plan::precision_preset(run.dtype == "bf16" ? "bf16" : "fp32");
  w.recompute = run.recompute ? plan::Recompute::full : plan::Recompute::none;
  return w;
}

int64_t predicted_rank_peak_bytes(const model::ModelConfig& config, const RunConfig& run) {
  return plan::memory(config, workload_of_run(run), run.layout_spec()).total();
}

void check_memory_fits(const model::ModelConfig& config, const RunConfig& run, int64_t ranks_on_host,
                       const AvailableMemory& available) {
  if (!available.known()) return;
  int64_t per_rank = 0, host = 0;
  try {
    per_rank = predicted_rank_peak_bytes(config, run);
    host = mul_checked(per_rank, ranks_on_host, "memory of the ranks on this host");
  } catch (const SizeOverflow& e) {
    TSP_THROW(OutOfMemory, "the predicted memory of this run overflows 64-bit (", e.what(),
              "): far beyond any machine; --skip-memory-check to try anyway");
  }
  if (host <= available.bytes) return;
  const std::string ranks =
      ranks_on_host > 1 ? " (x " + std::to_string(ranks_on_host) + " ranks on this host = " + gib(host) + ")" : "";
  TSP_THROW(OutOfMemory, "the run needs ", gib(per_rank), " per rank", ranks, ", ", gib(available.bytes),
            " available (", available.source, "); predicted by the planner for model ", config.summary(),
            " at --batch ", run.batch, " --seq ", run.seq, "; --skip-memory-check to try anyway");
}

void check_weights_fit(const model::ModelConfig& config, DType dtype, const AvailableMemory& available) {
  if (!available.known()) return;
  const int64_t need = mul_checked(config.total_params(), static_cast<int64_t>(dtype_size(dtype)), "weight bytes");
  if (need <= available.bytes) return;
  TSP_THROW(OutOfMemory, "the weights of model ", config.summary(), " alone need ", gib(need), ", ",
            gib(available.bytes), " available (", available.source, ")");
}

}  // namespace tsp::train
