// FsdpSpLayout: the single-rank model's forward/backward (model/transformer.cpp) on this rank's
// zigzag tokens, with every weight all-gathered before use and every gradient reduce-scattered to
// its owner (docs/fsdp_sp.md).
#include "tsp/parallel/fsdp_sp_layout.h"

#include <algorithm>
#include <cmath>

#include "tsp/core/check.h"
#include "tsp/kernels/embedding.h"
#include "tsp/kernels/rmsnorm.h"
#include "tsp/parallel/sharded_checkpoint.h"
#include "tsp/parallel/zigzag.h"

namespace tsp::parallel {

namespace {

using comm::MeshAxis;

// Everything the constructors check before a byte is allocated (identically on every rank).
void validate_setup(const comm::Mesh& mesh, const model::TransformerOptions& options,
                    const model::ModelConfig& config, DType dtype) {
  const comm::MeshDegrees& m = mesh.degrees();
  TSP_CHECK(m.pp == 1 && m.tp == 1 && m.tsp == 1,
            "fsdp-sp runs on a mesh dp x sp (the sp axis is the fsdp axis); got ", m.str());
  TSP_CHECK_DTYPE(dtype == DType::f32 || dtype == DType::bf16,
                  "fsdp-sp: dtype must be f32 or bf16, got ", dtype);
  TSP_CHECK_DTYPE(options.dtype == dtype, "fsdp-sp: TransformerOptions::dtype ", options.dtype,
                  " differs from the weights' dtype ", dtype);
  TSP_CHECK(options.vocab_chunk > 0, "fsdp-sp: vocab_chunk must be positive, got ",
            options.vocab_chunk);
  (void)FsdpSpSizes::of(config, m.sp);
}

kernels::CrossEntropyOptions ce_options(const model::TransformerOptions& o) {
  return {.ignore_index = model::kIgnoreIndex, .chunk_size = o.vocab_chunk};
}

kernels::RmsNormOptions norm_options(const model::ModelConfig& c) {
  return {.eps = static_cast<float>(c.rms_norm_eps())};
}

}  // namespace

FsdpSpLayout::FsdpSpLayout(comm::Mesh& mesh, const model::TransformerOptions& options,
                           const model::ModelConfig& config, DType dtype, uint64_t seed,
                           const FsdpSpOptions& fsdp)
    : FsdpSpLayout(mesh, options,
                   (validate_setup(mesh, options, config, dtype),
                    FsdpSpWeights::initialize(config, dtype, seed, mesh.degree(MeshAxis::sp),
                                              mesh.coord(MeshAxis::sp))),
                   fsdp) {}

FsdpSpLayout::FsdpSpLayout(Zeros, comm::Mesh& mesh, const model::TransformerOptions& options,
                           const model::ModelConfig& config, DType dtype, const FsdpSpOptions& fsdp)
    : FsdpSpLayout(mesh, options,
                   (validate_setup(mesh, options, config, dtype),
                    FsdpSpWeights(config, dtype, mesh.degree(MeshAxis::sp),
                                  mesh.coord(MeshAxis::sp), MemCategory::weights)),
                   fsdp) {}

FsdpSpLayout::FsdpSpLayout(comm::Mesh& mesh, const model::TransformerOptions& options,
                           FsdpSpWeights weights, const FsdpSpOptions& fsdp)
    : comm_(&mesh.axis(MeshAxis::sp)),
      primary_(mesh.coord(MeshAxis::dp) == 0),
      options_(options),
      fsdp_(fsdp),
      weights_(std::move(weights)),
      grads_(weights_.config(), DType::f32, weights_.degree(), weights_.rank(), MemCategory::grads),
      weight_shards_(weights_.params()),
      grad_shards_(grads_.params()) {}

std::unique_ptr<FsdpSpLayout> FsdpSpLayout::from_hf(comm::Mesh& mesh,
                                                    const model::TransformerOptions& options,
                                                    const model::ModelConfig& config, DType dtype,
                                                    const std::filesystem::path& dir,
                                                    const FsdpSpOptions& fsdp) {
  std::unique_ptr<FsdpSpLayout> layout(
      new FsdpSpLayout(Zeros{}, mesh, options, config, dtype, fsdp));
  load_shards_from_hf(dir, layout->weights());
  return layout;
}

std::string FsdpSpLayout::describe() const {
  return "fsdp-sp D=" + std::to_string(comm_->size()) + " (rank " + std::to_string(comm_->rank()) +
         ")";
}

int64_t FsdpSpLayout::predicted_activation_peak_bytes(int64_t batch, int64_t seq) const {
  validate_fsdp_sp(weights_.config(), comm_->size(), seq);
  return model::predicted_activation_peak_bytes(weights_.config(), options_, batch,
                                                seq / comm_->size());
}

FsdpSpLayout::Local FsdpSpLayout::local_tokens(const Tensor& tokens, const Tensor& targets) const {
  TSP_CHECK_SHAPE(tokens.defined() && tokens.rank() == 2 && tokens.dim(0) > 0 &&
                      targets.defined() && targets.shape() == tokens.shape(),
                  "fsdp-sp: tokens and targets must be [b, S] of the same shape, got ",
                  tokens.defined() ? tokens.describe() : std::string("undefined"), " and ",
                  targets.defined() ? targets.describe() : std::string("undefined"));
  TSP_CHECK_DTYPE(tokens.dtype() == DType::i32 && targets.dtype() == DType::i32 &&
                      tokens.is_contiguous() && targets.is_contiguous(),
                  "fsdp-sp: tokens and targets must be contiguous i32");
  validate_fsdp_sp(weights_.config(), comm_->size(), tokens.dim(1));
  const int64_t V = weights_.config().vocab_size();
  const int32_t* tok = tokens.data<int32_t>();
  const int32_t* tgt = targets.data<int32_t>();
  for (int64_t i = 0; i < tokens.numel(); ++i) {
    TSP_CHECK(tok[i] >= 0 && tok[i] < V, "fsdp-sp: token id ", tok[i],
              " is outside the vocabulary [0, ", V, ")");
    TSP_CHECK(tgt[i] == model::kIgnoreIndex || (tgt[i] >= 0 && tgt[i] < V), "fsdp-sp: target id ",
              tgt[i], " is outside the vocabulary [0, ", V, ") and is not the ignore index ",
              model::kIgnoreIndex);
  }
  const Zigzag z(tokens.dim(1), comm_->size(), comm_->rank());
  const int64_t T = tokens.dim(0) * z.local_len();
  return {z.take_local(tokens, MemCategory::workspace).view({T}),
          z.take_local(targets, MemCategory::workspace).view({T})};
}

// x_0 of the local tokens: the whole table is all-gathered, looked up, and released.
Tensor FsdpSpLayout::embed(const FsdpSpContext& ctx, const Tensor& ids) {
  const Tensor table = gather_full(ctx, weights_.embed());
  Tensor x = Tensor::empty({ctx.tokens(), ctx.config().hidden_size()}, ctx.dtype(),
                           MemCategory::activations);
  kernels::embedding_forward(ids, table, x);
  return x;
}

std::vector<Tensor> FsdpSpLayout::layers_in_order(bool backward) const {
  std::vector<Tensor> out = weights_.layers();
  if (backward) std::reverse(out.begin(), out.end());
  return out;
}

// The head is all-gathered once for its forward and its backward (they are adjacent); its f32
// gradient is reduce-scattered into the head's (tied: the embedding's) rows.
kernels::CrossEntropyTotals FsdpSpLayout::head_forward_backward(const FsdpSpContext& ctx,
                                                                const Tensor& x, const Local& in,
                                                                const Tensor& lse, float grad_scale,
                                                                const Tensor& dx) {
  const kernels::CrossEntropyOptions ce = ce_options(options_);
  Tensor head = gather_full(ctx, weights_.lm_head());
  const kernels::CrossEntropyTotals tot =
      kernels::cross_entropy_forward(x, head, in.targets, lse, Tensor(), ce);
  Tensor dhead = Tensor::zeros(head.shape(), DType::f32, MemCategory::comm);
  kernels::cross_entropy_backward(x, head, in.targets, lse, grad_scale, dx, dhead, ce);
  head = Tensor();
  reduce_scatter_add(ctx, dhead, grads_.lm_head());
  return tot;
}

model::LossSum FsdpSpLayout::forward(const Tensor& tokens, const Tensor& targets) {
  const Local in = local_tokens(tokens, targets);
  const model::ModelConfig& c = weights_.config();
  FsdpSpContext ctx(*comm_, c, options_.dtype, tokens.dim(0), tokens.dim(1), &clock_);
  Tensor x = embed(ctx, in.ids);
  {
    PieceGather layers(*comm_, layers_in_order(false), fsdp_.prefetch, &clock_);
    for (size_t l = 0; l < weights_.layers().size(); ++l) {
      Tensor next = Tensor::empty(x.shape(), x.dtype(), MemCategory::activations);
      model::BlockActivations acts;
      fsdp_block_forward(ctx, layers.acquire(l), x, next, acts);
      x = next;
    }
  }
  kernels::rmsnorm_forward(x, gather_full(ctx, weights_.final_norm()), x, Tensor(),
                           norm_options(c));
  Tensor lse = Tensor::empty({ctx.tokens()}, DType::f32, MemCategory::workspace);
  const kernels::CrossEntropyTotals tot = kernels::cross_entropy_forward(
      x, gather_full(ctx, weights_.lm_head()), in.targets, lse, Tensor(), ce_options(options_));
  return {tot.loss_sum, tot.n_valid};
}

model::LossSum FsdpSpLayout::forward_backward(const Tensor& tokens, const Tensor& targets,
                                              float grad_scale) {
  TSP_CHECK(std::isfinite(grad_scale), "fsdp-sp: grad_scale must be finite, got ", grad_scale);
  const Local in = local_tokens(tokens, targets);
  const model::ModelConfig& c = weights_.config();
  const DType dt = options_.dtype;
  FsdpSpContext ctx(*comm_, c, dt, tokens.dim(0), tokens.dim(1), &clock_);
  const int64_t T = ctx.tokens(), h = c.hidden_size(), L = c.num_hidden_layers();

  // ---- forward: keep the residual stream x_0..x_L and (unless recomputing) every block's acts.
  std::vector<Tensor> xs(static_cast<size_t>(L + 1));
  std::vector<model::BlockActivations> acts(static_cast<size_t>(L));
  xs[0] = embed(ctx, in.ids);
  {
    PieceGather layers(*comm_, layers_in_order(false), fsdp_.prefetch, &clock_);
    for (int64_t l = 0; l < L; ++l) {
      xs[l + 1] = Tensor::empty({T, h}, dt, MemCategory::activations);
      fsdp_block_forward(ctx, layers.acquire(static_cast<size_t>(l)), xs[l], xs[l + 1], acts[l]);
      if (options_.recompute) acts[l].reset();
    }
  }
  Tensor final_norm = gather_full(ctx, weights_.final_norm());
  Tensor nf = Tensor::empty({T, h}, dt, MemCategory::workspace);
  Tensor rstd = Tensor::empty({T}, DType::f32, MemCategory::workspace);
  kernels::rmsnorm_forward(xs[L], final_norm, nf, rstd, norm_options(c));
  Tensor lse = Tensor::empty({T}, DType::f32, MemCategory::activations);

  // ---- backward: dx is the f32 gradient of this rank's residual stream.
  Tensor dx = Tensor::zeros({T, h}, DType::f32, MemCategory::workspace);
  const kernels::CrossEntropyTotals tot = head_forward_backward(ctx, nf, in, lse, grad_scale, dx);
  lse = Tensor();
  nf = Tensor();
  {
    Tensor dnorm = Tensor::zeros({h}, DType::f32, MemCategory::comm);
    kernels::rmsnorm_backward(dx, xs[L], final_norm, rstd, dx, dnorm);
    reduce_scatter_add(ctx, dnorm, grads_.final_norm());
  }
  final_norm = Tensor();
  rstd = Tensor();
  xs[L] = Tensor();
  {
    PieceGather layers(*comm_, layers_in_order(true), fsdp_.prefetch, &clock_);
    for (int64_t l = L - 1; l >= 0; --l) {
      const Tensor& w = layers.acquire(static_cast<size_t>(L - 1 - l));
      if (options_.recompute) fsdp_block_forward(ctx, w, xs[l], Tensor(), acts[l]);
      fsdp_block_backward(ctx, w, xs[l], acts[l], dx, grads_.layers()[l]);
      acts[l].reset();
      if (l > 0) xs[l] = Tensor();
    }
  }
  // Embedding: the scatter-add needs no weights; the full f32 table gradient goes to its owners.
  Tensor dtable = Tensor::zeros({c.vocab_size(), h}, DType::f32, MemCategory::comm);
  kernels::embedding_backward(in.ids, dx, dtable);
  reduce_scatter_add(ctx, dtable, grads_.embed());
  return {tot.loss_sum, tot.n_valid};
}

}  // namespace tsp::parallel
