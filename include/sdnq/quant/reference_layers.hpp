#pragma once
// CPU reference forwards of SDNQ-quantized layers — the oracle the CUDA kernels are tested against.
//
//   linear_forward   y = x·Wᵀ + b                       input [..., in]       -> [..., out]
//   conv2d_forward   y = conv2d(x, W, b)                input [N, C, H, W]    -> [N, out, OH, OW]
//   embedding_forward y = W[ids]                         ids int64/int32 [...] -> [..., dim]
//
// MatmulMode::dequantize_then_matmul dequantizes the weight (§4, quant::dequantize with the scale
// rounded to the model dtype like a loaded reference model) and runs a float matmul / conv with
// fp32 accumulation, adding the bias in fp32 and rounding once to `compute_dtype` (the model dtype).
// MatmulMode::quantized_matmul follows §5.1 / §5.2 for layers whose layout uses quantized matmul
// (others, and calls with fewer than 32 tokens, take the dense path exactly as the reference does):
// Hadamard on x, SVD bias via addmm in the SVD dtype, per-token activation quantization
// (activation_quant.hpp), zero-point bias terms, int32 / fp32 GEMM, fp32 epilogue
// y = fma(acc·s_x, s_w, bias'), cast to compute_dtype.
//
// Deliberate differences from the reference's PyTorch fallback (which the Triton kernels of §5.3 do
// not share): the epilogue is always fp32 (the eager fallback runs it in the scale dtype, bf16 for
// `dequantize_fp32=false` layers); all-zero activation rows give exact zeros (activation_quant.hpp);
// embeddings dequantize the table and then gather rows, which equals gathering first for every layout
// except grouped SVD embeddings with `dequantize_fp32=false`, where the reference adds the low-rank
// term in fp32 instead of the model dtype (≤ 1 ulp).
#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#include "sdnq/core/error.hpp"
#include "sdnq/core/parallel.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/format/packing.hpp"  // layout.hpp uses it without including it
#include "sdnq/quant/activation_quant.hpp"
#include "sdnq/quant/dequantize.hpp"
#include "sdnq/quant/hadamard.hpp"
#include "sdnq/quant/detail/layers_conv.hpp"
#include "sdnq/quant/detail/layers_gemm.hpp"
#include "sdnq/quant/detail/layers_numeric.hpp"
#include "sdnq/quant/detail/layers_qmm.hpp"

namespace sdnq::quant {

enum class MatmulMode { dequantize_then_matmul, quantized_matmul };

struct Conv2dParams {
  std::array<std::int64_t, 2> stride{1, 1}, padding{0, 0}, dilation{1, 1};
  std::int64_t groups = 1;
};

namespace detail {

inline void require_compute_dtype(const QuantizedWeight& weight, DType compute_dtype) {
  SDNQ_REQUIRE(is_layer_float_dtype(compute_dtype), UnsupportedError,
               "layer '{}': compute dtype must be F32, BF16 or F16, got {}", weight.name, dtype_name(compute_dtype));
}

// x as fp32 values on the grid of the model dtype (the reference's input already has that dtype).
inline std::vector<float> input_values(TensorView input, DType compute_dtype, const char* what) {
  SDNQ_REQUIRE(is_layer_float_dtype(input.dtype()), ShapeError, "{} must be F32, BF16 or F16, got {}", what,
               dtype_name(input.dtype()));
  std::vector<float> values = to_float_vector(input, what);
  if (input.dtype() != compute_dtype)
    for (float& value : values) value = round_to(compute_dtype, value);
  return values;
}

inline std::optional<std::vector<float>> bias_values(const QuantizedWeight& weight, std::optional<TensorView> bias,
                                                     std::int64_t out_features, DType compute_dtype) {
  if (!bias) return std::nullopt;
  SDNQ_REQUIRE(bias->rank() == 1 && bias->size(0) == out_features, ShapeError,
               "layer '{}': bias must be [out_features = {}], got {}", weight.name, out_features,
               bias->shape().to_string());
  return input_values(*bias, compute_dtype, "bias");
}

// x2 [M, groups·K] · W[N, K]ᵀ per group (+ bias) with fp32 accumulation, rounded to the model dtype.
inline std::vector<float> dense_matmul(const std::vector<float>& x2, std::int64_t M, std::int64_t K_total,
                                       const std::vector<float>& weight, std::int64_t N,
                                       const std::optional<std::vector<float>>& bias, DType compute_dtype,
                                       std::int64_t groups = 1) {
  const std::int64_t K = K_total / groups, N_group = N / groups;
  std::vector<float> out(static_cast<std::size_t>(M * N));
  if (groups == 1) {
    gemm_nt<float, float>(x2.data(), weight.data(), out.data(), M, N, K);
  } else {
    std::vector<float> a(static_cast<std::size_t>(M * K)), c(static_cast<std::size_t>(M * N_group));
    for (std::int64_t group = 0; group < groups; ++group) {
      for (std::int64_t m = 0; m < M; ++m) std::copy_n(x2.data() + m * K_total + group * K, K, a.data() + m * K);
      gemm_nt<float, float>(a.data(), weight.data() + group * N_group * K, c.data(), M, N_group, K);
      for (std::int64_t m = 0; m < M; ++m)
        std::copy_n(c.data() + m * N_group, N_group, out.data() + m * N + group * N_group);
    }
  }
  parallel_for(0, M, 64, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t m = begin; m < end; ++m)
      for (std::int64_t n = 0; n < N; ++n) {
        float& value = out[m * N + n];
        value = round_to(compute_dtype, bias ? value + (*bias)[n] : value);
      }
  });
  return out;
}

