// A program that uses sdnq the way an outside project does: public headers only, through whichever
// route built it (tests/consumers/run.sh). Exits non-zero when a result is wrong.
#include <cstdio>
#include <cstring>
#include <utility>

#include <sdnq/core/dtype.hpp>
#include <sdnq/core/error.hpp>
#include <sdnq/core/scalar.hpp>
#include <sdnq/core/tensor.hpp>
#include <sdnq/version.hpp>

#ifndef SDNQ_CONSUMER_ROUTE
#error "SDNQ_CONSUMER_ROUTE names the consumption route; the build defines it"
#endif
#ifndef SDNQ_CONSUMER_EXPECTED_VERSION
#error "SDNQ_CONSUMER_EXPECTED_VERSION is the version the build system reports for sdnq"
#endif

namespace {

int failures = 0;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "consumer (%s): FAILED: %s\n", SDNQ_CONSUMER_ROUTE, what);
    ++failures;
  }
}

}  // namespace

int main() {
  constexpr int rows = 2, cols = 3;
  sdnq::Tensor matrix = sdnq::Tensor::empty({rows, cols}, sdnq::DType::f32);  // [2, 3]
  auto* values = matrix.data_as<float>();
  for (int i = 0; i < rows * cols; ++i) values[i] = static_cast<float>(10 * i + 1);

  // Copy through a transposed (strided) view: transposed[c][r] must equal matrix[r][c].
  sdnq::TensorView transposed_view(matrix.data(), sdnq::DType::f32, {cols, rows}, {1, cols},
                                   sdnq::Device::cpu());  // [3, 2], strides (1, 3)
  sdnq::Tensor transposed = sdnq::Tensor::zeros({cols, rows}, sdnq::DType::f32);  // [3, 2]
  sdnq::copy(transposed, transposed_view);
  const auto* transposed_values = transposed.data_as<float>();
  bool transposed_ok = true;
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c)
      transposed_ok = transposed_ok && transposed_values[c * rows + r] == static_cast<float>(10 * (r * cols + c) + 1);
  check(transposed_ok, "copy through a transposed view");
  check(transposed.nbytes() == rows * cols * sizeof(float), "nbytes of a [3, 2] f32 tensor");
  check(sdnq::dtype_of_v<float> == sdnq::DType::f32 && sdnq::dtype_name(sdnq::DType::bf16) == "BF16",
        "dtype table");

  // bf16 is the top half of a float: 1.5f is 0x3FC00000, so its bf16 bits are 0x3FC0.
  sdnq::Tensor halves = sdnq::Tensor::empty({2}, sdnq::DType::bf16);  // [2]
  halves.data_as<sdnq::bf16>()[0] = sdnq::bf16(1.5f);
  halves.data_as<sdnq::bf16>()[1] = sdnq::bf16::from_bits(0xC040);  // -3.0f is 0xC0400000
  check(halves.data_as<sdnq::bf16>()[0].bits == 0x3FC0 && halves.data_as<sdnq::bf16>()[1].to_float() == -3.0f,
        "bf16 elements of a bf16 tensor");

  sdnq::Tensor moved = std::move(matrix);
  check(!matrix.defined() && moved.defined() && moved.numel() == rows * cols, "move leaves the source empty");

  bool threw_shape_error = false;
  try {
    moved.reshape({4, 2});
  } catch (const sdnq::ShapeError&) {
    threw_shape_error = true;
  }
  check(threw_shape_error, "reshape [2, 3] -> [4, 2] throws sdnq::ShapeError");

  check(std::strcmp(sdnq::version_string, SDNQ_CONSUMER_EXPECTED_VERSION) == 0,
        "sdnq/version.hpp agrees with the version of the CMake project");

  if (failures != 0) return 1;
  std::printf("sdnq %s via %s: ok\n", sdnq::version_string, SDNQ_CONSUMER_ROUTE);
  return 0;
}
