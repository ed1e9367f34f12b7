#pragma once
// The kernels behind conv_w8a8.cuh: SDNQ's quantized-matmul conv (sdnq-format.md §5.2) as an implicit
// GEMM on the 8-bit tensor cores. Output row m = (image, oy, ox) is one im2col row of K = k·k·C inputs,
// quantized per row (the reference's per-token quantization of the unfolded input) and multiplied with
// the position-major weight codes [N, K] (column (ky·k + kx)·C + c, quant::conv2d_weight_as_linear).
//
// The layout pass, then one of two routes (conv_w8a8.cuh chooses):
// 1. conv_w8a8_layout_kernel: x [N, C, H, W] → x_nhwc [N, H, W, C] (a 32×32 transpose through shared
//    memory) and pixel_amax [N·H·W] = max_c |x| (NaN when the pixel holds one). One pass over x.
// 2a. implicit GEMM, conv_w8a8_kernel: each block first derives its rows' scales from the pixel maxima
//    (an im2col row's absmax is the max over its k·k pixels), then runs the K loop. The A tile is
//    gathered from x_nhwc (each 16-code chunk is 16 channels of one pixel: C % 16 == 0), quantized in
//    registers with the row's scale and stored as codes into the shared tile; B (weight codes) comes by
//    cp.async. Both are double-buffered: tile t+1's loads are in flight while tile t is multiplied
//    (mma.sync m16n8k32, as gemm_w8a8's kernel). The epilogue applies y = fma(acc·s_x, s_w, bias) in
//    fp32, stages the tile in shared memory and writes it to out [N, O, Ho, Wo] along the positions.
//    Every column tile quantizes its A tiles again (IEEE divisions on the CUDA cores, ~1 per BN MACs),
//    which is why this route pays off only where the output channels fit one column tile.
// 2b. rows: conv_w8a8_row_scales_kernel and conv_w8a8_row_codes_kernel write the im2col rows' codes
//    once ([rows, K] bytes, no bf16 im2col), which gemm_w8a8 multiplies on its fastest tiles.
// Numerics: the codes and scales are those of quantize_row (w8a8_quantize.cuh) on the im2col row; the
// int32 sums are exact, so int8 results are bit-identical to the reference's unfold + linear_int8 in any
// column order. e4m3 sums each 128-input tile separately and promotes it into fp32 totals.
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/detail/gemm_tc_fragments.cuh"
#include "sdnq/cuda/detail/kernel_convert.cuh"
#include "sdnq/cuda/detail/w8a8_fragments.cuh"
#include "sdnq/cuda/detail/w8a8_kernel.cuh"
#include "sdnq/cuda/detail/w8a8_quantize.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace kernel_detail {

struct ConvW8A8Params {
  const void* x_nhwc;        // [N, H, W, C] T
  const float* pixel_amax;   // [N·H·W]
  const void* w;             // [O, K] int8 / e4m3 codes, K position-major
  const float* w_scale;      // [O]
  const void* bias;          // [O] T, or null
  void* y;                   // [N, O, Ho, Wo] T
  int channels, height, width, out_height, out_width, kernel, stride, pad_top, pad_left;
  int m, n, k;               // m = N·Ho·Wo rows, n = O, k = kernel²·C
  bool scale_in_activation_dtype;
};

inline constexpr int conv_layout_tile = 32, conv_layout_rows = 8;

