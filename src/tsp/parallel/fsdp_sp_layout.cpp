// FsdpSpLayout: the single-rank model's forward/backward (model/transformer.cpp) on this rank's
// zigzag tokens, with every weight all-gathered before use and every gradient reduce-scattered to
// its owner (docs/fsdp_sp.md).
#include "tsp/parallel/fsdp_sp_layout.h"


#include <algorithm>
#include <cmath>
#include <optional>

#include "tsp/core/check.h"
#include "tsp/kernels/embedding.h"
#include "tsp/model/step_executor.h"
#include "tsp/model/token_batch.h"
#include "tsp/parallel/layout_kernels.h"
#include "tsp/parallel/sharded_checkpoint.h"
#include "tsp/parallel/zigzag.h"

namespace tsp::parallel {

namespace {

using comm::MeshAxis;

// Everything the constructors check before a byte is allocated (identically on every rank).
void validate_setup(const comm::Mesh& mesh, const model::TransformerOptions& options,
                    const model::ModelConfig& config, DType dtype) {
  const comm::MeshDegrees& m = mesh.degrees();
  TSP_CHECK(m.tp == 1 && m.tsp == 1,
            "fsdp-sp runs on a mesh dp x pp x sp (the sp axis is the fsdp axis); got ", m.str());
  TSP_CHECK_DTYPE(dtype == DType::f32 || dtype == DType::bf16,
                  "fsdp-sp: dtype must be f32 or bf16, got ", dtype);
  TSP_CHECK_DTYPE(options.dtype == dtype, "fsdp-sp: TransformerOptions::dtype ", options.dtype,
                  " differs from the weights' dtype ", dtype);
  TSP_CHECK(options.vocab_chunk > 0, "fsdp-sp: vocab_chunk must be positive, got ",
            options.vocab_chunk);
  (void)FsdpSpSizes::of(config, m.sp);
  (void)stage_layers_on(mesh, config.num_hidden_layers());  // refuses an uneven pipeline split
}

kernels::CrossEntropyOptions ce_options(const model::TransformerOptions& o) {
  return {.ignore_index = model::kIgnoreIndex, .chunk_size = o.vocab_chunk};
}

// One rank of an fsdp-sp group as a step strategy: this rank's zigzag tokens; each layer's full
// weights all-gathered when acquired (the next one prefetched), the tables when used; every f32
// gradient reduce-scattered to its owner as soon as it is complete.
class FsdpSpStep final : public model::StepStrategy {
 public:
  FsdpSpStep(comm::Communicator& comm, const model::TransformerOptions& options,
             const FsdpSpOptions& fsdp, const FsdpSpWeights& w, const Tensor& tokens,
             const Tensor& targets, FsdpSpWeights* grads, CommClock* clock)
      : comm_(comm), clock_(clock), fsdp_(fsdp), w_(w), grads_(grads),
        ctx_(comm, w.config(), options.dtype, tokens.dim(0), tokens.dim(1), clock),
        zigzag_(tokens.dim(1), comm.size(), comm.rank()),
        ids_(zigzag_.take_local(tokens, MemCategory::workspace).view({ctx_.tokens()})),
        targets_(zigzag_.take_local(targets, MemCategory::workspace).view({ctx_.tokens()})),
        ce_(ce_options(options)),
        acts_(w.layers().size()) {}

  int64_t num_layers() const override { return static_cast<int64_t>(acts_.size()); }
  Shape residual_shape() const override { return {ctx_.tokens(), w_.config().hidden_size()}; }
  DType residual_dtype() const override { return ctx_.dtype(); }

  // x_0 of the local tokens: the whole table is all-gathered, looked up, and released.
  Tensor embed_forward() override {
    const Tensor table = gather_full(ctx_, w_.embed());
    Tensor x = Tensor::empty({ctx_.tokens(), w_.config().hidden_size()}, ctx_.dtype(),
                             MemCategory::activations);
    kernels::embedding_forward(ids_, table, x);
    return x;
  }
  // The scatter-add needs no weights; the full f32 table gradient goes to its owners.
  void embed_backward(const Tensor& dx) override {
    Tensor dtable = Tensor::zeros({w_.config().vocab_size(), w_.config().hidden_size()},
                                  DType::f32, MemCategory::comm);
    kernels::embedding_backward(ids_, dx, dtable);
    reduce_scatter_add(ctx_, dtable, grads_->embed());
  }

  // One PieceGather per pass, over this stage's layers in the pass's order.
  void begin_layers(bool backward) override {
    const model::StageRange& stage = w_.stage();
    std::vector<Tensor> pieces(w_.layers().begin() + stage.first_layer, w_.layers().begin() + stage.end_layer);
    backward_ = backward;
    if (backward) std::reverse(pieces.begin(), pieces.end());
    layers_.emplace(comm_, std::move(pieces), fsdp_.prefetch, clock_);
  }
  void end_layers() override {
    layers_.reset();
    layer_ = nullptr;
  }
  void acquire_layer(int64_t l) override {
    const model::StageRange& stage = w_.stage();
    layer_ = &layers_->acquire(static_cast<size_t>(backward_ ? stage.end_layer - 1 - l : l - stage.first_layer));
  }

