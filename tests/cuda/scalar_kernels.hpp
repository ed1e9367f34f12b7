#pragma once
// Host launchers for the scalar conversion kernels in scalar_kernels.cu. Declared for the host
// compiler's .cpp test files, so outside the kernel namespace (see sdnq/cuda/config.cuh), and free of
// tensor.hpp: its fmt calls are checked at compile time, which nvcc 13 with g++ 13 rejects.
#include <cstdint>

#include "sdnq/core/dtype.hpp"

namespace sdnq::test {

// Widens every code of `dtype` (bf16, f16, f8_e4m3fn or f8_e5m2) on the device:
// device_float_bits[code] = bits of T::from_bits(code).to_float(), for all 2^(8 * size) codes.
void decode_every_code_on_device(DType dtype, std::uint32_t* device_float_bits);

// Narrows `count` floats on the device: device_codes[i] = T(device_inputs[i]).bits, where
// device_codes holds `count` elements of `dtype`'s size.
void encode_on_device(DType dtype, const float* device_inputs, void* device_codes, std::int64_t count);

// The name of the inline kernel namespace the .cu files were compiled into.
const char* kernel_namespace_name();

}  // namespace sdnq::test
