#pragma once
// §5.1 quantized matmul on a 2-D activation x2 [M, K] (already in the model dtype, already Hadamard-
// rotated): the weight operand (re-quantized or direct), the SVD bias term, the activation
// quantization, the zero-point bias terms, the int32 / fp32 GEMM and the fp32 epilogue. Returns the
// fp32 epilogue results [M, N] before the final cast to the model dtype.
#include <cmath>
#include <cstdint>
#include <optional>
#include <vector>

#include "sdnq/core/error.hpp"
#include "sdnq/core/parallel.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/quant/activation_quant.hpp"
#include "sdnq/quant/dequantize.hpp"
#include "sdnq/quant/detail/layers_gemm.hpp"
#include "sdnq/quant/detail/layers_numeric.hpp"

namespace sdnq::quant::detail {

// The dtype the reference's scale / zero point / SVD factors have after loading (§6.4).
inline DType loaded_scale_dtype(const LayerLayout& layout, DType model_dtype) {
  return layout.dequantize_fp32 ? DType::f32 : model_dtype;
}

inline MatmulDType matmul_dtype_of(const LayerLayout& layout) {
  SDNQ_REQUIRE(layout.matmul_type != nullptr, ConfigError, "layer layout has no quantized matmul dtype");
  return matmul_dtype_from_name(layout.matmul_type->name);
}

// The GEMM operand B [N, K] (PyTorch [out, in] order) with per-output scale / zero point.
struct WeightOperand {
  MatmulDType matmul = MatmulDType::int8;
  DType scale_dtype = DType::f32;
  std::int64_t out_features = 0, in_features = 0;
  std::vector<std::int8_t> int_values;  // int8 / uint8 paths
  std::vector<float> float_values;      // fp8 / fp16 paths: exact values of the operand
  std::vector<float> scale;             // [N]
  std::vector<float> zero_point;        // [N] or empty
};

// A stored scale / zero point with one value per output channel (or one for the tensor), rounded
// to the model dtype as the reference loader does (fixture README), as [N] floats.
inline std::vector<float> per_output_values(TensorView stored, std::int64_t out_features, DType model_dtype,
                                            const char* what) {
  std::vector<float> values = to_float_vector(stored, what);
  SDNQ_REQUIRE(static_cast<std::int64_t>(values.size()) == out_features || values.size() == 1, ShapeError,
               "direct quantized matmul needs one {} per output channel ({}) or one per tensor, got shape {}", what,
               out_features, stored.shape().to_string());
  if (values.size() == 1) values.assign(static_cast<std::size_t>(out_features), values[0]);
  for (float& value : values) value = round_to(model_dtype, value);
  return values;
}

// An fp32 copy of a stored scale / zero point with its values rounded to the model dtype.
inline Tensor rounded_to_model_dtype(TensorView stored, DType model_dtype, const char* what) {
  std::vector<float> values = to_float_vector(stored, what);
  for (float& value : values) value = round_to(model_dtype, value);
  return tensor_from_floats(values, stored.shape(), DType::f32);
}

// §5.1 step 1 for layers the reference re-quantizes on every call: the weight dequantized as the loaded
// reference holds it, then quantized per output row for `matmul`; values [out, in] as a tensor.
inline RowQuantized re_quantized_rows(const QuantizedWeight& weight, DType model_dtype, MatmulDType matmul) {
  const LayerLayout& layout = weight.layout;
  const DType scale_dtype = loaded_scale_dtype(layout, model_dtype);
  // The loaded reference model holds scale / zero point rounded to the model dtype (fixture README),
  // then dequantizes in the scale dtype, without SVD and without the inverse Hadamard rotation.
  QuantizedWeight rounded = weight;
  Tensor scale = rounded_to_model_dtype(weight.scale, model_dtype, "scale"), zero_point;
  rounded.scale = scale;
  if (weight.zero_point) {
    zero_point = rounded_to_model_dtype(*weight.zero_point, model_dtype, "zero_point");
    rounded.zero_point = zero_point.view();
  }
  const std::int64_t out_features = layout.original_shape[0];
  const std::int64_t in_features = layout.original_shape.numel() / out_features;
  validate_quantized_weight(rounded);
  // Each block of rows re-quantized as it leaves the dequantizer, in cache: no dense [out, in] copy of
  // the weight (4 bytes a weight, a FLUX.1 load's main cost). The rows are cast to the scale dtype
  // first, as dequantize(rounded, scale_dtype, ...) writes them; quantize_rows' arithmetic per row.
  RowQuantized rows = unfilled_rows(out_features, in_features, matmul, scale_dtype);
  const std::optional<DType> intermediate = layout.dequantize_fp32 ? std::nullopt : std::optional<DType>(scale_dtype);
  const bool in_cache = dequantize_row_blocks(
      rounded, std::nullopt, intermediate, false,
      [&](std::int64_t row_begin, std::int64_t row_end, const float* values) {
        std::vector<float> row;  // a row cast to a 16-bit scale dtype
        for (std::int64_t r = row_begin; r < row_end; ++r) {
          const float* dense = values + (r - row_begin) * in_features;
          if (scale_dtype != DType::f32) {
            row.resize(static_cast<std::size_t>(in_features));
            for (std::int64_t c = 0; c < in_features; ++c)
              row[static_cast<std::size_t>(c)] = round_to(scale_dtype, dense[c]);
            dense = row.data();
          }
          quantize_row_into(rows, r, dense);
        }
      });
  if (in_cache) return rows;
  Tensor dense = dequantize(rounded, scale_dtype, ScalePrecision::as_stored, false, false);  // [original_shape]
  dense.reshape({out_features, in_features});
  return matmul == MatmulDType::int8    ? re_quantize_int_mm(dense)
         : matmul == MatmulDType::uint8 ? re_quantize_uint_mm(dense)
                                        : re_quantize_fp_mm(dense, matmul);
}

inline WeightOperand re_quantized_operand(const QuantizedWeight& weight, DType model_dtype, MatmulDType matmul) {
  RowQuantized rows = re_quantized_rows(weight, model_dtype, matmul);
  const std::int64_t out_features = weight.layout.original_shape[0];
  WeightOperand operand;
  operand.matmul = matmul;
  operand.scale_dtype = rows.scale_dtype;
  operand.out_features = out_features;
  operand.in_features = rows.cols;
  operand.scale = std::move(rows.scale);
  if (matmul == MatmulDType::uint8) operand.zero_point = std::move(rows.zero_point);
  if (matmul == MatmulDType::int8 || matmul == MatmulDType::uint8) {
    const auto* codes = rows.values.data_as<std::int8_t>();
    operand.int_values.assign(codes, codes + rows.values.numel());
  } else {
    operand.float_values = to_float_vector(rows.values, "re-quantized weight");
  }
  return operand;
}

// Direct layouts: the stored codes' values q (signed: code + min; unsigned ints: raw code; floats:
// decoded) are what the GEMM consumes. They come from the dequantizer run with a unit scale and a
// zero zero-point (r = q·1 + 0 is exact), already un-transposed to [out, in].
inline WeightOperand direct_operand(const QuantizedWeight& weight, DType model_dtype, MatmulDType matmul) {
  const LayerLayout& layout = weight.layout;
  const std::int64_t out_features = layout.original_shape[0];
  Tensor unit_scale = Tensor::empty(weight.scale.shape(), DType::f32);
  std::fill_n(unit_scale.data_as<float>(), unit_scale.numel(), 1.0f);
  Tensor zero_zero_point;
  QuantizedWeight unit = weight;
  unit.scale = unit_scale;
  unit.svd_up.reset();
  unit.svd_down.reset();
  if (weight.zero_point) {
    zero_zero_point = Tensor::zeros(weight.zero_point->shape(), DType::f32);
    unit.zero_point = zero_zero_point.view();
  }
  unit.layout.svd_rank = 0;
  Tensor codes = dequantize(unit, DType::f32, ScalePrecision::as_stored, false, false);
  const std::int64_t in_features = codes.numel() / out_features;

  WeightOperand operand;
  operand.matmul = matmul;
  operand.scale_dtype = loaded_scale_dtype(layout, model_dtype);
  operand.out_features = out_features;
  operand.in_features = in_features;
  operand.scale = per_output_values(weight.scale, out_features, model_dtype, "scale");
  if (weight.zero_point) operand.zero_point = per_output_values(*weight.zero_point, out_features, model_dtype, "zero_point");
  const float* values = codes.data_as<float>();
  const std::int64_t count = codes.numel();
  if (matmul == MatmulDType::int8 || matmul == MatmulDType::uint8) {
    // Non-packed uint8 codes become code XOR 128 = code - 128 as int8, and z_w += 128·s_w (§5.1 step 1).
    const bool shift_uint8 = layout.weights_type->is_unsigned && !layout.weights_type->is_packed &&
                             layout.weights_type->bits == 8;
    operand.int_values.resize(static_cast<std::size_t>(count));
    for (std::int64_t i = 0; i < count; ++i) {
      const float q = values[i] - (shift_uint8 ? 128.0f : 0.0f);
      SDNQ_REQUIRE(q >= -128.0f && q <= 127.0f && q == std::nearbyint(q), FormatError,
                   "weight code {} of a {} layer does not fit the int8 quantized matmul", values[i],
                   layout.weights_type->name);
      operand.int_values[static_cast<std::size_t>(i)] = static_cast<std::int8_t>(q);
    }
    if (shift_uint8) {
      if (operand.zero_point.empty()) operand.zero_point.assign(operand.scale.size(), 0.0f);
      for (std::size_t n = 0; n < operand.scale.size(); ++n)
        operand.zero_point[n] = round_to(operand.scale_dtype, operand.zero_point[n] + 128.0f * operand.scale[n]);
    }
  } else {
    // fp8 path: e4m3-representable formats convert exactly, float8_e5m2 is passed through as is;
    // fp16 path: the reference converts to fp16.
    operand.float_values.assign(values, values + count);
    if (matmul == MatmulDType::float16)
      for (float& value : operand.float_values) value = round_to(DType::f16, value);
  }
  if (operand.scale_dtype == DType::f16) operand.scale_dtype = DType::f32;
  return operand;
}

inline WeightOperand weight_operand(const QuantizedWeight& weight, DType model_dtype) {
  const MatmulDType matmul = matmul_dtype_of(weight.layout);
  return weight.layout.re_quantize_for_matmul ? re_quantized_operand(weight, model_dtype, matmul)
                                              : direct_operand(weight, model_dtype, matmul);
}

// §5.1 step 3: bias' = bias + (x2 @ svd_down) @ svd_up in the SVD dtype (two roundings: the inner mm,
// then addmm), [M, N]. svd_down is stored [K, r] and svd_up [r, N] in the quantized-matmul layout.
inline std::vector<float> svd_bias(const std::vector<float>& x2, std::int64_t M, std::int64_t K,
                                   const QuantizedWeight& weight, const std::optional<std::vector<float>>& bias,
                                   DType svd_dtype) {
  const TensorView down = *weight.svd_down, up = *weight.svd_up;
  const std::int64_t N = weight.layout.original_shape[0];
  SDNQ_REQUIRE(down.rank() == 2 && up.rank() == 2 && down.size(0) == K && up.size(1) == N && down.size(1) == up.size(0),
               ShapeError, "quantized-matmul SVD factors must be svd_down [{}, r] and svd_up [r, {}], got {} and {}", K,
               N, down.shape().to_string(), up.shape().to_string());
  const std::int64_t rank = down.size(1);
  std::vector<float> down_values = to_float_vector(down, "svd_down"), up_values = to_float_vector(up, "svd_up");
  // gemm_nt wants both operands K-contiguous: transpose the factors.
  std::vector<float> down_t(static_cast<std::size_t>(rank * K)), up_t(static_cast<std::size_t>(N * rank));
  for (std::int64_t k = 0; k < K; ++k)
    for (std::int64_t r = 0; r < rank; ++r) down_t[r * K + k] = round_to(svd_dtype, down_values[k * rank + r]);
  for (std::int64_t r = 0; r < rank; ++r)
    for (std::int64_t n = 0; n < N; ++n) up_t[n * rank + r] = round_to(svd_dtype, up_values[r * N + n]);
  std::vector<float> x_svd(x2.size());
  for (std::size_t i = 0; i < x2.size(); ++i) x_svd[i] = round_to(svd_dtype, x2[i]);
  std::vector<float> low_rank(static_cast<std::size_t>(M * rank));
  gemm_nt<float, float>(x_svd.data(), down_t.data(), low_rank.data(), M, rank, K);
  for (float& value : low_rank) value = round_to(svd_dtype, value);
  std::vector<float> result(static_cast<std::size_t>(M * N));
  gemm_nt<float, float>(low_rank.data(), up_t.data(), result.data(), M, N, rank);
  for (std::int64_t m = 0; m < M; ++m)
    for (std::int64_t n = 0; n < N; ++n) {
      float& value = result[m * N + n];
      value = round_to(svd_dtype, bias ? value + round_to(svd_dtype, (*bias)[n]) : value);
    }
  return result;
}

// Everything after the Hadamard rotation of x2 [M, K_total]: returns the fp32 outputs [M, N].
// `groups` > 1 (grouped conv): one GEMM per group over its K_total/groups columns and N/groups
// outputs; activation scales and the zero-point sums still span the whole row, as in the reference.
inline std::vector<float> quantized_matmul_2d(const std::vector<float>& x2, std::int64_t M, std::int64_t K_total,
                                              const QuantizedWeight& weight, const WeightOperand& operand,
                                              const std::optional<std::vector<float>>& bias, DType model_dtype,
                                              std::int64_t groups = 1) {
  const std::int64_t N = operand.out_features, K_group = operand.in_features;
  SDNQ_REQUIRE(K_group * groups == K_total && N % groups == 0, ShapeError,
               "quantized matmul: activations have {} columns, the weight expects {} x {} groups", K_total, K_group,
               groups);
  const LayerLayout& layout = weight.layout;
  const DType svd_dtype = loaded_scale_dtype(layout, model_dtype);

  // bias' : [M, N] when it varies per token, else [N] (or none)
  std::optional<std::vector<float>> bias_2d;
  if (weight.svd_up && weight.svd_down && layout.svd_rank > 0)
    bias_2d = svd_bias(x2, M, K_total, weight, bias, svd_dtype);

  Tensor x_tensor = tensor_from_floats(x2, {M, K_total}, DType::f32);
  const RowQuantized activations = quantize_activations(x_tensor, operand.matmul, operand.scale_dtype);
  const DType epilogue_dtype = activations.scale_dtype;  // dtype of the zero-point term arithmetic
  const auto round = [epilogue_dtype](float value) { return round_to(epilogue_dtype, value); };
  const bool integer = operand.matmul == MatmulDType::int8 || operand.matmul == MatmulDType::uint8;

  // §5.1 step 5: zero-point terms, in the order the reference adds them.
  if (integer && (!operand.zero_point.empty() || operand.matmul == MatmulDType::uint8)) {
    const auto* xq = activations.values.data_as<std::int8_t>();
    std::vector<float> row_term(static_cast<std::size_t>(M));  // (Σ_k xq)·s_x
    for (std::int64_t m = 0; m < M; ++m) {
      std::int32_t sum = 0;
      for (std::int64_t k = 0; k < K_total; ++k) sum += xq[m * K_total + k];
      row_term[m] = round(round(static_cast<float>(sum)) * activations.scale[m]);
    }
    std::vector<float> terms(static_cast<std::size_t>(M * N));
    if (operand.matmul == MatmulDType::uint8) {
      std::vector<float> column_term(static_cast<std::size_t>(N));  // (Σ_k Wq)·s_w
      for (std::int64_t n = 0; n < N; ++n) {
        std::int32_t sum = 0;
        for (std::int64_t k = 0; k < K_group; ++k) sum += operand.int_values[n * K_group + k];
        column_term[n] = round(round(static_cast<float>(sum)) * operand.scale[n]);
      }
      for (std::int64_t m = 0; m < M; ++m) {
        const float z_x = activations.zero_point[m];
        const float k_z_x = round(static_cast<float>(K_total) * z_x);
        for (std::int64_t n = 0; n < N; ++n) {
          float term = round(column_term[n] * z_x);
          if (!operand.zero_point.empty()) {
            term = round(std::fma(row_term[m], operand.zero_point[n], term));
            term = round(std::fma(k_z_x, operand.zero_point[n], term));
          }
          terms[m * N + n] = term;
        }
      }
    } else {
      for (std::int64_t m = 0; m < M; ++m)
        for (std::int64_t n = 0; n < N; ++n) terms[m * N + n] = round(row_term[m] * operand.zero_point[n]);
    }
    if (bias_2d) {
      for (std::size_t i = 0; i < terms.size(); ++i) terms[i] = round(terms[i] + (*bias_2d)[i]);
    } else if (bias) {
      for (std::int64_t m = 0; m < M; ++m)
        for (std::int64_t n = 0; n < N; ++n) terms[m * N + n] = round(terms[m * N + n] + round_to(model_dtype, (*bias)[n]));
    }
    bias_2d = std::move(terms);
  }

  // §5.1 step 6: the GEMM, per group.
  std::vector<float> accumulator(static_cast<std::size_t>(M * N));
  const std::int64_t N_group = N / groups;
  for (std::int64_t group = 0; group < groups; ++group) {
    const std::int64_t column0 = group * K_group, n0 = group * N_group;
    std::vector<float> group_out(static_cast<std::size_t>(M * N_group));
    if (integer) {
      std::vector<std::int8_t> a(static_cast<std::size_t>(M * K_group));
      const auto* xq = activations.values.data_as<std::int8_t>();
      for (std::int64_t m = 0; m < M; ++m)
        std::copy_n(xq + m * K_total + column0, K_group, a.data() + m * K_group);
      std::vector<std::int32_t> out(static_cast<std::size_t>(M * N_group));
      gemm_nt<std::int8_t, std::int32_t>(a.data(), operand.int_values.data() + n0 * K_group, out.data(), M, N_group,
                                         K_group);
      for (std::size_t i = 0; i < out.size(); ++i) group_out[i] = static_cast<float>(out[i]);
    } else {
      std::vector<float> xq = to_float_vector(activations.values, "quantized activations");
      std::vector<float> a(static_cast<std::size_t>(M * K_group));
      for (std::int64_t m = 0; m < M; ++m)
        std::copy_n(xq.data() + m * K_total + column0, K_group, a.data() + m * K_group);
      gemm_nt<float, float>(a.data(), operand.float_values.data() + n0 * K_group, group_out.data(), M, N_group,
                            K_group);
    }
    for (std::int64_t m = 0; m < M; ++m)
      std::copy_n(group_out.data() + m * N_group, N_group, accumulator.data() + m * N + n0);
  }

  // §5.1 step 7: y = fma(acc·s_x, s_w, bias') in fp32.
  parallel_for(0, M, 64, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t m = begin; m < end; ++m)
      for (std::int64_t n = 0; n < N; ++n) {
        const float addend = bias_2d ? (*bias_2d)[m * N + n] : bias ? round_to(model_dtype, (*bias)[n]) : 0.0f;
        float& value = accumulator[m * N + n];
        value = std::fma(value * activations.scale[m], operand.scale[n], addend);
      }
  });
  return accumulator;
}

}  // namespace sdnq::quant::detail
