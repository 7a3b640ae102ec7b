// TspTransformer: the single-rank model's forward/backward (model/transformer.cpp) with every
// weight-touching step replaced by its TSP schedule (tsp_block.h, vocab_parallel.h).
#include "tsp/parallel/tsp_model.h"

#include <cmath>
#include <vector>

#include "tsp/core/check.h"
#include "tsp/kernels/rmsnorm.h"
#include "tsp/parallel/tsp_block.h"
#include "tsp/parallel/vocab_parallel.h"
#include "tsp/parallel/zigzag.h"

namespace tsp::parallel {

void validate_tsp(const model::ModelConfig& config, int degree, int64_t seq) {
  TSP_CHECK(degree >= 1, "tsp: the degree must be >= 1, got ", degree);
  Zigzag::validate(seq, degree);
  TSP_CHECK(seq <= config.max_position_embeddings(), "tsp: sequence length ", seq,
            " exceeds max_position_embeddings ", config.max_position_embeddings());
  (void)TspShardSizes::of(config, degree);
}

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
  (void)TspShardSizes::of(config, comm.size());
}

void TspTransformer::validate(const TspWeights& w, const Tensor& tokens, const Tensor& targets,
                              int64_t seq, const TspWeights* grads) const {
  validate_tsp(config_, degree(), seq);
  TSP_CHECK(w.config() == config_ && w.degree() == degree() && w.rank() == comm_->rank(),
            "TspTransformer: weights are shards of ", w.config().summary(), " for rank ", w.rank(),
            "/", w.degree(), ", but the model is ", config_.summary(), " on rank ",
            comm_->rank(), "/", degree());
  TSP_CHECK_DTYPE(w.dtype() == options_.dtype, "TspTransformer: weights are ", w.dtype(),
                  " but TransformerOptions::dtype is ", options_.dtype);
  if (grads != nullptr)
    TSP_CHECK(grads->dtype() == DType::f32 && grads->config() == config_ &&
                  grads->degree() == degree() && grads->rank() == comm_->rank(),
              "TspTransformer: gradients must be f32 shards of the same model, degree and rank");
  const int64_t local = seq / degree();
  TSP_CHECK_SHAPE(tokens.defined() && tokens.rank() == 2 && tokens.dim(1) == local &&
                      targets.defined() && targets.shape() == tokens.shape(),
                  "TspTransformer: tokens and targets must be [B, S/D] = [B, ", local,
                  "] (this rank's zigzag columns of S=", seq, "), got ",
                  tokens.defined() ? tokens.describe() : std::string("undefined"), " and ",
                  targets.defined() ? targets.describe() : std::string("undefined"));
  TSP_CHECK_DTYPE(tokens.dtype() == DType::i32 && targets.dtype() == DType::i32 &&
                      tokens.is_contiguous() && targets.is_contiguous(),
                  "TspTransformer: tokens and targets must be contiguous i32");
  const int64_t V = config_.vocab_size();
  const int32_t* tok = tokens.data<int32_t>();
  const int32_t* tgt = targets.data<int32_t>();
  for (int64_t i = 0; i < tokens.numel(); ++i) {
    TSP_CHECK(tok[i] >= 0 && tok[i] < V, "TspTransformer: token id ", tok[i],
              " is outside the vocabulary [0, ", V, ")");
    TSP_CHECK(tgt[i] == model::kIgnoreIndex || (tgt[i] >= 0 && tgt[i] < V),
              "TspTransformer: target id ", tgt[i], " is outside the vocabulary [0, ", V,
              ") and is not the ignore index ", model::kIgnoreIndex);
  }
}

