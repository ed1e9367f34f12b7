#pragma once
// Stochastic rounding of §3.7 (`use_stochastic_rounding`, `src/sdnq/quant_utils.py: quantize_weight`),
// with the reference's two rules:
// - integer types: q + 0.1·N(0, 1) before round-half-even. A Gaussian dither, not true stochastic
//   rounding: E[round(q + 0.1·Z)] differs from q (0.3 rounds up only with probability Φ(-2) ≈ 2.3%);
// - float types: a uniform integer in [0, 2^(23−M)) added to the fp32 bit pattern, then the low 23−M
//   bits cleared (true stochastic rounding of the magnitude to M mantissa bits: unbiased).
// The reference draws from torch's global generator; here every draw is a pure function of (seed,
// layer name, element index), so a seed reproduces the result whatever the order or threading.
#include <bit>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <string_view>

namespace sdnq::quant::detail {

// splitmix64's output function: a bijection that spreads every input bit over the whole word.
inline std::uint64_t mix_bits(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

class StochasticRounding {
 public:
  StochasticRounding(std::uint64_t seed, std::string_view layer_name) {
    std::uint64_t name_hash = 0xCBF29CE484222325ull;  // FNV-1a: layers of one seed draw different noise
    for (char c : layer_name) name_hash = (name_hash ^ static_cast<unsigned char>(c)) * 0x100000001B3ull;
    key_ = mix_bits(mix_bits(seed ^ 0x5D0C4A3E57A1B0F3ull) ^ name_hash);
  }

  // Uniform in (0, 1) with 53 random bits; `stream` separates the draws of one element.
  double uniform(std::int64_t element, std::uint64_t stream) const {
    return (static_cast<double>(bits(element, stream) >> 11) + 0.5) * 0x1p-53;
  }
  // Standard normal (Box–Muller).
  double standard_normal(std::int64_t element) const {
    const double radius = std::sqrt(-2.0 * std::log(uniform(element, 0)));
    return radius * std::cos(2.0 * std::numbers::pi * uniform(element, 1));
  }
  // Uniform integer in [0, 2^width), width in [0, 32].
  std::uint32_t uniform_integer(std::int64_t element, int width) const {
    if (width <= 0) return 0;
    return static_cast<std::uint32_t>(bits(element, 2) >> (64 - width));
  }

 private:
  std::uint64_t bits(std::int64_t element, std::uint64_t stream) const {
    return mix_bits(key_ ^ mix_bits(static_cast<std::uint64_t>(element) * 4 + stream));
  }
  std::uint64_t key_ = 0;
};

// Integer types: the reference's `q.add_(torch.randn_like(q), alpha=0.1)`, before rounding.
inline float dither_integer(float q, const StochasticRounding& rounding, std::int64_t element) {
  return q + 0.1f * static_cast<float>(rounding.standard_normal(element));
}

// Float types with `mantissa_bits` (fp32 itself: unchanged): the reference adds to the int32 view of
// the fp32 bits, which wraps exactly like this unsigned addition.
inline float stochastic_float(float q, int mantissa_bits, const StochasticRounding& rounding, std::int64_t element) {
  const int dropped = 23 - mantissa_bits;
  if (dropped <= 0) return q;
  const std::uint32_t step = std::uint32_t{1} << dropped;
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(q) + rounding.uniform_integer(element, dropped);
  return std::bit_cast<float>(bits & ~(step - 1));
}

}  // namespace sdnq::quant::detail