inline std::vector<float> dense_weight(const QuantizedWeight& weight, DType compute_dtype) {
  return to_float_vector(dequantize(weight, compute_dtype, ScalePrecision::reference_compatible), "dense weight");
}

// §5.1 step 2: rows of x2 rotated by H_h in the model dtype.
inline void rotate_rows(std::vector<float>& x2, std::int64_t M, std::int64_t K, int hadamard_size, DType compute_dtype) {
  if (hadamard_size == 0) return;
  Tensor rows = tensor_from_floats(x2, {M, K}, compute_dtype);
  rotate_hadamard(rows, hadamard_size);
  x2 = to_float_vector(rows, "rotated activations");
}

// The [M, N] fp32 results of the quantized path, rounded to the model dtype.
inline std::vector<float> quantized_rows(std::vector<float> x2, std::int64_t M, std::int64_t K_total,
                                         const QuantizedWeight& weight, const std::optional<std::vector<float>>& bias,
                                         DType compute_dtype, std::int64_t groups) {
  rotate_rows(x2, M, K_total, weight.layout.hadamard_size, compute_dtype);
  const WeightOperand operand = weight_operand(weight, compute_dtype);
  std::vector<float> out = quantized_matmul_2d(x2, M, K_total, weight, operand, bias, compute_dtype, groups);
  for (float& value : out) value = round_to(compute_dtype, value);
  return out;
}

}  // namespace detail

// `dense_weight_dtype`: the dtype the dense path materialises the weight in (the model's dtype; a
// float32 forward of a bf16 model dequantizes to bf16 and then multiplies in fp32).
inline Tensor linear_forward(TensorView input, const QuantizedWeight& weight, std::optional<TensorView> bias,
                             MatmulMode mode, DType compute_dtype, DType dense_weight_dtype) {
  const LayerLayout& layout = weight.layout;
  detail::require_compute_dtype(weight, compute_dtype);
  detail::require_compute_dtype(weight, dense_weight_dtype);
  SDNQ_REQUIRE(layout.kind == LayerKind::linear && layout.original_shape.rank() == 2, ShapeError,
               "layer '{}': linear_forward needs a Linear weight [out, in], got {}", weight.name,
               layout.original_shape.to_string());
  const std::int64_t out_features = layout.original_shape[0], in_features = layout.original_shape[1];
  SDNQ_REQUIRE(input.rank() >= 1 && input.size(-1) == in_features, ShapeError,
               "layer '{}': input must be [..., in_features = {}], got {}", weight.name, in_features,
               input.shape().to_string());
  const auto bias_values = detail::bias_values(weight, bias, out_features, compute_dtype);
  std::vector<float> x2 = detail::input_values(input, compute_dtype, "linear input");
  const std::int64_t tokens = input.numel() / in_features;

  Shape output_shape;
  for (int axis = 0; axis + 1 < input.rank(); ++axis) output_shape.push_back(input.size(axis));
  output_shape.push_back(out_features);

  std::vector<float> out;
  if (mode == MatmulMode::quantized_matmul && layout.use_quantized_matmul && tokens >= 32) {
    out = detail::quantized_rows(std::move(x2), tokens, in_features, weight, bias_values, compute_dtype, 1);
  } else {
    out = detail::dense_matmul(x2, tokens, in_features, detail::dense_weight(weight, dense_weight_dtype),
                               out_features, bias_values, compute_dtype);
  }
  return detail::tensor_from_floats(out, output_shape, compute_dtype);
}

inline Tensor linear_forward(TensorView input, const QuantizedWeight& weight, std::optional<TensorView> bias,
                             MatmulMode mode, DType compute_dtype) {
  return linear_forward(input, weight, bias, mode, compute_dtype, compute_dtype);
}

