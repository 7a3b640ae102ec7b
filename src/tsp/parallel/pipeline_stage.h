// Where one rank sits in a pipeline (the mesh's pp axis): its stage's layer range, and the
// stage-to-stage transfers of the residual stream, each forward transfer next to its backward dual.
#pragma once

#include <cstdint>
#include <vector>

#include "tsp/comm/communicator.h"
#include "tsp/comm/mesh.h"
#include "tsp/core/tensor.h"
#include "tsp/model/step_executor.h"
#include "tsp/parallel/param_shard.h"

namespace tsp::parallel {

// Tag of the stage-to-stage messages on the pp communicator (a user tag, below
// comm::kReservedTagBase). One tag serves both directions: stage s -> s+1 carries only
// activations, s+1 -> s only their gradients, and each direction arrives in micro-batch order.
inline constexpr int kPipelineTag = 0x5050;
// Tag of the tied embedding's gradient exchange between the first and the last stage.
inline constexpr int kTiedEmbeddingTag = 0x5051;

// Layers [s L/P, (s+1) L/P) of stage s of P. InvalidArgument naming L and P unless 1 <= P <= L
// and P divides L: an uneven split is refused (docs/pipeline.md), so every stage holds the same
// number of layers, as the planner assumes.
model::StageRange stage_layers(int64_t num_layers, int stages, int stage);

// This rank's stage's layers on `mesh` (stage_layers over the pp axis's degree and coordinate).
model::StageRange stage_layers_on(const comm::Mesh& mesh, int64_t num_layers);

// The replica group of a layout whose model-parallel group is the `inner` axis, across pipeline
// stages: the pp x inner ranks of this rank's other coordinates (Mesh::group_over; collective
// over the mesh's world). Invalid (not valid()) without a pipeline: the inner axis is the group.
comm::Communicator pipeline_replica_group(comm::Mesh& mesh, comm::MeshAxis inner);

struct PipelineStage {
  comm::Communicator* pp = nullptr;  // the mesh's pp axis; null: the whole model, no pipeline
  model::StageRange range;

  // The whole model as one stage (no pp communicator).
  static PipelineStage whole_model(int64_t num_layers);
  // Stage pp.rank() of pp.size() (stage_layers' split); with one rank, the whole model.
  static PipelineStage on(comm::Communicator& pp, int64_t num_layers);

  int stages() const { return pp != nullptr ? pp->size() : 1; }
  int index() const { return pp != nullptr ? pp->rank() : 0; }
  bool pipelined() const { return stages() > 1; }
  bool first() const { return index() == 0; }
  bool last() const { return index() == stages() - 1; }
};

// Forward: x [T_local, h] of this stage's last layer goes to the next stage, whose
// recv_forward returns it (MemCategory::activations: it is that stage's residual x_first).
// Backward dual: send_backward of dx (f32, the gradient at x_first) to the previous stage, whose
// recv_backward returns it (f32, MemCategory::workspace). <recv_forward(send_forward(x)), y> on
// s+1 equals <x, recv_backward(send_backward(y))> on s (tests/parallel/pipeline_stage_mpi_test).
void send_forward(const PipelineStage& stage, const Tensor& x);
Tensor recv_forward(const PipelineStage& stage, const Shape& shape, DType dtype);
void send_backward(const PipelineStage& stage, const Tensor& dx);
Tensor recv_backward(const PipelineStage& stage, const Shape& shape);

// The steady state of 1F1B pairs the two directions (a nonblocking send and receive, then both
// waited for), so neighbouring stages never both wait to send: x to the next stage while its
// gradient for an earlier micro-batch comes back, and dx to the previous stage while its next
// activation arrives. The ledger counts them as the plain sends and receives.
Tensor send_forward_recv_backward(const PipelineStage& stage, const Tensor& x, const Shape& dx_shape);
Tensor send_backward_recv_forward(const PipelineStage& stage, const Tensor& dx, const Shape& x_shape,
                                  DType x_dtype);

// With tied embeddings over several stages the first stage holds the embedding and the last a
// copy as its LM head (a ParamShard::mirror): each has a part of the gradient. This sums them on
// both (one sendrecv of the f32 shard between pp ranks 0 and P-1), so both apply the same update
// and the copies stay bit-equal, provided each part is final (after the dp sum:
// Layout::sync_grads). A no-op on other stages, without a pipeline, or untied.
void sum_tied_embedding_grads(const PipelineStage& stage, const model::ModelConfig& config,
                              const std::vector<ParamShard>& grads);

}  // namespace tsp::parallel
