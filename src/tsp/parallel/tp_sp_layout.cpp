// TpSpLayout: the single-rank model's forward/backward (model/transformer.cpp) on this rank's sp
// zigzag tokens with the tp shard of every weight (tp_sp_block.h), and the one reduction of the
// replica (every gradient over sp).
#include "tsp/parallel/tp_sp_layout.h"

#include <algorithm>
#include <cmath>

#include "tsp/core/check.h"
#include "tsp/model/step_executor.h"
#include "tsp/model/token_batch.h"
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
  TSP_CHECK(mesh.degree(MeshAxis::tsp) == 1, "tp+sp layout: the mesh ", mesh.degrees().str(),
            " has tsp > 1; this layout runs on the dp, pp, sp and tp axes");
  TSP_CHECK_DTYPE(options.dtype == DType::f32 || options.dtype == DType::bf16,
                  "tp+sp layout: dtype must be f32 or bf16, got ", options.dtype);
  TSP_CHECK(options.vocab_chunk > 0, "tp+sp layout: vocab_chunk must be positive, got ",
            options.vocab_chunk);
  validate_tp_sp(config, mesh.degree(MeshAxis::tp), mesh.degree(MeshAxis::sp), 0);
  (void)stage_layers_on(mesh, config.num_hidden_layers());  // refuses an uneven pipeline split
}

TpWeights initial_weights(const comm::Mesh& mesh, const model::ModelConfig& config,
                           const model::TransformerOptions& options, uint64_t seed) {
  validate_layout(mesh, config, options);
  return TpWeights::initialize(config, options.dtype, seed, mesh.degree(MeshAxis::tp),
                                mesh.coord(MeshAxis::tp), stage_layers_on(mesh, config.num_hidden_layers()));
}

TpWeights checkpoint_weights(const comm::Mesh& mesh, const model::ModelConfig& config,
                              const model::TransformerOptions& options,
                              const std::filesystem::path& dir) {
  validate_layout(mesh, config, options);
  TpWeights w(config, options.dtype, mesh.degree(MeshAxis::tp), mesh.coord(MeshAxis::tp),
               MemCategory::weights, stage_layers_on(mesh, config.num_hidden_layers()));
  load_shards_from_hf(dir, w.params());
  return w;
}

kernels::CrossEntropyOptions ce_options(const model::TransformerOptions& o) {
  return {.ignore_index = model::kIgnoreIndex, .chunk_size = o.vocab_chunk};
}

// One rank of a tp x sp replica as a step strategy: this rank's sp zigzag tokens, the tp shard of
// every weight; the embedding and head vocabulary-parallel over tp, the blocks by tp_sp_block.h.
class TpSpStep final : public model::StepStrategy {
 public:
  TpSpStep(comm::Communicator& tp, comm::Communicator& sp, const model::TransformerOptions& options,
           const TpWeights& w, const Tensor& tokens, const Tensor& targets, TpWeights* grads,
           CommClock* clock)
      : w_(w), grads_(grads), reports_loss_(tp.rank() == 0),
        ctx_(tp, sp, w.config(), options.dtype, tokens.dim(0), tokens.dim(1), clock),
        ids_(ctx_.zigzag().take_local(tokens, MemCategory::workspace).view({ctx_.tokens()})),
        targets_(ctx_.zigzag().take_local(targets, MemCategory::workspace).view({ctx_.tokens()})),
        ce_(ce_options(options)),
        acts_(static_cast<size_t>(w.config().num_hidden_layers())) {}

  int64_t num_layers() const override { return static_cast<int64_t>(acts_.size()); }
  Shape residual_shape() const override { return {ctx_.tokens(), w_.config().hidden_size()}; }
  DType residual_dtype() const override { return ctx_.dtype(); }

  Tensor embed_forward() override {
    Tensor x = Tensor::empty({ctx_.tokens(), w_.config().hidden_size()}, ctx_.dtype(),
                             MemCategory::activations);
    vocab_parallel_embedding_forward(ctx_, ids_, w_.embed(), x);
    return x;
  }
  void embed_backward(const Tensor& dx) override {
    vocab_parallel_embedding_backward(ctx_, ids_, dx, grads_->embed());
  }

  void block_forward(int64_t l, const Tensor& x, const Tensor& y) override {
    tp_sp_block_forward(ctx_, w_.layers()[l], x, y, acts_[l]);
  }
  void release_activations(int64_t l) override { acts_[l].reset(); }
  void block_backward(int64_t l, const Tensor& x, Tensor& dx) override {
    tp_sp_block_backward(ctx_, w_.layers()[l], x, acts_[l], dx, grads_->layers()[l]);
  }