inline Tensor conv2d_forward(TensorView input, const QuantizedWeight& weight, std::optional<TensorView> bias,
                             Conv2dParams params, MatmulMode mode, DType compute_dtype) {
  const LayerLayout& layout = weight.layout;
  detail::require_compute_dtype(weight, compute_dtype);
  SDNQ_REQUIRE(layout.kind == LayerKind::conv2d && layout.original_shape.rank() == 4, ShapeError,
               "layer '{}': conv2d_forward needs a Conv2d weight [out, in/groups, kh, kw], got {}", weight.name,
               layout.original_shape.to_string());
  const Shape& w = layout.original_shape;
  const std::int64_t groups = params.groups;
  SDNQ_REQUIRE(groups >= 1 && w[0] % groups == 0, ShapeError,
               "layer '{}': groups = {} must be positive and divide the {} output channels", weight.name, groups, w[0]);
  for (int axis = 0; axis < 2; ++axis)
    SDNQ_REQUIRE(params.stride[axis] >= 1 && params.dilation[axis] >= 1 && params.padding[axis] >= 0, ShapeError,
                 "layer '{}': stride and dilation must be >= 1 and padding >= 0", weight.name);
  SDNQ_REQUIRE(input.rank() == 4 && input.size(1) == w[1] * groups, ShapeError,
               "layer '{}': input must be [N, in_channels = {}, H, W], got {}", weight.name, w[1] * groups,
               input.shape().to_string());
  detail::ConvGeometry geometry{input.size(0), input.size(1), input.size(2), input.size(3), w[2], w[3],
                                params.stride, params.padding, params.dilation};
  SDNQ_REQUIRE(geometry.out_h() >= 1 && geometry.out_w() >= 1, ShapeError,
               "layer '{}': input {} is smaller than the dilated kernel {}x{} with padding {}x{}", weight.name,
               input.shape().to_string(), w[2], w[3], params.padding[0], params.padding[1]);
  const std::int64_t out_channels = w[0];
  const auto bias_values = detail::bias_values(weight, bias, out_channels, compute_dtype);

  const std::vector<float> x = detail::input_values(input, compute_dtype, "conv2d input");
  std::vector<float> x2 = detail::im2col(x, geometry);  // [N·OH·OW, C·KH·KW]
  const std::int64_t M = geometry.rows(), K_total = geometry.columns();
  // The reference's small-batch test divides by input.shape[2] (H), not by the channel count.
  const bool quantized = mode == MatmulMode::quantized_matmul && layout.use_quantized_matmul &&
                         input.numel() / input.size(2) >= 32;
  std::vector<float> rows =
      quantized ? detail::quantized_rows(std::move(x2), M, K_total, weight, bias_values, compute_dtype, groups)
                : detail::dense_matmul(x2, M, K_total, detail::dense_weight(weight, compute_dtype), out_channels,
                                       bias_values, compute_dtype, groups);
  const std::int64_t positions = geometry.out_h() * geometry.out_w();
  return detail::tensor_from_floats(detail::rows_to_channels_first(rows, geometry.batch, positions, out_channels),
                                    {geometry.batch, out_channels, geometry.out_h(), geometry.out_w()}, compute_dtype);
}

inline Tensor embedding_forward(TensorView ids, const QuantizedWeight& weight, DType compute_dtype) {
  const LayerLayout& layout = weight.layout;
  detail::require_compute_dtype(weight, compute_dtype);
  SDNQ_REQUIRE(layout.kind == LayerKind::embedding && layout.original_shape.rank() == 2, ShapeError,
               "layer '{}': embedding_forward needs an Embedding weight [num_embeddings, dim], got {}", weight.name,
               layout.original_shape.to_string());
  SDNQ_REQUIRE(ids.dtype() == DType::i64 || ids.dtype() == DType::i32, ShapeError,
               "layer '{}': embedding ids must be I64 or I32, got {}", weight.name, dtype_name(ids.dtype()));
  SDNQ_REQUIRE(ids.device().is_cpu(), ShapeError, "layer '{}': embedding ids must be a host tensor", weight.name);
  const std::int64_t rows = layout.original_shape[0], dim = layout.original_shape[1];
  Tensor contiguous_ids;
  if (!ids.is_contiguous()) {
    contiguous_ids = Tensor::empty(ids.shape(), ids.dtype());
    copy(contiguous_ids, ids);
    ids = contiguous_ids.view();
  }
  std::vector<std::int64_t> indices(static_cast<std::size_t>(ids.numel()));
  for (std::int64_t i = 0; i < ids.numel(); ++i) {
    const std::int64_t id = ids.dtype() == DType::i64 ? static_cast<const std::int64_t*>(ids.data())[i]
                                                       : static_cast<const std::int32_t*>(ids.data())[i];
    SDNQ_REQUIRE(id >= 0 && id < rows, ShapeError, "layer '{}': embedding id {} is outside [0, num_embeddings = {})",
                 weight.name, id, rows);
    indices[static_cast<std::size_t>(i)] = id;
  }
  const Tensor table = dequantize(weight, compute_dtype, ScalePrecision::reference_compatible);  // [rows, dim]
  Shape output_shape = ids.shape();
  output_shape.push_back(dim);
  Tensor output = Tensor::empty(output_shape, compute_dtype);
  const std::size_t row_bytes = static_cast<std::size_t>(dim) * dtype_size(compute_dtype);
  for (std::size_t i = 0; i < indices.size(); ++i)
    std::memcpy(static_cast<std::byte*>(output.data()) + i * row_bytes,
                static_cast<const std::byte*>(table.data()) + indices[i] * row_bytes, row_bytes);
  return output;
}

}  // namespace sdnq::quant