// One block: 32 consecutive pixels (of the flattened N·H·W) × every channel, 32 at a time.
template <class T>
__global__ void __launch_bounds__(conv_layout_tile* conv_layout_rows)
    conv_w8a8_layout_kernel(const T* __restrict__ x, T* __restrict__ x_nhwc, float* __restrict__ pixel_amax,
                            int channels, int pixels_per_image, std::int64_t pixels) {
  __shared__ T tile[conv_layout_tile][conv_layout_tile + 1];  // [channel][pixel]
  __shared__ float partial[conv_layout_rows][conv_layout_tile];
  __shared__ bool partial_nan[conv_layout_rows][conv_layout_tile];
  const std::int64_t pixel0 = static_cast<std::int64_t>(blockIdx.x) * conv_layout_tile;
  const std::int64_t pixel = pixel0 + threadIdx.x;
  const bool pixel_valid = pixel < pixels;
  const std::int64_t image = pixel_valid ? pixel / pixels_per_image : 0;
  const std::int64_t in_image = pixel_valid ? pixel - image * pixels_per_image : 0;
  const T* image_base = x + image * channels * static_cast<std::int64_t>(pixels_per_image) + in_image;
  float amax = 0.0f;
  bool has_nan = false;
  for (int channel0 = 0; channel0 < channels; channel0 += conv_layout_tile) {
    // Read: threadIdx.x walks pixels (contiguous in NCHW within an image).
#pragma unroll
    for (int r = threadIdx.y; r < conv_layout_tile; r += conv_layout_rows) {
      const int c = channel0 + r;
      T value = from_float<T>(0.0f);
      if (pixel_valid && c < channels) value = image_base[static_cast<std::int64_t>(c) * pixels_per_image];
      const float f = to_float(value);
      has_nan |= f != f;
      amax = fmaxf(amax, fabsf(f));
      tile[r][threadIdx.x] = value;
    }
    __syncthreads();
    // Write: threadIdx.x walks channels (contiguous in NHWC).
#pragma unroll
    for (int r = threadIdx.y; r < conv_layout_tile; r += conv_layout_rows) {
      const std::int64_t p = pixel0 + r;
      const int c = channel0 + threadIdx.x;
      if (p < pixels && c < channels) x_nhwc[p * channels + c] = tile[threadIdx.x][r];
    }
    __syncthreads();
  }
  partial[threadIdx.y][threadIdx.x] = amax;
  partial_nan[threadIdx.y][threadIdx.x] = has_nan;
  __syncthreads();
  if (threadIdx.y == 0 && pixel_valid) {
#pragma unroll
    for (int r = 1; r < conv_layout_rows; ++r) {
      amax = fmaxf(amax, partial[r][threadIdx.x]);
      has_nan |= partial_nan[r][threadIdx.x];
    }
    pixel_amax[pixel] = has_nan ? __int_as_float(0x7FFFFFFF) : amax;  // torch.amax propagates NaN
  }
}

// Tile: BM output rows × BN output channels, warps WarpsM × WarpsN, 128 codes of K per step.
template <int BM_, int BN_, int WarpsM_, int WarpsN_, int MinBlocks_>
struct ConvW8A8Tile {
  static constexpr int BM = BM_, BN = BN_, WarpsM = WarpsM_, WarpsN = WarpsN_, min_blocks = MinBlocks_;
  static constexpr int threads = WarpsM * WarpsN * 32;
  static constexpr int WM = BM / WarpsM, WN = BN / WarpsN;
  static constexpr int MT = WM / 16, NT = WN / 8;
  static_assert(WM % 16 == 0 && WN % 16 == 0, "warp tiles are whole 16×16 blocks");
  static constexpr int k_tile = 128;
  // 16-code chunks of the A tile each thread gathers per K step (two 16-byte loads each).
  static constexpr int a_chunks_per_thread = BM * 8 / threads;
  static_assert(BM * 8 % threads == 0, "the A tile's chunks divide among the threads");
  static constexpr int stage_bytes = (BM + BN) * k_tile;
  static constexpr int output_pitch = BM + 8;  // T elements per staged output column (bank spread)
  static constexpr int main_bytes = 2 * stage_bytes;
  static constexpr int output_bytes = BN * output_pitch * 2;
  static constexpr int row_info_bytes = BM * 16;  // image, iy0, ix0, scale per row
  static constexpr int shared_bytes = (main_bytes > output_bytes ? main_bytes : output_bytes) + row_info_bytes;
};

