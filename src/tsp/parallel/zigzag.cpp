// Zigzag partition arithmetic and the copies between global [B, S] and local [B, S/D] tensors.
#include "tsp/parallel/zigzag.h"

#include "tsp/core/check.h"

namespace tsp::parallel {

void Zigzag::validate(int64_t seq, int degree) {
  TSP_CHECK(degree >= 1, "zigzag: the degree must be >= 1, got ", degree);
  TSP_CHECK(seq > 0 && seq % (2 * static_cast<int64_t>(degree)) == 0, "sequence length S=", seq,
            " is not divisible by 2*D=", 2 * static_cast<int64_t>(degree),
            " (the zigzag partition cuts each sequence into 2D equal chunks); choose S as a "
            "multiple of ", 2 * static_cast<int64_t>(degree));
}

Zigzag::Zigzag(int64_t seq, int degree, int rank) : seq_(seq), degree_(degree), rank_(rank) {
  validate(seq, degree);
  TSP_CHECK(rank >= 0 && rank < degree, "zigzag: rank ", rank, " is outside [0, ", degree, ")");
}

int64_t Zigzag::global_position(int64_t i, int r) const {
  const int64_t c = chunk();
  return i < c ? r * c + i : (2 * degree_ - 1 - r) * c + (i - c);
}

Tensor Zigzag::local_positions(MemCategory category) const {
  Tensor p = Tensor::empty({local_len()}, DType::i32, category);
  int32_t* d = p.data<int32_t>();
  for (int64_t i = 0; i < local_len(); ++i) d[i] = static_cast<int32_t>(global_position(i));
  return p;
}

Tensor Zigzag::gathered_positions(MemCategory category) const {
  Tensor p = Tensor::empty({seq_}, DType::i32, category);
  int32_t* d = p.data<int32_t>();
  for (int r = 0; r < degree_; ++r)
    for (int64_t i = 0; i < local_len(); ++i)
      d[r * local_len() + i] = static_cast<int32_t>(global_position(i, r));
  return p;
}

Tensor Zigzag::take_local(const Tensor& global, MemCategory category) const {
  TSP_CHECK_SHAPE(global.rank() == 2 && global.dim(1) == seq_, "zigzag: expected [B, ", seq_,
                  "], got ", global.describe());
  const int64_t c = chunk();
  Tensor local = Tensor::empty({global.dim(0), local_len()}, global.dtype(), category);
  local.slice(1, 0, c).copy_from(global.slice(1, rank_ * c, c));
  local.slice(1, c, c).copy_from(global.slice(1, (2 * degree_ - 1 - rank_) * c, c));
  return local;
}

void Zigzag::put_local(const Tensor& local, const Tensor& global, int r) const {
  TSP_CHECK_SHAPE(global.rank() == 2 && global.dim(1) == seq_ && local.rank() == 2 &&
                      local.dim(0) == global.dim(0) && local.dim(1) == local_len(),
                  "zigzag: put_local of ", local.describe(), " into ", global.describe());
  const int64_t c = chunk();
  global.slice(1, r * c, c).copy_from(local.slice(1, 0, c));
  global.slice(1, (2 * degree_ - 1 - r) * c, c).copy_from(local.slice(1, c, c));
}

}  // namespace tsp::parallel
