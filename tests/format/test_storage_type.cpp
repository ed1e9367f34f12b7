#include "sdnq_catch.hpp"

#include <cmath>
#include <set>
#include <string>

#include "sdnq/format/storage_type.hpp"

using namespace sdnq;
using namespace sdnq::format;

TEST_CASE("storage types: 176 records, 212 accepted names, all distinct", "[format][storage_type]") {
  CHECK(all_storage_types().size() == 176);
  std::set<std::string_view> names;
  for (const auto& type : all_storage_types()) names.insert(type.name);
  for (const auto& alias : storage_type_aliases()) names.insert(alias.alias);
  CHECK(names.size() == 212);

  int integers = 0, native_floats = 0, custom_signed = 0, custom_unsigned = 0;
  for (const auto& type : all_storage_types()) {
    if (type.kind == NumberKind::integer) ++integers;
    if (type.kind == NumberKind::native_float) ++native_floats;
    if (type.kind == NumberKind::custom_float) ++(type.is_unsigned ? custom_unsigned : custom_signed);
  }
  CHECK(integers == 33);
  CHECK(native_floats == 8);
  CHECK(custom_signed == 65);  // Appendix A
  CHECK(custom_unsigned == 70);
}

TEST_CASE("storage types: integers as §1.2 lists them", "[format][storage_type]") {
  struct Expected {
    std::string_view name;
    int bits;
    bool is_unsigned;
    double min, max;
    bool is_packed;
    DType quantized, stored;
  };
  const Expected expected[] = {
      {"int32", 32, false, -2147483648.0, 2147483647.0, false, DType::i32, DType::i32},
      {"int16", 16, false, -32768, 32767, false, DType::i16, DType::i16},
      {"int15", 15, false, -16384, 16383, true, DType::i16, DType::i16},
      {"int9", 9, false, -256, 255, true, DType::i16, DType::i16},
      {"int8", 8, false, -128, 127, false, DType::i8, DType::i8},
      {"int7", 7, false, -64, 63, true, DType::i8, DType::u8},
      {"int2", 2, false, -2, 1, true, DType::i8, DType::u8},
      {"uint32", 32, true, 0, 4294967295.0, false, DType::u32, DType::u32},
      {"uint16", 16, true, 0, 65535, false, DType::u16, DType::u16},
      {"uint15", 15, true, 0, 32768, true, DType::i16, DType::i16},  // Q1: 2^n
      {"uint12", 12, true, 0, 4096, true, DType::i16, DType::i16},   // Q1
      {"uint9", 9, true, 0, 512, true, DType::i16, DType::i16},      // Q1
      {"uint8", 8, true, 0, 255, false, DType::u8, DType::u8},
      {"uint7", 7, true, 0, 127, true, DType::u8, DType::u8},
      {"uint4", 4, true, 0, 15, true, DType::u8, DType::u8},
      {"uint1", 1, true, 0, 1, true, DType::boolean, DType::i64},  // Q2
  };
  for (const auto& e : expected) {
    INFO(std::string(e.name));
    const StorageType& type = storage_type(e.name);
    CHECK(type.name == e.name);
    CHECK(type.bits == e.bits);
    CHECK(type.is_integer);
    CHECK(type.kind == NumberKind::integer);
    CHECK(type.is_unsigned == e.is_unsigned);
    CHECK(type.min == e.min);
    CHECK(type.max == e.max);
    CHECK(type.is_packed == e.is_packed);
    CHECK(type.quantized_dtype == e.quantized);
    CHECK(type.stored_dtype == e.stored);
    CHECK(type.exponent == 0);
    CHECK(type.mantissa == (e.is_unsigned ? e.bits : e.bits - 1));  // as the reference's records say
  }
  // Every uint9..uint15 has max 2^n, every smaller uint 2^n - 1.
  for (int bits = 2; bits <= 15; ++bits) {
    if (bits == 8) continue;
    const StorageType& type = storage_type("uint" + std::to_string(bits));
    CHECK(type.max == std::ldexp(1.0, bits) - (bits > 8 ? 0 : 1));
    const StorageType& signed_type = storage_type("int" + std::to_string(bits));
    CHECK(signed_type.min == -std::ldexp(1.0, bits - 1));
    CHECK(signed_type.max == std::ldexp(1.0, bits - 1) - 1);
  }
}

