#pragma once
// The Hopper (sm_90a) attention forward kernel, FlashAttention-3 style (warp specialization + wgmma):
// a block owns 128 query rows of one (batch, head) and has three warpgroups. Warpgroup 0 is the
// producer: one thread loads the Q tile once and then K and V tiles of 128 keys with TMA into a
// multi-stage mbarrier pipeline (full barrier: the copy engine completed the bytes; empty barrier:
// all eight consumer warps finished reading the stage). Warpgroups 1 and 2 each own 64 query rows:
//   S = Q·Kᵀ   wgmma m64n128k16, both operands from shared memory (K-major, 128-byte swizzle),
//   online softmax on the S accumulators in registers (exp2 with the scale folded in, fp32),
//   O += P·V   wgmma m64nDk16 with P as the register A operand (the S accumulator layout of two
//              adjacent n8 column blocks is the A fragment of one k16 step) and V as the B operand
//              read "N-major" (V's rows are keys, so D is the contiguous dimension: transposed B),
//              issued behind the next step's S so that it runs during that step's softmax.
// The register budget moves from the producer to the consumers (setmaxnreg). TMA reads q, k, v through
// 4-D tensor maps (D, L, H, B), so strided [B, L, H, D] views work as they are, and rows past the
// sequence arrive as zeros: keys past Lk are masked to -inf in the last tile, query rows past Lq are
// not stored. Shared tiles are 64 columns (128 bytes) wide: D 128 is two such column blocks.
// Scope (the rest uses attention_kernel.cuh): non-causal, no bias, D 64 or 128, Lk ≥ 1.
// Built only for sm_90a (__CUDA_ARCH_FEAT_SM90_ALL); elsewhere the kernel traps and the host never
// launches it (attention_sm90_code tells whether this build has the sm_90a code for the device).
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/detail/tma_pipeline.cuh"
#include "sdnq/cuda/detail/wgmma.cuh"
#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/cuda/ops/detail/attention_kernel.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace ops::kernel_detail {

using sdnq::cuda::kernel_detail::barrier_arrive;
using sdnq::cuda::kernel_detail::barrier_arrive_expect_bytes;
using sdnq::cuda::kernel_detail::barrier_init;
using sdnq::cuda::kernel_detail::barrier_init_fence;
using sdnq::cuda::kernel_detail::barrier_wait;
using sdnq::cuda::kernel_detail::grow_registers;
using sdnq::cuda::kernel_detail::has_sm90a_code;
using sdnq::cuda::kernel_detail::shrink_registers;
using sdnq::cuda::kernel_detail::tensor_map_encoder;
using sdnq::cuda::kernel_detail::tma_prefetch_map;
using sdnq::cuda::kernel_detail::wgmma_commit;
using sdnq::cuda::kernel_detail::wgmma_descriptor;
using sdnq::cuda::kernel_detail::wgmma_fence;
using sdnq::cuda::kernel_detail::wgmma_rs_k16;
using sdnq::cuda::kernel_detail::wgmma_wait;

struct AttentionSm90Params {
  CUtensorMap q_map, k_map, v_map;  // (D, L, H, B) of bf16/fp16; boxes of 64 columns × rows × 1 × 1
  void* out = nullptr;              // [B, H, Lq, D] (strided)
  AttentionStrides out_strides;
  int query_length = 0, key_length = 0;
  float scale_log2 = 0.0f;  // softmax scale · log2(e)
};

template <int HeadDim>
struct AttentionSm90Tile {
  static_assert(HeadDim == 64 || HeadDim == 128, "head_dim 64 or 128");
  static constexpr int head_dim = HeadDim;
  static constexpr int rows = 128;  // query rows per block: 64 per consumer warpgroup
  static constexpr int keys = 128;  // keys per pipeline stage
  // Measured on an H100 (bench_attention, bf16): D 128 gains from overlapping P·V with the next softmax
  // when 3 stages keep the producer a tile ahead (B1 H24 L4608: 565 TFLOP/s; 445 with 2 stages; 521
  // without the overlap). D 64 runs faster without it (B2 H10 L4096: 418 TFLOP/s with 2 stages, 409
  // with 4; overlapped 365 with 4, 320 with 2): its GEMMs are short next to the softmax, and the two
  // consumer warpgroups already interleave.
  static constexpr int stages = HeadDim == 128 ? 3 : 2;
  static constexpr bool overlap = HeadDim == 128;
  static constexpr int threads = 384;                 // producer warpgroup + two consumer warpgroups
  static constexpr int column_blocks = HeadDim / 64;  // 128-byte wide column blocks of a tile
  static constexpr int q_bytes = rows * HeadDim * 2;
  static constexpr int kv_bytes = keys * HeadDim * 2;                          // one K or one V tile
  static constexpr int shared_bytes = q_bytes + stages * 2 * kv_bytes + 1024;  // + realignment to 1024
};

