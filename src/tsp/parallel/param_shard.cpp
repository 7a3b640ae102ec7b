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
  size_t i = 0;  // the spec of shards[k]: specs are searched forward, so the order is checked too
  for (const ParamShard& s : shards) {
    while (i < specs.size() && specs[i].name != s.name) ++i;
    TSP_CHECK(i < specs.size(), "initialize_shards: ", s.name,
              " is not a tensor of the model, or not in weight_specs order");
    copy_shard_from_full(s, model::initial_value(specs[i], i, seed));
    ++i;
  }
}

std::vector<ParamShard> replica_view(const model::ModelConfig& config, const std::vector<ParamShard>& mine,
                                     bool counts_replicated) {
  TSP_CHECK(!mine.empty(), "replica_view: no shards");
  const DType dtype = mine.front().local.dtype();
  std::vector<ParamShard> view;
  size_t k = 0;
  for (const model::WeightSpec& spec : model::weight_specs(config)) {
    const bool held = k < mine.size() && mine[k].name == spec.name;
    ParamShard s;
    if (held) s = mine[k++];
    s.name = spec.name;
    s.full_shape = spec.shape;
    const bool whole_here = held && !s.mirror && (s.kind != ShardKind::replicated || counts_replicated);
    if (s.kind == ShardKind::replicated || !held || s.mirror) {
      s.kind = ShardKind::rows;
      s.offset = 0;
      s.extent = whole_here ? spec.shape[0] : 0;
      if (!whole_here) s.local = Tensor::empty(s.local_shape(), dtype, MemCategory::workspace);
    }
    s.mirror = false;
    view.push_back(std::move(s));
  }
  TSP_CHECK(k == mine.size(), "replica_view: ", mine[k].name, " is not a tensor of the model, or not in "
            "weight_specs order");
  return view;
}

}  // namespace tsp::parallel
