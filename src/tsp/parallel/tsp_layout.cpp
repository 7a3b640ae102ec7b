// TspLayout: zigzag slicing of the replica's rows, TspTransformer, and the one reduction TSP needs
// inside a replica (the replicated norm gains' gradients).
#include "tsp/parallel/tsp_layout.h"

#include "tsp/parallel/sharded_grad.h"
#include "tsp/parallel/zigzag.h"

namespace tsp::parallel {

TspLayout::TspLayout(comm::Communicator& tsp, const model::TransformerOptions& options,
                     TpWeights weights, bool primary)
    : comm_(&tsp),
      primary_(primary),
      weights_(std::move(weights)),
      grads_(weights_.config(), DType::f32, tsp.size(), tsp.rank(), MemCategory::grads),
      weight_shards_(weights_.params()),
      grad_shards_(grads_.params()),
      model_(tsp, weights_.config(), options) {}

std::string TspLayout::describe() const {
  return "tsp D=" + std::to_string(comm_->size()) + " (rank " + std::to_string(comm_->rank()) + ")";
}

model::LossSum TspLayout::forward_backward(const Tensor& tokens, const Tensor& targets,
                                           float grad_scale) {
  const Zigzag z(tokens.dim(1), comm_->size(), comm_->rank());
  return model_.forward_backward(weights_, z.take_local(tokens, MemCategory::activations),
                                 z.take_local(targets, MemCategory::activations), tokens.dim(1),
                                 grads_, grad_scale);
}

model::LossSum TspLayout::forward(const Tensor& tokens, const Tensor& targets) {
  const Zigzag z(tokens.dim(1), comm_->size(), comm_->rank());
  return model_.forward(weights_, z.take_local(tokens, MemCategory::activations),
                        z.take_local(targets, MemCategory::activations), tokens.dim(1));
}

void TspLayout::reduce_grads() { sum_replicated_grads(*comm_, grad_shards_); }

int64_t TspLayout::predicted_activation_peak_bytes(int64_t batch, int64_t seq) const {
  return tsp_predicted_activation_peak_bytes(weights_.config(), model_.options(), comm_->size(),
                                             batch, seq);
}

}  // namespace tsp::parallel
