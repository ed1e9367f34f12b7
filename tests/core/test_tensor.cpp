#include "sdnq_catch.hpp"

#include <numeric>
#include <vector>

#include "sdnq/core/tensor.hpp"

using namespace sdnq;

TEST_CASE("Shape: rank, numel, negative axes, printing", "[core][tensor]") {
  Shape shape{2, 3, 4};
  CHECK(shape.rank() == 3);
  CHECK(shape.numel() == 24);
  CHECK(shape[-1] == 4);
  CHECK(shape.to_string() == "[2, 3, 4]");
  CHECK(contiguous_strides(shape) == Shape{12, 4, 1});
  CHECK_THROWS_AS(shape[3], ShapeError);
  CHECK_THROWS_AS((Shape{1, 1, 1, 1, 1, 1, 1, 1, 1}), ShapeError);
  CHECK(Shape{}.numel() == 1);
}

TEST_CASE("Tensor: owning host storage is aligned, move-only and cloned explicitly", "[core][tensor]") {
  Tensor tensor = Tensor::empty({3, 5}, DType::f32);
  CHECK(reinterpret_cast<std::uintptr_t>(tensor.data()) % 64 == 0);
  CHECK(tensor.nbytes() == 60);
  float* values = tensor.data_as<float>();
  std::iota(values, values + 15, 0.0f);
  CHECK_THROWS_AS(tensor.data_as<double>(), ShapeError);

  Tensor copy_of = tensor.clone();
  REQUIRE(copy_of.data() != tensor.data());
  CHECK(copy_of.data_as<float>()[14] == 14.0f);

  Tensor moved = std::move(tensor);
  CHECK(moved.data_as<float>()[7] == 7.0f);
  CHECK_FALSE(tensor.defined());  // NOLINT: checking the moved-from state on purpose

  moved.reshape({5, 3});
  CHECK(moved.shape() == Shape{5, 3});
  CHECK_THROWS_AS(moved.reshape({4, 4}), ShapeError);
  CHECK(Tensor::zeros({0, 4}, DType::bf16).numel() == 0);
}

TEST_CASE("copy: strided source into contiguous destination", "[core][tensor]") {
  std::vector<std::int32_t> source_values(12);
  std::iota(source_values.begin(), source_values.end(), 0);
  // The transpose of a [3, 4] row-major matrix, seen through strides.
  TensorView transposed(source_values.data(), DType::i32, Shape{4, 3}, Shape{1, 4}, Device::cpu());
  CHECK_FALSE(transposed.is_contiguous());
  Tensor destination = Tensor::empty({4, 3}, DType::i32);
  copy(destination, transposed);
  const std::int32_t* out = destination.data_as<std::int32_t>();
  for (int row = 0; row < 4; ++row)
    for (int col = 0; col < 3; ++col) CHECK(out[row * 3 + col] == col * 4 + row);
  CHECK(transposed[1].shape() == Shape{3});
  CHECK(*static_cast<std::int32_t*>(transposed[1].data()) == 1);

  Tensor wrong = Tensor::empty({3, 4}, DType::i32);
  CHECK_THROWS_AS(copy(wrong, transposed), ShapeError);
  CHECK_THROWS_AS(copy(destination, TensorView(nullptr, DType::i32, Shape{4, 3}, Device::cuda())), ShapeError);
}

TEST_CASE("DType table: names round-trip and sizes", "[core][dtype]") {
  for (const auto& info : dtype_table) {
    CHECK(dtype_from_name(info.safetensors_name) == info.dtype);
    CHECK(dtype_size(info.dtype) == info.size);
  }
  CHECK_FALSE(dtype_from_name("F4").has_value());
  CHECK(dtype_name(DType::f8_e4m3fn) == "F8_E4M3");
}