model::LossSum TspTransformer::forward(const TspWeights& w, const Tensor& tokens,
                                       const Tensor& targets, int64_t seq) {
  validate(w, tokens, targets, seq, nullptr);
  const DType dt = options_.dtype;
  TspContext ctx(*comm_, config_, dt, tokens.dim(0), seq, &clock_);
  const int64_t T = ctx.tokens(), h = config_.hidden_size();
  Tensor x = Tensor::empty({T, h}, dt, MemCategory::activations);
  VocabExchange(*comm_, tokens.view({T}), ctx.sizes().vocab_rows, &clock_).lookup(w.embed(), x);
  for (const TspLayerShard& lw : w.layers()) {
    Tensor next = Tensor::empty({T, h}, dt, MemCategory::activations);
    TspBlockActivations acts;
    tsp_block_forward(ctx, lw, x, next, acts);
    x = next;
  }
  kernels::rmsnorm_forward(x, w.final_norm(), x, Tensor(),
                           {.eps = static_cast<float>(config_.rms_norm_eps())});
  Tensor lse = Tensor::empty({T}, DType::f32, MemCategory::workspace);
  const kernels::CrossEntropyTotals tot = vocab_ring_forward(
      *comm_, x, w.lm_head(), targets.view({T}), lse,
      {.ignore_index = model::kIgnoreIndex, .chunk_size = options_.vocab_chunk}, &clock_);
  return {tot.loss_sum, tot.n_valid};
}

model::LossSum TspTransformer::forward_backward(const TspWeights& w, const Tensor& tokens,
                                                const Tensor& targets, int64_t seq,
                                                TspWeights& grads, float grad_scale) {
  validate(w, tokens, targets, seq, &grads);
  TSP_CHECK(std::isfinite(grad_scale), "TspTransformer: grad_scale must be finite, got ", grad_scale);
  const DType dt = options_.dtype;
  TspContext ctx(*comm_, config_, dt, tokens.dim(0), seq, &clock_);
  const int64_t T = ctx.tokens(), h = config_.hidden_size(), L = config_.num_hidden_layers();
  const kernels::RmsNormOptions norm{.eps = static_cast<float>(config_.rms_norm_eps())};
  const kernels::CrossEntropyOptions ce{.ignore_index = model::kIgnoreIndex,
                                        .chunk_size = options_.vocab_chunk};
  const Tensor ids = tokens.view({T}), tgt = targets.view({T});

  // ---- forward: keep the residual stream x_0..x_L and (unless recomputing) every block's acts.
  std::vector<Tensor> xs(static_cast<size_t>(L + 1));
  std::vector<TspBlockActivations> acts(static_cast<size_t>(L));
  xs[0] = Tensor::empty({T, h}, dt, MemCategory::activations);
  VocabExchange embedding(*comm_, ids, ctx.sizes().vocab_rows, &clock_);
  embedding.lookup(w.embed(), xs[0]);
  for (int64_t l = 0; l < L; ++l) {
    xs[l + 1] = Tensor::empty({T, h}, dt, MemCategory::activations);
    tsp_block_forward(ctx, w.layers()[l], xs[l], xs[l + 1], acts[l]);
    if (options_.recompute) acts[l].reset();
  }
  Tensor nf = Tensor::empty({T, h}, dt, MemCategory::workspace);
  Tensor rstd = Tensor::empty({T}, DType::f32, MemCategory::workspace);
  kernels::rmsnorm_forward(xs[L], w.final_norm(), nf, rstd, norm);
  Tensor lse = Tensor::empty({T}, DType::f32, MemCategory::activations);
  const kernels::CrossEntropyTotals tot = vocab_ring_forward(*comm_, nf, w.lm_head(), tgt, lse, ce, &clock_);

  // ---- backward: dx is the f32 gradient of this rank's residual stream.
  Tensor dx = Tensor::zeros({T, h}, DType::f32, MemCategory::workspace);
  vocab_ring_backward(*comm_, nf, w.lm_head(), tgt, lse, grad_scale, dx, grads.lm_head(), ce,
                      &clock_);
  lse = Tensor();
  nf = Tensor();
  kernels::rmsnorm_backward(dx, xs[L], w.final_norm(), rstd, dx, grads.final_norm());
  rstd = Tensor();
  xs[L] = Tensor();
  for (int64_t l = L - 1; l >= 0; --l) {
    if (options_.recompute) tsp_block_forward(ctx, w.layers()[l], xs[l], Tensor(), acts[l]);
    tsp_block_backward(ctx, w.layers()[l], xs[l], acts[l], dx, grads.layers()[l]);
    acts[l].reset();
    if (l > 0) xs[l] = Tensor();
  }
  embedding.scatter_add(dx, grads.embed());
  return {tot.loss_sum, tot.n_valid};
}

}  // namespace tsp::parallel
