// Precision presets and workload validation.
#include "tsp/plan/workload.h"

#include "tsp/core/check.h"

namespace tsp::plan {

Precision precision_preset(std::string_view name) {
  if (name == "bf16") {
    return {.name = "bf16", .weight_bytes = 2, .activation_bytes = 2, .grad_bytes = 4,
            .master_bytes = 4, .moment_bytes = 4, .reduce_bytes = 4};
  }
  if (name == "fp32" || name == "f32") {
    return {.name = "fp32", .weight_bytes = 4, .activation_bytes = 4, .grad_bytes = 4,
            .master_bytes = 0, .moment_bytes = 4, .reduce_bytes = 4};
  }
  TSP_THROW(InvalidArgument, "unknown precision \"", name, "\"; known: bf16 (bf16 weights and "
            "activations, fp32 grads and AdamW masters), fp32");
}

std::vector<std::string> precision_preset_names() { return {"bf16", "fp32"}; }

std::string_view recompute_name(Recompute r) { return r == Recompute::full ? "full" : "none"; }

void validate(const Workload& w) {
  TSP_CHECK(w.batch > 0, "batch must be positive, got ", w.batch);
  TSP_CHECK(w.seq > 0, "sequence length must be positive, got ", w.seq);
  TSP_CHECK(w.micro_batches > 0, "micro_batches must be positive, got ", w.micro_batches);
  TSP_CHECK(w.vocab_chunk > 0, "vocab_chunk must be positive, got ", w.vocab_chunk);
  const Precision& p = w.precision;
  auto storage = [](int64_t b) { return b == 2 || b == 4; };
  TSP_CHECK(storage(p.weight_bytes) && storage(p.activation_bytes) && storage(p.grad_bytes) &&
                storage(p.moment_bytes) && storage(p.reduce_bytes) &&
                (p.master_bytes == 0 || storage(p.master_bytes)),
            "precision \"", p.name, "\": bytes per element must be 2 or 4 (masters also 0), got "
            "weights ", p.weight_bytes, ", activations ", p.activation_bytes, ", grads ",
            p.grad_bytes, ", masters ", p.master_bytes, ", moments ", p.moment_bytes,
            ", reductions ", p.reduce_bytes);
}

}  // namespace tsp::plan