// Copies the box at (column, row, head, batch) of a 4-D tensor map into shared memory, completing its
// bytes on `barrier` (zeros where the box leaves the tensor; they count toward the bytes too).
__device__ __forceinline__ void tma_load_4d(void* destination, const CUtensorMap* map, int column, int row, int head,
                                            int batch, std::uint64_t* barrier) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}], "
      "[%6];\n" ::"r"(static_cast<std::uint32_t>(__cvta_generic_to_shared(destination))),
      "l"(reinterpret_cast<std::uint64_t>(map)), "r"(column), "r"(row), "r"(head), "r"(batch),
      "r"(static_cast<std::uint32_t>(__cvta_generic_to_shared(barrier)))
      : "memory");
#else
  (void)destination, (void)map, (void)column, (void)row, (void)head, (void)batch, (void)barrier;
#endif
}

// d (+)= A · B for one k16 step, both by descriptor and K-major, d overwritten when `accumulate` is 0
// (fragment as wgmma_rs_k16 of wgmma.cuh).
#define SDNQ_ATTENTION_WGMMA_SS(types)                                                                          \
  asm volatile(                                                                                                 \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                                                              \
      "wgmma.mma_async.sync.aligned.m64n128k16.f32" types " " SDNQ_WGMMA_R64 "}, %64, %65, p, 1, 1, 0, 0;\n}\n" \
      : SDNQ_WGMMA_D64("+f")                                                                                    \
      : "l"(a), "l"(b), "r"(accumulate))
template <class T>
__device__ __forceinline__ void wgmma_ss_m64n128k16(float (&d)[64], std::uint64_t a, std::uint64_t b, int accumulate) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    SDNQ_ATTENTION_WGMMA_SS(".bf16.bf16");
  else
    SDNQ_ATTENTION_WGMMA_SS(".f16.f16");
#else
  (void)d, (void)a, (void)b;
  (void)accumulate;
  __trap();
#endif
}
#undef SDNQ_ATTENTION_WGMMA_SS

