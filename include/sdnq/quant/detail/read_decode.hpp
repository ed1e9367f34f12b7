#pragma once
// Step 1 of dequantization (format doc §4): the stored `weight` tensor -> one float per logical code,
// in the C order of the layout's quantized_shape. Integers become their value q, floats their value,
// codebook weights their level index. Every value is exact in float (codes have at most 16 bits; the
// 32-bit integer types round like torch's int -> float32 cast).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <vector>

#include "sdnq/core/error.hpp"
#include "sdnq/core/parallel.hpp"
#include "sdnq/core/scalar.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/format/custom_float.hpp"
#include "sdnq/format/packing.hpp"
#include "sdnq/format/storage_type.hpp"

namespace sdnq::quant::detail {

// A float element of any float dtype a checkpoint stores scales, factors or weights in.
inline float load_float_element(const void* data, DType dtype, std::int64_t index) {
  switch (dtype) {
    case DType::f32: return static_cast<const float*>(data)[index];
    case DType::f64: return static_cast<float>(static_cast<const double*>(data)[index]);
    case DType::bf16: return static_cast<const bf16*>(data)[index].to_float();
    case DType::f16: return static_cast<const fp16*>(data)[index].to_float();
    case DType::f8_e4m3fn: return static_cast<const fp8_e4m3fn*>(data)[index].to_float();
    case DType::f8_e5m2: return static_cast<const fp8_e5m2*>(data)[index].to_float();
    case DType::f8_e8m0: {
      // E8M0: a bare biased exponent, 2^(bits - 127); 0xFF is NaN.
      const std::uint8_t bits = static_cast<const std::uint8_t*>(data)[index];
      if (bits == 0xFF) return std::numeric_limits<float>::quiet_NaN();
      return std::ldexp(1.0f, static_cast<int>(bits) - 127);
    }
    default: break;
  }
  throw FormatError(fmt::format("{} is not a float dtype", dtype_name(dtype)));
}

inline bool is_float_dtype(DType dtype) { return dtype_info(dtype).is_float; }

// float8_e4m3fnuz / float8_e5m2fnuz (read as U8 bytes: DType has no entry for them): exponent bias
// 2^(E-1), no infinities, no negative zero; 0x80 is the only NaN; exponent 0 is subnormal.
inline float decode_fnuz_byte(std::uint8_t bits, int exponent_bits, int mantissa_bits) {
  if (bits == 0x80) return std::numeric_limits<float>::quiet_NaN();
  const int bias = 1 << (exponent_bits - 1);
  const int exponent = (bits >> mantissa_bits) & ((1 << exponent_bits) - 1);
  const int mantissa = bits & ((1 << mantissa_bits) - 1);
  const float magnitude = exponent == 0 ? std::ldexp(static_cast<float>(mantissa), 1 - bias - mantissa_bits)
                                        : std::ldexp(static_cast<float>((1 << mantissa_bits) | mantissa),
                                                     exponent - bias - mantissa_bits);
  return (bits & 0x80) ? -magnitude : magnitude;
}

inline bool is_fnuz_type(const format::StorageType& type) {
  return type.kind == format::NumberKind::native_float && type.bits == 8 && type.name.ends_with("fnuz");
}

template <class Stored>
void widen_elements(const void* data, std::span<float> values) {
  const auto* source = static_cast<const Stored*>(data);
  parallel_for(0, static_cast<std::int64_t>(values.size()), 1 << 16, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) values[i] = static_cast<float>(source[i]);
  });
}

// Unpacked codes (bit packer, or raw 8/16-bit custom-float codes) -> values.
inline void map_codes(const format::StorageType& type, std::span<const std::uint16_t> codes, std::span<float> values,
                      bool as_level_index) {
  if (type.is_custom_float() && !as_level_index) {
    const std::vector<float> table = format::custom_float_decode_table(format::custom_float_of(type));
    parallel_for(0, static_cast<std::int64_t>(codes.size()), 1 << 16, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t i = begin; i < end; ++i) values[i] = table[codes[i]];
    });
    return;
  }
  // Packed signed integers are offset binary (q = code + min); unsigned ones (and indices) are the code.
  const float offset = type.is_unsigned ? 0.0f : static_cast<float>(type.min);
  parallel_for(0, static_cast<std::int64_t>(codes.size()), 1 << 16, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) values[i] = static_cast<float>(codes[i]) + offset;
  });
}

