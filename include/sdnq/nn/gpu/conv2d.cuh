#pragma once
// Conv2d on the GPU, bf16 NCHW activations: out [N, O, Ho, Wo] = conv(x [N, C, H, W], W [O, C, k, k]) + b,
// over any weight a WeightLoader finds, under the same names and shape checks as the CPU nn::Conv2d
// ("<prefix>.weight" / ".bias", groups 1):
//   dense       the file's weight narrowed to bf16 on the device
//   SDNQ codes  dequantized once at load by quant::dequantize into bf16 as a loaded reference bf16 model
//               does (scales rounded to bf16 first), bit for bit. This milestone does not run quantized convs on their codes: the VAE's convs
//               are small (84 MB in bf16 for SDXL's), and layers saved for SDNQ's quantized matmul take
//               the dequantized path too (the reference's int8 activation quantization is not emulated).
// forward runs cuda::ops::conv2d with its im2col scratch from the caller's arena (workspace_bytes).
// A Linear stored as [O, C] (the VAE attention's to_q/k/v/out on NCHW activations) loads as a 1×1 conv
// with load_linear_as_1x1.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "sdnq/core/arena.hpp"
#include "sdnq/cuda/ops/conv.cuh"
#include "sdnq/nn/gpu/detail/device_weights.hpp"
#include "sdnq/nn/weights.hpp"

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
    (void)output_shape(x);
    return cuda::ops::conv2d_workspace_bytes(x, kernel_, options_);
  }

  // x, out: contiguous bf16 device tensors of shapes x and output_shape(x). out must not overlap x.
  void forward(const TensorView& x, const TensorView& out, Arena& arena, cublasHandle_t cublas,
               cudaStream_t stream) const {
    const Shape expected = output_shape(x.shape());
    SDNQ_REQUIRE(x.dtype() == DType::bf16 && out.dtype() == DType::bf16 && out.shape() == expected, ShapeError,
                 "Conv2d '{}': x must be BF16 and out BF16 {}, got {} {} and {} {}", name_, expected.to_string(),
                 dtype_name(x.dtype()), x.shape().to_string(), dtype_name(out.dtype()), out.shape().to_string());
    ArenaScope scope(arena);
    const std::size_t scratch_bytes = workspace_bytes(x.shape());
    const TensorView scratch =
        scratch_bytes == 0 ? TensorView()
                           : arena.take(Shape{static_cast<std::int64_t>(scratch_bytes)}, DType::u8, name_ + " im2col");
    const TensorView bias = bias_.defined() ? bias_.view() : TensorView();
    cuda::ops::conv2d(x, weight_, bias_.defined() ? &bias : nullptr, options_, out, scratch, cublas, stream, name_);
  }

  const std::string& name() const { return name_; }
  std::int64_t in_channels() const { return in_channels_; }
  std::int64_t out_channels() const { return out_channels_; }
  bool dequantized_at_load() const { return dequantized_at_load_; }

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
      // In bf16 with scales rounded to bf16 first: bit-exact with the reference's bf16 model (fixture README).
      host_weight = quant::dequantize(*quantized, DType::bf16, quant::ScalePrecision::reference_compatible);
      layer.dequantized_at_load_ = true;
    } else {
      host_weight = weights.dense(layer.name_ + ".weight", stored);
    }
    host_weight.reshape(as_conv);
    layer.weight_ = detail::upload_bf16(host_weight, device, layer.name_ + ".weight");
    if (bias)
      layer.bias_ = detail::upload_bf16(weights.dense(layer.name_ + ".bias", Shape{layer.out_channels_}), device,
                                        layer.name_ + ".bias");
    return layer;
  }

  std::string name_;
  std::int64_t in_channels_ = 0, out_channels_ = 0, kernel_ = 1;
  cuda::ops::Conv2dOptions options_;
  bool dequantized_at_load_ = false;
  Tensor weight_;  // [O, C, k, k] bf16 on the device
  Tensor bias_;    // [O] bf16 on the device, or undefined
};

}  // namespace sdnq::nn::gpu
