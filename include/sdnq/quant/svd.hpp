#pragma once
// Randomized low-rank SVD with the algorithm of `torch.svd_lowrank(W, q=rank, niter=steps)` (Halko,
// Martinsson, Tropp): a Gaussian test matrix, `steps` power iterations with QR re-orthonormalization
// after every product, then the exact SVD of the small projected matrix (one-sided Jacobi). The
// reference draws from torch's global RNG, so no implementation reproduces its factors; this one is
// deterministic for a given seed (own generator, no std:: distributions, whose output varies by
// library). Arithmetic in double. The quantizer keeps svd_up = U·diag(S) [rows, rank] and
// svd_down = Vᵀ [rank, cols] (§3.5).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

#include "sdnq/core/error.hpp"
#include "sdnq/quant/detail/cpu_products.hpp"

namespace sdnq::quant {

struct LowRankFactors {
  std::int64_t rows = 0, cols = 0, rank = 0;
  std::vector<double> up;               // [rows, rank] = U·diag(S)
  std::vector<double> down;             // [rank, cols] = Vᵀ
  std::vector<double> singular_values;  // [rank], descending
};

// svd_lowrank needs 1 <= rank <= min(rows, cols); derive_layout clamps the configured rank to that (§3.5).
inline bool svd_rank_fits(std::int64_t rows, std::int64_t cols, std::int64_t rank) {
  return rank >= 1 && rank <= std::min(rows, cols);
}

namespace detail {

// splitmix64: a tiny, portable, well-mixed generator; Gaussians by Box-Muller.
class GaussianSource {
 public:
  explicit GaussianSource(std::uint64_t seed) : state_(seed ^ 0x5DEECE66DULL) {}
  double next() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double u1 = (static_cast<double>(next_bits() >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
    const double u2 = static_cast<double>(next_bits() >> 11) * 0x1.0p-53;          // [0, 1)
    const double radius = std::sqrt(-2.0 * std::log(u1));
    constexpr double two_pi = 6.283185307179586476925286766559;
    spare_ = radius * std::sin(two_pi * u2);
    has_spare_ = true;
    return radius * std::cos(two_pi * u2);
  }

 private:
  std::uint64_t next_bits() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  std::uint64_t state_;
  double spare_ = 0.0;
  bool has_spare_ = false;
};

inline double dot(std::span<const double> a, std::span<const double> b) {
  double sum = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) sum += a[i] * b[i];
  return sum;
}

// Orthonormalizes `count` vectors of `length` (vector k at basis[k·length]) in place: modified
// Gram-Schmidt applied twice (numerically as good as Householder QR for the thin case). A vector
// that collapses (the matrix has lower rank than requested) is replaced by a fresh random direction,
// as any orthonormal completion is a valid Q.
inline void orthonormalize(std::vector<double>& basis, std::int64_t count, std::int64_t length, GaussianSource& noise) {
  auto vector_at = [&](std::int64_t k) { return std::span<double>(basis.data() + k * length, length); };
  for (std::int64_t k = 0; k < count; ++k) {
    auto v = vector_at(k);
    for (int attempt = 0;; ++attempt) {
      const double original_norm = std::sqrt(dot(v, v));
      for (int pass = 0; pass < 2; ++pass)
        for (std::int64_t j = 0; j < k; ++j) {
          auto u = vector_at(j);
          const double projection = dot(u, v);
          for (std::int64_t i = 0; i < length; ++i) v[i] -= projection * u[i];
        }
      const double norm = std::sqrt(dot(v, v));
      if (norm > 1e-10 * original_norm && norm > 1e-300) {
        for (auto& x : v) x /= norm;
        break;
      }
      SDNQ_REQUIRE(attempt < 8, Error, "svd_lowrank: cannot complete an orthonormal basis of {} vectors in {} dims",
                   count, length);
      for (auto& x : v) x = noise.next();
    }
  }
}

}  // namespace detail

// `matrix` row-major [rows, cols] (any finite values). Throws ShapeError when the rank does not fit:
// derive_layout has already clamped the rank of a reference layout to fit.
inline LowRankFactors svd_lowrank(std::span<const float> matrix, std::int64_t rows, std::int64_t cols,
                                  std::int64_t rank, std::int64_t power_iterations, std::uint64_t seed) {
  SDNQ_REQUIRE(static_cast<std::int64_t>(matrix.size()) == rows * cols, ShapeError,
               "svd_lowrank: {} values for a [{}, {}] matrix", matrix.size(), rows, cols);
  SDNQ_REQUIRE(svd_rank_fits(rows, cols, rank), ShapeError, "svd_lowrank: rank {} exceeds min({}, {})", rank, rows,
               cols);
  SDNQ_REQUIRE(power_iterations >= 0, ConfigError, "svd_lowrank: negative number of power iterations {}",
               power_iterations);
  // Like torch, work on the orientation with m >= n (A = W or Wᵀ) and swap the factors at the end.
  // A is never materialized: its products read W in place (detail/cpu_products.hpp), in double.
  const bool transposed = rows < cols;
  const std::int64_t m = transposed ? cols : rows, n = transposed ? rows : cols;
  const std::int64_t q = rank;
  detail::GaussianSource noise(seed);

  // Products with the basis stored as q vectors: `range` holds q vectors of length m (columns of
  // A·X), `corange` q vectors of length n (columns of Aᵀ·Q).
  auto times_a = [&](const std::vector<double>& corange, std::vector<double>& range) {  // range = A · corange
    if (transposed)
      detail::transposed_matrix_times_vectors(matrix, rows, cols, corange, q, range);
    else
      detail::matrix_times_vectors(matrix, rows, cols, corange, q, range);
  };
  auto times_a_transposed = [&](const std::vector<double>& range, std::vector<double>& corange) {  // Aᵀ · range
    if (transposed)
      detail::matrix_times_vectors(matrix, rows, cols, range, q, corange);
    else
      detail::transposed_matrix_times_vectors(matrix, rows, cols, range, q, corange);
  };

  std::vector<double> test(static_cast<std::size_t>(q * n));  // Gaussian R [n, q]
  for (auto& x : test) x = noise.next();
  std::vector<double> basis(static_cast<std::size_t>(q * m));  // Q [m, q]
  times_a(test, basis);
  detail::orthonormalize(basis, q, m, noise);
  std::vector<double> co_basis(static_cast<std::size_t>(q * n));
  for (std::int64_t step = 0; step < power_iterations; ++step) {
    times_a_transposed(basis, co_basis);
    detail::orthonormalize(co_basis, q, n, noise);
    times_a(co_basis, basis);
    detail::orthonormalize(basis, q, m, noise);
  }

  // B = Qᵀ A [q, n]: row k of B is (Aᵀ q_k).
  std::vector<double> projected(static_cast<std::size_t>(q * n));
  times_a_transposed(basis, projected);
  // One-sided Jacobi on Bᵀ (columns = rows of B): rotate pairs until orthogonal, recording the
  // rotations in J [q, q] (row-major, J[l][k]); then B = J·diag(σ)·Vᵀ with V's rows = normalized rows.
  std::vector<double> rotation(static_cast<std::size_t>(q * q), 0.0);
  for (std::int64_t k = 0; k < q; ++k) rotation[k * q + k] = 1.0;
  for (int sweep = 0; sweep < 60; ++sweep) {
    bool rotated = false;
    for (std::int64_t p = 0; p < q; ++p)
      for (std::int64_t r = p + 1; r < q; ++r) {
        std::span<double> bp(projected.data() + p * n, n), br(projected.data() + r * n, n);
        const double alpha = detail::dot(bp, bp), beta = detail::dot(br, br), gamma = detail::dot(bp, br);
        if (std::abs(gamma) <= 1e-15 * std::sqrt(alpha * beta) || gamma == 0.0) continue;
        rotated = true;
        const double zeta = (beta - alpha) / (2.0 * gamma);
        const double t = (zeta >= 0 ? 1.0 : -1.0) / (std::abs(zeta) + std::sqrt(1.0 + zeta * zeta));
        const double c = 1.0 / std::sqrt(1.0 + t * t), s = c * t;
        for (std::int64_t j = 0; j < n; ++j) {
          const double x = bp[j], y = br[j];
          bp[j] = c * x - s * y;
          br[j] = s * x + c * y;
        }
        for (std::int64_t l = 0; l < q; ++l) {
          const double x = rotation[l * q + p], y = rotation[l * q + r];
          rotation[l * q + p] = c * x - s * y;
          rotation[l * q + r] = s * x + c * y;
        }
      }
    if (!rotated) break;
  }
  std::vector<double> sigma(static_cast<std::size_t>(q));
  for (std::int64_t k = 0; k < q; ++k) {
    std::span<double> bk(projected.data() + k * n, n);
    sigma[k] = std::sqrt(detail::dot(bk, bk));
    if (sigma[k] > 0)
      for (auto& x : bk) x /= sigma[k];
  }
  std::vector<std::int64_t> order(static_cast<std::size_t>(q));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](auto x, auto y) { return sigma[x] > sigma[y]; });

  // Left factor in the working orientation: U = Q·J [m, q]; right factor V [n, q] = normalized rows.
  LowRankFactors factors;
  factors.rows = rows;
  factors.cols = cols;
  factors.rank = q;
  factors.up.assign(static_cast<std::size_t>(rows * q), 0.0);
  factors.down.assign(static_cast<std::size_t>(q * cols), 0.0);
  for (std::int64_t out = 0; out < q; ++out) {
    const std::int64_t k = order[out];
    factors.singular_values.push_back(sigma[k]);
    for (std::int64_t i = 0; i < m; ++i) {
      double u = 0.0;
      for (std::int64_t l = 0; l < q; ++l) u += basis[l * m + i] * rotation[l * q + k];
      const double v_scaled = u * sigma[k];
      if (!transposed)
        factors.up[i * q + out] = v_scaled;  // U·S, row i
      else
        factors.down[out * cols + i] = u;    // swapped: U of Aᵀ is V of A
    }
    for (std::int64_t j = 0; j < n; ++j) {
      const double v = projected[k * n + j];
      if (!transposed)
        factors.down[out * cols + j] = v;
      else
        factors.up[j * q + out] = v * sigma[k];
    }
  }
  return factors;
}

}  // namespace sdnq::quant