// The bit unpacker over chunks of whole blocks on the thread pool, for the common case of a packed tensor
// that is exactly what the reference writes; returns false (nothing written) otherwise, leaving the
// checks and their error messages to format::unpack_codes.
inline bool unpack_codes_in_parallel(int bits, TensorView packed, std::span<std::uint16_t> codes) {
  if (bits == 1 || !format::is_packable_width(bits) || !packed.device().is_cpu() || !packed.is_contiguous() ||
      packed.dtype() != format::packed_dtype(bits))
    return false;
  const std::int64_t numel = static_cast<std::int64_t>(codes.size());
  const std::int64_t block = format::pack_block_size(bits), words = format::pack_block_words(bits);
  if (numel % block != 0 || packed.numel() != numel / block * words) return false;
  const std::int64_t word_bytes = static_cast<std::int64_t>(dtype_size(packed.dtype()));
  const auto* bytes = static_cast<const std::uint8_t*>(packed.data());
  format::detail::dispatch_packed_width(bits, [&](auto width) {
    parallel_for(0, numel / block, std::max<std::int64_t>(1, (1 << 14) / block), [&](std::int64_t begin, std::int64_t end) {
      format::unpack<width()>(bytes + begin * words * word_bytes, codes.subspan(begin * block, (end - begin) * block));
    });
  });
  return true;
}

// `weight` has been validated against the layout (dtype and shape). `numel` = codes in quantized_shape.
inline std::vector<float> decode_weight_values(const format::StorageType& type, TensorView weight, std::int64_t numel,
                                               bool as_level_index, std::string_view tensor_name) {
  std::vector<float> values(static_cast<std::size_t>(numel));
  if (type.uses_bit_packer()) {
    std::vector<std::uint16_t> codes(static_cast<std::size_t>(numel));
    if (!unpack_codes_in_parallel(type.bits, weight, codes)) format::unpack_codes(type.bits, weight, codes, tensor_name);
    map_codes(type, codes, values, as_level_index);
    return values;
  }
  if (type.is_custom_float()) {  // 8- or 16-bit raw codes, U8 / U16
    std::vector<std::uint16_t> codes(static_cast<std::size_t>(numel));
    if (weight.dtype() == DType::u8) {
      const auto* bytes = static_cast<const std::uint8_t*>(weight.data());
      for (std::int64_t i = 0; i < numel; ++i) codes[i] = bytes[i];
    } else {
      std::memcpy(codes.data(), weight.data(), static_cast<std::size_t>(numel) * sizeof(std::uint16_t));
    }
    map_codes(type, codes, values, as_level_index);
    return values;
  }
  if (is_fnuz_type(type)) {
    const auto* bytes = static_cast<const std::uint8_t*>(weight.data());
    for (std::int64_t i = 0; i < numel; ++i) values[i] = decode_fnuz_byte(bytes[i], type.exponent, type.mantissa);
    return values;
  }
  switch (weight.dtype()) {
    case DType::i8: widen_elements<std::int8_t>(weight.data(), values); break;
    case DType::u8: widen_elements<std::uint8_t>(weight.data(), values); break;
    case DType::i16: widen_elements<std::int16_t>(weight.data(), values); break;
    case DType::u16: widen_elements<std::uint16_t>(weight.data(), values); break;
    case DType::i32: widen_elements<std::int32_t>(weight.data(), values); break;
    case DType::u32: widen_elements<std::uint32_t>(weight.data(), values); break;
    default:
      parallel_for(0, numel, 1 << 16, [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t i = begin; i < end; ++i) values[i] = load_float_element(weight.data(), weight.dtype(), i);
      });
  }
  return values;
}

}  // namespace sdnq::quant::detail
