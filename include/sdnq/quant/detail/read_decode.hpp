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
    parallel_for(0, numel / block, std::max<std::int64_t>(1, (1 << 14) / block),
                 [&](std::int64_t begin, std::int64_t end) {
                   format::unpack<width()>(bytes + begin * words * word_bytes,
                                           codes.subspan(begin * block, (end - begin) * block));
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
    if (!unpack_codes_in_parallel(type.bits, weight, codes))
      format::unpack_codes(type.bits, weight, codes, tensor_name);
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

// Step 1 for any range of codes, so the dequantizer can decode, scale and write a few rows at a time
// in cache: the same values as decode_weight_values, element for element. Built once per tensor (the
// per-dtype decisions and byte tables made up front); decode() is safe to call from several threads.
class RangeDecoder {
 public:
  // False when only the whole-tensor path applies: 1-bit packing, or a packed tensor that is not what
  // the reference writes (format::unpack_codes then names the problem).
  static bool supports(const format::StorageType& type, TensorView weight, std::int64_t numel) {
    if (!type.uses_bit_packer()) return true;
    if (type.bits == 1 || !weight.device().is_cpu() || !weight.is_contiguous() ||
        weight.dtype() != format::packed_dtype(type.bits))
      return false;
    const std::int64_t block = format::pack_block_size(type.bits);
    return numel % block == 0 && weight.numel() == numel / block * format::pack_block_words(type.bits);
  }

  RangeDecoder(const format::StorageType& type, TensorView weight, bool as_level_index)
      : type_(type), weight_(weight) {
    packed_ = type.uses_bit_packer();
    raw_custom_codes_ = !packed_ && type.is_custom_float();
    if ((packed_ || raw_custom_codes_) && type.is_custom_float() && !as_level_index)
      table_ = format::custom_float_decode_table(format::custom_float_of(type));
    offset_ = type.is_unsigned ? 0.0f : static_cast<float>(type.min);
    if (!packed_ && !raw_custom_codes_) {
      const DType dtype = weight.dtype();
      if (is_fnuz_type(type)) {
        table_.resize(256);
        for (int bits = 0; bits < 256; ++bits)
          table_[bits] = decode_fnuz_byte(static_cast<std::uint8_t>(bits), type.exponent, type.mantissa);
      } else if (dtype == DType::f8_e4m3fn || dtype == DType::f8_e5m2 || dtype == DType::f8_e8m0) {
        table_.resize(256);
        for (int bits = 0; bits < 256; ++bits) {
          const auto byte = static_cast<std::uint8_t>(bits);
          table_[bits] = load_float_element(&byte, dtype, 0);
        }
      }
    }
  }

  // Codes a multiple of this apart can start a range.
  std::int64_t alignment() const { return packed_ ? format::pack_block_size(type_.bits) : 1; }

  // values[0, end - begin) = the decoded codes [begin, end); begin and end multiples of alignment()
  // (end may be the tensor's last code). `codes` is scratch, resized as needed.
  void decode(std::int64_t begin, std::int64_t end, float* values, std::vector<std::uint16_t>& codes) const {
    const std::int64_t count = end - begin;
    const void* data = weight_.data();
    if (packed_) {
      codes.resize(static_cast<std::size_t>(count));
      const std::int64_t block = format::pack_block_size(type_.bits), words = format::pack_block_words(type_.bits);
      const auto* bytes = static_cast<const std::uint8_t*>(data) +
                          begin / block * words * static_cast<std::int64_t>(dtype_size(weight_.dtype()));
      format::detail::dispatch_packed_width(type_.bits, [&](auto width) {
        format::unpack<width()>(bytes, std::span<std::uint16_t>(codes.data(), static_cast<std::size_t>(count)));
      });
      map_range(codes.data(), count, values);
      return;
    }
    if (raw_custom_codes_) {
      codes.resize(static_cast<std::size_t>(count));
      if (weight_.dtype() == DType::u8)
        for (std::int64_t i = 0; i < count; ++i) codes[i] = static_cast<const std::uint8_t*>(data)[begin + i];
      else
        std::memcpy(codes.data(), static_cast<const std::uint16_t*>(data) + begin,
                    static_cast<std::size_t>(count) * sizeof(std::uint16_t));
      map_range(codes.data(), count, values);
      return;
    }
    if (!table_.empty()) {  // fp8 and fnuz bytes
      const auto* bytes = static_cast<const std::uint8_t*>(data) + begin;
      for (std::int64_t i = 0; i < count; ++i) values[i] = table_[bytes[i]];
      return;
    }
    switch (weight_.dtype()) {
      case DType::i8: return widen_range<std::int8_t>(data, begin, count, values);
      case DType::u8: return widen_range<std::uint8_t>(data, begin, count, values);
      case DType::i16: return widen_range<std::int16_t>(data, begin, count, values);
      case DType::u16: return widen_range<std::uint16_t>(data, begin, count, values);
      case DType::i32: return widen_range<std::int32_t>(data, begin, count, values);
      case DType::u32: return widen_range<std::uint32_t>(data, begin, count, values);
      case DType::f32: return widen_range<float>(data, begin, count, values);
      case DType::bf16: return widen_range<bf16>(data, begin, count, values);
      case DType::f16: return widen_range<fp16>(data, begin, count, values);
      default:
        for (std::int64_t i = 0; i < count; ++i) values[i] = load_float_element(data, weight_.dtype(), begin + i);
    }
  }

 private:
  template <class Stored>
  static void widen_range(const void* data, std::int64_t begin, std::int64_t count, float* values) {
    const Stored* source = static_cast<const Stored*>(data) + begin;
    for (std::int64_t i = 0; i < count; ++i) values[i] = static_cast<float>(source[i]);
  }

  // As map_codes: the custom-float table, else code + offset (signed packed integers are offset binary).
  void map_range(const std::uint16_t* codes, std::int64_t count, float* values) const {
    if (!table_.empty()) {
      for (std::int64_t i = 0; i < count; ++i) values[i] = table_[codes[i]];
      return;
    }
    for (std::int64_t i = 0; i < count; ++i) values[i] = static_cast<float>(codes[i]) + offset_;
  }

  const format::StorageType& type_;
  TensorView weight_;
  bool packed_ = false, raw_custom_codes_ = false;
  float offset_ = 0.0f;
  std::vector<float> table_;  // custom-float levels, or the 256 values of an 8-bit float byte
};
}  // namespace sdnq::quant::detail
