#pragma once
// The SDNQ storage types (`src/sdnq/common.py: dtype_dict`, docs/sdnq-format.md §1): one constexpr table of
// 176 records, plus 36 aliases, giving the reference's 212 accepted `weights_dtype` names. Every trait of a
// type (range, dtypes, packing, default matmul dtype) is computed from (kind, bits, exponent, mantissa,
// signedness) by the row constructors below, so the rows only say which types exist.
//
// The count of 176: integers 33 (int2..int16 and int32: 16; uint1..uint16 and uint32: 17), native floats 8
// (float32, bfloat16, float16, float8_e4m3fn, float8_e5m2, and the three the reference registers only when
// torch has them: float8_e4m3fnuz, float8_e5m2fnuz, float8_e8m0fnu), custom floats 135 (65 signed `fn`
// including float8_e4m3fn_sdnq and float8_e5m2fn, 70 unsigned `fnu`; Appendix A).
// The 36 aliases: bool, int1 -> uint1; fp32, bf16, fp16, fp8 -> native floats; fp2..fp15 without fp8 (13);
// ufp1..ufp16 (16); fp1 -> float1_e1m0fnu.
#include <cstdint>
#include <span>
#include <string_view>

#include "sdnq/core/dtype.hpp"
#include "sdnq/core/error.hpp"

namespace sdnq::format {

enum class NumberKind : std::uint8_t { integer, native_float, custom_float };

struct StorageType {
  std::string_view name;  // canonical name, e.g. "uint4", "float6_e3m2fn", "float8_e4m3fn"
  int bits;               // code width (num_bits)
  bool is_unsigned;       // true -> asymmetric quantization with a zero point
  bool is_integer;
  NumberKind kind;
  int exponent, mantissa;  // E/M of floats; integers: 0 and bits minus the sign bit, as the reference
  double min, max;         // clamp range of q exactly as the reference (uint9..uint15: max = 2^n, quirk Q1)
  bool is_packed;          // codes go through the sub-byte packer (or are raw custom-float codes)
  DType quantized_dtype;   // torch_dtype of q before packing (custom floats: F32)
  DType stored_dtype;      // element dtype on disk: U8 packed bytes, I16 packed words, I64 for 1 bit, I8, F8_E4M3...
  std::string_view default_matmul_dtype;  // "int8" | "uint8" | "float8_e4m3fn" | "float16" (§1.6)
  DType code_dtype;                       // the reference's storage_dtype: dtype of the codes handed to the packer
  bool needs_optional_torch_dtype;        // registered by the reference only when torch has the dtype
  bool has_dtype_of_its_own;  // false for the fnuz floats: no sdnq::DType; their bytes travel as U8 under the
                              // header names F8_E4M3FNUZ / F8_E5M2FNUZ (quant::stored_safetensors_dtype)