// Output row m's pixel window (image, top-left input pixel iy0, ix0) and its scale: the max of its
// in-bounds pixel maxima (padding adds zeros, which never raise a max of |x|) over the code range.
struct ConvRowWindow {
  int image, iy0, ix0;
};

__device__ __forceinline__ ConvRowWindow conv_row_window(const ConvW8A8Params& p, int m) {
  const int positions = p.out_height * p.out_width;
  const int image = m / positions, position = m - image * positions;
  const int oy = position / p.out_width, ox = position - oy * p.out_width;
  return {image, oy * p.stride - p.pad_top, ox * p.stride - p.pad_left};
}

template <class T, W8A8Operand Operand>
__device__ __forceinline__ float conv_row_scale(const ConvW8A8Params& p, const ConvRowWindow& window) {
  float amax = 0.0f;
  bool has_nan = false;
  for (int ky = 0; ky < p.kernel; ++ky) {
    const int iy = window.iy0 + ky;
    if (iy < 0 || iy >= p.height) continue;
    for (int kx = 0; kx < p.kernel; ++kx) {
      const int ix = window.ix0 + kx;
      if (ix < 0 || ix >= p.width) continue;
      const float a = __ldg(p.pixel_amax + (static_cast<std::int64_t>(window.image) * p.height + iy) * p.width + ix);
      has_nan |= a != a;
      amax = fmaxf(amax, a);
    }
  }
  if (has_nan) amax = __int_as_float(0x7FFFFFFF);  // torch.amax propagates NaN
  return round_to_compute<T>(__fdiv_rn(amax, code_range<Operand>), p.scale_in_activation_dtype);
}

// The 16 values of columns kk..kk+15 of a row (one pixel's channels c..c+15: C % 16 == 0) from x_nhwc,
// zeros in the padding or past K.
template <class T>
__device__ __forceinline__ void gather_sixteen(const ConvW8A8Params& p, int image, int iy0, int ix0, int kk,
                                               uint4 (&words)[2]) {
  words[0] = words[1] = make_uint4(0u, 0u, 0u, 0u);
  if (kk >= p.k) return;
  const int window = kk / p.channels, channel = kk - window * p.channels;
  const int ky = window / p.kernel, kx = window - ky * p.kernel;
  const int iy = iy0 + ky, ix = ix0 + kx;
  if (iy < 0 || iy >= p.height || ix < 0 || ix >= p.width) return;
  const uint4* source = reinterpret_cast<const uint4*>(
      static_cast<const T*>(p.x_nhwc) + ((static_cast<std::int64_t>(image) * p.height + iy) * p.width + ix) * p.channels +
      channel);
  words[0] = __ldg(source);
  words[1] = __ldg(source + 1);
}

// 16 values of T (two words) → 16 codes at `scale`.
template <class T, W8A8Operand Operand>
__device__ __forceinline__ uint4 quantize_sixteen(const uint4& low, const uint4& high, float scale, bool in_t) {
  const uint2 a = quantize_eight<T, Operand>(low, scale, in_t), b = quantize_eight<T, Operand>(high, scale, in_t);
  return make_uint4(a.x, a.y, b.x, b.y);
}

