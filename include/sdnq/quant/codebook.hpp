#pragma once
// Codebook (Lloyd-Max) quantization of one row (§3.10, `quantize_weight_codebook`): levels start evenly
// spaced between the row's min and max (fma(i, (max-min)/(L-1), min), as torch.addcmul), then
// `steps` rounds of: sort, midpoints (l[i+1] + l[i]) * 0.5, assignment by searchsorted (left: the first
// midpoint >= x), level = mean of its values (fp32 sums in element order, divided by the count; empty
// levels keep their value). A final sort and assignment gives the stored indices. All fp32, like the
// reference on the CPU, so the result is deterministic and reproduces the reference's codes.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "sdnq/core/error.hpp"

namespace sdnq::quant {

namespace detail {

inline void codebook_midpoints(std::span<const float> levels, std::vector<float>& midpoints) {
  midpoints.resize(levels.size() - 1);
  for (std::size_t i = 0; i + 1 < levels.size(); ++i) midpoints[i] = (levels[i + 1] + levels[i]) * 0.5f;
}

// torch.searchsorted(midpoints, x), side "left": the number of midpoints strictly below x.
inline std::uint16_t codebook_index(const std::vector<float>& midpoints, float x) {
  return static_cast<std::uint16_t>(std::lower_bound(midpoints.begin(), midpoints.end(), x) - midpoints.begin());
}

}  // namespace detail

// `row` holds the values of one reduction slice in element order; `levels` receives the L sorted
// levels, `indices` the level index of every value.
inline void lloyd_max_codebook(std::span<const float> row, std::int64_t steps, std::span<float> levels,
                               std::span<std::uint16_t> indices) {
  const std::size_t level_count = levels.size();
  SDNQ_REQUIRE(level_count >= 2 && level_count <= 65536, ShapeError, "a codebook needs 2..65536 levels, got {}",
               level_count);
  SDNQ_REQUIRE(!row.empty() && indices.size() == row.size(), ShapeError,
               "codebook row of {} values needs as many indices, got {}", row.size(), indices.size());
  SDNQ_REQUIRE(steps >= 0, ConfigError, "codebook_steps must not be negative, got {}", steps);
  const auto [low_it, high_it] = std::minmax_element(row.begin(), row.end());
  const float low = *low_it, high = *high_it;
  const float step = (high - low) / static_cast<float>(level_count - 1);
  for (std::size_t i = 0; i < level_count; ++i) levels[i] = std::fma(static_cast<float>(i), step, low);

  std::vector<float> midpoints, sums(level_count);
  std::vector<std::int32_t> counts(level_count);
  for (std::int64_t iteration = 0; iteration < steps; ++iteration) {
    std::sort(levels.begin(), levels.end());
    detail::codebook_midpoints(levels, midpoints);
    std::fill(sums.begin(), sums.end(), 0.0f);
    std::fill(counts.begin(), counts.end(), 0);
    for (float x : row) {
      const std::uint16_t index = detail::codebook_index(midpoints, x);
      sums[index] += x;
      ++counts[index];
    }
    for (std::size_t i = 0; i < level_count; ++i)
      if (counts[i] > 0) levels[i] = sums[i] / static_cast<float>(counts[i]);
  }
  std::sort(levels.begin(), levels.end());
  detail::codebook_midpoints(levels, midpoints);
  for (std::size_t e = 0; e < row.size(); ++e) indices[e] = detail::codebook_index(midpoints, row[e]);
}

}  // namespace sdnq::quant
