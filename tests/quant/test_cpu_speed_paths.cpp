// The fast CPU codec paths: results must not depend on the thread count (the same bits serially and on
// the pool — run the binary with SDNQ_NUM_THREADS=1 and with several threads for the whole picture), and
// the blocked products must equal plain loops written here with the same per-element operation order.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "sdnq/core/parallel.hpp"
#include "sdnq/format/packing.hpp"
#include "sdnq/quant/dequantize.hpp"
#include "sdnq/quant/detail/cpu_products.hpp"
#include "sdnq/quant/quantize.hpp"
#include "sdnq/quant/svd.hpp"
#include "sdnq_catch.hpp"

namespace {

using namespace sdnq;

// parallel_for runs serially inside a pool chunk: marking this thread as one forces one thread.
struct SerialScope {
  SerialScope() { sdnq::detail::inside_parallel_chunk = true; }
  ~SerialScope() { sdnq::detail::inside_parallel_chunk = false; }
  SerialScope(const SerialScope&) = delete;
  SerialScope& operator=(const SerialScope&) = delete;
};

Tensor normal_weight(std::int64_t rows, std::int64_t cols, std::uint32_t seed) {  // [rows, cols] bf16
  Tensor weight = Tensor::empty(Shape{rows, cols}, DType::bf16);
  std::mt19937 generator(seed);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  for (std::int64_t i = 0; i < weight.numel(); ++i) weight.data_as<bf16>()[i] = bf16(normal(generator));
  return weight;
}

bool same_bytes(TensorView a, TensorView b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

quant::QuantizedTensors quantize(const Tensor& weight, const std::string& type, std::int64_t group_size,
                                 std::int64_t svd_rank, bool dequantize_fp32 = true) {
  quant::LayerOptions options;
  options.dequantize_fp32 = dequantize_fp32;
  options.weights_type = &format::storage_type(type);
  options.group_size = group_size;
  options.use_svd = svd_rank > 0;
  options.svd_rank = svd_rank;
  options.svd_steps = 3;
  return quant::quantize_weight(weight.view(), quant::LayerKind::linear, options, DType::bf16, 5);
}

struct Case {
  std::string type;
  std::int64_t group_size, svd_rank;
  bool dequantize_fp32 = true;  // false: steps 2-5 round to the model dtype after each
};

const std::vector<Case> cases = {{"int8", 0, 0},   {"uint4", 64, 0}, {"uint4", 0, 8},         {"uint4", 32, 8, false},
                                 {"uint3", 32, 0}, {"int6", 0, 12},  {"float8_e4m3fn", 0, 0}, {"int8", 0, 4, false}};

}  // namespace

TEST_CASE("quantize_weight writes the same tensors on one thread and on the pool", "[quant][cpu_speed]") {
  INFO("pool threads: " << parallel_thread_count());
  const Tensor weight = normal_weight(96, 160, 3);
  for (const Case& c : cases) {
    INFO(c.type << " group " << c.group_size << " svd rank " << c.svd_rank << " fp32 " << c.dequantize_fp32);
    const quant::QuantizedTensors pooled = quantize(weight, c.type, c.group_size, c.svd_rank, c.dequantize_fp32);
    quant::QuantizedTensors serial;
    {
      const SerialScope one_thread;
      serial = quantize(weight, c.type, c.group_size, c.svd_rank, c.dequantize_fp32);
    }
    CHECK(same_bytes(pooled.weight.view(), serial.weight.view()));
    CHECK(same_bytes(pooled.scale.view(), serial.scale.view()));
    REQUIRE(pooled.zero_point.has_value() == serial.zero_point.has_value());
    if (pooled.zero_point) CHECK(same_bytes(pooled.zero_point->view(), serial.zero_point->view()));
    REQUIRE(pooled.svd_up.has_value() == (c.svd_rank > 0));
    if (pooled.svd_up) {
      CHECK(same_bytes(pooled.svd_up->view(), serial.svd_up->view()));
      CHECK(same_bytes(pooled.svd_down->view(), serial.svd_down->view()));
    }
  }
}

TEST_CASE("dequantize gives the same bits on one thread and on the pool", "[quant][cpu_speed]") {
  const Tensor weight = normal_weight(96, 160, 4);
  for (const Case& c : cases) {
    const quant::QuantizedTensors layer = quantize(weight, c.type, c.group_size, c.svd_rank, c.dequantize_fp32);
    for (DType out : {DType::bf16, DType::f16, DType::f32})
      for (auto precision : {quant::ScalePrecision::reference_compatible, quant::ScalePrecision::as_stored}) {
        INFO(c.type << " group " << c.group_size << " svd rank " << c.svd_rank << " fp32 " << c.dequantize_fp32
                    << " to " << dtype_name(out));
        const Tensor pooled = quant::dequantize(layer.view(), out, precision);
        Tensor serial;
        {
          const SerialScope one_thread;
          serial = quant::dequantize(layer.view(), out, precision);
        }
        CHECK(same_bytes(pooled.view(), serial.view()));
      }
  }
}

TEST_CASE("the row-blocked dequantizer equals plain loops over the codes", "[quant][cpu_speed]") {
  // uint4, group 32, SVD rank 8: q = unpacked code, r = fma(q, scale, zero_point) per group, then
  // + Σ_r fma(up, down, ·) in fp32 from r = 0, cast to fp32: computed here element by element. [74, 352]
  // leaves 2 rows after the 4-row blocks of the low-rank product and a second 256-column block of 96.
  const auto [rows, cols] =
      GENERATE(std::pair<std::int64_t, std::int64_t>{72, 96}, std::pair<std::int64_t, std::int64_t>{74, 352});
  INFO("[" << rows << ", " << cols << "]");
  const Tensor weight = normal_weight(rows, cols, 9);
  const quant::QuantizedTensors layer = quantize(weight, "uint4", 32, 8);
  const Tensor dense = quant::dequantize(layer.view(), DType::f32, quant::ScalePrecision::as_stored);
  REQUIRE_FALSE(layer.layout.transposed);
  const std::int64_t group = 32, rank = 8;
  std::vector<std::uint16_t> codes(static_cast<std::size_t>(rows * cols));
  format::unpack_codes(4, layer.weight.view(), codes);
  auto widened = [](const Tensor& t, std::int64_t i) {  // the stored (bf16 or f32) value
    return t.dtype() == DType::bf16 ? t.view().data_as<bf16>()[i].to_float() : t.view().data_as<float>()[i];
  };
  std::int64_t mismatches = 0;
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < cols; ++j) {
      const std::int64_t e = i * cols + j, slice = e / group;
      float value =
          std::fma(static_cast<float>(codes[e]), widened(layer.scale, slice), widened(*layer.zero_point, slice));
      if (!layer.layout.dequantize_fp32) value = bf16(value).to_float();
      float low_rank = 0.0f;
      for (std::int64_t r = 0; r < rank; ++r)
        low_rank = std::fma(widened(*layer.svd_up, i * rank + r), widened(*layer.svd_down, r * cols + j), low_rank);
      value = value + low_rank;
      if (!layer.layout.dequantize_fp32) value = bf16(value).to_float();
      mismatches += std::memcmp(&value, &dense.data_as<float>()[e], sizeof(float)) != 0;
    }
  CHECK(mismatches == 0);
}

