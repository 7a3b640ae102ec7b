// ShardedAdamW: one kernels::adamw_step per local piece. AdamW is element-wise, so updating the
// pieces of a tensor separately is bitwise the update of the whole tensor.
#include "tsp/parallel/sharded_adamw.h"

#include "tsp/core/check.h"

namespace tsp::parallel {

std::vector<ParamShard> zeros_like_shards(const std::vector<ParamShard>& like, DType dtype,
                                          MemCategory category) {
  std::vector<ParamShard> out;
  out.reserve(like.size());
  for (const ParamShard& p : like) {
    ParamShard s = p;
    s.local = Tensor::zeros(p.local_shape(), dtype, category);
    out.push_back(std::move(s));
  }
  return out;
}

namespace {

// Validates the weights before anything is allocated; returns their common dtype.
DType check_weights(const std::vector<ParamShard>& weights) {
  TSP_CHECK(!weights.empty(), "ShardedAdamW: no parameters");
  const DType dtype = weights.front().local.dtype();
  for (const ParamShard& p : weights) {
    TSP_CHECK(p.local.defined(), "ShardedAdamW: parameter ", p.name, " has no local tensor");
    TSP_CHECK_DTYPE(p.local.dtype() == DType::f32 || p.local.dtype() == DType::bf16,
                    "ShardedAdamW: weights must be f32 or bf16, got ", p.name, " ", p.local.describe());
    TSP_CHECK_DTYPE(p.local.dtype() == dtype, "ShardedAdamW: weights mix dtypes: ", weights.front().name,
                    " is ", dtype, ", ", p.name, " is ", p.local.dtype());
    TSP_CHECK_SHAPE(p.local.shape() == p.local_shape(), "ShardedAdamW: parameter ", p.name, " local ",
                    p.local.describe(), " does not match its shard shape ", p.local_shape());
    TSP_CHECK_T(LayoutError, p.local.is_contiguous(), "ShardedAdamW: parameter ", p.name,
                " must be contiguous, got ", p.local.describe());
  }
  return dtype;
}

}  // namespace

ShardedAdamW::ShardedAdamW(const std::vector<ParamShard>& weights, const ShardedAdamWConfig& config)
    : config_(config), weight_dtype_(check_weights(weights)) {
  exp_avg_ = zeros_like_shards(weights, DType::f32, MemCategory::optimizer);
  exp_avg_sq_ = zeros_like_shards(weights, DType::f32, MemCategory::optimizer);
  if (weight_dtype_ != DType::f32) {
    masters_ = zeros_like_shards(weights, DType::f32, MemCategory::optimizer);
    for (size_t i = 0; i < weights.size(); ++i) masters_[i].local.copy_from(weights[i].local);
  }
}

void ShardedAdamW::set_steps(int64_t steps) {
  TSP_CHECK_GE(steps, int64_t{0}, "ShardedAdamW::set_steps");
  steps_ = steps;
}

kernels::AdamWOptions ShardedAdamW::options_for(const ParamShard& param, double lr) const {
  return kernels::adamw_options(config_, param.full_shape.rank(), lr);
}

void ShardedAdamW::check_layout(const std::vector<ParamShard>& other, const char* what) const {
  TSP_CHECK_EQ(other.size(), exp_avg_.size(), "ShardedAdamW::step: ", what, " have another number of shards");
  for (size_t i = 0; i < other.size(); ++i) {
    const ParamShard& a = exp_avg_[i];
    const ParamShard& b = other[i];
    TSP_CHECK(a.name == b.name && a.kind == b.kind && a.offset == b.offset && a.extent == b.extent &&
                  a.full_shape == b.full_shape,
              "ShardedAdamW::step: ", what, " shard ", i, " is ", b.name, " ", b.full_shape, " offset ",
              b.offset, " extent ", b.extent, ", the optimizer holds ", a.name, " ", a.full_shape, " offset ",
              a.offset, " extent ", a.extent);
    TSP_CHECK_SHAPE(b.local.defined() && b.local.shape() == a.local.shape(), "ShardedAdamW::step: ", what,
                    " ", b.name, " local ", b.local.describe(), ", expected ", a.local.shape());
  }
}

void ShardedAdamW::step(const std::vector<ParamShard>& weights, const std::vector<ParamShard>& grads,
                        double lr) {
  check_layout(weights, "weights");
  check_layout(grads, "gradients");
  for (size_t i = 0; i < weights.size(); ++i) {
    TSP_CHECK_DTYPE(weights[i].local.dtype() == weight_dtype_, "ShardedAdamW::step: weight ", weights[i].name,
                    " is ", weights[i].local.dtype(), ", the optimizer was built for ", weight_dtype_);
    TSP_CHECK_DTYPE(grads[i].local.dtype() == DType::f32, "ShardedAdamW::step: gradients must be f32, got ",
                    grads[i].name, " ", grads[i].local.describe());
    TSP_CHECK_T(LayoutError, weights[i].local.is_contiguous() && grads[i].local.is_contiguous(),
                "ShardedAdamW::step: ", weights[i].name, " weight ", weights[i].local.describe(), " and gradient ",
                grads[i].local.describe(), " must be contiguous");
  }
  ++steps_;
  for (size_t i = 0; i < weights.size(); ++i) {
    const kernels::AdamWOptions o = options_for(weights[i], lr);
    const Tensor& m = exp_avg_[i].local;
    const Tensor& v = exp_avg_sq_[i].local;
    if (has_masters()) {
      kernels::adamw_step(masters_[i].local, m, v, grads[i].local, steps_, o, weights[i].local);
    } else {
      kernels::adamw_step(weights[i].local, m, v, grads[i].local, steps_, o);
    }
  }
}

void ShardedAdamW::sync_weights_from_masters(const std::vector<ParamShard>& weights) const {
  if (!has_masters()) return;
  check_layout(weights, "weights");
  for (size_t i = 0; i < weights.size(); ++i) {
    Tensor local = weights[i].local;
    local.copy_from(masters_[i].local);
  }
}

int64_t ShardedAdamW::bytes() const {
  int64_t n = local_elements(exp_avg_) + local_elements(exp_avg_sq_) + local_elements(masters_);
  return n * static_cast<int64_t>(sizeof(float));
}

}  // namespace tsp::parallel
