// The scalar conversions of sdnq/core/scalar.hpp give the same bits in device code as on the host
// (the host side is checked against an independent reference in tests/core/test_scalar.cpp).
#include <bit>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cuda/scalar_kernels.hpp"
#include "sdnq/core/scalar.hpp"
#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/version.hpp"
#include "sdnq_catch.hpp"

namespace {

// Float inputs that reach every rounding case of the four formats: every sign/exponent/high-mantissa
// pattern combined with low bits at and around each format's tie positions, plus random bit patterns.
std::vector<float> conversion_inputs() {
  std::vector<float> inputs;
  const std::uint32_t low_patterns[] = {0x0000, 0x0001, 0x0FFF, 0x1000, 0x1001, 0x2000,
                                        0x4000, 0x7FFF, 0x8000, 0x8001, 0xFFFF};
  for (std::uint32_t high = 0; high < 0x10000u; ++high)
    for (std::uint32_t low : low_patterns) inputs.push_back(std::bit_cast<float>((high << 16) | low));
  std::mt19937 generator(7);
  for (int i = 0; i < (1 << 20); ++i) inputs.push_back(std::bit_cast<float>(static_cast<std::uint32_t>(generator())));
  return inputs;
}

template <class T>
void check_decoding_matches_host() {
  constexpr std::int64_t code_count = std::int64_t{1} << (8 * sizeof(T));
  sdnq::Tensor device_bits = sdnq::cuda::empty({code_count}, sdnq::DType::u32);  // [codes]
  sdnq::test::decode_every_code_on_device(sdnq::dtype_of_v<T>, device_bits.data_as<std::uint32_t>());
  const sdnq::Tensor host_bits = sdnq::cuda::to_host(device_bits);
  const std::uint32_t* actual = host_bits.data_as<std::uint32_t>();
  std::int64_t mismatches = 0;
  std::string first;
  for (std::int64_t code = 0; code < code_count; ++code) {
    const auto expected = std::bit_cast<std::uint32_t>(T::from_bits(static_cast<decltype(T::bits)>(code)).to_float());
    if (actual[code] != expected && mismatches++ < 8)
      first += fmt::format("code {:#x}: device {:#010x}, host {:#010x}\n", code, actual[code], expected);
  }
  INFO(sdnq::dtype_name(sdnq::dtype_of_v<T>) << ": " << mismatches << " codes differ\n" << first);
  CHECK(mismatches == 0);
}

template <class T>
void check_encoding_matches_host(const std::vector<float>& inputs, const sdnq::Tensor& device_inputs) {
  const auto count = static_cast<std::int64_t>(inputs.size());
  sdnq::Tensor device_codes = sdnq::cuda::empty({count}, sdnq::dtype_of_v<T>);  // [inputs]
  sdnq::test::encode_on_device(sdnq::dtype_of_v<T>, device_inputs.data_as<float>(), device_codes.data(), count);
  const sdnq::Tensor host_codes = sdnq::cuda::to_host(device_codes);
  const T* actual = host_codes.data_as<T>();
  std::int64_t mismatches = 0;
  std::string first;
  for (std::int64_t i = 0; i < count; ++i) {
    const auto expected = T(inputs[i]).bits;
    if (actual[i].bits != expected && mismatches++ < 8)
      first += fmt::format("float bits {:#010x}: device {:#x}, host {:#x}\n", std::bit_cast<std::uint32_t>(inputs[i]),
                           actual[i].bits, expected);
  }
  INFO(sdnq::dtype_name(sdnq::dtype_of_v<T>) << ": " << mismatches << " of " << count << " inputs differ\n" << first);
  CHECK(mismatches == 0);
}

}  // namespace

TEST_CASE("scalar types decode every bit pattern on the device exactly as on the host", "[cuda][scalar]") {
  check_decoding_matches_host<sdnq::bf16>();
  check_decoding_matches_host<sdnq::fp16>();
  check_decoding_matches_host<sdnq::fp8_e4m3fn>();
  check_decoding_matches_host<sdnq::fp8_e5m2>();
}

TEST_CASE("scalar types encode floats on the device exactly as on the host", "[cuda][scalar]") {
  std::vector<float> inputs = conversion_inputs();
  const auto count = static_cast<std::int64_t>(inputs.size());
  const sdnq::Tensor device_inputs = sdnq::cuda::to_device(sdnq::TensorView(inputs.data(), sdnq::DType::f32, {count}));
  check_encoding_matches_host<sdnq::bf16>(inputs, device_inputs);
  check_encoding_matches_host<sdnq::fp16>(inputs, device_inputs);
  check_encoding_matches_host<sdnq::fp8_e4m3fn>(inputs, device_inputs);
  check_encoding_matches_host<sdnq::fp8_e5m2>(inputs, device_inputs);
}

TEST_CASE("kernels live in an inline namespace naming the version and the architectures", "[cuda][config]") {
  const std::string name = sdnq::test::kernel_namespace_name();
  INFO("kernel namespace: " << name);
  CHECK(name.rfind(fmt::format("v{}_{}_{}_sm", sdnq::version_major, sdnq::version_minor, sdnq::version_patch), 0) == 0);
  // Not an error (PTX of an older architecture runs too), but worth seeing in the log: the GPU this
  // runs on has no machine code of its own in the build.
  int device = 0, major = 0, minor = 0;
  SDNQ_CUDA_CHECK(cudaGetDevice(&device));
  SDNQ_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  SDNQ_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  if (name.find(fmt::format("_sm{}{}0", major, minor)) == std::string::npos)
    WARN("kernels were not built for this GPU's sm_" << major << minor << "; they run through PTX JIT");
}
