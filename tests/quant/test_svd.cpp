// Randomized low-rank SVD: exact recovery of a low-rank matrix, near-optimal error on a random one
// (the optimum comes from a full one-sided Jacobi SVD written here), determinism, rank checks.
#include <algorithm>
#include <cmath>
#include <vector>

#include "sdnq/quant/svd.hpp"
#include "sdnq_catch.hpp"

namespace {

std::vector<float> pseudo_random_matrix(int rows, int cols, unsigned salt) {
  std::vector<float> values(static_cast<std::size_t>(rows) * cols);
  unsigned state = 12345u + salt;
  for (auto& v : values) {
    state = state * 1664525u + 1013904223u;
    v = static_cast<float>(static_cast<int>(state >> 9) % 20001 - 10000) / 10000.0f;
  }
  return values;
}

double frobenius_error(const std::vector<float>& matrix, const sdnq::quant::LowRankFactors& factors) {
  double error = 0;
  for (std::int64_t i = 0; i < factors.rows; ++i)
    for (std::int64_t j = 0; j < factors.cols; ++j) {
      double approx = 0;
      for (std::int64_t k = 0; k < factors.rank; ++k)
        approx += factors.up[i * factors.rank + k] * factors.down[k * factors.cols + j];
      const double d = matrix[i * factors.cols + j] - approx;
      error += d * d;
    }
  return std::sqrt(error);
}

// All singular values of a small matrix by cyclic one-sided Jacobi on its columns (independent of
// the code under test: plain two-sided-free textbook Hestenes iteration on the full matrix).
std::vector<double> all_singular_values(const std::vector<float>& matrix, int rows, int cols) {
  std::vector<std::vector<double>> columns(cols, std::vector<double>(rows));
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j) columns[j][i] = matrix[i * cols + j];
  for (int sweep = 0; sweep < 100; ++sweep) {
    double off = 0;
    for (int p = 0; p < cols; ++p)
      for (int r = p + 1; r < cols; ++r) {
        double a = 0, b = 0, g = 0;
        for (int i = 0; i < rows; ++i) {
          a += columns[p][i] * columns[p][i];
          b += columns[r][i] * columns[r][i];
          g += columns[p][i] * columns[r][i];
        }
        off = std::max(off, std::abs(g) / std::sqrt(a * b + 1e-300));
        if (std::abs(g) < 1e-300) continue;
        const double theta = 0.5 * std::atan2(2 * g, a - b);
        const double c = std::cos(theta), s = std::sin(theta);
        for (int i = 0; i < rows; ++i) {
          const double x = columns[p][i], y = columns[r][i];
          columns[p][i] = c * x + s * y;
          columns[r][i] = -s * x + c * y;
        }
      }
    if (off < 1e-14) break;
  }
  std::vector<double> sigma;
  for (auto& column : columns) {
    double norm = 0;
    for (double x : column) norm += x * x;
    sigma.push_back(std::sqrt(norm));
  }
  std::sort(sigma.rbegin(), sigma.rend());
  return sigma;
}

}  // namespace

TEST_CASE("svd_lowrank recovers an exactly low-rank matrix", "[quant][svd]") {
  for (auto [rows, cols] : {std::pair{48, 20}, std::pair{20, 48}}) {
    const int true_rank = 5;
    const auto left = pseudo_random_matrix(rows, true_rank, 1), right = pseudo_random_matrix(true_rank, cols, 2);
    std::vector<float> matrix(static_cast<std::size_t>(rows) * cols);
    for (int i = 0; i < rows; ++i)
      for (int j = 0; j < cols; ++j) {
        double sum = 0;
        for (int k = 0; k < true_rank; ++k) sum += double(left[i * true_rank + k]) * right[k * cols + j];
        matrix[i * cols + j] = static_cast<float>(sum);
      }
    const auto factors = sdnq::quant::svd_lowrank(matrix, rows, cols, true_rank, 2, 7);
    double norm = 0;
    for (float x : matrix) norm += double(x) * x;
    INFO(rows << "x" << cols);
    CHECK(frobenius_error(matrix, factors) < 1e-6 * std::sqrt(norm));  // only fp32 input rounding remains
    // requesting more rank than exists still works (completion with arbitrary orthonormal vectors)
    const auto wider = sdnq::quant::svd_lowrank(matrix, rows, cols, true_rank + 3, 2, 7);
    CHECK(frobenius_error(matrix, wider) < 1e-6 * std::sqrt(norm));
  }
}

TEST_CASE("svd_lowrank is close to the optimal rank-r error on a random matrix", "[quant][svd]") {
  const int rows = 40, cols = 30, rank = 6;
  const auto matrix = pseudo_random_matrix(rows, cols, 3);
  const auto sigma = all_singular_values(matrix, rows, cols);
  double optimal = 0;
  for (std::size_t k = rank; k < sigma.size(); ++k) optimal += sigma[k] * sigma[k];
  optimal = std::sqrt(optimal);
  const auto factors = sdnq::quant::svd_lowrank(matrix, rows, cols, rank, 8, 11);
  const double error = frobenius_error(matrix, factors);
  CHECK(error >= optimal * (1 - 1e-9));  // Eckart-Young: nothing beats the truncated SVD
  CHECK(error <= optimal * 1.02);
  // a flat random spectrum without oversampling: singular values within a few percent
  for (int k = 0; k < rank; ++k) CHECK(factors.singular_values[k] == Approx(sigma[k]).epsilon(0.05));
  // svd_down has orthonormal rows
  for (int a = 0; a < rank; ++a)
    for (int b = 0; b < rank; ++b) {
      double d = 0;
      for (int j = 0; j < cols; ++j) d += factors.down[a * cols + j] * factors.down[b * cols + j];
      CHECK(std::abs(d - (a == b ? 1.0 : 0.0)) < 1e-9);
    }
}

TEST_CASE("svd_lowrank is deterministic for a seed and checks the rank", "[quant][svd]") {
  const auto matrix = pseudo_random_matrix(16, 24, 4);
  const auto first = sdnq::quant::svd_lowrank(matrix, 16, 24, 4, 3, 99);
  const auto second = sdnq::quant::svd_lowrank(matrix, 16, 24, 4, 3, 99);
  CHECK(first.up == second.up);
  CHECK(first.down == second.down);
  CHECK(sdnq::quant::svd_rank_fits(16, 24, 16));
  CHECK_FALSE(sdnq::quant::svd_rank_fits(16, 24, 17));
  CHECK_THROWS_AS(sdnq::quant::svd_lowrank(matrix, 16, 24, 17, 3, 99), sdnq::ShapeError);
  CHECK_THROWS_AS(sdnq::quant::svd_lowrank(matrix, 16, 20, 4, 3, 99), sdnq::ShapeError);
}