TEST_CASE("storage types: native floats as §1.3 lists them", "[format][storage_type]") {
  struct Expected {
    std::string_view name;
    int bits, exponent, mantissa;
    double max;
    DType stored;
  };
  const Expected expected[] = {
      {"float32", 32, 8, 23, 3.40282e38, DType::f32},  {"bfloat16", 16, 8, 7, 3.38953e38, DType::bf16},
      {"float16", 16, 5, 10, 65504, DType::f16},       {"float8_e4m3fn", 8, 4, 3, 448, DType::f8_e4m3fn},
      {"float8_e5m2", 8, 5, 2, 57344, DType::f8_e5m2}, {"float8_e8m0fnu", 8, 8, 0, 1.70141e38, DType::f8_e8m0},
  };
  for (const auto& e : expected) {
    INFO(std::string(e.name));
    const StorageType& type = storage_type(e.name);
    CHECK(type.kind == NumberKind::native_float);
    CHECK_FALSE(type.is_integer);
    CHECK_FALSE(type.is_unsigned);
    CHECK_FALSE(type.is_packed);
    CHECK(type.bits == e.bits);
    CHECK(type.exponent == e.exponent);
    CHECK(type.mantissa == e.mantissa);
    CHECK(type.max == e.max);
    CHECK(type.min == -e.max);
    CHECK(type.stored_dtype == e.stored);
    CHECK(type.quantized_dtype == e.stored);
  }
  CHECK(storage_type("float8_e4m3fnuz").max == 240);
  CHECK(storage_type("float8_e5m2fnuz").max == 57344);
  CHECK_FALSE(storage_type("float8_e4m3fnuz").has_dtype_of_its_own);
  CHECK(storage_type("float8_e8m0fnu").needs_optional_torch_dtype);
  CHECK_FALSE(storage_type("float8_e4m3fn").needs_optional_torch_dtype);
}

TEST_CASE("storage types: custom floats match Appendix A", "[format][storage_type]") {
  struct Expected {
    std::string_view name;
    int bits, exponent, mantissa;
    bool is_signed;
    double max;
    DType stored;
  };
  // Rows copied from Appendix A (max column and on-disk dtype).
  const Expected expected[] = {
      {"float16_e1m14fn", 16, 1, 14, true, 3.9998779296875, DType::u16},
      {"float16_e5m10fn", 16, 5, 10, true, 131008, DType::u16},
      {"float15_e5m9fn", 15, 5, 9, true, 130944, DType::i16},
      {"float13_e4m8fn", 13, 4, 8, true, 511, DType::i16},
      {"float11_e4m6fn", 11, 4, 6, true, 508, DType::i16},
      {"float9_e4m4fn", 9, 4, 4, true, 496, DType::i16},
      {"float8_e3m4fn", 8, 3, 4, true, 31, DType::u8},
      {"float8_e4m3fn_sdnq", 8, 4, 3, true, 480, DType::u8},
      {"float8_e5m2fn", 8, 5, 2, true, 114688, DType::u8},
      {"float7_e5m1fn", 7, 5, 1, true, 98304, DType::u8},
      {"float6_e3m2fn", 6, 3, 2, true, 28, DType::u8},
      {"float6_e5m0fn", 6, 5, 0, true, 65536, DType::u8},
      {"float4_e2m1fn", 4, 2, 1, true, 6, DType::u8},
      {"float3_e1m1fn", 3, 1, 1, true, 3, DType::u8},
      {"float2_e1m0fn", 2, 1, 0, true, 2, DType::u8},
      {"float16_e5m11fnu", 16, 5, 11, false, 131040, DType::u16},
      {"float14_e4m10fnu", 14, 4, 10, false, 511.75, DType::i16},
      {"float10_e5m5fnu", 10, 5, 5, false, 129024, DType::i16},
      {"float8_e4m4fnu", 8, 4, 4, false, 496, DType::u8},
      {"float7_e4m3fnu", 7, 4, 3, false, 480, DType::u8},
      {"float5_e5m0fnu", 5, 5, 0, false, 65536, DType::u8},
      {"float4_e2m2fnu", 4, 2, 2, false, 7, DType::u8},
      {"float3_e3m0fnu", 3, 3, 0, false, 16, DType::u8},
      {"float2_e2m0fnu", 2, 2, 0, false, 4, DType::u8},
      {"float1_e1m0fnu", 1, 1, 0, false, 2, DType::i64},  // uint1 packer, Q2
  };
  for (const auto& e : expected) {
    INFO(std::string(e.name));
    const StorageType& type = storage_type(e.name);
    CHECK(type.kind == NumberKind::custom_float);
    CHECK(type.bits == e.bits);
    CHECK(type.exponent == e.exponent);
    CHECK(type.mantissa == e.mantissa);
    CHECK(type.is_unsigned == !e.is_signed);
    CHECK(type.max == e.max);
    CHECK(type.min == (e.is_signed ? -e.max : 0.0));
    CHECK(type.is_packed);
    CHECK(type.quantized_dtype == DType::f32);
    CHECK(type.stored_dtype == e.stored);
  }
  // Every custom float: n = sign + E + M and max = 2^(2^E-1-b)·(2-2^-M), computed here in long double.
  for (const auto& type : all_storage_types()) {
    if (type.kind != NumberKind::custom_float) continue;
    INFO(std::string(type.name));
    CHECK(type.bits == (type.is_unsigned ? 0 : 1) + type.exponent + type.mantissa);
    const int bias = (1 << (type.exponent - 1)) - 1;
    const long double max = std::ldexp(2.0L - std::ldexp(1.0L, -type.mantissa), (1 << type.exponent) - 1 - bias);
    CHECK(static_cast<long double>(type.max) == max);
  }
}