  double rms_norm_eps() const override { return w_.config().rms_norm_eps(); }
  Tensor final_norm_weight() override { return w_.final_norm(); }
  // Every tp rank computes the same totals of its sp tokens: tp rank 0 reports them.
  model::LossSum loss_forward(const Tensor& nf, const Tensor& lse) override {
    const kernels::CrossEntropyTotals tot =
        vocab_parallel_ce_forward(ctx_, nf, w_.lm_head(), targets_, lse, ce_);
    if (!reports_loss_) return {};
    return {tot.loss_sum, tot.n_valid};
  }
  // dx is replicated over tp, as the residual stream is.
  void loss_backward(const Tensor& nf, const Tensor& lse, float grad_scale, const Tensor& dx) override {
    Tensor d = dx;
    vocab_parallel_ce_backward(ctx_, nf, w_.lm_head(), targets_, lse, grad_scale, d,
                               grads_->lm_head(), ce_);
  }
  Tensor final_norm_grad() override { return grads_->final_norm(); }

 private:
  const TpWeights& w_;
  TpWeights* grads_;  // null for a forward-only step
  bool reports_loss_;
  const TpSpContext ctx_;
  const Tensor ids_, targets_;  // [T_local] i32, this rank's sp zigzag columns
  kernels::CrossEntropyOptions ce_;
  std::vector<TpSpBlockActivations> acts_;
};

}  // namespace

TpSpLayout::TpSpLayout(comm::Mesh& mesh, const model::ModelConfig& config,
                       const model::TransformerOptions& options, uint64_t seed)
    : TpSpLayout(mesh, options, initial_weights(mesh, config, options, seed)) {}

TpSpLayout::TpSpLayout(comm::Mesh& mesh, const model::ModelConfig& config,
                       const model::TransformerOptions& options, const std::filesystem::path& hf_dir)
    : TpSpLayout(mesh, options, checkpoint_weights(mesh, config, options, hf_dir)) {}

TpSpLayout::TpSpLayout(comm::Mesh& mesh, const model::TransformerOptions& options, TpWeights weights)
    : ShardedLayout(PipelineStage::on(mesh.axis(MeshAxis::pp), weights.config().num_hidden_layers()),
                    mesh.axis(MeshAxis::tp), pipeline_replica_group(mesh, MeshAxis::tp),
                    mesh.coord(MeshAxis::dp) == 0 && mesh.coord(MeshAxis::sp) == 0, std::move(weights)),
      sp_(&mesh.axis(MeshAxis::sp)),
      options_(options) {}

std::string TpSpLayout::describe() const {
  const std::string T = std::to_string(inner_->size()), S = std::to_string(sp_->size());
  std::string s;
  if (inner_->size() == 1 && sp_->size() == 1) {
    s = "dp (replicated model)";
  } else if (sp_->size() == 1) {
    s = "tp T=" + T + " (rank " + std::to_string(inner_->rank()) + ")";
  } else if (inner_->size() == 1) {
    s = "sp S=" + S + " (rank " + std::to_string(sp_->rank()) + ")";
  } else {
    s = "tp+sp T=" + T + " x S=" + S + " (tp " + std::to_string(inner_->rank()) + ", sp " +
        std::to_string(sp_->rank()) + ")";
  }
  return s + stage_suffix();
}

void TpSpLayout::check_batch(const Tensor& tokens, const Tensor& targets) const {
  model::check_token_batch(weights_.config(), tokens, targets, "TpSpLayout");
  validate_tp_sp(weights_.config(), inner_->size(), sp_->size(), tokens.dim(1));
}

std::unique_ptr<model::StepStrategy> TpSpLayout::make_step(const Tensor& tokens, const Tensor& targets,
                                                           bool backward) {
  return std::make_unique<TpSpStep>(*inner_, *sp_, options_, weights_, tokens, targets,
                                    backward ? &grads_ : nullptr, &clock_);
}

void TpSpLayout::reduce_grads() {
  ScopedCommWait wait(&clock_, CommSite::replica_sum);
  sum_over_replicas(*sp_, grad_shards_);
}

int64_t TpSpLayout::predicted_activation_peak_bytes(int64_t batch, int64_t seq) const {
  return tp_sp_predicted_activation_peak_bytes(weights_.config(), options_, inner_->size(),
                                               sp_->size(), batch, seq);
}

}  // namespace tsp::parallel
