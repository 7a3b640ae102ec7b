// Precision presets and workload validation.
#include "tsp/plan/workload.h"

#include <limits>

#include "tsp/core/check.h"
#include "tsp/core/checked_math.h"

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

namespace {

constexpr int64_t kSizeMargin = 16;  // the formulas add a handful of terms of at most the bound

// Bytes per token of one layer and of the head, summed over every width the formulas use
// (residual, normed input, q|k|v, attention output, gate and up, lse, K|V exchanges, f32
// gradients and workspaces, a vocabulary chunk of logits), at 4 bytes: above each formula's.
int64_t bytes_per_token_per_layer(const model::ModelConfig& c, const Workload& w) {
  const int64_t widths = 12 * c.hidden_size() + 2 * c.q_dim() + 8 * c.kv_dim() + 2 * c.intermediate_size() +
                         c.num_attention_heads() + 2 * w.vocab_chunk + 8;
  return mul_checked(widths, 4, "bytes per token");
}

// Parameters x 16 bytes x (micro-batches + 1): weights, gradients, optimizer state, and the
// weights and gradients that move per micro-batch.
int64_t model_bound(const model::ModelConfig& c, const Workload& w) {
  return product_checked("model bytes", {c.total_params(), 16, add_checked(w.micro_batches, 1, "micro_batches")});
}

}  // namespace

int64_t largest_plannable_seq(const model::ModelConfig& c, const Workload& w) {
  const int64_t limit = std::numeric_limits<int64_t>::max() / kSizeMargin;
  int64_t model = 0, per_seq = 1;
  try {
    model = model_bound(c, w);
    per_seq = product_checked("", {w.batch, bytes_per_token_per_layer(c, w), c.num_hidden_layers() + 2,
                                   w.micro_batches});
  } catch (const SizeOverflow&) {
    return 0;
  }
  return model >= limit ? 0 : (limit - model) / per_seq;
}

void validate_sizes(const model::ModelConfig& c, const Workload& w) {
  validate(w);
  const int64_t limit = std::numeric_limits<int64_t>::max() / kSizeMargin;
  bool fits = true;
  try {
    const int64_t tokens = mul_checked(w.batch, w.seq, "tokens");
    const int64_t act = product_checked(
        "", {tokens, bytes_per_token_per_layer(c, w), c.num_hidden_layers() + 2, w.micro_batches});
    fits = add_checked(act, model_bound(c, w), "") <= limit;
  } catch (const SizeOverflow&) {
    fits = false;
  }
  if (fits) return;
  const int64_t n = largest_plannable_seq(c, w);
  if (n == 0)
    TSP_THROW(SizeOverflow, "batch ", w.batch, " with ", w.micro_batches, " micro-batches on a model of ",
              c.total_params(), " parameters: the byte counts overflow 64-bit for every seq (at most 2^59 "
              "bytes are planned); lower the batch or the micro-batches");
  TSP_THROW(SizeOverflow, "batch ", w.batch, " x seq ", w.seq, " on a model of ", c.total_params(),
            " parameters: the activation bytes overflow 64-bit; the largest seq at batch ", w.batch, " with ",
            w.micro_batches, " micro-batches is ", n);
}

}  // namespace tsp::plan