template <class T, W8A8Operand Operand, class Tile>
__global__ void __launch_bounds__(Tile::threads, Tile::min_blocks) conv_w8a8_kernel(const ConvW8A8Params p) {
  extern __shared__ uint4 shared_words[];
  auto* shared = reinterpret_cast<std::uint8_t*>(shared_words);
  constexpr int main_region = Tile::main_bytes > Tile::output_bytes ? Tile::main_bytes : Tile::output_bytes;
  int* row_image = reinterpret_cast<int*>(shared + main_region);
  int* row_iy = row_image + Tile::BM;
  int* row_ix = row_iy + Tile::BM;
  float* row_scale = reinterpret_cast<float*>(row_ix + Tile::BM);

  const int2 tile_index = tile_coordinates((p.m + Tile::BM - 1) / Tile::BM, (p.n + Tile::BN - 1) / Tile::BN, blockIdx.x);
  const int row0 = tile_index.x * Tile::BM, col0 = tile_index.y * Tile::BN;
  const int valid_cols = min(Tile::BN, p.n - col0);
  const int positions = p.out_height * p.out_width;
  const bool in_t = p.scale_in_activation_dtype;
  // Each row's pixel window and scale; rows past M read nothing (every pixel outside) and get codes 0.
  for (int r = threadIdx.x; r < Tile::BM; r += Tile::threads) {
    const int m = row0 + r;
    ConvRowWindow window{0, -(1 << 20), -(1 << 20)};
    float scale = 1.0f;
    if (m < p.m) {
      window = conv_row_window(p, m);
      scale = conv_row_scale<T, Operand>(p, window);
    }
    row_image[r] = window.image, row_iy[r] = window.iy0, row_ix[r] = window.ix0, row_scale[r] = scale;
  }
  __syncthreads();

  W8A8Sums<Operand, Tile> acc;
  W8A8Totals<Operand, Tile> total;
  zero_w8a8_sums<Operand, Tile>(acc, total);

  std::uint8_t* a_tiles = shared;                             // 2 × BM × 128
  std::uint8_t* b_tiles = shared + 2 * Tile::BM * Tile::k_tile;  // 2 × BN × 128
  const std::uint8_t* b = static_cast<const std::uint8_t*>(p.w) + static_cast<std::size_t>(col0) * p.k;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int warp_m = warp / Tile::WarpsN, warp_n = warp % Tile::WarpsN;
  const int tiles = (p.k + Tile::k_tile - 1) / Tile::k_tile;

  // The A chunks this thread gathers: chunk c = threadIdx.x + i·threads covers row c / 8, codes
  // 16·(c % 8) .. +15 of the K step, so 8 neighbouring threads read 256 contiguous bytes of one pixel.
  uint4 gathered[Tile::a_chunks_per_thread][2];
  auto gather = [&](int tile) {
#pragma unroll
    for (int i = 0; i < Tile::a_chunks_per_thread; ++i) {
      const int c = threadIdx.x + i * Tile::threads, row = c >> 3, chunk = c & 7;
      gather_sixteen<T>(p, row_image[row], row_iy[row], row_ix[row], tile * Tile::k_tile + chunk * 16, gathered[i]);
    }
  };
  auto store_gathered = [&](int stage) {
    std::uint8_t* a_tile = a_tiles + stage * Tile::BM * Tile::k_tile;
#pragma unroll
    for (int i = 0; i < Tile::a_chunks_per_thread; ++i) {
      const int c = threadIdx.x + i * Tile::threads, row = c >> 3, chunk = c & 7;
      *reinterpret_cast<uint4*>(a_tile + swizzled_byte_offset(row, chunk)) =
          quantize_sixteen<T, Operand>(gathered[i][0], gathered[i][1], row_scale[row], in_t);
    }
  };
  auto load_b = [&](int stage, int tile) {
    load_code_rows_async<Tile::BN, Tile::threads>(b_tiles + stage * Tile::BN * Tile::k_tile, b, p.k, valid_cols, tile);
  };
  auto compute = [&](int stage) {
    multiply_w8a8_k_tile<Operand, Tile>(acc, total, a_tiles + stage * Tile::BM * Tile::k_tile,
                                        b_tiles + stage * Tile::BN * Tile::k_tile, warp_m, warp_n, lane);
  };

  // Double buffering: tile t + 1's gathers and copies are in flight while tile t is multiplied; the
  // barrier at the end of step t frees stage t % 2 for tile t + 2.
  load_b(0, 0);
  copy_async_commit();
  gather(0);
  store_gathered(0);
  copy_async_wait<0>();
  __syncthreads();
  for (int tile = 0; tile < tiles; ++tile) {
    const bool more = tile + 1 < tiles;
    if (more) {
      load_b((tile + 1) & 1, tile + 1);
      gather(tile + 1);
    }
    copy_async_commit();
    compute(tile & 1);
    if (more) store_gathered((tile + 1) & 1);
    copy_async_wait<0>();
    __syncthreads();
  }

  // Epilogue: y = fma(acc·s_x, s_w, bias) rounded once to T, staged as [channel][row] so that the
  // stores below run along the output positions.
  T* staged = reinterpret_cast<T*>(shared);
  const T* bias = static_cast<const T*>(p.bias);
#pragma unroll
  for (int nt = 0; nt < Tile::NT; ++nt) {
    const int local_col = warp_n * Tile::WN + nt * 8 + 2 * (lane & 3), col = col0 + local_col;
    const float s_w_lo = col < p.n ? p.w_scale[col] : 0.0f, s_w_hi = col + 1 < p.n ? p.w_scale[col + 1] : 0.0f;
    const float b_lo = bias != nullptr && col < p.n ? to_float(bias[col]) : 0.0f;
    const float b_hi = bias != nullptr && col + 1 < p.n ? to_float(bias[col + 1]) : 0.0f;
#pragma unroll
    for (int mt = 0; mt < Tile::MT; ++mt)
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int local_row = warp_m * Tile::WM + mt * 16 + half * 8 + (lane >> 2);
        const float s_x = row_scale[local_row];
        const float sum_lo = w8a8_sum<Operand, Tile>(acc, total, mt, nt, 2 * half);
        const float sum_hi = w8a8_sum<Operand, Tile>(acc, total, mt, nt, 2 * half + 1);
        staged[local_col * Tile::output_pitch + local_row] =
            from_float<T>(__fmaf_rn(__fmul_rn(sum_lo, s_x), s_w_lo, b_lo));
        staged[(local_col + 1) * Tile::output_pitch + local_row] =
            from_float<T>(__fmaf_rn(__fmul_rn(sum_hi, s_x), s_w_hi, b_hi));
      }
  }
  __syncthreads();
  T* y = static_cast<T*>(p.y);
  for (int e = threadIdx.x; e < Tile::BM * Tile::BN; e += Tile::threads) {
    const int local_col = e / Tile::BM, local_row = e - local_col * Tile::BM;
    const int m = row0 + local_row, col = col0 + local_col;
    if (m >= p.m || col >= p.n) continue;
    const int image = row_image[local_row], position = m - image * positions;
    y[(static_cast<std::int64_t>(image) * p.n + col) * positions + position] =
        staged[local_col * Tile::output_pitch + local_row];
  }
}

