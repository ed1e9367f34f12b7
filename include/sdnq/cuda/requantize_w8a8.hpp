#pragma once
// Quantized-matmul layers whose stored codes gemm_w8a8 cannot read as they are (grouped or packed signed
// integers: uint4 g64 + SVD saved with use_quantized_matmul, int4 row-wise, codebooks, ...) turned once at
// load into int8 gemm_w8a8 weights: the operand the reference computes on every call (§5.1 step 1,
// quant::detail::weight_operand: dequantized without SVD in the scale dtype and re-quantized per output
// row to int8, or the packed codes' values as they are) with the layer's SVD factors. The int8 product
// is then the reference's exactly; only the SVD branch rounds its low-rank product to the activation
// dtype (gemm_w8a8.cuh). Host only; the codes take 8 bits a weight on the device.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

#include "sdnq/core/error.hpp"
#include "sdnq/core/parallel.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/detail/w8a8_repack.hpp"
#include "sdnq/quant/detail/layers_qmm.hpp"

namespace sdnq::cuda {

// Whether requantize_for_w8a8 takes `layer`: a Linear with quantized matmul on, no Hadamard rotation
// (gemm_w8a8 does not rotate x) and K % 16 == 0, whose operand gemm_w8a8 runs:
//   int8 product: re-quantized layers, or signed integer codes used directly (no weight zero point:
//                 gemm_w8a8 has no zero-point terms);
//   e4m3 product: re-quantized layers, or signed packed custom floats of at most 7 bits and range 448
//                 used directly (their values are e4m3 values), without an SVD branch (gemm_w8a8 runs
//                 one with int8 only). float8_e5m2 codes are not e4m3 values: they stay weight-only.
inline bool requantizes_for_w8a8(const quant::QuantizedWeight& layer) {
  const quant::LayerLayout& layout = layer.layout;
  if (layout.kind != quant::LayerKind::linear || !layout.use_quantized_matmul || layout.matmul_type == nullptr ||
      layout.hadamard_size > 0 || layout.original_shape.rank() != 2 || layout.original_shape[1] % 16 != 0)
    return false;
  const format::StorageType& type = *layout.weights_type;
  switch (quant::matmul_dtype_from_name(layout.matmul_type->name)) {
    case quant::MatmulDType::int8:
      return layout.re_quantize_for_matmul || (type.is_integer && type.is_signed() && !layer.zero_point);
    case quant::MatmulDType::float8_e4m3fn: {
      const bool svd = layer.svd_up.has_value() && layout.svd_rank > 0;
      const bool e4m3_values = !type.is_integer && type.is_packed && type.is_signed() && type.bits <= 7 &&
                               type.max <= 448.0 && !layer.zero_point;
      return !svd && (layout.re_quantize_for_matmul || e4m3_values);
    }
    default:
      return false;
  }
}

namespace detail {

// The e4m3 codes [N, K] of an operand whose values are e4m3 values (custom floats of at most 7 bits and
// range 448); UnsupportedError naming the layer if one is not.
inline Tensor exact_e4m3_codes(const quant::detail::WeightOperand& operand, std::string_view name) {
  Tensor codes = Tensor::empty(Shape{operand.out_features, operand.in_features}, DType::f8_e4m3fn);
  auto* bytes = static_cast<std::uint8_t*>(codes.data());
  std::atomic<bool> exact{true};
  parallel_for(0, static_cast<std::int64_t>(operand.float_values.size()), 1 << 16,
               [&](std::int64_t begin, std::int64_t end) {
                 for (std::int64_t i = begin; i < end; ++i) {
                   const float value = operand.float_values[static_cast<std::size_t>(i)];
                   const fp8_e4m3fn code(value);
                   bytes[i] = code.bits;
                   if (code.to_float() != value) exact.store(false, std::memory_order_relaxed);
                 }
               });
  SDNQ_REQUIRE(exact.load(), UnsupportedError, "{}: its quantized-matmul operand holds values that are not e4m3 values",
               name);
  return codes;
}

// The code tables of `layer`'s int8 operand `codes` [N, K], where its stored codes fit them and they are
// smaller than the codes (quant::code_table_group); else nullopt.
inline std::optional<quant::Int8CodeTables> operand_code_tables(const quant::QuantizedWeight& layer,
                                                                const Tensor& codes) {
  const std::optional<std::int64_t> group = quant::code_table_group(layer.layout);
  if (!group) return std::nullopt;
  std::optional<Tensor> indices = quant::stored_code_indices(layer);
  if (!indices) return std::nullopt;
  const auto count = static_cast<std::size_t>(codes.numel());
  return quant::tabulate_int8_operand(std::span<const std::int8_t>(codes.data_as<std::int8_t>(), count),
                                      std::move(*indices), codes.size(0), codes.size(1), *group);
}

}  // namespace detail

// How requantize_for_w8a8 hands over the int8 operand: as int8 codes, or as code tables
// (quant::Int8CodeTables, 5-6 bits a weight) where the layer's stored codes are bit-packed 4-bit or
// narrower ones whose groups make the tables smaller, and as int8 codes elsewhere.
enum class W8A8OperandStorage : std::uint8_t { int8_codes, code_tables_where_smaller };

// The gemm_w8a8 weights of `layer` (requantizes_for_w8a8 must hold, else UnsupportedError naming the
// layer) for activations T, with the SVD factors in T zero-padded to a multiple of 64 ranks.
template <class T>
W8A8WeightsHost requantize_for_w8a8(const quant::QuantizedWeight& layer,
                                    W8A8OperandStorage storage = W8A8OperandStorage::int8_codes) {
  const std::string_view name = layer.name;
  SDNQ_REQUIRE(requantizes_for_w8a8(layer), UnsupportedError,
               "{}: not a quantized-matmul Linear whose operand gemm_w8a8 runs (int8, or e4m3 without SVD; no Hadamard "
               "rotation, no weight zero point), which is what re-quantizing for gemm_w8a8 takes",
               name);
  const quant::MatmulDType matmul = quant::matmul_dtype_from_name(layer.layout.matmul_type->name);
  // The int8 operand [N, K], its F32 scales and the dtype its activation scales are computed in.
  Tensor codes, scale;
  DType scale_dtype = DType::f32;
  if (layer.layout.re_quantize_for_matmul) {  // the re-quantized rows as they come, without copies
    quant::RowQuantized rows = quant::detail::re_quantized_rows(layer, dtype_of_v<T>, matmul);
    codes = std::move(rows.values);
    scale = Tensor::empty(Shape{rows.rows}, DType::f32);
    std::copy(rows.scale.begin(), rows.scale.end(), scale.data_as<float>());
    scale_dtype = rows.scale_dtype;  // as weight_operand's re-quantized operand carries it
  } else {
    const quant::detail::WeightOperand operand = quant::detail::weight_operand(layer, dtype_of_v<T>);
    SDNQ_REQUIRE(operand.matmul == matmul && operand.zero_point.empty(), UnsupportedError,
                 "{}: its quantized-matmul operand has a zero point, which gemm_w8a8 does not apply", name);
    if (matmul == quant::MatmulDType::int8) {
      codes = Tensor::empty(Shape{operand.out_features, operand.in_features}, DType::i8);
      parallel_copy(codes.data(), operand.int_values.data(), operand.int_values.size());
    } else {  // custom float values: e4m3 codes, checked to be exact
      codes = detail::exact_e4m3_codes(operand, name);
    }
    scale = Tensor::empty(Shape{operand.out_features}, DType::f32);
    std::copy(operand.scale.begin(), operand.scale.end(), scale.data_as<float>());
    scale_dtype = operand.scale_dtype;
  }
  const std::int64_t n = codes.size(0), k = codes.size(1);
  std::optional<quant::Int8CodeTables> tables;
  if (storage == W8A8OperandStorage::code_tables_where_smaller && matmul == quant::MatmulDType::int8)
    tables = detail::operand_code_tables(layer, codes);
  // The codes are handed over (repack checks them), then dropped where tables replace them.
  const auto with_tables = [&](W8A8WeightsHost out) {
    if (tables) {
      out.tables = std::move(tables);
      out.codes = Tensor();
    }
    return out;
  };
  if (!layer.svd_up || !layer.svd_down || layer.layout.svd_rank == 0)
    return with_tables(repack_owned_operand_for_w8a8<T>(name, std::move(codes), std::move(scale), scale_dtype));
  // The quantized-matmul layout stores svd_up [r, N] and svd_down [K, r]; gemm_w8a8 takes [N, r] and [r, K].
  const std::vector<float> up_values = quant::detail::to_float_vector(*layer.svd_up, "svd_up");
  const std::vector<float> down_values = quant::detail::to_float_vector(*layer.svd_down, "svd_down");
  const std::int64_t rank = layer.layout.svd_rank;
  SDNQ_REQUIRE(static_cast<std::int64_t>(up_values.size()) == rank * n &&
                   static_cast<std::int64_t>(down_values.size()) == k * rank,
               ShapeError, "{}: SVD factors of rank {} must be svd_up [{}, {}] and svd_down [{}, {}], got {} and {}",
               name, rank, rank, n, k, rank, layer.svd_up->shape().to_string(), layer.svd_down->shape().to_string());
  Tensor up = Tensor::empty(Shape{n, rank}, DType::f32), down = Tensor::empty(Shape{rank, k}, DType::f32);
  for (std::int64_t r = 0; r < rank; ++r) {
    for (std::int64_t o = 0; o < n; ++o) up.data_as<float>()[o * rank + r] = up_values[r * n + o];
    for (std::int64_t c = 0; c < k; ++c) down.data_as<float>()[r * k + c] = down_values[c * rank + r];
  }
  // The reference's SVD dtype is the scale dtype: the model dtype when dequantize_fp32 is off.
  return with_tables(repack_owned_operand_for_w8a8<T>(name, std::move(codes), std::move(scale), scale_dtype, up.view(),
                                                      down.view(), !layer.layout.dequantize_fp32));
}

// Whether the indices of weights held as code tables are, byte for byte, the checkpoint's codes `stored`: 4-bit
// integer codes packed two a byte along each row, whose GEMV layout (repack_for_gemv) is those bytes too, with
// in_features and groups the GEMV takes (multiples of 32). Then one copy serves the table expansion and a
// GEMV over the stored codes (nn::gpu::Linear's small-M path).
inline bool table_indices_are_stored_codes(const W8A8WeightsHost& weights, const LinearCodes& stored) {
  const std::int64_t group = stored.group_size > 0 ? stored.group_size : stored.in_features;
  if (!weights.tables || stored.bits != 4 || stored.value == CodeValue::lookup || stored.transposed ||
      stored.in_features % 32 != 0 || group % 32 != 0)
    return false;
  const Tensor& indices = weights.tables->indices;
  return stored.codes.dtype() == DType::u8 && stored.codes.is_contiguous() &&
         stored.codes.nbytes() == indices.nbytes() &&
         std::memcmp(stored.codes.data(), indices.data(), indices.nbytes()) == 0;
}

}  // namespace sdnq::cuda
