#pragma once
// Kernels of positional.cuh and resample.cuh: FLUX's rotary embedding on interleaved pairs, the
// sinusoidal timestep embedding, nearest 2× upsampling and patch (un)packing.
#include <cuda_runtime.h>

#include <cstdint>

#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/ops/detail/common.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace ops::kernel_detail {

// Element strides of a [B, H, L, D] view (D stride 1).
struct HeadStrides {
  long long batch = 0, head = 0, token = 0;
};

struct RopeParams {
  const void* x = nullptr;
  void* out = nullptr;
  const float* cos = nullptr;  // [L, D]
  const float* sin = nullptr;  // [L, D]
  HeadStrides x_strides, out_strides;
  long long batch = 0, heads = 0, tokens = 0;
  int head_dim = 0;
};

// (x0, x1) -> (x0·cos0 − x1·sin0, x1·cos1 + x0·sin1) on each interleaved pair, `Width` elements
// (Width / 2 pairs) per step: 8 with 16-byte accesses, 2 otherwise.
template <class T, int Width>
__global__ void rope_kernel(const RopeParams p) {
  const long long per_row = p.head_dim / Width;
  const long long items = p.batch * p.heads * p.tokens * per_row;
  const long long step = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long item = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; item < items; item += step) {
    const int column = static_cast<int>(item % per_row) * Width;
    long long rest = item / per_row;
    const long long token = rest % p.tokens;
    rest /= p.tokens;
    const long long head = rest % p.heads, batch = rest / p.heads;
    const T* in = static_cast<const T*>(p.x) + batch * p.x_strides.batch + head * p.x_strides.head +
                  token * p.x_strides.token + column;
    T* o = static_cast<T*>(p.out) + batch * p.out_strides.batch + head * p.out_strides.head +
           token * p.out_strides.token + column;
    const float* c = p.cos + token * p.head_dim + column;
    const float* s = p.sin + token * p.head_dim + column;
    float v[Width], r[Width];
    if constexpr (Width == 8) {
      load8(in, v);
    } else {
      v[0] = to_float(in[0]);
      v[1] = to_float(in[1]);
    }
#pragma unroll
    for (int e = 0; e < Width; e += 2) {
      r[e] = v[e] * c[e] - v[e + 1] * s[e];
      r[e + 1] = v[e + 1] * c[e + 1] + v[e] * s[e + 1];
    }
    if constexpr (Width == 8) {
      store8(o, r);
    } else {
      o[0] = from_float<T>(r[0]);
      o[1] = from_float<T>(r[1]);
    }
  }
}

// out [N, dim]: columns [0, half) and [half, 2·half) hold sin and cos (or cos and sin when
// flip) of scale · t[n] · exp(−ln(max_period) · i / (half − shift)); an odd last column is zero.
template <class Out>
__global__ void timestep_embedding_kernel(const float* t, Out* out, long long count, int dim, bool flip_sin_to_cos,
                                          float downscale_freq_shift, float scale, float log_max_period) {
  const int half = dim / 2;
  const long long items = count * dim;
  const long long step = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long item = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; item < items; item += step) {
    const long long n = item / dim;
    const int column = static_cast<int>(item % dim);
    float value = 0.0f;
    if (column < 2 * half) {
      const int i = column % half;
      const float frequency =
          expf(-log_max_period * static_cast<float>(i) / (static_cast<float>(half) - downscale_freq_shift));
      const float argument = scale * (t[n] * frequency);
      const bool first_half = column < half;
      value = (first_half != flip_sin_to_cos) ? sinf(argument) : cosf(argument);
    }
    out[item] = from_float<Out>(value);
  }
}

// x [planes, H, W] -> out [planes, 2H, 2W]; Vector: 8 outputs (from 4 inputs) per step, W % 4 == 0.
template <class T, bool Vector>
__global__ void upsample_nearest2x_kernel(const T* x, T* out, long long planes, long long height, long long width) {
  constexpr int outputs = Vector ? 8 : 1;
  const long long out_width = 2 * width;
  const long long items = planes * 2 * height * out_width / outputs;
  const long long step = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long item = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; item < items; item += step) {
    const long long flat = item * outputs;
    const long long column = flat % out_width;
    const long long row = (flat / out_width) % (2 * height);
    const long long plane = flat / out_width / (2 * height);
    const T* in = x + (plane * height + row / 2) * width + column / 2;
    if constexpr (Vector) {
      uint4 raw;
      T* o = reinterpret_cast<T*>(&raw);
#pragma unroll
      for (int e = 0; e < 8; ++e) o[e] = in[e / 2];
      *reinterpret_cast<uint4*>(out + flat) = raw;
    } else {
      out[flat] = *in;
    }
  }
}

// Patch packing, one output element per step. image [B, C, H, W] <-> tokens [B, (H/p)·(W/p), C·p·p];
// the token vector is (c, dy, dx) when channel_major (FLUX's _pack_latents), (dy, dx, c) otherwise
// (SD3's unpatchify). `to_tokens` picks the direction.
template <class T>
__global__ void patch_kernel(const T* in, T* out, long long batch, int channels, long long height, long long width,
                             int patch, bool channel_major, bool to_tokens) {
  const long long items = batch * channels * height * width;
  const long long step = static_cast<long long>(gridDim.x) * blockDim.x;
  const long long grid_width = width / patch, tokens = (height / patch) * grid_width;
  const long long token_size = static_cast<long long>(channels) * patch * patch;
  for (long long item = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; item < items; item += step) {
    // `item` walks the output: token layout when packing, image layout when unpacking.
    long long b, c, y, x;
    if (to_tokens) {
      b = item / (tokens * token_size);
      const long long token = (item / token_size) % tokens;
      const long long inside = item % token_size;
      long long dy, dx;
      if (channel_major) {
        c = inside / (patch * patch);
        dy = (inside / patch) % patch;
        dx = inside % patch;
      } else {
        c = inside % channels;
        dy = inside / channels / patch;
        dx = (inside / channels) % patch;
      }
      y = (token / grid_width) * patch + dy;
      x = (token % grid_width) * patch + dx;
      out[item] = in[((b * channels + c) * height + y) * width + x];
    } else {
      x = item % width;
      y = (item / width) % height;
      c = (item / (width * height)) % channels;
      b = item / (width * height * channels);
      const long long token = (y / patch) * grid_width + x / patch;
      const long long dy = y % patch, dx = x % patch;
      const long long inside = channel_major ? (c * patch + dy) * patch + dx : (dy * patch + dx) * channels + c;
      out[item] = in[(b * tokens + token) * token_size + inside];
    }
  }
}

}  // namespace ops::kernel_detail
SDNQ_KERNEL_NAMESPACE_END