// The dequantizer's low-rank add-back, U·D in fp32: 4-row register blocks of 24 and 8 columns, then
// scalar columns and single rows. [7, 300] rank 13: 3 rows after a block, and in the second 256-column
// block 44 = 24 + 8 + 8 + 4 columns.
TEST_CASE("the low-rank add-back's blocked product equals fp32 fma chains in rank order", "[quant][cpu_speed][svd]") {
  const std::int64_t rows = 7, cols = 300, rank = 13;
  std::mt19937 generator(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> up(static_cast<std::size_t>(rows * rank)), down(static_cast<std::size_t>(rank * cols));
  for (auto& v : up) v = normal(generator);
  for (auto& v : down) v = normal(generator);
  std::vector<float> product(static_cast<std::size_t>(rows * cols), std::nanf(""));
  quant::detail::fused_low_rank_rows(up.data(), down.data(), 0, rows, rank, cols,
                                     [&](std::int64_t row, std::int64_t col0, std::int64_t width, const float* sums) {
                                       std::copy(sums, sums + width, product.begin() + row * cols + col0);
                                     });
  std::int64_t mismatches = 0;
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < cols; ++j) {
      float sum = 0.0f;
      for (std::int64_t r = 0; r < rank; ++r) sum = std::fma(up[i * rank + r], down[r * cols + j], sum);
      mismatches += std::memcmp(&sum, &product[i * cols + j], sizeof(float)) != 0;
    }
  CHECK(mismatches == 0);
}

