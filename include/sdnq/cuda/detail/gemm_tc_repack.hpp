#pragma once
// Load-time repack of a 4- or 8-bit LinearCodes for the tensor-core GEMM (gemm_tc.cuh). Host only.
//
// Layout (every operand the kernel reads is one 16-byte load per thread):
//   codes         U32 [K/64, N/16, 32 lanes, bits words]   one "fragment block" = 16 output rows ×
//                 64 inputs; lane l owns exactly the codes of the mma.m16n8k16 B fragments it holds:
//                 g = l/4, t = l%4, k-step s (16 inputs), pair j (0..3) → row  n = 8·(j/2) + g,
//                 inputs k = 16·s + 8·(j%2) + 2t and k + 1 (low and high half of the bf16x2 register).
//                 Word i = s·(bits/4) + w of a lane lives at [i/4][lane][i%4] inside the block, so a
//                 warp reads whole 512-byte slices (no bank conflicts).
//                 uint4: word s holds pair j's low code in nibble j, its high code in nibble j + 4,
//                   so (word >> 4j) & 0x000F000F puts both codes in the two 16-bit halves.
//                 8-bit: words 2s, 2s+1 hold pairs (0, 1), (2, 3): low codes in bytes 0 and 1,
//                   high codes in bytes 2 and 3, so word & 0x00FF00FF and (word >> 8) & 0x00FF00FF.
//   group_params  T [G, N, 2]   (scale, zero point) rounded to T; [G, N] so a k-tile's parameters for
//                 consecutive rows are contiguous. Row-wise and tensor-wise weights have G = 1.
//   svd_up        T [N, rp],  svd_down T [rp, K], the rank r zero-padded only to rp = a multiple of 16
//                 (the mma k-step; rank 32 stays 32): the kernels run the branch in 64-wide K tiles
//                 and zero-fill (or skip) the columns of the last tile past rp, so the factors and
//                 the low-rank workspace [M, rp] hold no padding to 64.
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "sdnq/core/dtype.hpp"
#include "sdnq/core/error.hpp"
#include "sdnq/core/parallel.hpp"
#include "sdnq/core/scalar.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/repack.hpp"

