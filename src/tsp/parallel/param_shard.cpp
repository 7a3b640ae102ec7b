// ParamShard views and copies between a shard and its logical tensor.
#include "tsp/parallel/param_shard.h"

#include "tsp/core/check.h"
#include "tsp/model/model_weights.h"
#include "tsp/model/weight_names.h"

namespace tsp::parallel {

Shape ParamShard::local_shape() const {
  switch (kind) {
    case ShardKind::replicated: return full_shape;
    case ShardKind::rows: {
      Shape s = full_shape;
      s[0] = extent;
      return s;
    }
    case ShardKind::cols: return Shape{full_shape[0], extent};
  }
  TSP_THROW(InternalError, "ParamShard: unknown kind");
}

Tensor ParamShard::view_of_full(const Tensor& full) const {
  TSP_CHECK_SHAPE(full.shape() == full_shape, "ParamShard ", name, ": expected the full shape ",
                  full_shape, ", got ", full.describe());
  switch (kind) {
    case ShardKind::replicated: return full;
    case ShardKind::rows: return full.slice(0, offset, extent);
    case ShardKind::cols: return full.slice(1, offset, extent);
  }
  TSP_THROW(InternalError, "ParamShard: unknown kind");
}

void copy_shard_from_full(const ParamShard& shard, const Tensor& full) {
  Tensor local = shard.local;
  local.copy_from(shard.view_of_full(full));
}

void copy_shard_to_full(const ParamShard& shard, const Tensor& full) {
  Tensor part = shard.view_of_full(full);
  part.copy_from(shard.local);
}

int64_t local_elements(const std::vector<ParamShard>& shards) {
  int64_t n = 0;
  for (const ParamShard& s : shards) n += s.local.numel();
  return n;
}

void initialize_shards(const model::ModelConfig& config, uint64_t seed,
                       const std::vector<ParamShard>& shards) {
  const std::vector<model::WeightSpec> specs = model::weight_specs(config);
  TSP_CHECK_EQ(specs.size(), shards.size(), "initialize_shards: shards of another model");
  for (size_t i = 0; i < specs.size(); ++i) {
    TSP_ASSERT(shards[i].name == specs[i].name, "initialize_shards: shard ", i, " is ", shards[i].name,
               ", expected ", specs[i].name);
    copy_shard_from_full(shards[i], model::initial_value(specs[i], i, seed));
  }
}

}  // namespace tsp::parallel