  constexpr bool is_signed() const { return !is_unsigned; }
  constexpr bool is_custom_float() const { return kind == NumberKind::custom_float; }
  // Sub-byte / sub-word packer of §1.5 (1..7, 9..15 bits) rather than one raw element per code.
  constexpr bool uses_bit_packer() const { return is_packed && bits != 8 && bits != 16; }
};

struct StorageTypeAlias {
  std::string_view alias;
  std::string_view canonical;
};

namespace detail {

constexpr double power_of_two(int exponent) {
  double value = 1.0;
  for (; exponent > 0; --exponent) value *= 2.0;
  for (; exponent < 0; ++exponent) value /= 2.0;
  return value;
}

// §1.6: integer weights -> int8 (uint8 only for uint8), floats below 16 bits -> fp8, wider floats -> fp16.
constexpr std::string_view default_matmul_dtype_for(std::string_view name, bool is_integer, int bits) {
  if (is_integer) return name == "uint8" ? "uint8" : "int8";
  return bits < 16 ? "float8_e4m3fn" : "float16";
}

// int8/16/32 and uint8/16/32: plain native tensors, two's complement, no packing.
constexpr StorageType native_integer(std::string_view name, int bits, bool is_signed, DType dtype) {
  const double half_range = power_of_two(bits - 1);
  return {.name = name,
          .bits = bits,
          .is_unsigned = !is_signed,
          .is_integer = true,
          .kind = NumberKind::integer,
          .exponent = 0,
          .mantissa = is_signed ? bits - 1 : bits,
          .min = is_signed ? -half_range : 0.0,
          .max = is_signed ? half_range - 1 : 2 * half_range - 1,
          .is_packed = false,
          .quantized_dtype = dtype,
          .stored_dtype = dtype,
          .default_matmul_dtype = default_matmul_dtype_for(name, true, bits),
          .code_dtype = dtype,
          .needs_optional_torch_dtype = false,
          .has_dtype_of_its_own = true};
}

// int2..int7, int9..int15, uint1..uint7, uint9..uint15: packed by §1.5; signed ones in offset binary.
constexpr StorageType packed_integer(std::string_view name, int bits, bool is_signed) {
  const bool one_bit = bits == 1;
  const bool sub_word = bits > 8;
  const DType codes = one_bit ? DType::boolean : sub_word ? DType::i16 : DType::u8;
  return {.name = name,
          .bits = bits,
          .is_unsigned = !is_signed,
          .is_integer = true,
          .kind = NumberKind::integer,
          .exponent = 0,
          .mantissa = is_signed ? bits - 1 : bits,
          .min = is_signed ? -power_of_two(bits - 1) : 0.0,
          // Quirk Q1: the reference gives uint9..uint15 a max of 2^n, one more than n bits hold.
          .max = is_signed ? power_of_two(bits - 1) - 1 : power_of_two(bits) - (sub_word ? 0 : 1),
          .is_packed = true,
          .quantized_dtype = one_bit     ? DType::boolean
                             : sub_word  ? DType::i16
                             : is_signed ? DType::i8
                                         : DType::u8,
          // Quirk Q2: shifting a bool tensor promotes to int64, so 1-bit weights are stored as int64 words.
          .stored_dtype = one_bit ? DType::i64 : codes,
          .default_matmul_dtype = default_matmul_dtype_for(name, true, bits),
          .code_dtype = codes,
          .needs_optional_torch_dtype = false,
          .has_dtype_of_its_own = true};
}

enum class TorchAvailability : bool { always, optional };

constexpr StorageType native_float(std::string_view name, int bits, int exponent, int mantissa, double max, DType dtype,
                                   TorchAvailability availability = TorchAvailability::always,
                                   bool has_dtype_of_its_own = true) {
  return {.name = name,
          .bits = bits,
          .is_unsigned = false,
          .is_integer = false,
          .kind = NumberKind::native_float,
          .exponent = exponent,
          .mantissa = mantissa,
          .min = -max,
          .max = max,
          .is_packed = false,
          .quantized_dtype = dtype,
          .stored_dtype = dtype,
          .default_matmul_dtype = default_matmul_dtype_for(name, false, bits),
          .code_dtype = dtype,
          .needs_optional_torch_dtype = availability == TorchAvailability::optional,
          .has_dtype_of_its_own = has_dtype_of_its_own};
}

// The SDNQ floats of Appendix A: value formula §1.3, no Inf/NaN, codes stored raw (8/16 bits) or packed.
constexpr StorageType custom_float(std::string_view name, int exponent, int mantissa, bool is_signed) {
  const int bits = (is_signed ? 1 : 0) + exponent + mantissa;
  const int bias = (1 << (exponent - 1)) - 1;
  const double max = power_of_two((1 << exponent) - 1 - bias) * (2.0 - power_of_two(-mantissa));
  const DType codes = bits <= 8 ? DType::u8 : bits < 16 ? DType::i16 : DType::u16;
  return {.name = name,
          .bits = bits,
          .is_unsigned = !is_signed,
          .is_integer = false,
          .kind = NumberKind::custom_float,
          .exponent = exponent,
          .mantissa = mantissa,
          .min = is_signed ? -max : 0.0,
          .max = max,
          .is_packed = true,
          .quantized_dtype = DType::f32,
          .stored_dtype = bits == 1 ? DType::i64 : codes,  // the 1-bit float goes through the uint1 packer (Q2)
          .default_matmul_dtype = default_matmul_dtype_for(name, false, bits),
          .code_dtype = codes,
          .needs_optional_torch_dtype = false,
          .has_dtype_of_its_own = true};
}
constexpr StorageType fn(std::string_view name, int exponent, int mantissa) {
  return custom_float(name, exponent, mantissa, true);
}
constexpr StorageType fnu(std::string_view name, int exponent, int mantissa) {
  return custom_float(name, exponent, mantissa, false);
}

// clang-format off
inline constexpr StorageType storage_type_table[] = {
    native_integer("int32", 32, true, DType::i32), native_integer("int16", 16, true, DType::i16),
    packed_integer("int15", 15, true), packed_integer("int14", 14, true), packed_integer("int13", 13, true),
    packed_integer("int12", 12, true), packed_integer("int11", 11, true), packed_integer("int10", 10, true),
    packed_integer("int9", 9, true), native_integer("int8", 8, true, DType::i8), packed_integer("int7", 7, true),
    packed_integer("int6", 6, true), packed_integer("int5", 5, true), packed_integer("int4", 4, true),
    packed_integer("int3", 3, true), packed_integer("int2", 2, true),
    native_integer("uint32", 32, false, DType::u32), native_integer("uint16", 16, false, DType::u16),
    packed_integer("uint15", 15, false), packed_integer("uint14", 14, false), packed_integer("uint13", 13, false),
    packed_integer("uint12", 12, false), packed_integer("uint11", 11, false), packed_integer("uint10", 10, false),
    packed_integer("uint9", 9, false), native_integer("uint8", 8, false, DType::u8),
    packed_integer("uint7", 7, false), packed_integer("uint6", 6, false), packed_integer("uint5", 5, false),
    packed_integer("uint4", 4, false), packed_integer("uint3", 3, false), packed_integer("uint2", 2, false),
    packed_integer("uint1", 1, false),
    // Native floats; max (and min = -max) are the reference's literals, not the types' exact limits.
    native_float("float32", 32, 8, 23, 3.40282e+38, DType::f32),
    native_float("bfloat16", 16, 8, 7, 3.38953e+38, DType::bf16),
    native_float("float16", 16, 5, 10, 65504.0, DType::f16),
    native_float("float8_e4m3fn", 8, 4, 3, 448.0, DType::f8_e4m3fn),
    native_float("float8_e5m2", 8, 5, 2, 57344.0, DType::f8_e5m2),
    // The reference marks e8m0fnu signed (min = -max) although the type has no sign bit (§9 item 8).
    native_float("float8_e8m0fnu", 8, 8, 0, 1.70141e+38, DType::f8_e8m0, TorchAvailability::optional),
    // No DType of their own: handled as U8 bytes, with the fnuz dtype names kept in the safetensors header.
    native_float("float8_e4m3fnuz", 8, 4, 3, 240.0, DType::u8, TorchAvailability::optional, false),
    native_float("float8_e5m2fnuz", 8, 5, 2, 57344.0, DType::u8, TorchAvailability::optional, false),
    // Custom floats, Appendix A order: signed `fn`, then unsigned `fnu`, widest first.
    fn("float16_e1m14fn", 1, 14), fn("float16_e2m13fn", 2, 13), fn("float16_e3m12fn", 3, 12),
    fn("float16_e4m11fn", 4, 11), fn("float16_e5m10fn", 5, 10),
    fn("float15_e1m13fn", 1, 13), fn("float15_e2m12fn", 2, 12), fn("float15_e3m11fn", 3, 11),
    fn("float15_e4m10fn", 4, 10), fn("float15_e5m9fn", 5, 9),
    fn("float14_e1m12fn", 1, 12), fn("float14_e2m11fn", 2, 11), fn("float14_e3m10fn", 3, 10),
    fn("float14_e4m9fn", 4, 9), fn("float14_e5m8fn", 5, 8),
    fn("float13_e1m11fn", 1, 11), fn("float13_e2m10fn", 2, 10), fn("float13_e3m9fn", 3, 9),
    fn("float13_e4m8fn", 4, 8), fn("float13_e5m7fn", 5, 7),
    fn("float12_e1m10fn", 1, 10), fn("float12_e2m9fn", 2, 9), fn("float12_e3m8fn", 3, 8), fn("float12_e4m7fn", 4, 7),
    fn("float12_e5m6fn", 5, 6),
    fn("float11_e1m9fn", 1, 9), fn("float11_e2m8fn", 2, 8), fn("float11_e3m7fn", 3, 7), fn("float11_e4m6fn", 4, 6),
    fn("float11_e5m5fn", 5, 5),
    fn("float10_e1m8fn", 1, 8), fn("float10_e2m7fn", 2, 7), fn("float10_e3m6fn", 3, 6), fn("float10_e4m5fn", 4, 5),
    fn("float10_e5m4fn", 5, 4),
    fn("float9_e1m7fn", 1, 7), fn("float9_e2m6fn", 2, 6), fn("float9_e3m5fn", 3, 5), fn("float9_e4m4fn", 4, 4),
    fn("float9_e5m3fn", 5, 3),
    fn("float8_e1m6fn", 1, 6), fn("float8_e2m5fn", 2, 5), fn("float8_e3m4fn", 3, 4), fn("float8_e4m3fn_sdnq", 4, 3),
    fn("float8_e5m2fn", 5, 2),
    fn("float7_e1m5fn", 1, 5), fn("float7_e2m4fn", 2, 4), fn("float7_e3m3fn", 3, 3), fn("float7_e4m2fn", 4, 2),
    fn("float7_e5m1fn", 5, 1),
    fn("float6_e1m4fn", 1, 4), fn("float6_e2m3fn", 2, 3), fn("float6_e3m2fn", 3, 2), fn("float6_e4m1fn", 4, 1),
    fn("float6_e5m0fn", 5, 0),
    fn("float5_e1m3fn", 1, 3), fn("float5_e2m2fn", 2, 2), fn("float5_e3m1fn", 3, 1), fn("float5_e4m0fn", 4, 0),
    fn("float4_e1m2fn", 1, 2), fn("float4_e2m1fn", 2, 1), fn("float4_e3m0fn", 3, 0),
    fn("float3_e1m1fn", 1, 1), fn("float3_e2m0fn", 2, 0),
    fn("float2_e1m0fn", 1, 0),
    fnu("float16_e1m15fnu", 1, 15), fnu("float16_e2m14fnu", 2, 14), fnu("float16_e3m13fnu", 3, 13),
    fnu("float16_e4m12fnu", 4, 12), fnu("float16_e5m11fnu", 5, 11),
    fnu("float15_e1m14fnu", 1, 14), fnu("float15_e2m13fnu", 2, 13), fnu("float15_e3m12fnu", 3, 12),
    fnu("float15_e4m11fnu", 4, 11), fnu("float15_e5m10fnu", 5, 10),
    fnu("float14_e1m13fnu", 1, 13), fnu("float14_e2m12fnu", 2, 12), fnu("float14_e3m11fnu", 3, 11),
    fnu("float14_e4m10fnu", 4, 10), fnu("float14_e5m9fnu", 5, 9),
    fnu("float13_e1m12fnu", 1, 12), fnu("float13_e2m11fnu", 2, 11), fnu("float13_e3m10fnu", 3, 10),
    fnu("float13_e4m9fnu", 4, 9), fnu("float13_e5m8fnu", 5, 8),
    fnu("float12_e1m11fnu", 1, 11), fnu("float12_e2m10fnu", 2, 10), fnu("float12_e3m9fnu", 3, 9),
    fnu("float12_e4m8fnu", 4, 8), fnu("float12_e5m7fnu", 5, 7),
    fnu("float11_e1m10fnu", 1, 10), fnu("float11_e2m9fnu", 2, 9), fnu("float11_e3m8fnu", 3, 8),
    fnu("float11_e4m7fnu", 4, 7), fnu("float11_e5m6fnu", 5, 6),
    fnu("float10_e1m9fnu", 1, 9), fnu("float10_e2m8fnu", 2, 8), fnu("float10_e3m7fnu", 3, 7),
    fnu("float10_e4m6fnu", 4, 6), fnu("float10_e5m5fnu", 5, 5),
    fnu("float9_e1m8fnu", 1, 8), fnu("float9_e2m7fnu", 2, 7), fnu("float9_e3m6fnu", 3, 6),
    fnu("float9_e4m5fnu", 4, 5), fnu("float9_e5m4fnu", 5, 4),
    fnu("float8_e1m7fnu", 1, 7), fnu("float8_e2m6fnu", 2, 6), fnu("float8_e3m5fnu", 3, 5),
    fnu("float8_e4m4fnu", 4, 4), fnu("float8_e5m3fnu", 5, 3),
    fnu("float7_e1m6fnu", 1, 6), fnu("float7_e2m5fnu", 2, 5), fnu("float7_e3m4fnu", 3, 4),
    fnu("float7_e4m3fnu", 4, 3), fnu("float7_e5m2fnu", 5, 2),
    fnu("float6_e1m5fnu", 1, 5), fnu("float6_e2m4fnu", 2, 4), fnu("float6_e3m3fnu", 3, 3),
    fnu("float6_e4m2fnu", 4, 2), fnu("float6_e5m1fnu", 5, 1),
    fnu("float5_e1m4fnu", 1, 4), fnu("float5_e2m3fnu", 2, 3), fnu("float5_e3m2fnu", 3, 2),
    fnu("float5_e4m1fnu", 4, 1), fnu("float5_e5m0fnu", 5, 0),
    fnu("float4_e1m3fnu", 1, 3), fnu("float4_e2m2fnu", 2, 2), fnu("float4_e3m1fnu", 3, 1),
    fnu("float4_e4m0fnu", 4, 0),
    fnu("float3_e1m2fnu", 1, 2), fnu("float3_e2m1fnu", 2, 1), fnu("float3_e3m0fnu", 3, 0),
    fnu("float2_e1m1fnu", 1, 1), fnu("float2_e2m0fnu", 2, 0),
    fnu("float1_e1m0fnu", 1, 0),
};

inline constexpr StorageTypeAlias storage_type_alias_table[] = {
    {"bool", "uint1"}, {"int1", "uint1"},
    {"fp32", "float32"}, {"bf16", "bfloat16"}, {"fp16", "float16"}, {"fp8", "float8_e4m3fn"},
    {"fp2", "float2_e1m0fn"}, {"fp3", "float3_e1m1fn"}, {"fp4", "float4_e2m1fn"}, {"fp5", "float5_e2m2fn"},
    {"fp6", "float6_e3m2fn"}, {"fp7", "float7_e3m3fn"}, {"fp9", "float9_e4m4fn"}, {"fp10", "float10_e5m4fn"},
    {"fp11", "float11_e5m5fn"}, {"fp12", "float12_e5m6fn"}, {"fp13", "float13_e5m7fn"},
    {"fp14", "float14_e5m8fn"}, {"fp15", "float15_e5m9fn"},
    {"fp1", "float1_e1m0fnu"}, {"ufp1", "float1_e1m0fnu"}, {"ufp2", "float2_e1m1fnu"}, {"ufp3", "float3_e1m2fnu"},
    {"ufp4", "float4_e2m2fnu"}, {"ufp5", "float5_e2m3fnu"}, {"ufp6", "float6_e3m3fnu"},
    {"ufp7", "float7_e3m4fnu"}, {"ufp8", "float8_e4m4fnu"}, {"ufp9", "float9_e4m5fnu"},
    {"ufp10", "float10_e5m5fnu"}, {"ufp11", "float11_e5m6fnu"}, {"ufp12", "float12_e5m7fnu"},
    {"ufp13", "float13_e5m8fnu"}, {"ufp14", "float14_e5m9fnu"}, {"ufp15", "float15_e5m10fnu"},
    {"ufp16", "float16_e5m11fnu"},
};
// clang-format on

// `weights_dtype_order` of the reference's common.py: the ladder dynamic quantization climbs (§3.11),
// coarsest first. Widths alternate signed integer + signed floats, then unsigned integer + unsigned floats.
// clang-format off
inline constexpr std::string_view weights_dtype_ladder[] = {
    "uint1", "float1_e1m0fnu",
    "int2", "float2_e1m0fn",
    "uint2", "float2_e1m1fnu", "float2_e2m0fnu",
    "int3", "float3_e1m1fn", "float3_e2m0fn",
    "uint3", "float3_e1m2fnu", "float3_e2m1fnu", "float3_e3m0fnu",
    "int4", "float4_e1m2fn", "float4_e2m1fn", "float4_e3m0fn",
    "uint4", "float4_e1m3fnu", "float4_e2m2fnu", "float4_e3m1fnu", "float4_e4m0fnu",
    "int5", "float5_e1m3fn", "float5_e2m2fn", "float5_e3m1fn", "float5_e4m0fn",
    "uint5", "float5_e1m4fnu", "float5_e2m3fnu", "float5_e3m2fnu", "float5_e4m1fnu", "float5_e5m0fnu",
    "int6", "float6_e1m4fn", "float6_e2m3fn", "float6_e3m2fn", "float6_e4m1fn", "float6_e5m0fn",
    "uint6", "float6_e1m5fnu", "float6_e2m4fnu", "float6_e3m3fnu", "float6_e4m2fnu", "float6_e5m1fnu",
    "int7", "float7_e1m5fn", "float7_e2m4fn", "float7_e3m3fn", "float7_e4m2fn", "float7_e5m1fn",
    "uint7", "float7_e1m6fnu", "float7_e2m5fnu", "float7_e3m4fnu", "float7_e4m3fnu", "float7_e5m2fnu",
    "int8", "float8_e4m3fn", "float8_e5m2", "float8_e1m6fn", "float8_e2m5fn", "float8_e3m4fn", "float8_e4m3fn_sdnq",
    "float8_e5m2fn",
    "uint8", "float8_e1m7fnu", "float8_e2m6fnu", "float8_e3m5fnu", "float8_e4m4fnu", "float8_e5m3fnu",
    "int9", "float9_e1m7fn", "float9_e2m6fn", "float9_e3m5fn", "float9_e4m4fn", "float9_e5m3fn",
    "uint9", "float9_e1m8fnu", "float9_e2m7fnu", "float9_e3m6fnu", "float9_e4m5fnu", "float9_e5m4fnu",
    "int10", "float10_e1m8fn", "float10_e2m7fn", "float10_e3m6fn", "float10_e4m5fn", "float10_e5m4fn",
    "uint10", "float10_e1m9fnu", "float10_e2m8fnu", "float10_e3m7fnu", "float10_e4m6fnu", "float10_e5m5fnu",
    "int11", "float11_e1m9fn", "float11_e2m8fn", "float11_e3m7fn", "float11_e4m6fn", "float11_e5m5fn",
    "uint11", "float11_e1m10fnu", "float11_e2m9fnu", "float11_e3m8fnu", "float11_e4m7fnu", "float11_e5m6fnu",
    "int12", "float12_e1m10fn", "float12_e2m9fn", "float12_e3m8fn", "float12_e4m7fn", "float12_e5m6fn",
    "uint12", "float12_e1m11fnu", "float12_e2m10fnu", "float12_e3m9fnu", "float12_e4m8fnu", "float12_e5m7fnu",
    "int13", "float13_e1m11fn", "float13_e2m10fn", "float13_e3m9fn", "float13_e4m8fn", "float13_e5m7fn",
    "uint13", "float13_e1m12fnu", "float13_e2m11fnu", "float13_e3m10fnu", "float13_e4m9fnu", "float13_e5m8fnu",
    "int14", "float14_e1m12fn", "float14_e2m11fn", "float14_e3m10fn", "float14_e4m9fn", "float14_e5m8fn",
    "uint14", "float14_e1m13fnu", "float14_e2m12fnu", "float14_e3m11fnu", "float14_e4m10fnu", "float14_e5m9fnu",
    "int15", "float15_e1m13fn", "float15_e2m12fn", "float15_e3m11fn", "float15_e4m10fn", "float15_e5m9fn",
    "uint15", "float15_e1m14fnu", "float15_e2m13fnu", "float15_e3m12fnu", "float15_e4m11fnu", "float15_e5m10fnu",
    "int16", "float16", "float16_e1m14fn", "float16_e2m13fn", "float16_e3m12fn", "float16_e4m11fn",
    "float16_e5m10fn",
    "uint16", "float16_e1m15fnu", "float16_e2m14fnu", "float16_e3m13fnu", "float16_e4m12fnu", "float16_e5m11fnu",
};
// clang-format on

// Index into storage_type_table, or -1. Indices rather than pointers keep the static_asserts below
// constant expressions under GCC's -fsanitize=undefined, which rejects pointer comparisons there.
constexpr int canonical_index(std::string_view name) {
  for (std::size_t i = 0; i < std::size(storage_type_table); ++i)
    if (storage_type_table[i].name == name) return static_cast<int>(i);
  return -1;
}

constexpr int index_by_name_or_alias(std::string_view name) {
  if (const int index = canonical_index(name); index >= 0) return index;
  for (const auto& entry : storage_type_alias_table)
    if (entry.alias == name) return canonical_index(entry.canonical);
  return -1;
}

// Reads "float{n}_e{E}m{M}fn" / "...fnu" (and the one "_sdnq" suffix) back, so a row whose name disagrees
// with its exponent and mantissa cannot compile.
constexpr bool custom_float_name_matches(const StorageType& type) {
  std::string_view rest = type.name;
  auto take = [&rest](std::string_view prefix) {
    if (rest.substr(0, prefix.size()) != prefix) return false;
    rest.remove_prefix(prefix.size());
    return true;
  };
  auto number = [&rest]() {
    int value = 0;
    std::size_t digits = 0;
    while (digits < rest.size() && rest[digits] >= '0' && rest[digits] <= '9')
      value = value * 10 + (rest[digits++] - '0');
    rest.remove_prefix(digits);
    return digits == 0 ? -1 : value;
  };
  if (!take("float") || number() != type.bits || !take("_e") || number() != type.exponent || !take("m") ||
      number() != type.mantissa)
    return false;
  if (type.is_unsigned) return rest == "fnu";
  return rest == "fn" || rest == "fn_sdnq";
}

constexpr bool table_is_consistent() {
  const std::size_t types = std::size(storage_type_table), aliases = std::size(storage_type_alias_table);
  for (std::size_t i = 0; i < types; ++i) {
    const StorageType& type = storage_type_table[i];
    if (type.kind == NumberKind::custom_float && !custom_float_name_matches(type)) return false;
    for (std::size_t j = i + 1; j < types; ++j)
      if (storage_type_table[j].name == type.name) return false;
    for (const auto& entry : storage_type_alias_table)
      if (entry.alias == type.name) return false;
  }
  for (std::size_t i = 0; i < aliases; ++i) {
    if (canonical_index(storage_type_alias_table[i].canonical) < 0) return false;
    for (std::size_t j = i + 1; j < aliases; ++j)
      if (storage_type_alias_table[j].alias == storage_type_alias_table[i].alias) return false;
  }
  for (std::string_view name : weights_dtype_ladder)
    if (canonical_index(name) < 0) return false;
  return true;
}

static_assert(std::size(storage_type_table) == 176, "the reference's dtype_dict has 176 distinct records");
static_assert(std::size(storage_type_table) + std::size(storage_type_alias_table) == 212,
              "the reference accepts 212 weights_dtype names");
static_assert(table_is_consistent(), "storage type names must be unique, well formed and resolvable");

}  // namespace detail

inline std::span<const StorageType> all_storage_types() { return detail::storage_type_table; }
inline std::span<const StorageTypeAlias> storage_type_aliases() { return detail::storage_type_alias_table; }

// The record for a canonical name or an alias ("fp8", "ufp4", "bool", ...); nullptr if unknown.
inline const StorageType* find_storage_type(std::string_view name_or_alias) {
  const int index = detail::index_by_name_or_alias(name_or_alias);
  return index < 0 ? nullptr : &detail::storage_type_table[index];
}

inline const StorageType& storage_type(std::string_view name_or_alias) {
  const StorageType* type = find_storage_type(name_or_alias);
  SDNQ_REQUIRE(type != nullptr, ConfigError,
               "unknown SDNQ weights dtype \"{}\" (expected a name like int8, uint4, float8_e4m3fn, "
               "float6_e3m2fn or an alias like fp8, ufp4)",
               name_or_alias);
  return *type;
}

// The dynamic-quantization ladder of §3.11, canonical names, coarsest first.
inline std::span<const std::string_view> weights_dtype_order() { return detail::weights_dtype_ladder; }

}  // namespace sdnq::format
