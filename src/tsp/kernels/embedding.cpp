// Embedding kernels: ids are validated before anything is written; the backward parallelises over
// column blocks so that each gradient element is summed over tokens in index order (deterministic).
#include "tsp/kernels/embedding.h"

#include <algorithm>
#include <cstring>

#include "tsp/kernels/cpu_backend.h"

namespace tsp::kernels {
namespace {

constexpr int64_t kCol = 128;

int64_t load_id(const Tensor& t, int64_t i) {
  if (t.dtype() == DType::i32) return t.data<int32_t>()[i * t.stride(0)];
  return t.data<int64_t>()[i * t.stride(0)];
}

void check_ids(const Tensor& ids, const char* op) {
  TSP_CHECK_SHAPE(ids.defined() && ids.rank() == 1, op, ": ids must be [N], got ", ids.describe());
  TSP_CHECK_DTYPE(ids.dtype() == DType::i32 || ids.dtype() == DType::i64, op,
                  ": ids must be i32 or i64, got ", ids.describe());
}

void check_rows(const Tensor& t, const char* name, const char* op, bool f32_only) {
  TSP_CHECK_SHAPE(t.defined() && t.rank() == 2, op, ": ", name, " must be 2-D, got ", t.describe());
  TSP_CHECK_DTYPE(t.dtype() == DType::f32 || (!f32_only && t.dtype() == DType::bf16), op, ": ",
                  name, f32_only ? " must be f32" : " must be f32 or bf16", ", got ", t.describe());
  TSP_CHECK_T(LayoutError, t.has_unit_inner_stride(), op, ": ", name,
              " needs unit inner stride, got ", t.describe());
}

// Local row of every token (-1: not local, skipped). Throws on a foreign id under `error`.
Tensor local_rows(const Tensor& ids, int64_t rows, const EmbeddingOptions& o, const char* op) {
  const int64_t n = ids.dim(0);
  Tensor local = Tensor::empty({n}, DType::i64, MemCategory::workspace);
  int64_t* lr = local.data<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t id = load_id(ids, i);
    const int64_t r = id - o.row_offset;
    const bool inside = id >= o.row_offset && r < rows;
    TSP_CHECK(inside || o.out_of_range == OutOfRangeIds::skip, op, ": token ", i, " has id ", id,
              " outside this table's rows [", o.row_offset, ", ", o.row_offset + rows,
              ") (ids ", ids.describe(), ")");
    lr[i] = inside ? r : -1;
  }
  return local;
}

const char* row(const Tensor& t, int64_t r) {
  return static_cast<const char*>(t.raw()) + r * t.stride(0) * static_cast<int64_t>(t.element_size());
}

}  // namespace

void CpuBackend::embedding_forward(const Tensor& ids, const Tensor& table, const Tensor& out,
                                   const EmbeddingOptions& options) {
  const char* op = "embedding_forward";
  check_ids(ids, op);
  check_rows(table, "table", op, false);
  check_rows(out, "out", op, false);
  TSP_CHECK_SHAPE(out.dim(0) == ids.dim(0) && out.dim(1) == table.dim(1), op, ": out ",
                  out.describe(), " must be [N = ", ids.dim(0), ", h = ", table.dim(1),
                  "] for ids ", ids.describe(), " and table ", table.describe());
  const int64_t n = ids.dim(0), h = table.dim(1);
  const Tensor local = local_rows(ids, table.dim(0), options, op);
  const int64_t* lr = local.data<int64_t>();
  const DType td = table.dtype(), od = out.dtype();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    char* o = const_cast<char*>(row(out, i));
    if (lr[i] < 0) {
      std::memset(o, 0, static_cast<size_t>(h) * out.element_size());
      continue;
    }
    const char* t = row(table, lr[i]);
    if (td == od) {
      std::memcpy(o, t, static_cast<size_t>(h) * out.element_size());
    } else if (td == DType::bf16) {  // bf16 -> f32
      const uint16_t* s = reinterpret_cast<const uint16_t*>(t);
      float* d = reinterpret_cast<float*>(o);
#pragma omp simd
      for (int64_t j = 0; j < h; ++j) d[j] = bf16::to_float(s[j]);
    } else {  // f32 -> bf16
      const float* s = reinterpret_cast<const float*>(t);
      uint16_t* d = reinterpret_cast<uint16_t*>(o);
#pragma omp simd
      for (int64_t j = 0; j < h; ++j) d[j] = bf16::round_from_float(s[j]);
    }
  }
}

void CpuBackend::embedding_backward(const Tensor& ids, const Tensor& dout, const Tensor& dtable,
                                    const EmbeddingOptions& options) {
  const char* op = "embedding_backward";
  check_ids(ids, op);
  check_rows(dout, "dout", op, false);
  check_rows(dtable, "dtable", op, true);
  TSP_CHECK_SHAPE(dout.dim(0) == ids.dim(0) && dout.dim(1) == dtable.dim(1), op, ": dout ",
                  dout.describe(), " must be [N = ", ids.dim(0), ", h = ", dtable.dim(1),
                  "] for ids ", ids.describe(), " and dtable ", dtable.describe());
  const int64_t n = ids.dim(0), h = dtable.dim(1);
  const Tensor local = local_rows(ids, dtable.dim(0), options, op);
  const int64_t* lr = local.data<int64_t>();
  const bool bf = dout.dtype() == DType::bf16;
#pragma omp parallel for schedule(static)
  for (int64_t c0 = 0; c0 < h; c0 += kCol) {
    const int64_t w = std::min(kCol, h - c0);
    for (int64_t i = 0; i < n; ++i) {
      if (lr[i] < 0) continue;
      float* d = reinterpret_cast<float*>(const_cast<char*>(row(dtable, lr[i]))) + c0;
      if (bf) {
        const uint16_t* s = reinterpret_cast<const uint16_t*>(row(dout, i)) + c0;
#pragma omp simd
        for (int64_t j = 0; j < w; ++j) d[j] += bf16::to_float(s[j]);
      } else {
        const float* s = reinterpret_cast<const float*>(row(dout, i)) + c0;
#pragma omp simd
        for (int64_t j = 0; j < w; ++j) d[j] += s[j];
      }
    }
  }
}

}  // namespace tsp::kernels