// grid (ceil(Lq / 128), H, B), 384 threads, Tile::shared_bytes dynamic shared memory.
template <class T, int HeadDim>
__global__ void __launch_bounds__(384, 1) attention_sm90_kernel(const __grid_constant__ AttentionSm90Params p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using Tile = AttentionSm90Tile<HeadDim>;
  constexpr int ROWS = Tile::rows, KEYS = Tile::keys, STAGES = Tile::stages, CB = Tile::column_blocks;
  extern __shared__ uint4 shared_words[];
  auto* unaligned = reinterpret_cast<std::uint8_t*>(shared_words);
  std::uint8_t* const shared = unaligned + ((1024 - (shared_address(unaligned) & 1023)) & 1023);
  std::uint8_t* const q_tile = shared;  // [CB][ROWS][128 bytes]
  // Stage s: K then V, each [CB][KEYS][128 bytes].
  const auto k_tile = [&](int stage) { return shared + Tile::q_bytes + stage * 2 * Tile::kv_bytes; };
  const auto v_tile = [&](int stage) { return k_tile(stage) + Tile::kv_bytes; };
  __shared__ std::uint64_t q_full, full[STAGES], empty[STAGES];

  const int query_begin = blockIdx.x * ROWS, head = blockIdx.y, batch = blockIdx.z;
  const int key_blocks = (p.key_length + KEYS - 1) / KEYS;
  if (threadIdx.x == 0) {
    barrier_init(&q_full, 1);
    for (int s = 0; s < STAGES; ++s) {
      barrier_init(&full[s], 1);
      barrier_init(&empty[s], 8);  // one arrival per consumer warp
    }
    barrier_init_fence();
  }
  __syncthreads();

  const int warpgroup = threadIdx.x / 128;
  if (warpgroup == 0) {  // producer
    shrink_registers<24>();
    if (threadIdx.x == 0) {
      tma_prefetch_map(&p.q_map);
      tma_prefetch_map(&p.k_map);
      tma_prefetch_map(&p.v_map);
      barrier_arrive_expect_bytes(&q_full, Tile::q_bytes);
      for (int c = 0; c < CB; ++c)
        tma_load_4d(q_tile + c * ROWS * 128, &p.q_map, c * 64, query_begin, head, batch, &q_full);
      for (int block = 0; block < key_blocks; ++block) {
        const int stage = block % STAGES;
        if (block >= STAGES) barrier_wait(&empty[stage], (block / STAGES - 1) & 1);
        barrier_arrive_expect_bytes(&full[stage], 2 * Tile::kv_bytes);
        for (int c = 0; c < CB; ++c) {
          tma_load_4d(k_tile(stage) + c * KEYS * 128, &p.k_map, c * 64, block * KEYS, head, batch, &full[stage]);
          tma_load_4d(v_tile(stage) + c * KEYS * 128, &p.v_map, c * 64, block * KEYS, head, batch, &full[stage]);
        }
      }
    }
    return;
  }
  grow_registers<240>();

  // Consumer warpgroup: 64 query rows; this thread's rows are row0 and row0 + 8 of the block.
  const int consumer = warpgroup - 1, warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32;
  const int row0 = consumer * 64 + warp * 16 + lane / 4;
  float o[HeadDim / 2];
#pragma unroll
  for (int i = 0; i < HeadDim / 2; ++i) o[i] = 0.0f;
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};
  const std::uint32_t q_base = shared_address(q_tile + consumer * 64 * 128);

  // Software pipelined as FA3's intra-warpgroup overlap: step `block` issues S = Q·K[block]ᵀ and then
  // O += P·V[block − 1] (P of the previous step, still in registers), waits only for S, and runs the
  // softmax of S while the P·V wgmma still runs; O is rescaled once that one has landed.
  std::uint32_t a[KEYS / 16][4];  // P of the previous step as k16 A fragments (keys [16·ks, 16·ks + 16))
  const auto issue_pv = [&](int v_stage) {
    const std::uint32_t v_base = shared_address(v_tile(v_stage));
#pragma unroll
    for (int ks = 0; ks < KEYS / 16; ++ks)  // keys 16·ks.. are 16 rows (2048 bytes) further
      wgmma_rs_k16<T, HeadDim, true>(o, a[ks], wgmma_descriptor(v_base + ks * 2048, KEYS * 128));
    wgmma_commit();
  };
  const auto release = [&](int released_stage) {
    __syncwarp();
    if (lane == 0) barrier_arrive(&empty[released_stage]);
  };

  // S = Q · K[block]ᵀ on the block's stage: D / 16 steps of k16, 32 bytes apart inside a 128-byte column block.
  const auto issue_s = [&](int block, float(&s)[KEYS / 2]) {
    const int stage = block % STAGES;
    barrier_wait(&full[stage], (block / STAGES) & 1);
    const std::uint32_t k_base = shared_address(k_tile(stage));
    wgmma_fence();  // the A registers (P) and O were written since the last wgmma
#pragma unroll
    for (int kk = 0; kk < HeadDim / 16; ++kk) {
      const int c = kk / 4, offset = (kk % 4) * 32;
      wgmma_ss_m64n128k16<T>(s, wgmma_descriptor(q_base + c * ROWS * 128 + offset),
                             wgmma_descriptor(k_base + c * KEYS * 128 + offset), kk > 0);
    }
    wgmma_commit();
  };
  // Masks keys past the sequence (zeros from TMA) and turns S into P = 2^(s·scale − max) with the new
  // row maxima (online softmax as attention_kernel.cuh); O's factor for the new maxima goes to `correction`.
  const auto softmax = [&](int block, float(&s)[KEYS / 2], float(&correction)[2]) {
    const int key_begin = block * KEYS;
    if (key_begin + KEYS > p.key_length) {
#pragma unroll
      for (int i = 0; i < KEYS / 2; ++i)
        if (key_begin + 8 * (i / 4) + 2 * (lane % 4) + (i & 1) >= p.key_length) s[i] = -INFINITY;
    }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float block_max = -INFINITY;
#pragma unroll
      for (int j = 0; j < KEYS / 8; ++j) block_max = fmaxf(block_max, fmaxf(s[4 * j + 2 * h], s[4 * j + 2 * h + 1]));
      const float new_max = fmaxf(row_max[h], quad_max(block_max) * p.scale_log2);
      const float base = new_max == -INFINITY ? 0.0f : new_max;
      correction[h] = fast_exp2(row_max[h] - base);
      row_max[h] = new_max;
      float sum = 0.0f;
#pragma unroll
      for (int j = 0; j < KEYS / 8; ++j)
#pragma unroll
        for (int e = 2 * h; e < 2 * h + 2; ++e) {
          s[4 * j + e] = fast_exp2(fmaf(s[4 * j + e], p.scale_log2, -base));
          sum += s[4 * j + e];
        }
      row_sum[h] = row_sum[h] * correction[h] + sum;
    }
  };
  const auto pack_p = [&](const float(&s)[KEYS / 2]) {
#pragma unroll
    for (int ks = 0; ks < KEYS / 16; ++ks) {
      a[ks][0] = pack_pair<T>(s[8 * ks + 0], s[8 * ks + 1]);
      a[ks][1] = pack_pair<T>(s[8 * ks + 2], s[8 * ks + 3]);
      a[ks][2] = pack_pair<T>(s[8 * ks + 4], s[8 * ks + 5]);
      a[ks][3] = pack_pair<T>(s[8 * ks + 6], s[8 * ks + 7]);
    }
  };

  // Step 0 apart (no P·V before it; the host guarantees Lk ≥ 1), so that every wait below is unconditional
  // (ptxas serializes the wgmma where a path could read O while a P·V may still run).
  barrier_wait(&q_full, 0);
  {
    float s[KEYS / 2], correction[2];
    issue_s(0, s);
    wgmma_wait<0>();
    softmax(0, s, correction);  // O is still zero: no rescale
    pack_p(s);
  }
  if constexpr (!Tile::overlap) {  // P·V right after the softmax of its step
    wgmma_fence();
    issue_pv(0);
    wgmma_wait<0>();
    release(0);
  }
  for (int block = 1; block < key_blocks; ++block) {
    float s[KEYS / 2], correction[2];
    issue_s(block, s);
    if constexpr (Tile::overlap) {
      issue_pv((block - 1) % STAGES);
      wgmma_wait<1>();  // S landed; P·V may still run
      softmax(block, s, correction);
      wgmma_wait<0>();  // the previous P·V is done with O, the A registers and its stage
      release((block - 1) % STAGES);
    } else {
      wgmma_wait<0>();
      softmax(block, s, correction);
    }
#pragma unroll
    for (int j = 0; j < HeadDim / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[4 * j + e] *= correction[e / 2];
    pack_p(s);
    if constexpr (!Tile::overlap) {
      wgmma_fence();
      issue_pv(block % STAGES);
      wgmma_wait<0>();
      release(block % STAGES);
    }
  }
  if constexpr (Tile::overlap) {  // P·V of the last step
    wgmma_fence();
    issue_pv((key_blocks - 1) % STAGES);
    wgmma_wait<0>();
    release((key_blocks - 1) % STAGES);
  }

  // O / rowsum straight from the accumulators (pairs of columns per thread).
  T* const out = static_cast<T*>(p.out) + batch * p.out_strides.batch + head * p.out_strides.head;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const float total = quad_sum(row_sum[h]);
    const float inverse = total > 0.0f ? 1.0f / total : 0.0f;
    const int query = query_begin + row0 + 8 * h;
    if (query < p.query_length) {
      T* const row = out + static_cast<long long>(query) * p.out_strides.token + 2 * (lane % 4);
#pragma unroll
      for (int j = 0; j < HeadDim / 8; ++j)
        *reinterpret_cast<std::uint32_t*>(row + 8 * j) =
            pack_pair<T>(o[4 * j + 2 * h] * inverse, o[4 * j + 2 * h + 1] * inverse);
    }
  }