// The "rows" route for wide convs (conv_w8a8.cuh): the im2col codes of output rows [first, first + count)
// written once, [count, K] with their scales, in the layout of a W8A8Activations, for gemm_w8a8.
template <class T, W8A8Operand Operand>
__global__ void conv_w8a8_row_scales_kernel(const ConvW8A8Params p, int first, int count, float* __restrict__ scale) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r < count) scale[r] = conv_row_scale<T, Operand>(p, conv_row_window(p, first + r));
}

// One thread per 16 codes: 8 neighbouring threads read 256 contiguous bytes of one pixel.
template <class T, W8A8Operand Operand>
__global__ void conv_w8a8_row_codes_kernel(const ConvW8A8Params p, int first, int count,
                                           const float* __restrict__ scale, std::uint8_t* __restrict__ codes) {
  const int chunks_per_row = p.k / 16;
  const std::int64_t index = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (index >= static_cast<std::int64_t>(count) * chunks_per_row) return;
  const int r = static_cast<int>(index / chunks_per_row), chunk = static_cast<int>(index - r * std::int64_t{chunks_per_row});
  const ConvRowWindow window = conv_row_window(p, first + r);
  uint4 words[2];
  gather_sixteen<T>(p, window.image, window.iy0, window.ix0, chunk * 16, words);
  reinterpret_cast<uint4*>(codes)[index] =
      quantize_sixteen<T, Operand>(words[0], words[1], __ldg(scale + r), p.scale_in_activation_dtype);
}

}  // namespace kernel_detail
SDNQ_KERNEL_NAMESPACE_END
