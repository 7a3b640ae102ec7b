// Element types of tensors: f32 and bf16 for math, i32/i64 for token ids and positions, f16 only
// as a storage format read from checkpoints (widened on load). bf16 is stored as its upper 16
// bits; float -> bf16 and float -> f16 round to nearest even, NaN stays NaN.
#pragma once

#include <cstdint>
#include <cstring>
#include <ostream>
#include <string_view>

namespace tsp {

// f16 (IEEE binary16) is a storage dtype only: safetensors F16 and torch_dtype float16 checkpoints
// are read into f32 or bf16 tensors; no kernel computes in it (each checks its dtypes).
enum class DType : uint8_t { f32, bf16, i32, i64, f16 };

struct bf16 {
  uint16_t bits = 0;

  bf16() = default;
  explicit bf16(float f) : bits(round_from_float(f)) {}
  explicit operator float() const { return to_float(bits); }

  // Branch-free so that conversion loops vectorise.
  static uint16_t round_from_float(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const uint32_t quiet_nan = (u >> 16) | 0x0040u;  // keep sign and payload top, force quiet
    const bool is_nan = (u & 0x7fffffffu) > 0x7f800000u;
    return static_cast<uint16_t>(is_nan ? quiet_nan : rounded);
  }
  static float to_float(uint16_t b) {
    uint32_t u = static_cast<uint32_t>(b) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};
static_assert(sizeof(bf16) == 2);

// IEEE 754 binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits; subnormals, inf and NaN.
struct f16 {
  uint16_t bits = 0;

  f16() = default;
  explicit f16(float f) : bits(round_from_float(f)) {}
  explicit operator float() const { return to_float(bits); }

  // Exact: every binary16 value is a float.
  static float to_float(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0x1f) {
      u = sign | 0x7f800000u | (man << 13);  // inf, or NaN with its payload
    } else if (exp != 0) {
      u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    } else {  // zero or subnormal: man * 2^-24, exact in float
      float f = static_cast<float>(man) * 0x1p-24f;
      std::memcpy(&u, &f, 4);
      u |= sign;
    }
    float out;
    std::memcpy(&out, &u, 4);
    return out;
  }
  // Round to nearest even; beyond the largest finite value (65504) by half an ulp or more: inf.
  static uint16_t round_from_float(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
    u &= 0x7fffffffu;
    uint16_t out;
    if (u > 0x7f800000u) {
      out = static_cast<uint16_t>(0x7e00u | ((u >> 13) & 0x1ffu));  // quiet NaN, payload top
    } else if (u >= 0x47800000u) {  // >= 65536 (and inf): rounds to inf
      out = 0x7c00u;
    } else if (u < 0x38800000u) {
      // Below 2^-14: a subnormal (or zero) of step 2^-24. Adding 0.5 (exponent -1) puts the
      // step at the float's last mantissa bit, so the float addition rounds to nearest even.
      float a;
      std::memcpy(&a, &u, 4);
      a += 0.5f;
      uint32_t v;
      std::memcpy(&v, &a, 4);
      out = static_cast<uint16_t>(v - 0x3f000000u);
    } else {
      const uint32_t odd = (u >> 13) & 1u;  // ties to even
      u += (static_cast<uint32_t>(15 - 127) << 23) + 0xfffu + odd;
      out = static_cast<uint16_t>(u >> 13);  // a carry into the exponent is right (and 65520+ -> inf)
    }
    return static_cast<uint16_t>(out | sign);
  }
};
static_assert(sizeof(f16) == 2);

// Round a float to the nearest bf16 value and back: what bf16 storage does to a number.
inline float round_to_bf16(float f) { return bf16::to_float(bf16::round_from_float(f)); }

constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::bf16: return 2;
    case DType::i32: return 4;
    case DType::i64: return 8;
    case DType::f16: return 2;
  }
  return 0;
}

constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::bf16: return "bf16";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
    case DType::f16: return "f16";
  }
  return "?";
}

constexpr bool is_integer_dtype(DType t) { return t == DType::i32 || t == DType::i64; }

// Parses "f32"/"fp32"/"float32", "bf16"/"bfloat16", "i32"/"int32", "i64"/"int64";
// throws InvalidArgument otherwise.
DType parse_dtype(std::string_view name);

template <class T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::f32; };
template <> struct dtype_of<bf16> { static constexpr DType value = DType::bf16; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::i32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::i64; };
template <> struct dtype_of<f16> { static constexpr DType value = DType::f16; };
template <class T> inline constexpr DType dtype_of_v = dtype_of<T>::value;

inline std::ostream& operator<<(std::ostream& os, DType t) { return os << dtype_name(t); }

}  // namespace tsp
