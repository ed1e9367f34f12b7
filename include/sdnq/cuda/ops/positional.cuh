#pragma once
// Position encodings on the device (f32 math, explicit stream, outputs passed in):
//   apply_rope(x, cos, sin, out)   FLUX's rotary embedding on interleaved pairs of each head:
//       (x0, x1) -> (x0·cos − x1·sin, x1·cos + x0·sin); x and out [B, H, L, D] views (any strides with
//       unit stride along D, e.g. split_heads() of the QKV projection; out may be x), cos and sin the
//       f32 tables [L, D] of nn::detail::rotary_embedding (each frequency twice in a row).
//   timestep_embedding(t [N] f32, dim, flip_sin_to_cos, downscale_freq_shift, scale, max_period, out [N, dim])
//       diffusers' get_timestep_embedding; out BF16, F16 or F32.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/ops/detail/common.cuh"
#include "sdnq/cuda/ops/detail/layout_kernels.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace ops {

inline void apply_rope(const TensorView& x, const TensorView& cos, const TensorView& sin, const TensorView& out,
                       cudaStream_t stream) {
  using namespace kernel_detail;
  SDNQ_REQUIRE(x.rank() == 4 && x.size(3) % 2 == 0 && x.stride(3) == 1, ShapeError,
               "cuda::ops::apply_rope: x must be [B, H, L, D] with an even D and unit stride along it, got {} with "
               "strides {}",
               x.shape().to_string(), x.strides().to_string());
  SDNQ_REQUIRE(x.dtype() == DType::bf16 || x.dtype() == DType::f16, UnsupportedError,
               "cuda::ops::apply_rope: x must be BF16 or F16, got {}", dtype_name(x.dtype()));
  SDNQ_REQUIRE(out.rank() == 4 && out.shape() == x.shape() && out.stride(3) == 1 && out.dtype() == x.dtype() &&
                   x.device().is_cuda() && out.device().is_cuda(),
               ShapeError, "cuda::ops::apply_rope: out must be a device {} view {} like x, got {} {}",
               dtype_name(x.dtype()), x.shape().to_string(), dtype_name(out.dtype()), out.shape().to_string());
  const Shape table{x.size(2), x.size(3)};
  for (const TensorView* t : {&cos, &sin})
    SDNQ_REQUIRE(t->dtype() == DType::f32 && t->shape() == table && t->is_contiguous() && t->device().is_cuda(),
                 ShapeError,
                 "cuda::ops::apply_rope: cos and sin must be contiguous device F32 [L, D] = {} for x {}, got {} {}",
                 table.to_string(), x.shape().to_string(), dtype_name(t->dtype()), t->shape().to_string());
  if (x.numel() == 0) return;
  RopeParams p;
  p.x = x.data();
  p.out = out.data();
  p.cos = cos.data_as<const float>();
  p.sin = sin.data_as<const float>();
  p.x_strides = {x.stride(0), x.stride(1), x.stride(2)};
  p.out_strides = {out.stride(0), out.stride(1), out.stride(2)};
  p.batch = x.size(0);
  p.heads = x.size(1);
  p.tokens = x.size(2);
  p.head_dim = static_cast<int>(x.size(3));
  const auto multiple_of_8 = [](const TensorView& v) {
    return v.stride(0) % 8 == 0 && v.stride(1) % 8 == 0 && v.stride(2) % 8 == 0 && aligned16(v.data());
  };
  const bool vector =
      p.head_dim % 8 == 0 && multiple_of_8(x) && multiple_of_8(out) && aligned16(p.cos) && aligned16(p.sin);
  constexpr int threads = 256;
  dispatch_16bit(x.dtype(), [&]<class T>() {
    if (vector)
      rope_kernel<T, 8><<<grid_for(x.numel() / 8, threads), threads, 0, stream>>>(p);
    else
      rope_kernel<T, 2><<<grid_for(x.numel() / 2, threads), threads, 0, stream>>>(p);
  });
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

inline void timestep_embedding(const TensorView& t, int dim, bool flip_sin_to_cos, float downscale_freq_shift,
                               float scale, int max_period, const TensorView& out, cudaStream_t stream) {
  using namespace kernel_detail;
  SDNQ_REQUIRE(t.rank() == 1 && t.dtype() == DType::f32 && t.is_contiguous() && t.device().is_cuda(), ShapeError,
               "cuda::ops::timestep_embedding: timesteps must be a contiguous device F32 [N], got {} {}",
               dtype_name(t.dtype()), t.shape().to_string());
  SDNQ_REQUIRE(dim >= 2 && max_period > 0, ShapeError,
               "cuda::ops::timestep_embedding: dim must be >= 2 and max_period > 0, got {} and {}", dim, max_period);
  SDNQ_REQUIRE(out.rank() == 2 && out.size(0) == t.size(0) && out.size(1) == dim && out.is_contiguous() &&
                   out.device().is_cuda() &&
                   (out.dtype() == DType::f32 || out.dtype() == DType::bf16 || out.dtype() == DType::f16),
               ShapeError,
               "cuda::ops::timestep_embedding: out must be a contiguous device F32/BF16/F16 [{}, {}], got {} {}",
               t.size(0), dim, dtype_name(out.dtype()), out.shape().to_string());
  if (out.numel() == 0) return;
  const float log_max_period = static_cast<float>(std::log(static_cast<double>(max_period)));
  constexpr int threads = 256;
  const unsigned blocks = grid_for(out.numel(), threads);
  const auto* steps = t.data_as<const float>();
  const auto launch = [&](auto* o) {
    timestep_embedding_kernel<<<blocks, threads, 0, stream>>>(steps, o, t.size(0), dim, flip_sin_to_cos,
                                                              downscale_freq_shift, scale, log_max_period);
  };
  if (out.dtype() == DType::f32)
    launch(static_cast<float*>(out.data()));
  else if (out.dtype() == DType::bf16)
    launch(static_cast<__nv_bfloat16*>(out.data()));
  else
    launch(static_cast<__half*>(out.data()));
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace ops
SDNQ_KERNEL_NAMESPACE_END
