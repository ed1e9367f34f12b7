#pragma once
// Conv2d on the GPU, bf16 NCHW activations: out [N, O, Ho, Wo] = conv(x [N, C, H, W], W [O, C, k, k]) + b,
// over any weight a WeightLoader finds, under the same names and shape checks as the CPU nn::Conv2d
// ("<prefix>.weight" / ".bias", groups 1):
//   dense        the file's weight narrowed to bf16 on the device; cuda::ops::conv2d (im2col + cuBLAS)
//   SDNQ codes   kept on the device as codes (the memory saving stays): the weight rewritten as a
//                position-major Linear [O, k·k·C] (quant::conv2d_weight_as_linear) in a cuda::QuantizedLinear,
//                run as im2row → quantized_linear → rows_to_nchw over chunks of output rows (weight-only)
//   quantized    convs saved for SDNQ's quantized matmul (use_quantized_matmul_conv) with int8 or
//     matmul     float8_e4m3fn codes used directly and no SVD branch: cuda::conv2d_w8a8, the
//                implicit-GEMM conv with the reference's per-row activation quantization (int8 bit-exact
//                with quant::conv2d_forward); where the reference's small-batch rule sends the conv to its
//                dense path, im2row → cuda::w8a8_dequantized_linear over the same codes. Other
//                quantized-matmul convs (SVD, packed or grouped codes) run weight-only as above.
//   fallback     layouts no kernel reads (Hadamard, codebooks, > 8 bits): dequantized once at
//                load by quant::dequantize into bf16 as a loaded reference bf16 model does (scales rounded
//                to bf16 first), bit for bit
// forward takes its scratch from the caller's arena (workspace_bytes). A Linear stored as [O, C] (the
// VAE attention's to_q/k/v/out on NCHW activations) loads as a 1×1 conv with load_linear_as_1x1.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <string_view>

#include <algorithm>
#include <optional>

#include "sdnq/core/arena.hpp"
#include "sdnq/cuda/conv_w8a8.cuh"
#include "sdnq/cuda/gemm_w8a8.cuh"
#include "sdnq/cuda/linear.cuh"
#include "sdnq/cuda/ops/conv.cuh"
#include "sdnq/nn/gpu/detail/device_weights.hpp"
#include "sdnq/nn/weights.hpp"
#include "sdnq/quant/conv_as_linear.hpp"

namespace sdnq::nn::gpu {

class Conv2d {
 public:
  static Conv2d load(WeightLoader& weights, std::string_view prefix, std::int64_t in_channels,
                     std::int64_t out_channels, int kernel_size, const cuda::ops::Conv2dOptions& options, int device,
                     bool bias = true) {
    const Shape shape{out_channels, in_channels, kernel_size, kernel_size};
    return load_shaped(weights, prefix, quant::LayerKind::conv2d, shape, shape, options, device, bias);
  }

  static Conv2d load_linear_as_1x1(WeightLoader& weights, std::string_view prefix, std::int64_t in_features,
                                   std::int64_t out_features, int device, bool bias = true) {
    return load_shaped(weights, prefix, quant::LayerKind::linear, Shape{out_features, in_features},
                       Shape{out_features, in_features, 1, 1}, {}, device, bias);
  }

  // x [N, C, H, W] -> [N, O, Ho, Wo], or a ShapeError naming the layer.
  Shape output_shape(const Shape& x) const {
    SDNQ_REQUIRE(x.rank() == 4 && x[1] == in_channels_, ShapeError,
                 "Conv2d '{}': input must be [N, in_channels = {}, H, W], got {}", name_, in_channels_, x.to_string());
    const auto [out_h, out_w] = cuda::ops::kernel_detail::conv_output_size(x, kernel_, options_, name_);
    return Shape{x[0], out_channels_, out_h, out_w};
  }

  // Arena bytes forward takes for input shape x.
  std::size_t workspace_bytes(const Shape& x) const {
    const Shape out = output_shape(x);
    if (matmul_ && takes_quantized_matmul(x))
      return cuda::conv2d_w8a8_workspace_bytes(x, out_channels_, static_cast<int>(kernel_), options_);
    if (!codes_ && !matmul_) return cuda::ops::conv2d_workspace_bytes(x, kernel_, options_);
    const std::int64_t total = out[0] * out[2] * out[3], chunk = code_chunk_rows(total);
    // The last, shorter chunk may take another route of the Linear (and another workspace size).
    const std::int64_t last = total % chunk == 0 ? chunk : total % chunk;
    return Arena::footprint(static_cast<std::size_t>(chunk * code_columns()) * 2) +
           Arena::footprint(static_cast<std::size_t>(chunk * out_channels_) * 2) +
           Arena::footprint(std::max(rows_workspace_bytes(chunk), rows_workspace_bytes(last)));
  }

