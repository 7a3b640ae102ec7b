// Element types of tensors: f32 and bf16 for math, i32/i64 for token ids and positions.
// bf16 is stored as its upper 16 bits; float -> bf16 rounds to nearest even, NaN stays NaN.
#pragma once

#include <cstdint>
#include <cstring>
#include <ostream>
#include <string_view>

namespace tsp {

enum class DType : uint8_t { f32, bf16, i32, i64 };

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

// Round a float to the nearest bf16 value and back: what bf16 storage does to a number.
inline float round_to_bf16(float f) { return bf16::to_float(bf16::round_from_float(f)); }

constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::bf16: return 2;
    case DType::i32: return 4;
    case DType::i64: return 8;
  }
  return 0;
}

constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::bf16: return "bf16";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
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
template <class T> inline constexpr DType dtype_of_v = dtype_of<T>::value;

inline std::ostream& operator<<(std::ostream& os, DType t) { return os << dtype_name(t); }

}  // namespace tsp
