// PipelineStage: the even layer split and the point-to-point transfers between neighbour stages
// (comm::send / recv / sendrecv on the pp axis, one tag).
#include "tsp/parallel/pipeline_stage.h"

#include "tsp/comm/collectives.h"
#include "tsp/core/check.h"
#include "tsp/model/weight_names.h"

#include <algorithm>
#include <array>
#include <string>

namespace tsp::parallel {

model::StageRange stage_layers(int64_t num_layers, int stages, int stage) {
  TSP_CHECK(stages >= 1 && stages <= num_layers, "pipeline: ", stages, " stages for a model of ", num_layers,
            " layers (every stage needs at least one layer)");
  TSP_CHECK(num_layers % stages == 0, "pipeline: ", num_layers, " layers do not split evenly into pp=", stages,
            " stages; choose a pp that divides num_hidden_layers (uneven splits are refused, docs/pipeline.md)");
  TSP_CHECK(stage >= 0 && stage < stages, "pipeline: stage ", stage, " outside [0, ", stages, ")");
  const int64_t per = num_layers / stages;
  return {stage * per, (stage + 1) * per};
}

model::StageRange stage_layers_on(const comm::Mesh& mesh, int64_t num_layers) {
  return stage_layers(num_layers, mesh.degree(comm::MeshAxis::pp), mesh.coord(comm::MeshAxis::pp));
}

comm::Communicator pipeline_replica_group(comm::Mesh& mesh, comm::MeshAxis inner) {
  if (mesh.degree(comm::MeshAxis::pp) == 1) return {};
  const std::array<comm::MeshAxis, 2> axes{comm::MeshAxis::pp, inner};
  return mesh.group_over(axes, "pp x " + std::string(comm::mesh_axis_name(inner)));
}

PipelineStage PipelineStage::whole_model(int64_t num_layers) {
  return {nullptr, model::StageRange::whole_model(num_layers)};
}

PipelineStage PipelineStage::on(comm::Communicator& pp, int64_t num_layers) {
  if (pp.size() == 1) return whole_model(num_layers);
  return {&pp, stage_layers(num_layers, pp.size(), pp.rank())};
}

namespace {

void check_has(const PipelineStage& stage, bool neighbour, const char* what) {
  TSP_ASSERT(stage.pp != nullptr && neighbour, "pipeline: ", what, " on stage ", stage.index(), " of ",
             stage.stages(), " (no such neighbour)");
}

}  // namespace

void send_forward(const PipelineStage& stage, const Tensor& x) {
  check_has(stage, !stage.last(), "send_forward");
  comm::send(*stage.pp, x, stage.index() + 1, kPipelineTag);
}

Tensor recv_forward(const PipelineStage& stage, const Shape& shape, DType dtype) {
  check_has(stage, !stage.first(), "recv_forward");
  Tensor x = Tensor::empty(shape, dtype, MemCategory::activations);
  comm::recv(*stage.pp, x, stage.index() - 1, kPipelineTag);
  return x;
}

void send_backward(const PipelineStage& stage, const Tensor& dx) {
  check_has(stage, !stage.first(), "send_backward");
  comm::send(*stage.pp, dx, stage.index() - 1, kPipelineTag);
}

Tensor recv_backward(const PipelineStage& stage, const Shape& shape) {
  check_has(stage, !stage.last(), "recv_backward");
  Tensor dx = Tensor::empty(shape, DType::f32, MemCategory::workspace);
  comm::recv(*stage.pp, dx, stage.index() + 1, kPipelineTag);
  return dx;
}

Tensor send_forward_recv_backward(const PipelineStage& stage, const Tensor& x, const Shape& dx_shape) {
  check_has(stage, !stage.last(), "send_forward_recv_backward");
  Tensor dx = Tensor::empty(dx_shape, DType::f32, MemCategory::workspace);
  // Two nonblocking halves (the directions differ in dtype under bf16: x bf16, dx f32).
  std::array<comm::Request, 2> both{comm::irecv(*stage.pp, dx, stage.index() + 1, kPipelineTag),
                                    comm::isend(*stage.pp, x, stage.index() + 1, kPipelineTag)};
  comm::wait_all(both);
  return dx;
}

Tensor send_backward_recv_forward(const PipelineStage& stage, const Tensor& dx, const Shape& x_shape,
                                  DType x_dtype) {
  check_has(stage, !stage.first(), "send_backward_recv_forward");
  Tensor x = Tensor::empty(x_shape, x_dtype, MemCategory::activations);
  std::array<comm::Request, 2> both{comm::irecv(*stage.pp, x, stage.index() - 1, kPipelineTag),
                                    comm::isend(*stage.pp, dx, stage.index() - 1, kPipelineTag)};
  comm::wait_all(both);
  return x;
}

void sum_tied_embedding_grads(const PipelineStage& stage, const model::ModelConfig& config,
                              const std::vector<ParamShard>& grads) {
  if (!config.tie_word_embeddings() || !stage.pipelined() || !(stage.first() || stage.last())) return;
  const std::string name = model::weight_name(model::WeightKind::embed_tokens);
  const auto it = std::find_if(grads.begin(), grads.end(), [&](const ParamShard& g) { return g.name == name; });
  TSP_ASSERT(it != grads.end(), "pipeline: stage ", stage.index(), " of ", stage.stages(),
             " holds no tied embedding gradient");
  Tensor mine = it->local;
  TSP_CHECK_DTYPE(mine.dtype() == DType::f32 && mine.is_contiguous(),
                  "sum_tied_embedding_grads: gradients must be contiguous f32");
  Tensor other = Tensor::empty(mine.shape(), DType::f32, MemCategory::comm);
  const int peer = stage.first() ? stage.stages() - 1 : 0;
  comm::sendrecv(*stage.pp, mine, peer, other, peer, kTiedEmbeddingTag);
  float* g = mine.data<float>();
  const float* o = other.data<float>();
  const int64_t n = mine.numel();
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) g[i] += o[i];  // commutative: both ends get the same bits
}

}  // namespace tsp::parallel