TEST_CASE("storage types: default quantized-matmul dtype per §1.6", "[format][storage_type]") {
  CHECK(storage_type("int8").default_matmul_dtype == "int8");
  CHECK(storage_type("uint4").default_matmul_dtype == "int8");
  CHECK(storage_type("uint8").default_matmul_dtype == "uint8");
  CHECK(storage_type("int16").default_matmul_dtype == "int8");
  CHECK(storage_type("uint1").default_matmul_dtype == "int8");
  CHECK(storage_type("float8_e4m3fn").default_matmul_dtype == "float8_e4m3fn");
  CHECK(storage_type("float6_e3m2fn").default_matmul_dtype == "float8_e4m3fn");
  CHECK(storage_type("float15_e5m9fn").default_matmul_dtype == "float8_e4m3fn");
  CHECK(storage_type("float16").default_matmul_dtype == "float16");
  CHECK(storage_type("bfloat16").default_matmul_dtype == "float16");
  CHECK(storage_type("float32").default_matmul_dtype == "float16");
  CHECK(storage_type("float16_e5m11fnu").default_matmul_dtype == "float16");
}

TEST_CASE("storage types: aliases resolve exactly as §1.3 says", "[format][storage_type]") {
  const std::pair<std::string_view, std::string_view> expected[] = {
      {"fp8", "float8_e4m3fn"},
      {"fp16", "float16"},
      {"fp32", "float32"},
      {"bf16", "bfloat16"},
      {"bool", "uint1"},
      {"int1", "uint1"},
      {"fp1", "float1_e1m0fnu"},
      {"ufp1", "float1_e1m0fnu"},
      {"fp2", "float2_e1m0fn"},
      {"fp3", "float3_e1m1fn"},
      {"fp4", "float4_e2m1fn"},
      {"fp5", "float5_e2m2fn"},
      {"fp6", "float6_e3m2fn"},
      {"fp7", "float7_e3m3fn"},
      {"fp9", "float9_e4m4fn"},
      {"fp10", "float10_e5m4fn"},
      {"fp11", "float11_e5m5fn"},
      {"fp12", "float12_e5m6fn"},
      {"fp13", "float13_e5m7fn"},
      {"fp14", "float14_e5m8fn"},
      {"fp15", "float15_e5m9fn"},
      {"ufp2", "float2_e1m1fnu"},
      {"ufp3", "float3_e1m2fnu"},
      {"ufp4", "float4_e2m2fnu"},
      {"ufp5", "float5_e2m3fnu"},
      {"ufp6", "float6_e3m3fnu"},
      {"ufp7", "float7_e3m4fnu"},
      {"ufp8", "float8_e4m4fnu"},
      {"ufp9", "float9_e4m5fnu"},
      {"ufp10", "float10_e5m5fnu"},
      {"ufp11", "float11_e5m6fnu"},
      {"ufp12", "float12_e5m7fnu"},
      {"ufp13", "float13_e5m8fnu"},
      {"ufp14", "float14_e5m9fnu"},
      {"ufp15", "float15_e5m10fnu"},
      {"ufp16", "float16_e5m11fnu"},
  };
  CHECK(std::size(expected) == storage_type_aliases().size());
  for (const auto& [alias, canonical] : expected) {
    INFO(std::string(alias));
    CHECK(storage_type(alias).name == canonical);
    CHECK(find_storage_type(alias) == &storage_type(canonical));
  }
  for (const auto& alias : storage_type_aliases()) CHECK(find_storage_type(alias.alias) != nullptr);
  for (const auto& type : all_storage_types()) CHECK(find_storage_type(type.name) == &type);
}

TEST_CASE("storage types: an unknown name is a ConfigError naming it", "[format][storage_type]") {
  CHECK(find_storage_type("uint17") == nullptr);
  CHECK(find_storage_type("") == nullptr);
  CHECK(find_storage_type("FP8") == nullptr);  // names are case-sensitive, as in the reference
  try {
    storage_type("float6_e3m3fn");
    FAIL("expected ConfigError");
  } catch (const ConfigError& error) {
    CHECK(std::string(error.what()).find("\"float6_e3m3fn\"") != std::string::npos);
  }
}

TEST_CASE("storage types: the dynamic-quantization ladder", "[format][storage_type]") {
  const auto ladder = weights_dtype_order();
  // Each width n = 1..16 contributes int{n} (n >= 2), uint{n} and every custom float of width n; the
  // natives float8_e4m3fn, float8_e5m2 (after int8) and float16 (after int16) are the only others.
  std::size_t custom_floats = 0;
  for (const auto& type : all_storage_types()) custom_floats += type.is_custom_float();
  CHECK(ladder.size() == 15 + 16 + custom_floats + 3);
  CHECK(ladder.front() == "uint1");
  CHECK(ladder.back() == "float16_e5m11fnu");
  std::set<std::string_view> seen;
  int previous_bits = 0;
  for (std::string_view name : ladder) {
    INFO(std::string(name));
    const StorageType* type = find_storage_type(name);
    REQUIRE(type != nullptr);
    CHECK(type->name == name);  // canonical names only
    CHECK(seen.insert(name).second);
    CHECK(type->bits >= previous_bits);  // coarsest first
    previous_bits = type->bits;
  }
  CHECK(seen.count("float32") == 0);
  CHECK(seen.count("int32") == 0);
}
