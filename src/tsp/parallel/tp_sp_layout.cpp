// TpSpLayout: the single-rank model's forward/backward (model/transformer.cpp) on this rank's sp
// zigzag tokens with the tp shard of every weight (tp_sp_block.h), and the one reduction of the
// replica (every gradient over sp).
#include "tsp/parallel/tp_sp_layout.h"

#include <algorithm>
#include <cmath>

#include "tsp/core/check.h"
#include "tsp/kernels/rmsnorm.h"
#include "tsp/parallel/sharded_checkpoint.h"
#include "tsp/parallel/sharded_grad.h"

namespace tsp::parallel {

using comm::MeshAxis;

int64_t tp_sp_predicted_activation_peak_bytes(const model::ModelConfig& config,
                                              const model::TransformerOptions& options, int tp,
                                              int sp, int64_t batch, int64_t seq) {
  validate_tp_sp(config, tp, sp, seq);
  const int64_t T = batch * (seq / sp), L = config.num_hidden_layers();
  const int64_t x = T * config.hidden_size() * static_cast<int64_t>(dtype_size(options.dtype));
  const int64_t block = tp_sp_block_activation_bytes(config, options.dtype, tp, sp, batch, seq);
  const int64_t lse = 4 * T;
  // As model::predicted_activation_peak_bytes: the residual stream lives through the forward, with
  // every block's saved tensors (or, recomputing, one block's at a time) and the head's lse.
  if (!options.recompute) return (L + 1) * x + L * block + lse;
  return std::max((L + 1) * x + block, (L + 1) * x + lse);
}

namespace {

// Everything the constructors need, checked on every rank before any weight is allocated.
void validate_layout(const comm::Mesh& mesh, const model::ModelConfig& config,
                     const model::TransformerOptions& options) {
  TSP_CHECK(mesh.degree(MeshAxis::pp) == 1 && mesh.degree(MeshAxis::tsp) == 1, "tp+sp layout: the mesh ",
            mesh.degrees().str(), " has pp or tsp > 1; this layout runs on the dp, sp and tp axes");
  TSP_CHECK_DTYPE(options.dtype == DType::f32 || options.dtype == DType::bf16,
                  "tp+sp layout: dtype must be f32 or bf16, got ", options.dtype);
  TSP_CHECK(options.vocab_chunk > 0, "tp+sp layout: vocab_chunk must be positive, got ",
            options.vocab_chunk);
  validate_tp_sp(config, mesh.degree(MeshAxis::tp), mesh.degree(MeshAxis::sp), 0);
}

TspWeights initial_weights(const comm::Mesh& mesh, const model::ModelConfig& config,
                           const model::TransformerOptions& options, uint64_t seed) {
  validate_layout(mesh, config, options);
  return TspWeights::initialize(config, options.dtype, seed, mesh.degree(MeshAxis::tp),
                                mesh.coord(MeshAxis::tp));
}

TspWeights checkpoint_weights(const comm::Mesh& mesh, const model::ModelConfig& config,
                              const model::TransformerOptions& options,
                              const std::filesystem::path& dir) {
  validate_layout(mesh, config, options);
  TspWeights w(config, options.dtype, mesh.degree(MeshAxis::tp), mesh.coord(MeshAxis::tp),
               MemCategory::weights);
  load_shards_from_hf(dir, w.params());
  return w;
}

kernels::CrossEntropyOptions ce_options(const model::TransformerOptions& o) {
  return {.ignore_index = model::kIgnoreIndex, .chunk_size = o.vocab_chunk};
}

}  // namespace

TpSpLayout::TpSpLayout(comm::Mesh& mesh, const model::ModelConfig& config,
                       const model::TransformerOptions& options, uint64_t seed)
    : TpSpLayout(mesh, options, initial_weights(mesh, config, options, seed)) {}

TpSpLayout::TpSpLayout(comm::Mesh& mesh, const model::ModelConfig& config,
                       const model::TransformerOptions& options, const std::filesystem::path& hf_dir)
    : TpSpLayout(mesh, options, checkpoint_weights(mesh, config, options, hf_dir)) {}

TpSpLayout::TpSpLayout(comm::Mesh& mesh, const model::TransformerOptions& options, TspWeights weights)
    : tp_(&mesh.axis(MeshAxis::tp)),
      sp_(&mesh.axis(MeshAxis::sp)),
      primary_(mesh.coord(MeshAxis::dp) == 0 && mesh.coord(MeshAxis::sp) == 0),
      options_(options),
      weights_(std::move(weights)),
      grads_(weights_.config(), DType::f32, tp_->size(), tp_->rank(), MemCategory::grads),
      weight_shards_(weights_.params()),
      grad_shards_(grads_.params()) {}

std::string TpSpLayout::describe() const {
  const std::string T = std::to_string(tp_->size()), S = std::to_string(sp_->size());
  if (tp_->size() == 1 && sp_->size() == 1) return "dp (replicated model)";
  if (sp_->size() == 1) return "tp T=" + T + " (rank " + std::to_string(tp_->rank()) + ")";
  if (tp_->size() == 1) return "sp S=" + S + " (rank " + std::to_string(sp_->rank()) + ")";
  return "tp+sp T=" + T + " x S=" + S + " (tp " + std::to_string(tp_->rank()) + ", sp " +
         std::to_string(sp_->rank()) + ")";
}

model::LossSum TpSpLayout::share(const kernels::CrossEntropyTotals& totals) const {
  // Every tp rank computed the same totals of its sp tokens: tp rank 0 reports them.
  if (tp_->rank() != 0) return {};
  return {totals.loss_sum, totals.n_valid};
}

model::LossSum TpSpLayout::forward(const Tensor& tokens, const Tensor& targets) {
  const model::ModelConfig& config = weights_.config();
  layout_kernels::check_token_batch(config, tokens, targets, "TpSpLayout");
  const DType dt = options_.dtype;
  const TpSpContext ctx(*tp_, *sp_, config, dt, tokens.dim(0), tokens.dim(1), &clock_);
  const int64_t T = ctx.tokens(), h = config.hidden_size();
  const Tensor ids = ctx.zigzag().take_local(tokens, MemCategory::workspace).view({T});
  const Tensor tgt = ctx.zigzag().take_local(targets, MemCategory::workspace).view({T});
  Tensor x = Tensor::empty({T, h}, dt, MemCategory::activations);
  vocab_parallel_embedding_forward(ctx, ids, weights_.embed(), x);
  for (const TspLayerShard& lw : weights_.layers()) {
    Tensor next = Tensor::empty({T, h}, dt, MemCategory::activations);
    TpSpBlockActivations acts;
    tp_sp_block_forward(ctx, lw, x, next, acts);
    x = next;
  }
  kernels::rmsnorm_forward(x, weights_.final_norm(), x, Tensor(),
                           {.eps = static_cast<float>(config.rms_norm_eps())});
  Tensor lse = Tensor::empty({T}, DType::f32, MemCategory::workspace);
  return share(vocab_parallel_ce_forward(ctx, x, weights_.lm_head(), tgt, lse, ce_options(options_)));
}

model::LossSum TpSpLayout::forward_backward(const Tensor& tokens, const Tensor& targets,
                                            float grad_scale) {
  const model::ModelConfig& config = weights_.config();
  layout_kernels::check_token_batch(config, tokens, targets, "TpSpLayout");
  TSP_CHECK(std::isfinite(grad_scale), "TpSpLayout: grad_scale must be finite, got ", grad_scale);
  const DType dt = options_.dtype;
  const TpSpContext ctx(*tp_, *sp_, config, dt, tokens.dim(0), tokens.dim(1), &clock_);
  const int64_t T = ctx.tokens(), h = config.hidden_size(), L = config.num_hidden_layers();
  const kernels::RmsNormOptions norm{.eps = static_cast<float>(config.rms_norm_eps())};
  const kernels::CrossEntropyOptions ce = ce_options(options_);
  const Tensor ids = ctx.zigzag().take_local(tokens, MemCategory::workspace).view({T});
  const Tensor tgt = ctx.zigzag().take_local(targets, MemCategory::workspace).view({T});
  const TspWeights& w = weights_;

  // ---- forward: keep the residual stream x_0..x_L and (unless recomputing) every block's acts.
  std::vector<Tensor> xs(static_cast<size_t>(L + 1));
  std::vector<TpSpBlockActivations> acts(static_cast<size_t>(L));
  xs[0] = Tensor::empty({T, h}, dt, MemCategory::activations);
  vocab_parallel_embedding_forward(ctx, ids, w.embed(), xs[0]);
  for (int64_t l = 0; l < L; ++l) {
    xs[l + 1] = Tensor::empty({T, h}, dt, MemCategory::activations);
    tp_sp_block_forward(ctx, w.layers()[l], xs[l], xs[l + 1], acts[l]);
    if (options_.recompute) acts[l].reset();
  }
  Tensor nf = Tensor::empty({T, h}, dt, MemCategory::workspace);
  Tensor rstd = Tensor::empty({T}, DType::f32, MemCategory::workspace);
  kernels::rmsnorm_forward(xs[L], w.final_norm(), nf, rstd, norm);
  Tensor lse = Tensor::empty({T}, DType::f32, MemCategory::activations);
  const kernels::CrossEntropyTotals tot = vocab_parallel_ce_forward(ctx, nf, w.lm_head(), tgt, lse, ce);

  // ---- backward: dx is the f32 gradient of the residual stream (replicated over tp).
  Tensor dx = Tensor::zeros({T, h}, DType::f32, MemCategory::workspace);
  vocab_parallel_ce_backward(ctx, nf, w.lm_head(), tgt, lse, grad_scale, dx, grads_.lm_head(), ce);
  lse = Tensor();
  nf = Tensor();
  kernels::rmsnorm_backward(dx, xs[L], w.final_norm(), rstd, dx, grads_.final_norm());
  rstd = Tensor();
  xs[L] = Tensor();
  for (int64_t l = L - 1; l >= 0; --l) {
    if (options_.recompute) tp_sp_block_forward(ctx, w.layers()[l], xs[l], Tensor(), acts[l]);
    tp_sp_block_backward(ctx, w.layers()[l], xs[l], acts[l], dx, grads_.layers()[l]);
    acts[l].reset();
    if (l > 0) xs[l] = Tensor();
  }
  vocab_parallel_embedding_backward(ctx, ids, dx, grads_.embed());
  return share(tot);
}

void TpSpLayout::reduce_grads() {
  ScopedCommWait wait(&clock_, CommSite::replica_sum);
  sum_over_replicas(*sp_, grad_shards_);
}

int64_t TpSpLayout::predicted_activation_peak_bytes(int64_t batch, int64_t seq) const {
  return tp_sp_predicted_activation_peak_bytes(weights_.config(), options_, tp_->size(),
                                               sp_->size(), batch, seq);
}

}  // namespace tsp::parallel
