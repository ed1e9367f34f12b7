#pragma once
// What the CUDA kernels read, and the load-time repack that produces it. Host code only.
//
// `LinearCodes` describes one quantized Linear weight as the checkpoint stores it (sdnq-format.md
// §6.1): the dequantize kernel (dequantize.cuh) reads exactly this. `repack_for_gemv` turns the same
// tensors into the small-M GEMM layout of gemv.cuh:
//   codes         U32 [N, K/32, bits]   each run of 32 codes of a row is `bits` little-endian words,
//                                       code j at bit j·bits (a uint4 row is the checkpoint's bytes)
//   group_params  T   [N, G, 2]         (scale, zero_point) per group, rounded to the activation
//                                       dtype T as the reference loader does (fixture README)
//   svd_up        T   [N, r],  svd_down T [r, K]
// Values are q = code + code_offset, code_offset = −2^(bits−1) for signed formats (offset binary, as
// the packer stores them; native int8 is converted), 0 for unsigned ones.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "sdnq/core/dtype.hpp"
#include "sdnq/core/error.hpp"
#include "sdnq/core/scalar.hpp"
#include "sdnq/core/parallel.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/detail/kernel_packed_codes.hpp"

namespace sdnq::cuda {

// How a code becomes the value q that the scale multiplies.
enum class CodeValue : std::uint8_t {
  unsigned_integer,  // q = code                      (uint2..uint8, zero point present)
  signed_integer,    // q = code − 2^(bits−1) packed, two's complement for native int8
  lookup,            // q = table[code]               (custom floats ≤ 8 bits, native fp8)
};

// Whether scale and zero point are rounded to the output dtype before the arithmetic. The reference
// loader does (diffusers casts them to the model dtype first); keeping fp32 differs by ≤ 1 ulp.
enum class ScaleRounding : std::uint8_t { to_output_dtype, none };

// One quantized Linear weight [out_features, in_features] in checkpoint layout. All views on one device.
struct LinearCodes {
  std::string name;                  // for error messages, e.g. "blocks.0.attn.to_q"
  int bits = 0;                      // 1..8
  CodeValue value = CodeValue::unsigned_integer;
  std::int64_t out_features = 0;     // N
  std::int64_t in_features = 0;      // K
  std::int64_t group_size = -1;      // > 0 elements per group, −1 row-wise, −2 tensor-wise
  bool transposed = false;           // direct-quantized-matmul layout: 8-bit codes stored [K, N]
  TensorView codes;                  // packed U8 (I64/U8 for 1 bit), or I8/U8/F8 with N·K elements
  TensorView scale;                  // F32, BF16 or F16: [N, G, 1], [N, 1], [1, 1] or [1, N]
  std::optional<TensorView> zero_point;    // same shape and dtype as scale (unsigned formats)
  std::optional<TensorView> lookup_table;  // F32 [2^bits] decoded values (CodeValue::lookup)
  std::optional<TensorView> svd_up;        // [N, r] in the output dtype
  std::optional<TensorView> svd_down;      // [r, K] in the output dtype

