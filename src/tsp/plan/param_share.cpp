// Parameter shares per layout and stage.
#include "tsp/plan/param_share.h"

#include "tsp/core/check.h"
#include "tsp/plan/collective_bytes.h"

namespace tsp::plan {

int64_t fsdp_layer_unit(const model::ModelConfig& c) { return c.params_per_layer(); }
int64_t fsdp_embedding_unit(const model::ModelConfig& c) { return c.embedding_params(); }
int64_t head_matrix_on_last_stage(const model::ModelConfig& c, int64_t pp) {
  if (!c.tie_word_embeddings()) return c.lm_head_params();
  return pp > 1 ? c.embedding_params() : 0;
}

int64_t fsdp_head_unit(const model::ModelConfig& c, int64_t pp) {
  return head_matrix_on_last_stage(c, pp) + c.hidden_size();
}

ParamShare param_share(const model::ModelConfig& c, const Layout& l, int64_t stage,
                       int64_t shard_rank) {
  validate(l);
  TSP_CHECK(stage >= 0 && stage < l.pp, "stage ", stage, " outside pp=", l.pp);
  const bool first = stage == 0, last = stage == l.pp - 1;
  const int64_t h = c.hidden_size(), Vh = c.embedding_params();
  ParamShare s;
  s.layers = c.num_hidden_layers() / l.pp;
  const int64_t head_matrix = head_matrix_on_last_stage(c, l.pp);
  if (l.kind == LayoutKind::fsdp_sp) {
    const int64_t D = l.sp;
    s.per_layer = balanced_block(fsdp_layer_unit(c), D, shard_rank);
    if (first) s.embedding = balanced_block(fsdp_embedding_unit(c), D, shard_rank);
    if (last) s.head = balanced_block(fsdp_head_unit(c, l.pp), D, shard_rank);
    return s;
  }
  const int64_t n = l.weight_shards();  // divides every matrix when the layout is valid
  s.layer_norms = c.norm_params_per_layer();
  // The q/k/v biases are split with their heads, as the projections' rows are.
  s.per_layer = (c.matrix_params_per_layer() + c.bias_params_per_layer()) / n + s.layer_norms;
  if (first) s.embedding = Vh / n;
  if (last) {
    s.head = head_matrix / n;
    s.final_norm = h;
  }
  return s;
}

}  // namespace tsp::plan