// Shapes past the line tile (64) and the step block (512) of the products, with count % 4 = 1 (scalar
// sums), 0 (whole 8-wide register blocks) and 3 + 4 (a 4-wide block and scalars), and row and column
// counts leaving 1-3 lines after the 4-line register blocks.
TEST_CASE("the SVD's blocked products equal fma chains in index order", "[quant][cpu_speed][svd]") {
  const auto [rows, cols, count] = GENERATE(std::tuple<std::int64_t, std::int64_t, std::int64_t>{37, 53, 5},
                                            std::tuple<std::int64_t, std::int64_t, std::int64_t>{131, 1030, 32},
                                            std::tuple<std::int64_t, std::int64_t, std::int64_t>{1100, 70, 15});
  INFO("W [" << rows << ", " << cols << "], " << count << " vectors");
  std::mt19937 generator(11);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<float> w(static_cast<std::size_t>(rows * cols));
  for (auto& x : w) x = static_cast<float>(normal(generator));
  std::vector<double> x(static_cast<std::size_t>(count * cols)), y(static_cast<std::size_t>(count * rows));
  for (auto& v : x) v = normal(generator);
  for (auto& v : y) v = normal(generator);
  std::vector<double> wx, wty;
  quant::detail::matrix_times_vectors(w, rows, cols, x, count, wx);
  quant::detail::transposed_matrix_times_vectors(w, rows, cols, y, count, wty);
  std::int64_t mismatches = 0;
  for (std::int64_t k = 0; k < count; ++k) {
    for (std::int64_t i = 0; i < rows; ++i) {
      double sum = 0.0;
      for (std::int64_t j = 0; j < cols; ++j) sum = std::fma(double(w[i * cols + j]), x[k * cols + j], sum);
      mismatches += sum != wx[k * rows + i];
    }
    for (std::int64_t j = 0; j < cols; ++j) {
      double sum = 0.0;
      for (std::int64_t i = 0; i < rows; ++i) sum = std::fma(double(w[i * cols + j]), y[k * rows + i], sum);
      mismatches += sum != wty[k * cols + j];
    }
  }
  CHECK(mismatches == 0);
}

TEST_CASE("svd_lowrank gives the same factors on one thread and on the pool, wide and tall",
          "[quant][cpu_speed][svd]") {
  for (auto [rows, cols] : {std::pair<std::int64_t, std::int64_t>{130, 70}, {70, 130}}) {
    std::vector<float> matrix(static_cast<std::size_t>(rows * cols));
    std::mt19937 generator(13);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (auto& v : matrix) v = normal(generator);
    const quant::LowRankFactors pooled = quant::svd_lowrank(matrix, rows, cols, 9, 4, 21);
    quant::LowRankFactors serial;
    {
      const SerialScope one_thread;
      serial = quant::svd_lowrank(matrix, rows, cols, 9, 4, 21);
    }
    INFO(rows << " x " << cols);
    CHECK(pooled.up == serial.up);
    CHECK(pooled.down == serial.down);
    CHECK(pooled.singular_values == serial.singular_values);
  }
}
