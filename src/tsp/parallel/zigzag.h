// Zigzag token partition of a sequence over D ranks (TSP.md §3): the sequence is cut into 2D equal
// chunks and rank p holds chunks p and 2D-1-p, so every rank has one early and one late chunk.
#pragma once

#include <cstdint>

#include "tsp/core/tensor.h"

namespace tsp::parallel {

class Zigzag {
 public:
  // Throws InvalidArgument (naming S and 2D) unless seq > 0, degree >= 1, 0 <= rank < degree and
  // seq % (2 * degree) == 0. Allocates nothing.
  Zigzag(int64_t seq, int degree, int rank);
  static void validate(int64_t seq, int degree);

  int64_t seq() const { return seq_; }
  int degree() const { return degree_; }
  int rank() const { return rank_; }
  int64_t chunk() const { return seq_ / (2 * degree_); }
  int64_t local_len() const { return seq_ / degree_; }  // two chunks

  // Global position of local row i (0 <= i < local_len()) on rank `r`.
  int64_t global_position(int64_t i, int r) const;
  int64_t global_position(int64_t i) const { return global_position(i, rank_); }
  // [S/D] i32: this rank's global positions in local order.
  Tensor local_positions(MemCategory category = MemCategory::workspace) const;
  // [S] i32: rank 0's local positions, then rank 1's, ... (the order of an all-gather).
  Tensor gathered_positions(MemCategory category = MemCategory::workspace) const;
  // [B, S] (any dtype) -> contiguous [B, S/D] copy of this rank's columns.
  Tensor take_local(const Tensor& global, MemCategory category) const;
  // Inverse on one rank's part: writes local [B, S/D] into its columns of global [B, S].
  void put_local(const Tensor& local, const Tensor& global, int r) const;

 private:
  int64_t seq_;
  int degree_;
  int rank_;
};

}  // namespace tsp::parallel
