#pragma once
// Helpers for the nn tests: deterministic random tensors, element access, and where the reference
// fixtures live (tests/data/models always; the full set when SDNQ_FIXTURES or ../shared exists).
#include <cstdint>
#include <filesystem>
#include <optional>
#include <random>
#include <vector>

#include "fixture_paths.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq_catch.hpp"

namespace sdnq::test {

inline Tensor random_tensor(Shape shape, std::uint32_t seed, float low = -1.0f, float high = 1.0f) {
  Tensor t = Tensor::empty(shape, DType::f32);
  std::mt19937 generator(seed);
  std::uniform_real_distribution<float> uniform(low, high);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] = uniform(generator);
  return t;
}

inline Tensor tensor_of(Shape shape, const std::vector<float>& values) {
  REQUIRE(static_cast<std::int64_t>(values.size()) == shape.numel());
  Tensor t = Tensor::empty(shape, DType::f32);
  std::copy(values.begin(), values.end(), t.data_as<float>());
  return t;
}

inline float at(const Tensor& t, std::int64_t flat_index) { return t.data_as<float>()[flat_index]; }

// max |actual - expected| / (1 + |expected|) over all elements.
inline double max_scaled_error(const Tensor& actual, const std::vector<double>& expected) {
  REQUIRE(static_cast<std::int64_t>(expected.size()) == actual.numel());
  double worst = 0.0;
  for (std::size_t i = 0; i < expected.size(); ++i)
    worst = std::max(worst, std::abs(actual.data_as<float>()[i] - expected[i]) / (1.0 + std::abs(expected[i])));
  return worst;
}

// The full reference fixture set (fixtures/sdnq-reference), if this machine has it.
inline std::optional<std::filesystem::path> shared_fixtures_dir() {
  std::error_code error;
  const std::filesystem::path root = reference_fixtures_dir();
  if (std::filesystem::is_directory(root / "models", error)) return root;
  return std::nullopt;
}

}  // namespace sdnq::test
