// Gradient reductions over shard lists: packed all-reduces (one buffer for the replicated gains,
// a bounded staging buffer over dp) and the global norm as one all-gather of per-rank sums.
#include "tsp/parallel/sharded_grad.h"

#include <algorithm>
#include <bit>
#include <cmath>

#include "tsp/comm/collectives.h"
#include "tsp/core/check.h"
#include "tsp/kernels/sum_of_squares.h"

namespace tsp::parallel {
namespace {

void check_grads(const std::vector<ParamShard>& grads, const char* what) {
  for (const ParamShard& g : grads) {
    TSP_CHECK_DTYPE(g.local.defined() && g.local.dtype() == DType::f32, what, ": gradient ", g.name,
                    " must be f32, got ", g.local.defined() ? g.local.describe() : std::string("undefined"));
    TSP_CHECK_T(LayoutError, g.local.is_contiguous(), what, ": gradient ", g.name, " must be contiguous, got ",
                g.local.describe());
  }
}

// The gradient as a flat view (contiguous, checked).
Tensor flat(const Tensor& t) { return t.view(Shape{t.numel()}); }

// Sums `tensors` over `comm` with as few all_reduce calls as the staging capacity allows:
// consecutive small tensors share the staging buffer; a tensor of at least `capacity` elements is
// reduced in place, in chunks of `capacity`.
void all_reduce_packed(comm::Communicator& comm, const std::vector<Tensor>& tensors, int64_t capacity) {
  int64_t small_total = 0;
  for (const Tensor& t : tensors) {
    if (t.numel() < capacity) small_total += t.numel();
  }
  Tensor staging;
  if (small_total > 0) {
    staging = Tensor::empty(Shape{std::min(small_total, capacity)}, DType::f32, MemCategory::comm);
  }
  std::vector<Tensor> packed;  // flat views of the tensors currently in `staging`
  int64_t used = 0;
  auto flush = [&] {
    if (used == 0) return;
    Tensor buf = staging.slice(0, 0, used);
    comm::all_reduce(comm, buf);
    int64_t at = 0;
    for (Tensor& f : packed) {
      f.copy_from(buf.slice(0, at, f.numel()));
      at += f.numel();
    }
    packed.clear();
    used = 0;
  };
  for (const Tensor& t : tensors) {
    const int64_t n = t.numel();
    if (n == 0) continue;
    if (n >= capacity) {  // large: in place, in bounded chunks
      Tensor f = flat(t);
      for (int64_t at = 0; at < n; at += capacity) {
        Tensor chunk = f.slice(0, at, std::min(capacity, n - at));
        comm::all_reduce(comm, chunk);
      }
      continue;
    }
    if (used + n > staging.numel()) flush();
    staging.slice(0, used, n).copy_from(flat(t));
    packed.push_back(flat(t));
    used += n;
  }
  flush();
}

}  // namespace

void sum_replicated_grads(comm::Communicator& group, const std::vector<ParamShard>& grads) {
  check_grads(grads, "sum_replicated_grads");
  std::vector<Tensor> replicated;
  int64_t total = 0;
  for (const ParamShard& g : grads) {
    if (g.kind != ShardKind::replicated) continue;
    replicated.push_back(g.local);
    total += g.local.numel();
  }
  if (group.size() == 1 || total == 0) return;
  all_reduce_packed(group, replicated, total + 1);  // capacity above the total: one buffer, one call
}

void sum_over_replicas(comm::Communicator& dp, const std::vector<ParamShard>& grads) {
  check_grads(grads, "sum_over_replicas");
  if (dp.size() == 1) return;
  std::vector<Tensor> all;
  all.reserve(grads.size());
  for (const ParamShard& g : grads) all.push_back(g.local);
  all_reduce_packed(dp, all, kGradStagingBytes / static_cast<int64_t>(sizeof(float)));
}

double global_grad_norm(comm::Communicator& group, const std::vector<ParamShard>& grads) {
  check_grads(grads, "global_grad_norm");
  double local = 0;
  for (const ParamShard& g : grads) {
    if (g.kind == ShardKind::replicated && group.rank() != 0) continue;  // counted once, by rank 0
    local = kernels::add_sum_of_squares(g.local, local);
  }
  // The doubles travel as their bits (the collectives have no f64); every rank adds the same
  // values in the same (rank) order, so all ranks agree exactly.
  Tensor mine = Tensor::empty(Shape{1}, DType::i64, MemCategory::comm);
  mine.data<int64_t>()[0] = std::bit_cast<int64_t>(local);
  Tensor all = Tensor::empty(Shape{group.size()}, DType::i64, MemCategory::comm);
  comm::all_gather(group, mine, all);
  double sum = 0;
  for (int r = 0; r < group.size(); ++r) sum += std::bit_cast<double>(all.data<int64_t>()[r]);
  return std::sqrt(sum);
}

ClipResult clip_grad_norm(comm::Communicator& group, const std::vector<ParamShard>& grads, double max_norm) {
  return clip_grad_norm(group, grads, grads, max_norm);
}

ClipResult clip_grad_norm(comm::Communicator& group, const std::vector<ParamShard>& counted,
                          const std::vector<ParamShard>& grads, double max_norm) {
  check_grads(grads, "clip_grad_norm");
  ClipResult r;
  r.norm = global_grad_norm(group, counted);
  if (!(max_norm > 0) || !std::isfinite(r.norm) || !(r.norm > max_norm)) return r;
  r.scale = max_norm / (r.norm + 1e-6);
  r.clipped = true;
  const float f = static_cast<float>(r.scale);
  for (const ParamShard& s : grads) {
    float* g = s.local.data<float>();
    const int64_t n = s.local.numel();
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; ++i) g[i] *= f;
  }
  return r;
}

}  // namespace tsp::parallel
