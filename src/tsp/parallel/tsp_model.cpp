// TspTransformer: the single-rank model's forward/backward (model/transformer.cpp) with every
// weight-touching step replaced by its TSP schedule (tsp_block.h, vocab_parallel.h).
#include "tsp/parallel/tsp_model.h"

#include <cmath>
#include <optional>
#include <vector>

#include "tsp/core/check.h"
#include "tsp/model/step_executor.h"
#include "tsp/model/token_batch.h"
#include "tsp/parallel/tsp_block.h"
#include "tsp/parallel/vocab_parallel.h"
#include "tsp/parallel/zigzag.h"

namespace tsp::parallel {

namespace {

// One rank of a TSP group as a step strategy: this rank's zigzag tokens and weight shards; the
// embedding by vocabulary exchange, the blocks by tsp_block.h, the head by the vocabulary ring.
class TspStep final : public model::StepStrategy {
 public:
  TspStep(comm::Communicator& comm, const model::TransformerOptions& options, const TpWeights& w,
          const Tensor& tokens, const Tensor& targets, int64_t seq, TpWeights* grads,
          CommClock* clock)
      : comm_(comm), clock_(clock), w_(w), grads_(grads),
        ctx_(comm, w.config(), options.dtype, tokens.dim(0), seq, clock),
        ids_(tokens.view({ctx_.tokens()})), targets_(targets.view({ctx_.tokens()})),
        ce_{.ignore_index = model::kIgnoreIndex, .chunk_size = options.vocab_chunk},
        acts_(static_cast<size_t>(w.config().num_hidden_layers())) {}

  int64_t num_layers() const override { return static_cast<int64_t>(acts_.size()); }
  Shape residual_shape() const override { return {ctx_.tokens(), w_.config().hidden_size()}; }
  DType residual_dtype() const override { return ctx_.dtype(); }

  Tensor embed_forward() override {
    Tensor x = Tensor::empty({ctx_.tokens(), w_.config().hidden_size()}, ctx_.dtype(),
                             MemCategory::activations);
    embedding_.emplace(comm_, ids_, ctx_.sizes().vocab_rows, clock_);
    embedding_->lookup(w_.embed(), x);
    if (grads_ == nullptr) embedding_.reset();  // forward only: nothing to scatter back
    return x;
  }
  void embed_backward(const Tensor& dx) override { embedding_->scatter_add(dx, grads_->embed()); }

  void block_forward(int64_t l, const Tensor& x, const Tensor& y) override {
    tsp_block_forward(ctx_, w_.layers()[l], x, y, acts_[l]);
  }
  void release_activations(int64_t l) override { acts_[l].reset(); }
  void block_backward(int64_t l, const Tensor& x, Tensor& dx) override {
    tsp_block_backward(ctx_, w_.layers()[l], x, acts_[l], dx, grads_->layers()[l]);
  }

  double rms_norm_eps() const override { return w_.config().rms_norm_eps(); }
  Tensor final_norm_weight() override { return w_.final_norm(); }
  model::LossSum loss_forward(const Tensor& nf, const Tensor& lse) override {
    const kernels::CrossEntropyTotals tot =
        vocab_ring_forward(comm_, nf, w_.lm_head(), targets_, lse, ce_, clock_);
    return {tot.loss_sum, tot.n_valid};
  }
  void loss_backward(const Tensor& nf, const Tensor& lse, float grad_scale, const Tensor& dx) override {
    vocab_ring_backward(comm_, nf, w_.lm_head(), targets_, lse, grad_scale, dx, grads_->lm_head(),
                        ce_, clock_);
  }
  Tensor final_norm_grad() override { return grads_->final_norm(); }

 private:
  comm::Communicator& comm_;
  CommClock* clock_;
  const TpWeights& w_;
  TpWeights* grads_;  // null for a forward-only step
  TspContext ctx_;
  Tensor ids_, targets_;  // [T_local] i32, this rank's zigzag columns
  kernels::CrossEntropyOptions ce_;
  std::vector<TspBlockActivations> acts_;
  std::optional<VocabExchange> embedding_;
};

}  // namespace

int64_t tsp_predicted_activation_peak_bytes(const model::ModelConfig& config,
                                            const model::TransformerOptions& options, int degree,
                                            int64_t batch, int64_t seq) {
  validate_tsp(config, degree, seq);
  return model::predicted_activation_peak_bytes(config, options, batch, seq / degree);
}

TspTransformer::TspTransformer(comm::Communicator& comm, const model::ModelConfig& config,
                               const model::TransformerOptions& options)
    : comm_(&comm), config_(config), options_(options) {
  TSP_CHECK_DTYPE(options.dtype == DType::f32 || options.dtype == DType::bf16,
                  "TspTransformer: dtype must be f32 or bf16, got ", options.dtype);
  TSP_CHECK(options.vocab_chunk > 0, "TspTransformer: vocab_chunk must be positive, got ",
            options.vocab_chunk);
  (void)TpShardSizes::of(config, comm.size());
}

void TspTransformer::validate(const TpWeights& w, const Tensor& tokens, const Tensor& targets,
                              int64_t seq, const TpWeights* grads) const {
  validate_tsp(config_, degree(), seq);
  TSP_CHECK(w.config() == config_ && w.degree() == degree() && w.rank() == comm_->rank(),
            "TspTransformer: weights are shards of ", w.config().summary(), " for rank ", w.rank(),
            "/", w.degree(), ", but the model is ", config_.summary(), " on rank ",
            comm_->rank(), "/", degree());
  TSP_CHECK_DTYPE(w.dtype() == options_.dtype, "TspTransformer: weights are ", w.dtype(),
                  " but TransformerOptions::dtype is ", options_.dtype);
  if (grads != nullptr)
    TSP_CHECK(grads->dtype() == DType::f32 && grads->config() == config_ &&
                  grads->degree() == degree() && grads->rank() == comm_->rank() &&
                  grads->stage() == w.stage(),
              "TspTransformer: gradients must be f32 shards of the same model, degree, rank and stage");
  const int64_t local = seq / degree();
  TSP_CHECK_SHAPE(tokens.defined() && tokens.rank() == 2 && tokens.dim(1) == local,
                  "TspTransformer: tokens must be [B, S/D] = [B, ", local,
                  "] (this rank's zigzag columns of S=", seq, "), got ",
                  tokens.defined() ? tokens.describe() : std::string("undefined"));
  model::check_token_batch(config_, tokens, targets, "TspTransformer", seq);
}

std::unique_ptr<model::StepStrategy> TspTransformer::step(const TpWeights& w, const Tensor& tokens,
                                                          const Tensor& targets, int64_t seq,
                                                          TpWeights* grads) {
  validate(w, tokens, targets, seq, grads);
  return std::make_unique<TspStep>(*comm_, options_, w, tokens, targets, seq, grads, &clock_);
}

model::LossSum TspTransformer::forward(const TpWeights& w, const Tensor& tokens,
                                       const Tensor& targets, int64_t seq) {
  return model::run_forward(*step(w, tokens, targets, seq, nullptr));
}

model::LossSum TspTransformer::forward_backward(const TpWeights& w, const Tensor& tokens,
                                                const Tensor& targets, int64_t seq,
                                                TpWeights& grads, float grad_scale) {
  TSP_CHECK(std::isfinite(grad_scale), "TspTransformer: grad_scale must be finite, got ", grad_scale);
  return model::run_forward_backward(*step(w, tokens, targets, seq, &grads), options_.recompute, grad_scale);
}

}  // namespace tsp::parallel