  // x, out: contiguous bf16 device tensors of shapes x and output_shape(x). out must not overlap x.
  void forward(const TensorView& x, const TensorView& out, Arena& arena, cublasHandle_t cublas,
               cudaStream_t stream) const {
    const Shape expected = output_shape(x.shape());
    SDNQ_REQUIRE(x.dtype() == DType::bf16 && out.dtype() == DType::bf16 && out.shape() == expected, ShapeError,
                 "Conv2d '{}': x must be BF16 and out BF16 {}, got {} {} and {} {}", name_, expected.to_string(),
                 dtype_name(x.dtype()), x.shape().to_string(), dtype_name(out.dtype()), out.shape().to_string());
    ArenaScope scope(arena);
    const TensorView bias = bias_.defined() ? bias_.view() : TensorView();
    if (matmul_ && takes_quantized_matmul(x.shape())) {
      const TensorView scratch = arena.take(Shape{static_cast<std::int64_t>(workspace_bytes(x.shape()))}, DType::u8,
                                            name_ + " nhwc");
      return cuda::conv2d_w8a8(matmul_->view(), static_cast<int>(kernel_), options_, x,
                               bias_.defined() ? std::optional<TensorView>(bias) : std::nullopt, out, scratch, stream,
                               name_);
    }
    if (!codes_ && !matmul_) {
      const std::size_t scratch_bytes = workspace_bytes(x.shape());
      const TensorView scratch = scratch_bytes == 0 ? TensorView()
                                                    : arena.take(Shape{static_cast<std::int64_t>(scratch_bytes)},
                                                                 DType::u8, name_ + " im2col");
      return cuda::ops::conv2d(x, weight_, bias_.defined() ? &bias : nullptr, options_, out, scratch, cublas, stream,
                               name_);
    }
    const std::int64_t total = expected[0] * expected[2] * expected[3], chunk = code_chunk_rows(total);
    for (std::int64_t first = 0; first < total; first += chunk) {
      ArenaScope chunk_scope(arena);
      const std::int64_t count = std::min(chunk, total - first);
      const TensorView rows = arena.take(Shape{count, code_columns()}, DType::bf16, name_ + " im2row");
      const TensorView products = arena.take(Shape{count, out_channels_}, DType::bf16, name_ + " rows");
      const std::size_t linear_bytes = rows_workspace_bytes(count);
      const TensorView linear_scratch =
          linear_bytes == 0
              ? TensorView()
              : arena.take(Shape{static_cast<std::int64_t>(linear_bytes)}, DType::u8, name_ + " linear scratch");
      cuda::ops::im2row(x, kernel_, options_, first, rows, stream, name_);
      if (matmul_)  // the reference's dense path of a quantized-matmul layer
        cuda::w8a8_dequantized_linear(matmul_->view(), nullptr, rows, std::nullopt, products, linear_scratch, cublas,
                                      stream, name_);
      else
        cuda::quantized_linear(*codes_, rows, std::nullopt, products, linear_scratch, cublas, stream);
      cuda::ops::rows_to_nchw(products, bias_.defined() ? &bias : nullptr, first, out, stream, name_);
    }
  }

  const std::string& name() const { return name_; }
  std::int64_t in_channels() const { return in_channels_; }
  std::int64_t out_channels() const { return out_channels_; }
  bool dequantized_at_load() const { return dequantized_at_load_; }
  bool runs_on_codes() const { return codes_.has_value() || matmul_.has_value(); }
  // Whether the conv runs SDNQ's quantized matmul (cuda::conv2d_w8a8) for inputs the reference quantizes.
  bool runs_quantized_matmul() const { return matmul_.has_value(); }
  // Bytes the layer holds on its device (codes or dense weight, bias).
  std::size_t device_bytes() const {
    const auto held = [](const Tensor& tensor) { return tensor.defined() ? tensor.nbytes() : std::size_t{0}; };
    return held(weight_) + held(bias_) + (codes_ ? codes_->device_bytes() : std::size_t{0}) +
           (matmul_ ? held(matmul_->codes) + held(matmul_->scale) : std::size_t{0});
  }

