// Single-rank Llama forward/backward: embedding, L decoder blocks (decoder_block.h), final RMSNorm,
// chunked cross-entropy with the (tied or untied) LM head. See docs/model.md.
#include "tsp/model/transformer.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "tsp/core/check.h"
#include "tsp/kernels/cross_entropy.h"
#include "tsp/kernels/embedding.h"
#include "tsp/model/decoder_block.h"
#include "tsp/model/token_batch.h"

namespace tsp::model {

namespace {

// Checks every input before anything is allocated.
void validate(const ModelConfig& config, const TransformerOptions& options, const ModelWeights& w,
              const Tensor& tokens, const Tensor& targets, const ModelWeights* grads) {
  TSP_CHECK(w.config() == config, "Transformer: weights are for ", w.config().summary(),
            " but the model is ", config.summary());
  TSP_CHECK_DTYPE(w.dtype() == options.dtype, "Transformer: weights are ", w.dtype(),
                  " but TransformerOptions::dtype is ", options.dtype);
  if (grads != nullptr) {
    TSP_CHECK(grads->config() == config, "Transformer: gradients are for ",
              grads->config().summary(), " but the model is ", config.summary());
    TSP_CHECK_DTYPE(grads->dtype() == DType::f32, "Transformer: gradients must be f32, got ",
                    grads->dtype());
  }
  TSP_CHECK(options.vocab_chunk > 0, "Transformer: vocab_chunk must be positive, got ",
            options.vocab_chunk);
  check_token_batch(config, tokens, targets, "Transformer");
}

// The whole model on one rank: the degree-1 strategy of the step executor.
class SingleStep final : public StepStrategy {
 public:
  SingleStep(const ModelConfig& config, const TransformerOptions& options, const ModelWeights& w,
             const Tensor& tokens, const Tensor& targets, ModelWeights* grads)
      : w_(w), grads_(grads), ctx_(config, options.dtype, tokens.dim(0), tokens.dim(1)),
        ids_(tokens.view({tokens.numel()})), targets_(targets.view({targets.numel()})),
        ce_{.ignore_index = kIgnoreIndex, .chunk_size = options.vocab_chunk},
        acts_(static_cast<size_t>(config.num_hidden_layers())) {}

  int64_t num_layers() const override { return static_cast<int64_t>(acts_.size()); }
  Shape residual_shape() const override { return {ctx_.tokens(), w_.config().hidden_size()}; }
  DType residual_dtype() const override { return ctx_.dtype(); }

  Tensor embed_forward() override {
    Tensor x = Tensor::empty({ids_.numel(), w_.config().hidden_size()}, ctx_.dtype(),
                             MemCategory::activations);
    kernels::embedding_forward(ids_, w_.embed(), x);
    return x;
  }
  void embed_backward(const Tensor& dx) override {
    kernels::embedding_backward(ids_, dx, grads_->embed());
  }

  void block_forward(int64_t l, const Tensor& x, const Tensor& y) override {
    model::block_forward(ctx_, w_.layers()[l], x, y, acts_[l]);
  }
  void release_activations(int64_t l) override { acts_[l].reset(); }
  void block_backward(int64_t l, const Tensor& x, Tensor& dx) override {
    model::block_backward(ctx_, w_.layers()[l], x, acts_[l], dx, grads_->layers()[l]);
  }

  double rms_norm_eps() const override { return w_.config().rms_norm_eps(); }
  Tensor final_norm_weight() override { return w_.final_norm(); }
  LossSum loss_forward(const Tensor& nf, const Tensor& lse) override {
    const kernels::CrossEntropyTotals tot =
        kernels::cross_entropy_forward(nf, w_.lm_head(), targets_, lse, Tensor(), ce_);
    return {tot.loss_sum, tot.n_valid};
  }
  void loss_backward(const Tensor& nf, const Tensor& lse, float grad_scale, const Tensor& dx) override {
    kernels::cross_entropy_backward(nf, w_.lm_head(), targets_, lse, grad_scale, dx,
                                    grads_->lm_head(), ce_);
  }
  Tensor final_norm_grad() override { return grads_->final_norm(); }

 private:
  const ModelWeights& w_;
  ModelWeights* grads_;  // null for a forward-only step
  BlockContext ctx_;
  Tensor ids_, targets_;  // [T] i32
  kernels::CrossEntropyOptions ce_;
  std::vector<BlockActivations> acts_;
};

}  // namespace

int64_t count_valid_targets(const Tensor& targets) {
  TSP_CHECK_DTYPE(targets.dtype() == DType::i32, "count_valid_targets: targets must be i32, got ",
                  targets.describe());
  Tensor t = targets.is_contiguous() ? targets
                                     : Tensor::copy_of(targets, DType::i32, MemCategory::workspace);
  const int32_t* p = t.data<int32_t>();
  int64_t n = 0;
  for (int64_t i = 0; i < t.numel(); ++i) n += p[i] != kIgnoreIndex;
  return n;
}

int64_t predicted_activation_peak_bytes(const ModelConfig& c, const TransformerOptions& options,
                                        int64_t batch, int64_t seq) {
  const int64_t T = batch * seq, L = c.num_hidden_layers();
  const int64_t x = T * c.hidden_size() * static_cast<int64_t>(dtype_size(options.dtype));
  const int64_t block = BlockActivations::bytes(c, options.dtype, batch, seq);
  const int64_t lse = 4 * T;
  // Residual stream x_0..x_L stays alive through the forward; without recomputation every block's
  // activations too (peak at the end of the forward, with the head's lse). With recomputation
  // only one block's activations exist at a time: the peak is the last block's forward.
  if (!options.recompute) return (L + 1) * x + L * block + lse;
  return std::max((L + 1) * x + block, (L + 1) * x + lse);
}

Transformer::Transformer(const ModelConfig& config, const TransformerOptions& options)
    : config_(config), options_(options) {
  TSP_CHECK_DTYPE(options.dtype == DType::f32 || options.dtype == DType::bf16,
                  "Transformer: dtype must be f32 or bf16, got ", options.dtype);
  TSP_CHECK(options.vocab_chunk > 0, "Transformer: vocab_chunk must be positive, got ",
            options.vocab_chunk);
}

LossSum Transformer::forward(const ModelWeights& w, const Tensor& tokens, const Tensor& targets) {
  validate(config_, options_, w, tokens, targets, nullptr);
  SingleStep step(config_, options_, w, tokens, targets, nullptr);
  return run_forward(step);
}

LossSum Transformer::forward_backward(const ModelWeights& w, const Tensor& tokens,
                                      const Tensor& targets, ModelWeights& grads,
                                      float grad_scale) {
  validate(config_, options_, w, tokens, targets, &grads);
  TSP_CHECK(std::isfinite(grad_scale), "Transformer: grad_scale must be finite, got ", grad_scale);
  SingleStep step(config_, options_, w, tokens, targets, &grads);
  return run_forward_backward(step, options_.recompute, grad_scale);
}

std::unique_ptr<StepStrategy> Transformer::step(const ModelWeights& w, const Tensor& tokens,
                                                const Tensor& targets, ModelWeights* grads) const {
  validate(config_, options_, w, tokens, targets, grads);
  return std::make_unique<SingleStep>(config_, options_, w, tokens, targets, grads);
}

}  // namespace tsp::model