  void block_forward(int64_t l, const Tensor& x, const Tensor& y) override {
    fsdp_block_forward(ctx_, *layer_, x, y, acts_[l]);
  }
  void release_activations(int64_t l) override { acts_[l].reset(); }
  void block_backward(int64_t l, const Tensor& x, Tensor& dx) override {
    fsdp_block_backward(ctx_, *layer_, x, acts_[l], dx, grads_->layers()[l]);
  }

  double rms_norm_eps() const override { return w_.config().rms_norm_eps(); }
  Tensor final_norm_weight() override { return gather_full(ctx_, w_.final_norm()); }
  // The head is all-gathered once for the loss and its backward (they are adjacent); its f32
  // gradient is reduce-scattered into the head's (tied: the embedding's) rows.
  model::LossSum loss_forward(const Tensor& nf, const Tensor& lse) override {
    head_ = gather_full(ctx_, w_.lm_head());
    const kernels::CrossEntropyTotals tot =
        kernels::cross_entropy_forward(nf, head_, targets_, lse, Tensor(), ce_);
    if (grads_ == nullptr) head_ = Tensor();  // forward only: no backward follows
    return {tot.loss_sum, tot.n_valid};
  }
  void loss_backward(const Tensor& nf, const Tensor& lse, float grad_scale, const Tensor& dx) override {
    Tensor dhead = Tensor::zeros(head_.shape(), DType::f32, MemCategory::comm);
    kernels::cross_entropy_backward(nf, head_, targets_, lse, grad_scale, dx, dhead, ce_);
    head_ = Tensor();
    reduce_scatter_add(ctx_, dhead, grads_->lm_head());
  }
  Tensor final_norm_grad() override {
    return Tensor::zeros({w_.config().hidden_size()}, DType::f32, MemCategory::comm);
  }
  void final_norm_grad_done(const Tensor& grad) override {
    reduce_scatter_add(ctx_, grad, grads_->final_norm());
  }

 private:
  comm::Communicator& comm_;
  CommClock* clock_;
  const FsdpSpOptions& fsdp_;
  const FsdpSpWeights& w_;
  FsdpSpWeights* grads_;  // null for a forward-only step
  FsdpSpContext ctx_;
  Zigzag zigzag_;
  Tensor ids_, targets_;  // [T_local] i32, this rank's zigzag columns
  kernels::CrossEntropyOptions ce_;
  std::vector<model::BlockActivations> acts_;
  Tensor head_;  // the all-gathered LM head between loss_forward and loss_backward
  std::optional<PieceGather> layers_;  // the current pass's gathers
  bool backward_ = false;
  const Tensor* layer_ = nullptr;  // the acquired layer's full weights
};

}  // namespace

FsdpSpLayout::FsdpSpLayout(comm::Mesh& mesh, const model::TransformerOptions& options,
                           const model::ModelConfig& config, DType dtype, uint64_t seed,
                           const FsdpSpOptions& fsdp)
    : FsdpSpLayout(mesh, options,
                   (validate_setup(mesh, options, config, dtype),
                    FsdpSpWeights::initialize(config, dtype, seed, mesh.degree(MeshAxis::sp),
                                              mesh.coord(MeshAxis::sp), stage_layers_on(mesh, config.num_hidden_layers()))),
                   fsdp) {}

FsdpSpLayout::FsdpSpLayout(Zeros, comm::Mesh& mesh, const model::TransformerOptions& options,
                           const model::ModelConfig& config, DType dtype, const FsdpSpOptions& fsdp)
    : FsdpSpLayout(mesh, options,
                   (validate_setup(mesh, options, config, dtype),
                    FsdpSpWeights(config, dtype, mesh.degree(MeshAxis::sp),
                                  mesh.coord(MeshAxis::sp), MemCategory::weights, stage_layers_on(mesh, config.num_hidden_layers()))),
                   fsdp) {}

FsdpSpLayout::FsdpSpLayout(comm::Mesh& mesh, const model::TransformerOptions& options,
                           FsdpSpWeights weights, const FsdpSpOptions& fsdp)
    : ShardedLayout(PipelineStage::on(mesh.axis(MeshAxis::pp), weights.config().num_hidden_layers()),
                    mesh.axis(MeshAxis::sp), pipeline_replica_group(mesh, MeshAxis::sp),
                    mesh.coord(MeshAxis::dp) == 0, std::move(weights)),
      options_(options),
      fsdp_(fsdp) {}

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
  return "fsdp-sp D=" + std::to_string(inner_->size()) + " (rank " + std::to_string(inner_->rank()) + ")" +
         stage_suffix();
}



int64_t FsdpSpLayout::predicted_activation_peak_bytes(int64_t batch, int64_t seq) const {
  validate_fsdp_sp(weights_.config(), inner_->size(), seq);
  return model::predicted_activation_peak_bytes(weights_.config(), options_, batch,
                                                seq / inner_->size());
}

void FsdpSpLayout::check_batch(const Tensor& tokens, const Tensor& targets) const {
  model::check_token_batch(weights_.config(), tokens, targets, "fsdp-sp");
  validate_fsdp_sp(weights_.config(), inner_->size(), tokens.dim(1));
}

std::unique_ptr<model::StepStrategy> FsdpSpLayout::make_step(const Tensor& tokens, const Tensor& targets,
                                                             bool backward) {
  return std::make_unique<FsdpSpStep>(*inner_, options_, fsdp_, weights_, tokens, targets,
                                      backward ? &grads_ : nullptr, &clock_);
}

}  // namespace tsp::parallel