 private:
  // stored: the shape the checkpoint holds; as_conv: [O, C, k, k] on the device.
  static Conv2d load_shaped(WeightLoader& weights, std::string_view prefix, quant::LayerKind kind,
                            const Shape& stored, const Shape& as_conv, const cuda::ops::Conv2dOptions& options,
                            int device, bool bias) {
    Conv2d layer;
    layer.name_ = std::string(prefix);
    layer.out_channels_ = as_conv[0];
    layer.in_channels_ = as_conv[1];
    layer.kernel_ = as_conv[2];
    layer.options_ = options;
    Tensor host_weight;
    if (auto quantized = weights.quantized(prefix, kind, stored)) {
      // A conv's codes as a position-major Linear; a 1×1 conv stored as a Linear already is one.
      std::optional<quant::QuantizedTensors> as_linear;
      if (kind == quant::LayerKind::conv2d) as_linear = quant::conv2d_weight_as_linear(*quantized);
      std::optional<detail::HostLinearCodes> codes;
      if (kind == quant::LayerKind::linear)
        codes = detail::linear_codes_of(*quantized);
      else if (as_linear)
        codes = detail::linear_codes_of(as_linear->view());
      const auto& linear = codes ? codes->codes : cuda::LinearCodes{};
      if (codes && kind == quant::LayerKind::conv2d && quantized->layout.use_quantized_matmul &&
          !quantized->layout.re_quantize_for_matmul && !linear.svd_up && !linear.zero_point && linear.bits == 8 &&
          (linear.codes.dtype() == DType::i8 || linear.codes.dtype() == DType::f8_e4m3fn) &&
          layer.in_channels_ % 16 == 0) {  // always so: §3.2 gives convs quantized matmul only for C % 16 == 0
        layer.matmul_ = cuda::upload_w8a8_weights(
            cuda::repack_for_w8a8<bf16>(linear, quantized->layout.dequantize_fp32), device);
      } else if (codes) {
        layer.codes_.emplace(codes->codes, DType::bf16, device);
      } else {
        // In bf16 with scales rounded to bf16 first: bit-exact with the reference's bf16 model (fixture README).
        host_weight = quant::dequantize(*quantized, DType::bf16, quant::ScalePrecision::reference_compatible);
        layer.dequantized_at_load_ = true;
      }
    } else {
      layer.weight_ = detail::upload_bf16(weights.stored_float(layer.name_ + ".weight", stored).reshaped(as_conv),
                                          device, layer.name_ + ".weight");
    }
    if (host_weight.defined()) {
      host_weight.reshape(as_conv);
      layer.weight_ = detail::upload_bf16(host_weight, device, layer.name_ + ".weight");
    }
    if (bias)
      layer.bias_ = detail::upload_bf16(weights.stored_float(layer.name_ + ".bias", Shape{layer.out_channels_}), device,
                                        layer.name_ + ".bias");
    return layer;
  }

  // Output rows per im2row chunk when running on codes: the whole batch when its rows fit the same
  // 64 MiB budget as conv2d's im2col columns, else a multiple of 8 rows.
  std::int64_t code_chunk_rows(std::int64_t total) const {
    const std::int64_t rows = cuda::ops::kernel_detail::conv_chunk_positions(
        code_columns(), total, 2, cuda::ops::kernel_detail::conv_columns_budget_bytes);
    return std::max<std::int64_t>(rows, std::min<std::int64_t>(8, total));
  }
  std::int64_t code_columns() const { return kernel_ * kernel_ * in_channels_; }

  // The reference's small-batch rule for quantized-matmul convs (§5.2, as quant::conv2d_forward):
  // numel(x) / x.shape[2] < 32 takes the dense path.
  static bool takes_quantized_matmul(const Shape& x) { return x[2] > 0 && x.numel() / x[2] >= 32; }

  // Workspace of the Linear that multiplies `count` im2row rows.
  std::size_t rows_workspace_bytes(std::int64_t count) const {
    return matmul_ ? cuda::w8a8_dequantized_workspace_bytes(matmul_->view(), count) : codes_->workspace_bytes(count);
  }

  std::string name_;
  std::int64_t in_channels_ = 0, out_channels_ = 0, kernel_ = 1;
  cuda::ops::Conv2dOptions options_;
  bool dequantized_at_load_ = false;
  Tensor weight_;  // [O, C, k, k] bf16 on the device (dense and fallback)
  std::optional<cuda::QuantizedLinear> codes_;  // the codes as a position-major Linear [O, k·k·C]
  std::optional<cuda::W8A8WeightsDevice> matmul_;  // likewise, repacked for the 8-bit quantized matmul
  Tensor bias_;    // [O] bf16 on the device, or undefined
};

}  // namespace sdnq::nn::gpu
