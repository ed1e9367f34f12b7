#pragma once
// Element types of tensors as they exist in memory and in safetensors files. The SDNQ storage
// types (uint4, float6_e3m2fn, ...) are a different, larger table: sdnq/format/storage_type.hpp.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace sdnq {

enum class DType : std::uint8_t {
  f64, f32, f16, bf16, f8_e4m3fn, f8_e5m2, f8_e8m0,
  i64, i32, i16, i8, u64, u32, u16, u8, boolean,
};

struct DTypeInfo {
  DType dtype;
  std::string_view safetensors_name;  // as written in a safetensors header
  std::size_t size;                   // bytes per element
  bool is_float;
  bool is_signed;
};

inline constexpr DTypeInfo dtype_table[] = {
    {DType::f64, "F64", 8, true, true},         {DType::f32, "F32", 4, true, true},
    {DType::f16, "F16", 2, true, true},         {DType::bf16, "BF16", 2, true, true},
    {DType::f8_e4m3fn, "F8_E4M3", 1, true, true}, {DType::f8_e5m2, "F8_E5M2", 1, true, true},
    {DType::f8_e8m0, "F8_E8M0", 1, true, false},
    {DType::i64, "I64", 8, false, true},        {DType::i32, "I32", 4, false, true},
    {DType::i16, "I16", 2, false, true},        {DType::i8, "I8", 1, false, true},
    {DType::u64, "U64", 8, false, false},       {DType::u32, "U32", 4, false, false},
    {DType::u16, "U16", 2, false, false},       {DType::u8, "U8", 1, false, false},
    {DType::boolean, "BOOL", 1, false, false},
};

constexpr const DTypeInfo& dtype_info(DType dtype) {
  return dtype_table[static_cast<std::size_t>(dtype)];
}
constexpr std::size_t dtype_size(DType dtype) { return dtype_info(dtype).size; }
constexpr std::string_view dtype_name(DType dtype) { return dtype_info(dtype).safetensors_name; }

constexpr std::optional<DType> dtype_from_name(std::string_view safetensors_name) {
  for (const auto& info : dtype_table)
    if (info.safetensors_name == safetensors_name) return info.dtype;
  return std::nullopt;
}

static_assert([] {
  for (std::size_t i = 0; i < std::size(dtype_table); ++i)
    if (static_cast<std::size_t>(dtype_table[i].dtype) != i) return false;
  return true;
}(), "dtype_table must be indexed by DType");

}  // namespace sdnq

namespace sdnq {
// Maps a C++ element type to its DType; sdnq/core/scalar.hpp adds bf16, fp16 and the fp8 types.
template <class T>
struct dtype_of;
template <> struct dtype_of<double> { static constexpr DType value = DType::f64; };
template <> struct dtype_of<float> { static constexpr DType value = DType::f32; };
template <> struct dtype_of<std::int64_t> { static constexpr DType value = DType::i64; };
template <> struct dtype_of<std::int32_t> { static constexpr DType value = DType::i32; };
template <> struct dtype_of<std::int16_t> { static constexpr DType value = DType::i16; };
template <> struct dtype_of<std::int8_t> { static constexpr DType value = DType::i8; };
template <> struct dtype_of<std::uint64_t> { static constexpr DType value = DType::u64; };
template <> struct dtype_of<std::uint32_t> { static constexpr DType value = DType::u32; };
template <> struct dtype_of<std::uint16_t> { static constexpr DType value = DType::u16; };
template <> struct dtype_of<std::uint8_t> { static constexpr DType value = DType::u8; };
template <> struct dtype_of<bool> { static constexpr DType value = DType::boolean; };
template <class T>
inline constexpr DType dtype_of_v = dtype_of<T>::value;
}  // namespace sdnq