  std::int64_t groups_per_row() const { return group_size > 0 ? in_features / group_size : 1; }
  std::int64_t svd_rank() const { return svd_up ? svd_up->size(1) : 0; }
};

namespace detail {

inline void require_linear_codes_consistent(const LinearCodes& w) {
  SDNQ_REQUIRE(w.bits >= 1 && w.bits <= 8, UnsupportedError,
               "{}: {}-bit codes are not supported by the CUDA kernels (1..8 bits)", w.name, w.bits);
  SDNQ_REQUIRE(w.out_features > 0 && w.in_features > 0, ShapeError, "{}: empty weight [{}, {}]", w.name,
               w.out_features, w.in_features);
  SDNQ_REQUIRE(w.group_size > 0 ? w.in_features % w.group_size == 0 : (w.group_size == -1 || w.group_size == -2),
               ShapeError, "{}: group size {} does not divide in_features {} (expected > 0, -1 or -2)", w.name,
               w.group_size, w.in_features);
  const std::int64_t numel = w.out_features * w.in_features;
  if (w.bits == 8) {
    SDNQ_REQUIRE(w.codes.numel() == numel && w.codes.element_size() == 1, ShapeError,
                 "{}: 8-bit weight must hold {} one-byte codes, got {} {}", w.name, numel,
                 dtype_name(w.codes.dtype()), w.codes.shape().to_string());
  } else {
    const int codes_per_block = w.bits == 1 ? 8 : w.bits == 2 ? 4 : w.bits == 4 ? 2 : w.bits == 6 ? 4 : 8;
    const int words_per_block = w.bits == 6 ? 3 : (w.bits == 3 || w.bits == 5 || w.bits == 7) ? w.bits : 1;
    SDNQ_REQUIRE(numel % codes_per_block == 0, ShapeError,
                 "{}: {} codes are not a whole number of {}-code packer blocks", w.name, numel, codes_per_block);
    const std::int64_t words = numel / codes_per_block * words_per_block;
    const bool one_bit_ok = w.bits != 1 || w.codes.element_size() == 8 || w.codes.element_size() == 1;
    SDNQ_REQUIRE(one_bit_ok && (w.bits == 1 || w.codes.element_size() == 1) && w.codes.numel() == words,
                 ShapeError, "{}: packed {}-bit weight must hold {} words, got {} {}", w.name, w.bits, words,
                 dtype_name(w.codes.dtype()), w.codes.shape().to_string());
  }
  SDNQ_REQUIRE(w.codes.is_contiguous(), ShapeError, "{}: weight codes must be contiguous", w.name);
  SDNQ_REQUIRE(!w.transposed || w.bits == 8, ShapeError, "{}: only unpacked 8-bit codes can be transposed",
               w.name);
  const std::int64_t params = w.group_size == -2 ? 1 : w.out_features * w.groups_per_row();
  const bool param_dtype_ok = w.scale.dtype() == DType::f32 || w.scale.dtype() == DType::bf16 ||
                              w.scale.dtype() == DType::f16;
  SDNQ_REQUIRE(param_dtype_ok && w.scale.numel() == params && w.scale.is_contiguous(), ShapeError,
               "{}: scale must be a contiguous F32/BF16/F16 tensor of {} elements, got {} {}", w.name, params,
               dtype_name(w.scale.dtype()), w.scale.shape().to_string());
  if (w.zero_point)
    SDNQ_REQUIRE(w.zero_point->numel() == params && w.zero_point->dtype() == w.scale.dtype(), ShapeError,
                 "{}: zero_point must match scale ({} {}), got {} {}", w.name, dtype_name(w.scale.dtype()),
                 w.scale.shape().to_string(), dtype_name(w.zero_point->dtype()), w.zero_point->shape().to_string());
  SDNQ_REQUIRE(w.value != CodeValue::lookup ||
                   (w.lookup_table && w.lookup_table->dtype() == DType::f32 &&
                    w.lookup_table->numel() == (std::int64_t{1} << w.bits)),
               ShapeError, "{}: lookup formats need an F32 table of {} values", w.name, std::int64_t{1} << w.bits);
  SDNQ_REQUIRE(w.svd_up.has_value() == w.svd_down.has_value(), ShapeError,
               "{}: svd_up and svd_down come together", w.name);
  if (w.svd_up) {
    const std::int64_t rank = w.svd_up->size(1);
    SDNQ_REQUIRE(w.svd_up->rank() == 2 && w.svd_down->rank() == 2 && w.svd_up->size(0) == w.out_features &&
                     w.svd_down->size(0) == rank && w.svd_down->size(1) == w.in_features &&
                     w.svd_up->dtype() == w.svd_down->dtype() && w.svd_up->is_contiguous() &&
                     w.svd_down->is_contiguous(),
                 ShapeError, "{}: SVD factors must be [{}, r] and [r, {}] of one dtype, got {} and {}", w.name,
                 w.out_features, w.in_features, w.svd_up->shape().to_string(), w.svd_down->shape().to_string());
  }
}

template <class T>
T narrow_param(const TensorView& view, std::int64_t index) {
  switch (view.dtype()) {
    case DType::f32: return T(static_cast<const float*>(view.data())[index]);
    case DType::bf16: return T(static_cast<const bf16*>(view.data())[index].to_float());
    default: return T(static_cast<const fp16*>(view.data())[index].to_float());
  }
}

// LinearCodes-layout SVD factors (svd_up [N, r], svd_down [r, K], contiguous, any float dtype) as T
// tensors svd_up [N, rp] and svd_down [rp, K], the rank zero-padded to rp, a multiple of `granule`:
// 16 (the mma k-step) for gemm_tc's layout, whose kernels zero-fill or skip the rest of their last
// 64-wide K tile; 64 (the default) for gemm_w8a8's, whose SVD tiles read whole 64-wide tiles.
template <class T>
struct PaddedSvdFactors {
  Tensor up, down;
  std::int64_t rank = 0, rank_padded = 0;
};
template <class T>
PaddedSvdFactors<T> padded_svd_factors(const TensorView& svd_up, const TensorView& svd_down,
                                       std::int64_t granule = 64) {
  PaddedSvdFactors<T> out;
  const std::int64_t n = svd_up.size(0), k = svd_down.size(1);
  out.rank = svd_up.size(1);
  out.rank_padded = (out.rank + granule - 1) / granule * granule;
  out.up = Tensor::zeros(Shape{n, out.rank_padded}, dtype_of_v<T>);
  out.down = Tensor::zeros(Shape{out.rank_padded, k}, dtype_of_v<T>);
  T* up = out.up.template data_as<T>();
  for (std::int64_t row = 0; row < n; ++row)
    for (std::int64_t r = 0; r < out.rank; ++r) up[row * out.rank_padded + r] = narrow_param<T>(svd_up, row * out.rank + r);
  T* down = out.down.template data_as<T>();
  for (std::int64_t i = 0; i < out.rank * k; ++i) down[i] = narrow_param<T>(svd_down, i);
  return out;
}

// All N·K codes of a host LinearCodes, row-major [N, K], as unsigned codes (offset binary for signed).
template <int Bits>
void unpack_all_codes(const LinearCodes& w, std::vector<std::uint8_t>& codes) {
  using Packing = ReferencePacking<Bits>;
  const auto* bytes = static_cast<const std::uint8_t*>(w.codes.data());
  const std::int64_t numel = w.out_features * w.in_features;
  codes.resize(static_cast<std::size_t>(numel));
  const int word_bytes = static_cast<int>(w.codes.element_size());  // 8 for int64 1-bit words
  const bool native_int8 = Bits == 8 && w.value == CodeValue::signed_integer;
  // Load-time work over every code of a model: on all host threads (disjoint blocks and rows).
  parallel_for(0, numel / Packing::block_codes, std::int64_t{1} << 14, [&](std::int64_t first, std::int64_t last) {
    for (std::int64_t block = first; block < last; ++block) {
      std::uint32_t words[Packing::block_words];
      std::uint32_t block_codes[Packing::block_codes];
      for (int k = 0; k < Packing::block_words; ++k)
        words[k] = bytes[(block * Packing::block_words + k) * word_bytes];  // little-endian low byte
      Packing::decode(words, block_codes);
      for (int j = 0; j < Packing::block_codes; ++j) {
        std::uint32_t code = block_codes[j];
        if (native_int8) code ^= 0x80u;  // two's complement -> offset binary
        codes[static_cast<std::size_t>(block * Packing::block_codes + j)] = static_cast<std::uint8_t>(code);
      }
    }
  });
  if (w.transposed) {  // stored [K, N]: bring it to [N, K]
    std::vector<std::uint8_t> rows(codes.size());
    parallel_for(0, w.out_features, 16, [&](std::int64_t first, std::int64_t last) {
      for (std::int64_t o = first; o < last; ++o)
        for (std::int64_t c = 0; c < w.in_features; ++c)
          rows[static_cast<std::size_t>(o * w.in_features + c)] =
              codes[static_cast<std::size_t>(c * w.out_features + o)];
    });
    codes.swap(rows);
  }
}

// The same for the code width w.bits (1..8).
inline void unpack_all_codes(const LinearCodes& w, std::vector<std::uint8_t>& codes) {
  switch (w.bits) {
    case 1:
      return unpack_all_codes<1>(w, codes);
    case 2:
      return unpack_all_codes<2>(w, codes);
    case 3:
      return unpack_all_codes<3>(w, codes);
    case 4:
      return unpack_all_codes<4>(w, codes);
    case 5:
      return unpack_all_codes<5>(w, codes);
    case 6:
      return unpack_all_codes<6>(w, codes);
    case 7:
      return unpack_all_codes<7>(w, codes);
    default:
      return unpack_all_codes<8>(w, codes);
  }
}

}  // namespace detail

// How the GEMV turns float codes into values. A table of 2^bits values in shared memory reads every float
// format; tables of 256 values put most lanes of a warp on colliding banks, so native fp8 codes are converted
// by the hardware instead (two codes an instruction on sm_89 and newer), which gives the same values as the
// table, NaN included.
enum class FloatDecode : std::uint8_t { table, fp8_e4m3fn, fp8_e5m2 };

// The decode that reproduces `values` (the 2^bits table of a float format) exactly: a native fp8 conversion
// where every value, signed zeros and NaN included, is that format's, else the table.
inline FloatDecode float_decode_of(const float* values, int bits) {
  if (bits != 8) return FloatDecode::table;
  const auto same = [](float a, float b) {
    std::uint32_t bits_a = 0, bits_b = 0;
    std::memcpy(&bits_a, &a, 4);
    std::memcpy(&bits_b, &b, 4);
    return (a != a && b != b) || bits_a == bits_b;  // any NaN matches any NaN
  };
  bool e4m3 = true, e5m2 = true;
  for (int code = 0; code < 256; ++code) {
    const auto byte = static_cast<std::uint8_t>(code);
    e4m3 = e4m3 && same(values[code], fp8_e4m3fn::from_bits(byte).to_float());
    e5m2 = e5m2 && same(values[code], fp8_e5m2::from_bits(byte).to_float());
  }
  return e4m3 ? FloatDecode::fp8_e4m3fn : e5m2 ? FloatDecode::fp8_e5m2 : FloatDecode::table;
}

inline const char* float_decode_name(FloatDecode decode) {
  switch (decode) {
    case FloatDecode::fp8_e4m3fn:
      return "fp8_e4m3fn";
    case FloatDecode::fp8_e5m2:
      return "fp8_e5m2";
    default:
      return "table";
  }
}

// The GEMV layout (see the file comment), in host memory; upload each tensor as is.
struct GemvWeightsHost {
  int bits = 0;
  bool is_signed = false;
  std::int64_t out_features = 0, in_features = 0;
  std::int64_t group_size = 0;   // elements per group after repack (in_features when row/tensor-wise)
  DType dtype = DType::bf16;     // activation, output and parameter dtype
  Tensor codes;                  // U32 [N, K/32, bits]
  Tensor group_params;           // dtype [N, K/group_size, 2]
  Tensor svd_up, svd_down;       // dtype [N, r], [r, K]; undefined without SVD
  Tensor code_values;            // float codes: F32 [2^bits] decoded values; else undefined
  FloatDecode float_decode = FloatDecode::table;  // float codes: how the GEMV reads them (float_decode_of)
};

// The GEMV layout's group parameters alone: T [N, K/group, 2], (scale, zero point) rounded to T (zero 0
// without a zero point). Also what a layer whose 4-bit codes are already on the device in the GEMV layout
// (code-table indices, nn::gpu::Linear) needs besides them.
template <class T>
Tensor gemv_group_params(const LinearCodes& w) {
  const std::int64_t n = w.out_features, k = w.in_features;
  const std::int64_t groups = k / (w.group_size > 0 ? w.group_size : k);
  Tensor out = Tensor::empty(Shape{n, groups, 2}, dtype_of_v<T>);
  auto* params = out.data_as<T>();
  parallel_for(0, n, 256, [&](std::int64_t first, std::int64_t last) {  // load-time work over every group
    for (std::int64_t row = first; row < last; ++row)
      for (std::int64_t g = 0; g < groups; ++g) {
        // Tensor-wise: one stored value; transposed row-wise: [1, N]; otherwise [N, G, 1] row-major.
        const std::int64_t source = w.group_size == -2 ? 0 : row * groups + g;
        params[(row * groups + g) * 2] = detail::narrow_param<T>(w.scale, source);
        params[(row * groups + g) * 2 + 1] = w.zero_point ? detail::narrow_param<T>(*w.zero_point, source) : T(0.0f);
      }
  });
  return out;
}

// Load-time repack of a host checkpoint weight for gemv.cuh. Float codes (CodeValue::lookup) keep their table
// of values and the decode that reproduces it. Throws UnsupportedError for what the GEMV does not handle
// (in_features or group size not a multiple of 32).
template <class T>
GemvWeightsHost repack_for_gemv(const LinearCodes& w) {
  static_assert(std::is_same_v<T, bf16> || std::is_same_v<T, fp16>, "activations are bf16 or fp16");
  detail::require_linear_codes_consistent(w);
  SDNQ_REQUIRE(w.codes.device().is_cpu() && w.scale.device().is_cpu(), ShapeError,
               "{}: repack_for_gemv reads host tensors", w.name);
  const bool lookup = w.value == CodeValue::lookup;
  // (require_linear_codes_consistent checked that float codes come with an F32 table of 2^bits values.)
  SDNQ_REQUIRE(!lookup || (w.lookup_table->device().is_cpu() && w.lookup_table->is_contiguous()), ShapeError,
               "{}: repack_for_gemv reads host tensors (the table of float values: contiguous, on {})", w.name,
               w.lookup_table->device().to_string());
  const std::int64_t n = w.out_features, k = w.in_features;
  const std::int64_t group_size = w.group_size > 0 ? w.group_size : k;
  SDNQ_REQUIRE(k % 32 == 0 && group_size % 32 == 0, UnsupportedError,
               "{}: the small-M GEMM needs in_features ({}) and group size ({}) to be multiples of 32", w.name, k,
               group_size);

  std::vector<std::uint8_t> codes;
  detail::unpack_all_codes(w, codes);

  GemvWeightsHost out;
  out.bits = w.bits;
  out.is_signed = w.value == CodeValue::signed_integer;
  out.out_features = n;
  out.in_features = k;
  out.group_size = group_size;
  out.dtype = dtype_of_v<T>;
  out.codes = Tensor::zeros(Shape{n, k / 32, w.bits}, DType::u32);
  auto* words = out.codes.data_as<std::uint32_t>();
  parallel_for(0, n, 16, [&](std::int64_t first, std::int64_t last) {  // rows own their words
    for (std::int64_t row = first; row < last; ++row)
      for (std::int64_t c = 0; c < k; ++c) {
        const std::uint64_t bit = static_cast<std::uint64_t>(c % 32) * static_cast<std::uint64_t>(w.bits);
        const std::uint64_t code = codes[static_cast<std::size_t>(row * k + c)];
        std::uint32_t* chunk = words + (row * (k / 32) + c / 32) * w.bits;
        chunk[bit / 32] |= static_cast<std::uint32_t>(code << (bit % 32));
        if (bit % 32 + static_cast<std::uint64_t>(w.bits) > 32)
          chunk[bit / 32 + 1] |= static_cast<std::uint32_t>(code >> (32 - bit % 32));
      }
  });

  out.group_params = gemv_group_params<T>(w);
  if (lookup) {
    out.code_values = Tensor::empty(Shape{std::int64_t{1} << w.bits}, DType::f32);
    std::memcpy(out.code_values.data(), w.lookup_table->data(), out.code_values.nbytes());
    out.float_decode = float_decode_of(out.code_values.data_as<float>(), w.bits);
  }

  if (w.svd_up) {
    const std::int64_t rank = w.svd_rank();
    out.svd_up = Tensor::empty(Shape{n, rank}, dtype_of_v<T>);
    out.svd_down = Tensor::empty(Shape{rank, k}, dtype_of_v<T>);
    for (std::int64_t i = 0; i < n * rank; ++i) out.svd_up.data_as<T>()[i] = detail::narrow_param<T>(*w.svd_up, i);
    for (std::int64_t i = 0; i < rank * k; ++i)
      out.svd_down.data_as<T>()[i] = detail::narrow_param<T>(*w.svd_down, i);
  }
  return out;
}

}  // namespace sdnq::cuda
