// Tensor: a strided view (shape, strides in elements, offset) over reference-counted storage
// that a device's allocator owns under a MemCategory. Views share storage; copies are explicit.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "tsp/core/check.h"
#include "tsp/core/device.h"
#include "tsp/core/dtype.h"
#include "tsp/core/memory.h"
#include "tsp/core/shape.h"

namespace tsp {

// One allocation from the allocator of its device (on the CPU the MemoryLedger); freed (and
// un-accounted) by that allocator when the last view goes.
class Storage {
 public:
  Storage(size_t bytes, MemCategory category, Device device = Device::cpu);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  MemCategory category() const { return category_; }
  Device device() const { return device_; }

 private:
  DeviceAllocator* allocator_;
  void* data_;
  size_t bytes_;
  MemCategory category_;
  Device device_;
};

class Tensor {
 public:
  Tensor() = default;  // undefined tensor: defined() is false

  // Uninitialised contiguous tensor on `device`. Validates the shape before allocating.
  static Tensor empty(const Shape& shape, DType dtype, MemCategory category,
                      Device device = Device::cpu);
  static Tensor zeros(const Shape& shape, DType dtype, MemCategory category,
                      Device device = Device::cpu);
  // Contiguous host copy of a host tensor `src` converted to `dtype` (f32 <-> bf16 rounds to
  // nearest even).
  static Tensor copy_of(const Tensor& src, DType dtype, MemCategory category);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int rank() const { return shape_.rank(); }
  int64_t dim(int i) const { return shape_[i]; }
  int64_t stride(int i) const { return strides_[i]; }
  int64_t numel() const { return shape_.numel(); }
  DType dtype() const { return dtype_; }
  size_t element_size() const { return dtype_size(dtype_); }
  // Bytes spanned by the elements of this view if it were contiguous.
  size_t nbytes() const { return static_cast<size_t>(numel()) * element_size(); }
  MemCategory category() const;
  // The device of the storage; views, slices and copies keep it.
  Device device() const {
    TSP_CHECK(defined(), "device() of an undefined tensor");
    return storage_->device();
  }
  bool is_contiguous() const;
  // True if the last dimension has stride 1 (rows may be padded): what GEMM and kernels need.
  bool has_unit_inner_stride() const { return rank() == 0 || stride(-1) == 1 || dim(-1) <= 1; }

  // Typed host pointer to the first element of the view; throws DTypeError if T does not match,
  // DeviceError if the tensor is not on the CPU (as raw() and every host operation below).
  template <class T>
  T* data() const {
    TSP_CHECK_DTYPE(dtype_of_v<T> == dtype_, "tensor of dtype ", dtype_, " shape ", shape_,
                    " accessed as ", dtype_of_v<T>);
    return static_cast<T*>(raw());
  }
  void* raw() const;
  // Address of the first element on the tensor's own device, without the host check: for a
  // device's kernel backend, which passes it to its own kernels.
  void* device_ptr() const;

  // Views (share storage).
  Tensor slice(int dim, int64_t start, int64_t length) const;
  Tensor select(int dim, int64_t index) const;
  Tensor view(const Shape& shape) const;  // contiguous tensors only; -1 not supported
  Tensor transpose(int a, int b) const;

  // Element-wise copy with dtype conversion; shapes must match exactly.
  void copy_from(const Tensor& src);
  void fill(float value);
  void zero();
  // Contiguous f32 copy of any f32/bf16 tensor; convenient for tests and reductions.
  Tensor to_f32(MemCategory category = MemCategory::workspace) const;
  float item_f32(int64_t flat_index) const;  // reads element flat_index in row-major order

  std::string describe() const;  // "f32[2, 3] strides [3, 1]"

 private:
  std::shared_ptr<Storage> storage_;
  int64_t offset_ = 0;  // elements
  Shape shape_;
  Shape strides_;
  DType dtype_ = DType::f32;
};

// Throws ShapeError naming `what` and both shapes unless they are equal.
void check_same_shape(const Tensor& a, const Tensor& b, const char* what);

}  // namespace tsp
