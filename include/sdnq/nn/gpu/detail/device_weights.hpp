#pragma once
// Load-time helpers of the GPU modules: host tensors narrowed to bf16 and uploaded one at a time (the
// host copy is freed as soon as it is on the device, so host memory stays bounded by the largest
// tensor), and the translation of a checkpoint's quant::QuantizedWeight into the cuda::LinearCodes the
// CUDA kernels read. Host code only.
#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <cublas_v2.h>

#include "sdnq/core/scalar.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/cuda/repack.hpp"
#include "sdnq/format/custom_float.hpp"
#include "sdnq/format/storage_type.hpp"
#include "sdnq/nn/detail/ops_common.hpp"
#include "sdnq/quant/dequantize.hpp"

namespace sdnq::nn::gpu::detail {

// A host float tensor (any float dtype) as a bf16 device tensor of the same shape. A bf16 tensor (what
// checkpoints hold) goes up as it is; other dtypes are narrowed on all host threads first (a 12B-parameter
// model spent most of its load time in a one-thread loop here).
inline Tensor upload_bf16(const TensorView& host, int device, std::string_view what) {
  SDNQ_REQUIRE(host.device().is_cpu(), ShapeError, "{} must be a host tensor, got {}", what, host.device().to_string());
  if (host.dtype() == DType::bf16) return cuda::to_device(host, device);
  return cuda::to_device(nn::detail::to_bf16(host, what), device);
}

// A host float matrix [rows, cols] transposed into a new host tensor [cols, rows] of the same dtype
// (a quantized-matmul layer stores its SVD factors transposed).
inline Tensor transposed_copy(const TensorView& matrix, std::string_view what) {
  SDNQ_REQUIRE(matrix.rank() == 2, ShapeError, "{}: expected a matrix, got {}", what, matrix.shape().to_string());
  const Tensor widened = nn::detail::to_f32(matrix, what);
  const std::int64_t rows = matrix.size(0), cols = matrix.size(1);
  Tensor out = Tensor::empty(Shape{cols, rows}, DType::f32);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) out.data_as<float>()[c * rows + r] = widened.data_as<float>()[r * cols + c];
  return out;
}

// The decoded value of every code of a float storage type of at most 8 bits, which the lookup kernels read:
// native fp8 (float8_e4m3fn, float8_e5m2) and SDNQ's custom floats (float4_e2m1fn, float5_e3m1fn, ...), decoded
// as the CPU dequantizer decodes them.
inline std::optional<Tensor> float_lookup_table(const format::StorageType& type) {
  if (type.stored_dtype == DType::f8_e4m3fn || type.stored_dtype == DType::f8_e5m2) {
    Tensor table = Tensor::empty(Shape{256}, DType::f32);
    for (int code = 0; code < 256; ++code) {
      const auto bits = static_cast<std::uint8_t>(code);
      table.data_as<float>()[code] = type.stored_dtype == DType::f8_e4m3fn ? fp8_e4m3fn::from_bits(bits).to_float()
                                                                           : fp8_e5m2::from_bits(bits).to_float();
    }
    return table;
  }
  if (!type.is_custom_float() || type.bits > 8) return std::nullopt;
  const std::vector<float> values = format::custom_float_decode_table(format::custom_float_of(type));
  Tensor table = Tensor::empty(Shape{static_cast<std::int64_t>(values.size())}, DType::f32);
  std::copy(values.begin(), values.end(), table.data_as<float>());
  return table;
}

// A checkpoint weight as the CUDA kernels' LinearCodes, with the host tensors the view needs
// (transposed SVD factors, a lookup table); nullopt for layouts the kernels cannot read (Hadamard
// rotation, codebooks, more than 8 bits), which the caller dequantizes instead.
struct HostLinearCodes {
  cuda::LinearCodes codes;  // views into the checkpoint and into the tensors below
  Tensor svd_up, svd_down, lookup_table;
};

inline std::optional<HostLinearCodes> linear_codes_of(const quant::QuantizedWeight& weight) {
  const quant::LayerLayout& layout = weight.layout;
  const format::StorageType& type = *layout.weights_type;
  if (layout.hadamard_size != 0 || layout.use_codebook || type.bits > 8) return std::nullopt;
  if (layout.original_shape.rank() != 2) return std::nullopt;
  HostLinearCodes out;
  cuda::LinearCodes& c = out.codes;
  c.name = weight.name;
  c.bits = type.bits;
  c.out_features = layout.original_shape[0];
  c.in_features = layout.original_shape[1];
  c.group_size = layout.group_size;
  c.transposed = layout.transposed;
  c.codes = weight.weight;
  c.scale = weight.scale;
  if (weight.zero_point) c.zero_point = *weight.zero_point;
  if (type.is_integer) {
    c.value = type.is_unsigned ? cuda::CodeValue::unsigned_integer : cuda::CodeValue::signed_integer;
  } else {
    std::optional<Tensor> table = float_lookup_table(type);
    if (!table) return std::nullopt;
    out.lookup_table = std::move(*table);
    c.value = cuda::CodeValue::lookup;
    c.lookup_table = out.lookup_table.view();
  }
  if (weight.svd_up && weight.svd_down) {
    if (layout.transposed || layout.use_quantized_matmul) {  // stored [r, N] and [K, r]
      out.svd_up = transposed_copy(*weight.svd_up, weight.name + ".svd_up");
      out.svd_down = transposed_copy(*weight.svd_down, weight.name + ".svd_down");
      c.svd_up = out.svd_up.view();
      c.svd_down = out.svd_down.view();
    } else {
      c.svd_up = *weight.svd_up;
      c.svd_down = *weight.svd_down;
    }
  }
  return out;
}

// One cuBLAS handle per model (move-only).
class CublasHandle {
 public:
  CublasHandle() { SDNQ_CUBLAS_CHECK(cublasCreate(&handle_)); }
  ~CublasHandle() {
    if (handle_ != nullptr) (void)cublasDestroy(handle_);
  }
  CublasHandle(CublasHandle&& other) noexcept : handle_(other.handle_) { other.handle_ = nullptr; }
  CublasHandle& operator=(CublasHandle&& other) noexcept {
    std::swap(handle_, other.handle_);
    return *this;
  }
  CublasHandle(const CublasHandle&) = delete;
  CublasHandle& operator=(const CublasHandle&) = delete;
  cublasHandle_t get() const { return handle_; }

 private:
  cublasHandle_t handle_ = nullptr;
};

}  // namespace sdnq::nn::gpu::detail
