// Tensor views, allocation through the device's allocator (the ledger on the CPU), and
// dtype-converting host copies.
#include "tsp/core/tensor.h"

#include <algorithm>
#include <cstring>
#include <sstream>

namespace tsp {

Storage::Storage(size_t bytes, MemCategory category, Device device)
    : allocator_(&allocator_for(device)),
      data_(allocator_->allocate(bytes, category)),
      bytes_(bytes),
      category_(category),
      device_(device) {}

Storage::~Storage() { allocator_->deallocate(data_, bytes_, category_); }

namespace {

// Calls fn(element_offset_of_a, element_offset_of_b, i) for every element in row-major order.
template <class Fn>
void for_each_index(const Shape& shape, const Shape& sa, const Shape& sb, Fn&& fn) {
  const int r = shape.rank();
  const int64_t n = shape.numel();
  if (n == 0) return;
  // Extents and strides copied once: Shape::operator[] checks its index on every call.
  int64_t idx[kMaxRank] = {}, ext[kMaxRank] = {}, stride_a[kMaxRank] = {}, stride_b[kMaxRank] = {};
  for (int d = 0; d < r; ++d) {
    ext[d] = shape[d];
    stride_a[d] = sa[d];
    stride_b[d] = sb[d];
  }
  int64_t oa = 0, ob = 0;
  for (int64_t i = 0; i < n; ++i) {
    fn(oa, ob, i);
    for (int d = r - 1; d >= 0; --d) {
      if (++idx[d] < ext[d]) {
        oa += stride_a[d];
        ob += stride_b[d];
        break;
      }
      oa -= stride_a[d] * (ext[d] - 1);
      ob -= stride_b[d] * (ext[d] - 1);
      idx[d] = 0;
    }
  }
}

float load_f32(const void* base, DType t, int64_t off) {
  switch (t) {
    case DType::f32: return static_cast<const float*>(base)[off];
    case DType::bf16: return static_cast<float>(static_cast<const bf16*>(base)[off]);
    case DType::i32: return static_cast<float>(static_cast<const int32_t*>(base)[off]);
    case DType::i64: return static_cast<float>(static_cast<const int64_t*>(base)[off]);
    case DType::f16: return static_cast<float>(static_cast<const f16*>(base)[off]);
  }
  return 0.f;
}

void store_f32(void* base, DType t, int64_t off, float v) {
  switch (t) {
    case DType::f32: static_cast<float*>(base)[off] = v; break;
    case DType::bf16: static_cast<bf16*>(base)[off] = bf16(v); break;
    case DType::i32: static_cast<int32_t*>(base)[off] = static_cast<int32_t>(v); break;
    case DType::i64: static_cast<int64_t*>(base)[off] = static_cast<int64_t>(v); break;
    case DType::f16: static_cast<f16*>(base)[off] = f16(v); break;
  }
}


// Converts one contiguous run of n floating elements; the loops vectorise for each pair.
void convert_run(const void* src, DType sd, void* dst, DType dd, int64_t n) {
  if (sd == DType::bf16 && dd == DType::f32) {
    const uint16_t* s = static_cast<const uint16_t*>(src);
    uint32_t* d = static_cast<uint32_t*>(dst);
    for (int64_t i = 0; i < n; ++i) d[i] = static_cast<uint32_t>(s[i]) << 16;
  } else if (sd == DType::f32 && dd == DType::bf16) {
    const float* s = static_cast<const float*>(src);
    bf16* d = static_cast<bf16*>(dst);
    for (int64_t i = 0; i < n; ++i) d[i] = bf16(s[i]);
  } else if (sd != dd) {  // f16 (storage only) to or from f32/bf16: through float, exactly widened
    for (int64_t i = 0; i < n; ++i) store_f32(dst, dd, i, load_f32(src, sd, i));
  } else {
    std::memmove(dst, src, static_cast<size_t>(n) * dtype_size(sd));
  }
}

}  // namespace

Tensor Tensor::empty(const Shape& shape, DType dtype, MemCategory category, Device device) {
  for (int64_t d : shape) TSP_CHECK_SHAPE(d >= 0, "negative extent in shape ", shape);
  int64_t bytes = 0;
  TSP_CHECK_T(OutOfMemory, !__builtin_mul_overflow(shape.numel(), static_cast<int64_t>(dtype_size(dtype)), &bytes),
              "a ", dtype, " tensor of shape ", shape, " needs more than 2^63 bytes");
  Tensor t;
  t.shape_ = shape;
  t.strides_ = shape.contiguous_strides();
  t.dtype_ = dtype;
  t.storage_ = std::make_shared<Storage>(t.nbytes(), category, device);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, MemCategory category, Device device) {
  Tensor t = empty(shape, dtype, category, device);
  if (device == Device::cpu) {
    std::memset(t.raw(), 0, t.nbytes());
  } else {
    allocator_for(device).fill_zero(t.device_ptr(), t.nbytes());
  }
  return t;
}

Tensor Tensor::copy_of(const Tensor& src, DType dtype, MemCategory category) {
  Tensor t = empty(src.shape(), dtype, category);
  t.copy_from(src);
  return t;
}

MemCategory Tensor::category() const {
  TSP_CHECK(defined(), "category() of an undefined tensor");
  return storage_->category();
}

void* Tensor::raw() const {
  TSP_CHECK(defined(), "data access to an undefined tensor");
  TSP_CHECK_T(DeviceError, storage_->device() == Device::cpu, "host access to ", describe(), " on ",
              device_name(storage_->device()), ": only cpu tensors can be read or written here");
  return static_cast<char*>(storage_->data()) + offset_ * static_cast<int64_t>(element_size());
}

void* Tensor::device_ptr() const {
  TSP_CHECK(defined(), "data access to an undefined tensor");
  return static_cast<char*>(storage_->data()) + offset_ * static_cast<int64_t>(element_size());
}

bool Tensor::is_contiguous() const {
  if (numel() == 0) return true;
  int64_t expected = 1;
  for (int i = rank() - 1; i >= 0; --i) {
    if (shape_[i] != 1 && strides_[i] != expected) return false;
    expected *= shape_[i];
  }
  return true;
}

Tensor Tensor::slice(int d, int64_t start, int64_t length) const {
  const int k = shape_.normalize(d);
  TSP_CHECK_SHAPE(start >= 0 && length >= 0 && start + length <= shape_[k], "slice [", start, ", ",
                  start + length, ") of dimension ", d, " out of range for ", describe());
  Tensor t = *this;
  t.offset_ += start * strides_[k];
  t.shape_[k] = length;
  return t;
}

Tensor Tensor::select(int d, int64_t index) const {
  const int k = shape_.normalize(d);
  TSP_CHECK_SHAPE(index >= 0 && index < shape_[k], "index ", index, " of dimension ", d,
                  " out of range for ", describe());
  Tensor t;
  t.storage_ = storage_;
  t.dtype_ = dtype_;
  t.offset_ = offset_ + index * strides_[k];
  for (int i = 0; i < rank(); ++i) {
    if (i == k) continue;
    t.shape_.push_back(shape_[i]);
    t.strides_.push_back(strides_[i]);
  }
  return t;
}

Tensor Tensor::view(const Shape& shape) const {
  TSP_CHECK_T(LayoutError, is_contiguous(), "view ", shape, " of a non-contiguous tensor ", describe());
  TSP_CHECK_SHAPE(shape.numel() == numel(), "view ", shape, " has ", shape.numel(), " elements but ",
                  describe(), " has ", numel());
  Tensor t = *this;
  t.shape_ = shape;
  t.strides_ = shape.contiguous_strides();
  return t;
}

Tensor Tensor::transpose(int a, int b) const {
  const int i = shape_.normalize(a), j = shape_.normalize(b);
  Tensor t = *this;
  std::swap(t.shape_[i], t.shape_[j]);
  std::swap(t.strides_[i], t.strides_[j]);
  return t;
}

void Tensor::copy_from(const Tensor& src) {
  check_same_shape(*this, src, "copy_from");
  TSP_CHECK_T(DeviceError, device() == Device::cpu && src.device() == Device::cpu, "copy_from ",
              device_name(src.device()), " to ", device_name(device()),
              ": only copies between cpu tensors are implemented");
  TSP_CHECK_DTYPE(is_integer_dtype(dtype_) == is_integer_dtype(src.dtype_), "copy_from between ", src.dtype_,
                  " and ", dtype_, " is not supported");
  if (dtype_ == src.dtype_ && is_contiguous() && src.is_contiguous()) {
    std::memmove(raw(), src.raw(), nbytes());
    return;
  }
  void* dst_base = raw();
  const void* src_base = src.raw();
  if (rank() >= 1 && has_unit_inner_stride() && src.has_unit_inner_stride() && !is_integer_dtype(dtype_)) {
    // Row-wise fast path: iterate over all leading indices, convert each contiguous last-dim run.
    const int64_t inner = shape_[-1];
    Shape outer_shape, outer_dst, outer_src;
    for (int d = 0; d + 1 < rank(); ++d) {
      outer_shape.push_back(shape_[d]);
      outer_dst.push_back(strides_[d]);
      outer_src.push_back(src.strides_[d]);
    }
    const size_t des = element_size(), ses = src.element_size();
    for_each_index(outer_shape, outer_dst, outer_src, [&](int64_t od, int64_t os, int64_t) {
      convert_run(static_cast<const char*>(src_base) + os * static_cast<int64_t>(ses), src.dtype_,
                  static_cast<char*>(dst_base) + od * static_cast<int64_t>(des), dtype_, inner);
    });
    return;
  }
  if (dtype_ == src.dtype_ && is_integer_dtype(dtype_)) {
    const size_t es = element_size();
    for_each_index(shape_, strides_, src.strides_, [&](int64_t od, int64_t os, int64_t) {
      std::memcpy(static_cast<char*>(dst_base) + od * es, static_cast<const char*>(src_base) + os * es, es);
    });
    return;
  }
  const DType sd = src.dtype_, dd = dtype_;
  for_each_index(shape_, strides_, src.strides_, [&](int64_t od, int64_t os, int64_t) {
    store_f32(dst_base, dd, od, load_f32(src_base, sd, os));
  });
}

void Tensor::fill(float value) {
  void* base = raw();
  const DType dt = dtype_;
  if (is_contiguous()) {  // the common case (accumulators, caches): one pass, no index arithmetic
    const int64_t n = numel();
    switch (dt) {
      case DType::f32: std::fill_n(static_cast<float*>(base), n, value); return;
      case DType::bf16: std::fill_n(static_cast<bf16*>(base), n, bf16(value)); return;
      case DType::f16: std::fill_n(static_cast<f16*>(base), n, f16(value)); return;
      case DType::i32: std::fill_n(static_cast<int32_t*>(base), n, static_cast<int32_t>(value)); return;
      case DType::i64: std::fill_n(static_cast<int64_t*>(base), n, static_cast<int64_t>(value)); return;
    }
  }
  for_each_index(shape_, strides_, strides_, [&](int64_t o, int64_t, int64_t) { store_f32(base, dt, o, value); });
}

void Tensor::zero() { fill(0.f); }

Tensor Tensor::to_f32(MemCategory category) const { return copy_of(*this, DType::f32, category); }

float Tensor::item_f32(int64_t flat_index) const {
  TSP_CHECK_SHAPE(flat_index >= 0 && flat_index < numel(), "flat index ", flat_index,
                  " out of range for ", describe());
  int64_t off = 0, rem = flat_index;
  for (int d = rank() - 1; d >= 0; --d) {
    off += (rem % shape_[d]) * strides_[d];
    rem /= shape_[d];
  }
  return load_f32(raw(), dtype_, off);
}

std::string Tensor::describe() const {
  std::ostringstream os;
  if (!defined()) return "undefined tensor";
  os << dtype_ << shape_ << " strides " << strides_;
  return os.str();
}

void check_same_shape(const Tensor& a, const Tensor& b, const char* what) {
  TSP_CHECK_SHAPE(a.shape() == b.shape(), what, ": shapes differ: ", a.describe(), " vs ", b.describe());
}

}  // namespace tsp
