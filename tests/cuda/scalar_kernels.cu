// Kernels that run the scalar conversions of sdnq/core/scalar.hpp in device code.

#include <cstdint>

#include <cuda_runtime_api.h>

#include "cuda/scalar_kernels.hpp"
#include "sdnq/core/error.hpp"
#include "sdnq/core/scalar.hpp"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/config.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace test_kernels {

template <class T>
__global__ void decode_every_code(std::uint32_t* float_bits, std::int64_t code_count) {
  for (std::int64_t code = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; code < code_count;
       code += std::int64_t{gridDim.x} * blockDim.x)
    float_bits[code] = sdnq::detail::float_to_bits(T::from_bits(static_cast<decltype(T::bits)>(code)).to_float());
}

template <class T>
__global__ void encode(const float* inputs, T* codes, std::int64_t count) {
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < count;
       i += std::int64_t{gridDim.x} * blockDim.x)
    codes[i] = T(inputs[i]);
}

}  // namespace test_kernels
SDNQ_KERNEL_NAMESPACE_END

namespace sdnq::test {
namespace {

constexpr int threads_per_block = 256;
constexpr int max_blocks = 1024;

int blocks_for(std::int64_t count) {
  const std::int64_t blocks = (count + threads_per_block - 1) / threads_per_block;
  return static_cast<int>(blocks < max_blocks ? (blocks > 0 ? blocks : 1) : max_blocks);
}

template <class T>
void decode_every_code(std::uint32_t* device_float_bits) {
  constexpr std::int64_t code_count = std::int64_t{1} << (8 * sizeof(T));
  sdnq::cuda::test_kernels::decode_every_code<T>
      <<<blocks_for(code_count), threads_per_block>>>(device_float_bits, code_count);
  SDNQ_CUDA_CHECK(cudaGetLastError());
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
}

template <class T>
void encode(const float* device_inputs, void* device_codes, std::int64_t count) {
  sdnq::cuda::test_kernels::encode<T>
      <<<blocks_for(count), threads_per_block>>>(device_inputs, static_cast<T*>(device_codes), count);
  SDNQ_CUDA_CHECK(cudaGetLastError());
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
}

[[noreturn]] void unsupported(DType dtype) {
  throw UnsupportedError(sdnq::detail::format_message("no device scalar conversion for dtype {}", dtype_name(dtype)));
}

}  // namespace

void decode_every_code_on_device(DType dtype, std::uint32_t* device_float_bits) {
  switch (dtype) {
    case DType::bf16:
      return decode_every_code<bf16>(device_float_bits);
    case DType::f16:
      return decode_every_code<fp16>(device_float_bits);
    case DType::f8_e4m3fn:
      return decode_every_code<fp8_e4m3fn>(device_float_bits);
    case DType::f8_e5m2:
      return decode_every_code<fp8_e5m2>(device_float_bits);
    default:
      unsupported(dtype);
  }
}

void encode_on_device(DType dtype, const float* device_inputs, void* device_codes, std::int64_t count) {
  switch (dtype) {
    case DType::bf16:
      return encode<bf16>(device_inputs, device_codes, count);
    case DType::f16:
      return encode<fp16>(device_inputs, device_codes, count);
    case DType::f8_e4m3fn:
      return encode<fp8_e4m3fn>(device_inputs, device_codes, count);
    case DType::f8_e5m2:
      return encode<fp8_e5m2>(device_inputs, device_codes, count);
    default:
      unsupported(dtype);
  }
}

const char* kernel_namespace_name() { return SDNQ_KERNEL_NAMESPACE_STRING; }

}  // namespace sdnq::test