#else
  (void)p;
  __trap();
#endif
}

// Whether this build has the sm_90a attention kernel for `device` (asked once per device 0..63).
inline bool attention_sm90_code(int device) { return has_sm90a_code(device); }

// TMA map of a [B, H, L, D] view (unit stride along D, other strides multiples of 8 elements, checked by
// the caller) read in boxes of 64 columns × box_rows rows of one head, 128-byte swizzle.
inline CUtensorMap attention_tensor_map(const TensorView& x, int box_rows, const char* name) {
  const std::uint64_t element = x.element_size();
  // A stride is irrelevant along a size-1 axis; TMA still wants a positive multiple of 16 bytes.
  const auto stride_bytes = [&](int axis) {
    return static_cast<cuuint64_t>(x.size(axis) == 1 ? 16 : x.stride(axis) * element);
  };
  const cuuint64_t dims[4] = {static_cast<cuuint64_t>(x.size(3)), static_cast<cuuint64_t>(x.size(2)),
                              static_cast<cuuint64_t>(x.size(1)), static_cast<cuuint64_t>(x.size(0))};
  const cuuint64_t strides[3] = {stride_bytes(2), stride_bytes(1), stride_bytes(0)};
  const cuuint32_t box[4] = {64, static_cast<cuuint32_t>(box_rows), 1, 1};
  const cuuint32_t element_strides[4] = {1, 1, 1, 1};
  CUtensorMap map{};
  const CUresult result = tensor_map_encoder()(
      &map, x.dtype() == DType::bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 4, x.data(),
      dims, strides, box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
      CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  SDNQ_REQUIRE(result == CUDA_SUCCESS, CudaError,
               "cuda::ops::attention: cuTensorMapEncodeTiled failed ({}) for {} {} with strides {}",
               static_cast<int>(result), name, x.shape().to_string(), x.strides().to_string());
  return map;
}

// Why the sm_90a kernel cannot run this case (null when it can): q, k, v, out already checked by
// attention_with_block (shapes, dtypes, strides, alignment).
inline const char* attention_sm90_unsupported(const TensorView& q, const TensorView& k, const TensorView& v,
                                              bool causal, bool bias) {
  if (q.rank() != 4 || k.rank() != 4 || v.rank() != 4) return "operands that are not [B, H, L, D]";
  if (causal) return "causal attention";
  if (bias) return "a bias";
  if (k.size(2) == 0) return "no keys (Lk = 0)";
  for (const TensorView* x : {&q, &k, &v})
    for (int axis = 0; axis < 3; ++axis)
      if (x->size(axis) > 1 && x->stride(axis) <= 0) return "a broadcast (zero-stride) q, k or v";
  if (!attention_sm90_code(q.device().index)) return "a GPU without sm_90a code in this build";
  return nullptr;
}

template <class T, int HeadDim>
void launch_attention_sm90(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& out,
                           float scale, cudaStream_t stream) {
  using Tile = AttentionSm90Tile<HeadDim>;
  AttentionSm90Params params;
  params.q_map = attention_tensor_map(q, Tile::rows, "q");
  params.k_map = attention_tensor_map(k, Tile::keys, "k");
  params.v_map = attention_tensor_map(v, Tile::keys, "v");
  params.out = out.data();
  params.out_strides = {out.stride(0), out.stride(1), out.stride(2)};
  params.query_length = static_cast<int>(q.size(2));
  params.key_length = static_cast<int>(k.size(2));
  params.scale_log2 = scale * 1.4426950408889634f;
  SDNQ_CUDA_CHECK(cudaFuncSetAttribute(attention_sm90_kernel<T, HeadDim>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       Tile::shared_bytes));
  const dim3 grid(static_cast<unsigned>((q.size(2) + Tile::rows - 1) / Tile::rows), static_cast<unsigned>(q.size(1)),
                  static_cast<unsigned>(q.size(0)));
  attention_sm90_kernel<T, HeadDim><<<grid, Tile::threads, Tile::shared_bytes, stream>>>(params);
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

inline void run_attention_sm90(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& out,
                               float scale, cudaStream_t stream) {
  const bool bf16 = q.dtype() == DType::bf16;
  if (q.size(3) == 128)
    return bf16 ? launch_attention_sm90<__nv_bfloat16, 128>(q, k, v, out, scale, stream)
                : launch_attention_sm90<__half, 128>(q, k, v, out, scale, stream);
  return bf16 ? launch_attention_sm90<__nv_bfloat16, 64>(q, k, v, out, scale, stream)
              : launch_attention_sm90<__half, 64>(q, k, v, out, scale, stream);
}

}  // namespace ops::kernel_detail
SDNQ_KERNEL_NAMESPACE_END
