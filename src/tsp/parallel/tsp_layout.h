// The TSP layout (TSP.md §3-§5) behind the Layout interface: this rank's TpWeights and f32
// gradient shards, TspTransformer on the rank's zigzag columns of the replica's rows.
#pragma once

#include <memory>

#include "tsp/parallel/layout.h"
#include "tsp/parallel/tsp_model.h"
#include "tsp/parallel/tp_weights.h"

namespace tsp::parallel {

class TspLayout final : public Layout {
 public:
  // tsp: the tsp axis communicator (degree = its size). weights: this rank's shards (moved in).
  // primary: this rank's TSP group writes checkpoints (dp coordinate 0).
  TspLayout(comm::Communicator& tsp, const model::TransformerOptions& options, TpWeights weights,
            bool primary = true);

  std::string describe() const override;
  const std::vector<ParamShard>& weights() const override { return weight_shards_; }
  const std::vector<ParamShard>& grads() const override { return grad_shards_; }
  comm::Communicator& replica_group() override { return *comm_; }
  bool primary() const override { return primary_; }
  void zero_grads() override { grads_.zero(); }
  model::LossSum forward_backward(const Tensor& tokens, const Tensor& targets,
                                  float grad_scale) override;
  model::LossSum forward(const Tensor& tokens, const Tensor& targets) override;
  void reduce_grads() override;
  int64_t predicted_activation_peak_bytes(int64_t batch, int64_t seq) const override;
  const CommClock& comm_wait() const override { return model_.comm_wait(); }

 private:
  comm::Communicator* comm_;
  bool primary_;
  TpWeights weights_, grads_;
  std::vector<ParamShard> weight_shards_, grad_shards_;
  TspTransformer model_;
};

}  // namespace tsp::parallel