namespace sdnq::cuda {

inline constexpr std::int64_t gemm_tc_k_tile = 64;      // inputs per pipeline stage
inline constexpr std::int64_t gemm_tc_n_multiple = 64;  // smallest output tile
inline constexpr std::int64_t gemm_tc_max_rank = 128;
inline constexpr std::int64_t gemm_tc_rank_granule = 16;  // svd_rank_padded is a multiple of this

struct GemmTcWeightsHost {
  int bits = 0;            // 4 or 8
  bool is_signed = false;  // q = code − 2^(bits−1), else q = code
  std::int64_t out_features = 0, in_features = 0;
  std::int64_t group_size = 0;  // 32, a multiple of 64, or in_features (row-/tensor-wise)
  // True rank r; the factors are padded to svd_rank_padded, r rounded up to gemm_tc_rank_granule (16).
  std::int64_t svd_rank = 0;
  std::int64_t svd_rank_padded = 0;
  DType dtype = DType::bf16;  // activation, output and parameter dtype
  Tensor codes;               // U32 [K/64, N/16, 32, bits]
  Tensor group_params;        // dtype [G, N, 2]
  Tensor svd_up, svd_down;    // dtype [N, rp], [rp, K]; undefined without SVD
};

namespace detail {

// Index of the 32-bit word and the bit offset where the repacked layout stores the code of (row n,
// input k). Mirrors the fragment ownership of mma.m16n8k16 described in the file comment.
inline void gemm_tc_code_position(int bits, std::int64_t n, std::int64_t k, std::int64_t out_features,
                                  std::int64_t& word, int& shift) {
  const std::int64_t n_block = n / 16, k_block = k / 64;
  const int row = static_cast<int>(n % 16), input = static_cast<int>(k % 64);
  const int half = row / 8, g = row % 8;
  const int step = input / 16, within = input % 16;
  const int reg = within / 8, t = (within % 8) / 2, high = within % 2;
  const int lane = g * 4 + t, pair = half * 2 + reg;
  const int words_per_step = bits / 4;
  int word_in_lane = 0;
  if (bits == 4) {
    word_in_lane = step;
    shift = 4 * (pair + 4 * high);
  } else {
    word_in_lane = step * words_per_step + pair / 2;
    shift = 8 * (pair % 2 + 2 * high);
  }
  const std::int64_t block = (k_block * (out_features / 16) + n_block) * 32 * bits;
  word = block + (word_in_lane / 4) * 128 + lane * 4 + word_in_lane % 4;
}

}  // namespace detail

// Repacks a host checkpoint weight for gemm_tc(). Throws UnsupportedError (with what is required)
// for widths other than 4 and 8, lookup codes, and shapes the kernel does not tile.
//
// scale_rounding: to_output_dtype stores (T(scale), T(zero_point)), as the diffusers reference loader
// rounds them. none (the transformers loader keeps them fp32): unsigned codes with a zero point are
// re-centred, q = code − 2^(bits−1) and zero' = T(zero_point + 2^(bits−1)·scale) rounded once from
// fp32, so the rounding error of the zero point (a row minimum, ~2.7× the weights' rms for uint4) no
// longer multiplies Σ x over the group: with T(zero_point) that error is correlated across the row and
// dominated the CLIP encoders' uint4 + SVD error against the reference's output_bf16 (a CPU float32
// emulation: 3.3e-2 with T parameters, 1.2e-2 re-centred, 1.0e-2 with fp32 ones). The scale stays T.
template <class T>
GemmTcWeightsHost repack_for_gemm_tc(const LinearCodes& w, ScaleRounding scale_rounding = ScaleRounding::to_output_dtype) {
  static_assert(std::is_same_v<T, bf16> || std::is_same_v<T, fp16>, "activations are bf16 or fp16");
  detail::require_linear_codes_consistent(w);
  SDNQ_REQUIRE(w.codes.device().is_cpu() && w.scale.device().is_cpu(), ShapeError,
               "{}: repack_for_gemm_tc reads host tensors", w.name);
  SDNQ_REQUIRE((w.bits == 4 || w.bits == 8) && w.value != CodeValue::lookup, UnsupportedError,
               "{}: the tensor-core GEMM takes 4- and 8-bit integer codes, got {}-bit {}", w.name, w.bits,
               w.value == CodeValue::lookup ? "float codes" : "integer codes");
  const std::int64_t n = w.out_features, k = w.in_features;
  const std::int64_t group_size = w.group_size > 0 ? w.group_size : k;
  SDNQ_REQUIRE(n % gemm_tc_n_multiple == 0 && k % gemm_tc_k_tile == 0, UnsupportedError,
               "{}: the tensor-core GEMM needs out_features ({}) and in_features ({}) to be multiples of 64", w.name, n,
               k);
  SDNQ_REQUIRE(group_size == 32 || group_size % 64 == 0, UnsupportedError,
               "{}: the tensor-core GEMM needs group size 32 or a multiple of 64, got {}", w.name, group_size);
  SDNQ_REQUIRE(w.svd_rank() <= gemm_tc_max_rank, UnsupportedError,
               "{}: SVD rank {} exceeds the tensor-core GEMM's limit of {}", w.name, w.svd_rank(), gemm_tc_max_rank);

  std::vector<std::uint8_t> codes;  // [N, K], offset binary for signed formats
  if (w.bits == 4)
    detail::unpack_all_codes<4>(w, codes);
  else
    detail::unpack_all_codes<8>(w, codes);

  GemmTcWeightsHost out;
  out.bits = w.bits;
  // Re-centred unsigned codes use the signed formats' code offset (the kernels only read is_signed as
  // "subtract 2^(bits−1)"); the zero point below absorbs it.
  const bool recentre = scale_rounding == ScaleRounding::none && w.value == CodeValue::unsigned_integer &&
                        w.zero_point.has_value();
  out.is_signed = w.value == CodeValue::signed_integer || recentre;
  out.out_features = n;
  out.in_features = k;
  out.group_size = group_size;
  out.dtype = dtype_of_v<T>;
  out.codes = Tensor::zeros(Shape{k / 64, n / 16, 32, w.bits}, DType::u32);
  auto* words = out.codes.data_as<std::uint32_t>();
  // On all host threads: each 16-row block of N owns its words.
  parallel_for(0, n / 16, 1, [&](std::int64_t first, std::int64_t last) {
    for (std::int64_t row = first * 16; row < last * 16; ++row)
      for (std::int64_t c = 0; c < k; ++c) {
        std::int64_t word = 0;
        int shift = 0;
        detail::gemm_tc_code_position(w.bits, row, c, n, word, shift);
        words[word] |= static_cast<std::uint32_t>(codes[static_cast<std::size_t>(row * k + c)]) << shift;
      }
  });

  const std::int64_t groups = k / group_size;
  out.group_params = Tensor::empty(Shape{groups, n, 2}, dtype_of_v<T>);
  auto* params = out.group_params.data_as<T>();
  for (std::int64_t g = 0; g < groups; ++g)
    for (std::int64_t row = 0; row < n; ++row) {
      // Tensor-wise: one stored value; otherwise [N, G, 1] row-major (row-wise: G = 1).
      const std::int64_t source = w.group_size == -2 ? 0 : row * groups + g;
      params[(g * n + row) * 2] = detail::narrow_param<T>(w.scale, source);
      if (recentre)
        params[(g * n + row) * 2 + 1] =
            T(std::fma(static_cast<float>(1 << (w.bits - 1)), detail::narrow_param<float>(w.scale, source),
                       detail::narrow_param<float>(*w.zero_point, source)));
      else
        params[(g * n + row) * 2 + 1] = w.zero_point ? detail::narrow_param<T>(*w.zero_point, source) : T(0.0f);
    }

  if (w.svd_up) {
    detail::PaddedSvdFactors<T> svd = detail::padded_svd_factors<T>(*w.svd_up, *w.svd_down, gemm_tc_rank_granule);
    out.svd_rank = svd.rank;
    out.svd_rank_padded = svd.rank_padded;
    out.svd_up = std::move(svd.up);
    out.svd_down = std::move(svd.down);
  }
  return out;
}

}  // namespace sdnq::cuda
