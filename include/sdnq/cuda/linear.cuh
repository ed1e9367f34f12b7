#pragma once
// One quantized Linear on the GPU:  y[M, N] = x[M, K] · dequant(W)ᵀ (+ SVD branch) (+ b).
// `QuantizedLinear` owns the weight repacked for the kernels that can run it; `quantized_linear()`
// picks, by M and format, the fastest of three routes (or the one the caller forces):
//   small_m            gemv.cuh: CUDA-core weight streaming, integer and float codes, M ≤ 64
//   tensor_core        gemm_tc.cuh: mma.sync, dequantization in registers, 4/8-bit integer codes; also native
//                      e4m3 codes with one scale a row kept in the GEMV layout (their bytes are the 8-bit
//                      quantized-matmul operand): the weight-streaming kernel, 16 tokens a launch
//                      (w8a8_dequantized_linear's kernel)
//   tensor_core_sm90   gemm_weight_only_sm90.cuh: wgmma with the weight dequantized in registers, x by
//                      TMA, SVD branch fused as extra K steps; same tensor-core layout; sm_90a on Hopper
//   dequantize_cublas  the weight dequantized into the caller's workspace N-chunk by N-chunk (at most
//                      QuantizedLinearOptions::dense_workspace_limit bytes per chunk), one cuBLAS GEMM
//                      per chunk: x read in place and the bias accumulated onto y (beta = 1)
//                      without SVD; with SVD the rank columns and the bias as extra K columns
//                      padded to 64 (detail/linear_dense.cuh); every format
// No allocation happens in a call: the caller passes a device workspace of at least
// workspace_bytes(M) and a cuBLAS handle (needed by the dequantize_cublas route only; its stream is
// set to `stream`). Every argument is checked before anything is launched.
//
// Automatic choice (thresholds below, measured on one H100, see docs/kernels.md):
//   M ≤ small_m_max_tokens with a GEMV layout → small_m; M ≤ tensor_core_max_tokens with a
//   tensor-core layout → tensor_core; e4m3 row-wise codes in the GEMV layout: tensor_core up to
//   fp8_rows_max_tokens (M = 1 included); other formats without a tensor-core layout: small_m up to
//   small_m_max_tokens_without_tensor_core; 4-bit weights in the tensor-core layout at
//   M ≥ tensor_core_sm90_min_tokens on an sm_90a build running on Hopper → tensor_core_sm90;
//   everything else → dequantize_cublas.
//
// Memory: one copy of the codes per layer, in the layout QuantizedLinearOptions::layout picks
// (CodeLayout): by default the tensor-core layout where that kernel takes the weight (4/8-bit integer
// codes, N and K multiples of 64), else the GEMV layout (integer and float codes of 1..8 bits, K and group
// multiples of 32), else the checkpoint layout (odd shapes). Every route reads the kept layout: the dense
// route dequantizes each chunk from it, and without a GEMV layout M = 1 runs the tensor-core kernel,
// whose weight-streaming variant for M ≤ 16 (session 10) measured 7.3 µs on int8 3072² and 18.7 µs on
// uint4+SVD 12288×3072, against 10.8 and 24.2 µs for the GEMV in an earlier run. The tensor-core layout
// keeps SVD factors at the rank rounded up to a multiple of 16 only
// (published rank 32 stays 32), which gemm_tc, the wgmma kernel and the dense route all read as is.
// device_bytes() reports what the layer holds on the GPU.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sdnq/core/dtype.hpp"
#include "sdnq/core/error.hpp"
#include "sdnq/core/scalar.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/dequantize.cuh"
#include "sdnq/cuda/detail/linear_dense.cuh"
#include "sdnq/cuda/detail/w8a8_gemv.cuh"
#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/cuda/gemm_tc.cuh"
#include "sdnq/cuda/gemm_weight_only_sm90.cuh"
#include "sdnq/cuda/gemm_w8a8.cuh"
#include "sdnq/cuda/gemv.cuh"
#include "sdnq/cuda/repack.hpp"

SDNQ_KERNEL_NAMESPACE_BEGIN

enum class LinearRoute : std::uint8_t { automatic, small_m, tensor_core, dequantize_cublas, tensor_core_sm90 };

inline const char* linear_route_name(LinearRoute route) {
  switch (route) {
    case LinearRoute::small_m:
      return "small_m";
    case LinearRoute::tensor_core:
      return "tensor_core";
    case LinearRoute::dequantize_cublas:
      return "dequantize_cublas";
    case LinearRoute::tensor_core_sm90:
      return "tensor_core_sm90";
    default:
      return "automatic";
  }
}

// Token counts where the automatic choice switches route (see the file comment). Measured on one H100
// (bench_linear, docs/kernels.md), before gemm_tc had its weight-streaming kernel for M ≤ 16 (which now
// beats the GEMV at M = 1 too, in separate runs; not re-measured side by side, so a kept GEMV layout still
// takes M = 1): at M = 1 the GEMV beat the 16×64 tile on every shape
// (int8 12.1 vs 12.9 µs on 3072², uint4+SVD 24.6 vs 33.4 µs on 12288×3072); at M = 4 the tensor-core
// kernel wins for int8 (10-15 %) and is within ±5 % for uint4+SVD. At M = 64 the tensor-core kernel
// beats dequantize + cuBLAS by 1.4-2.5x; at M = 256 dequantize + cuBLAS wins once its dequantization
// runs near memory speed; M = 128 was not measured.
inline constexpr std::int64_t small_m_max_tokens = 1;
inline constexpr std::int64_t tensor_core_max_tokens = 128;
inline constexpr std::int64_t small_m_max_tokens_without_tensor_core = 8;
// From here 4-bit weights take the Hopper wgmma kernel. Measured on one H100: bench_linear, uint4 g128 +
// SVD r32 at M = 1024 on 3072x3072, 49.1 µs against 65.4 µs for dequantize + cuBLAS in the same process;
// bench_weight_only_tc at M = 4096, 0.82-0.83x cuBLAS bf16 (docs/benchmarks.md had 0.69-0.81x for the dense
// route). 8-bit weights stay on dequantize + cuBLAS (0.87-0.93x there, 0.79-0.90x on the wgmma kernel).
inline constexpr std::int64_t tensor_core_sm90_min_tokens = 256;
// Native e4m3 codes with one scale a row take the weight-streaming tensor-core kernel up to here (16 tokens a
// launch). Measured on one H200 (bench_linear e4m3_rowwise, docs/benchmarks.md session 21): at one token it beat
// the GEMV on 5 of 7 shapes (1.26-1.51× cuBLAS bf16 against 1.20-1.49×), at 4-16 tokens 1.12-1.82× against the
// GEMV's 0.21-0.91×, at 32 tokens (two launches) 0.53-0.90× against dequantize + cuBLAS's 0.34-0.88×; at 64
// tokens the dense route won on 4 of 7 shapes.
inline constexpr std::int64_t fp8_rows_max_tokens = 32;

// The one layout a QuantizedLinear keeps its codes in (see the file comment).
enum class CodeLayout : std::uint8_t {
  automatic,    // tensor_core where that kernel takes the weight, else gemv where possible, else checkpoint
  gemv,         // small_m for M ≤ small_m_max_tokens_without_tensor_core, dense route above
  tensor_core,  // tensor_core for M ≤ tensor_core_max_tokens (M = 1 included), dense route above
  checkpoint,   // the checkpoint's own packing: dense route only
};

inline const char* code_layout_name(CodeLayout layout) {
  switch (layout) {
    case CodeLayout::gemv:
      return "gemv";
    case CodeLayout::tensor_core:
      return "tensor_core";
    case CodeLayout::checkpoint:
      return "checkpoint";
    default:
      return "automatic";
  }
}

struct QuantizedLinearOptions {
  std::size_t dense_workspace_limit = std::size_t{64} << 20;  // bytes of dense weight per chunk
  CodeLayout layout = CodeLayout::automatic;
  // Dense route without SVD: the bias through a cuBLASLt epilogue (else broadcast into y and beta = 1).
  bool bias_epilogue = true;
  // Tensor-core layout only: none re-centres unsigned codes so the zero point is not rounded to the
  // activation dtype on its own (repack_for_gemm_tc); for models whose reference keeps fp32 parameters.
  ScaleRounding scale_rounding = ScaleRounding::to_output_dtype;
};

class QuantizedLinear {
 public:
  // Repacks a host checkpoint weight (LinearCodes of host tensors) for `dtype` activations (BF16 or
  // F16) and uploads it to cuda:`device`.
  QuantizedLinear(const LinearCodes& host, DType dtype, int device = 0, QuantizedLinearOptions options = {})
      : name_(host.name), dtype_(dtype), device_(device), options_(options) {
    SDNQ_REQUIRE(dtype == DType::bf16 || dtype == DType::f16, UnsupportedError,
                 "{}: quantized Linear activations must be BF16 or F16, got {}", host.name, dtype_name(dtype));
    sdnq::cuda::detail::require_linear_codes_consistent(host);
    SDNQ_REQUIRE(host.codes.device().is_cpu() && host.scale.device().is_cpu(), ShapeError,
                 "{}: QuantizedLinear is built from host tensors", host.name);
    SDNQ_REQUIRE(host.svd_rank() <= gemv_max_rank_for_dense, UnsupportedError,
                 "{}: SVD rank {} exceeds the supported 128", host.name, host.svd_rank());
    DeviceGuard guard(device);
    create_lt_handle();
    if (dtype == DType::bf16)
      build<bf16>(host);
    else
      build<fp16>(host);
  }

  // A layer over GEMV-layout weights already on cuda:`device` (activations in weights.meta.dtype). The
  // tensors of `weights` become the layer's; memory that weights.meta points at beyond them is borrowed
  // and must outlive the layer. nn::gpu::Linear borrows this way the 4-bit code-table indices and the SVD
  // factors of its 8-bit GEMM's weights, which are the GEMV's codes and (zero-padded) factors.
  static QuantizedLinear adopt_gemv(GemvWeightsDevice weights, std::string name, int device,
                                    QuantizedLinearOptions options = {}) {
    const GemvWeights& w = weights.meta;
    SDNQ_REQUIRE(w.dtype == DType::bf16 || w.dtype == DType::f16, UnsupportedError,
                 "{}: quantized Linear activations must be BF16 or F16, got {}", name, dtype_name(w.dtype));
    SDNQ_REQUIRE(w.bits >= 1 && w.bits <= 8 && w.codes != nullptr && w.group_params != nullptr && w.group_size > 0 &&
                     w.in_features % 32 == 0 && w.group_size % 32 == 0 && w.in_features % w.group_size == 0 &&
                     w.out_features > 0,
                 UnsupportedError,
                 "{}: GEMV-layout weights must be 1..8-bit codes with in_features and group size multiples of 32, got "
                 "{}-bit [{}, {}] group {}",
                 name, w.bits, w.out_features, w.in_features, w.group_size);
    SDNQ_REQUIRE(w.code_values == nullptr || !w.is_signed, UnsupportedError,
                 "{}: GEMV-layout float codes (a table of values) carry their sign, got signed {}-bit codes", name,
                 w.bits);
    SDNQ_REQUIRE(w.code_values == nullptr || w.float_decode == FloatDecode::table || w.bits == 8, UnsupportedError,
                 "{}: {} float codes are 8 bits wide, got {}-bit codes", name, float_decode_name(w.float_decode),
                 w.bits);
    SDNQ_REQUIRE(w.svd_rank >= 0 && w.svd_rank <= kernel_detail::gemv_max_rank &&
                     (w.svd_rank == 0 || (w.svd_up != nullptr && w.svd_down != nullptr)),
                 UnsupportedError, "{}: SVD rank {} not supported (0..{}, with both factors)", name, w.svd_rank,
                 kernel_detail::gemv_max_rank);
    QuantizedLinear layer;
    layer.name_ = std::move(name);
    layer.dtype_ = w.dtype;
    layer.device_ = device;
    layer.options_ = options;
    layer.options_.layout = CodeLayout::gemv;
    layer.out_features_ = w.out_features;
    layer.in_features_ = w.in_features;
    layer.svd_rank_ = w.svd_rank;
    layer.bits_ = w.bits;
    layer.layout_ = CodeLayout::gemv;
    DeviceGuard guard(device);
    layer.create_lt_handle();
    layer.gemv_ = std::move(weights);
    layer.plan_dense_chunks(false);
    return layer;
  }

  const std::string& name() const { return name_; }
  DType dtype() const { return dtype_; }
  int device() const { return device_; }
  std::int64_t out_features() const { return out_features_; }
  std::int64_t in_features() const { return in_features_; }
  std::int64_t svd_rank() const { return svd_rank_; }
  // Whether a weight can be kept in `layout` (automatic and checkpoint always can).
  static bool layout_fits(const LinearCodes& host, CodeLayout layout) {
    const std::int64_t group = host.group_size > 0 ? host.group_size : host.in_features;
    const bool integer = host.value != CodeValue::lookup;
    if (layout == CodeLayout::gemv) return host.in_features % 32 == 0 && group % 32 == 0;
    if (layout == CodeLayout::tensor_core)
      return integer && (host.bits == 4 || host.bits == 8) && host.out_features % gemm_tc_n_multiple == 0 &&
             host.in_features % gemm_tc_k_tile == 0 && (group == 32 || group % 64 == 0);
    return true;
  }

  // The layout the codes are kept in (never automatic).
  CodeLayout layout() const { return layout_; }

  // The GEMV-layout weights (layout() == gemv), else null.
  const GemvWeightsDevice* gemv_weights() const { return gemv_ ? &*gemv_ : nullptr; }

  // Bytes this layer holds on its device: codes, group parameters, SVD factors, lookup table.
  std::size_t device_bytes() const {
    const auto held = [](const Tensor& tensor) { return tensor.defined() ? tensor.nbytes() : std::size_t{0}; };
    std::size_t bytes = held(svd_up_) + held(svd_down_) + held(fp8_row_scales_);
    if (gemv_)
      bytes += held(gemv_->codes) + held(gemv_->group_params) + held(gemv_->svd_up) + held(gemv_->svd_down) +
               held(gemv_->code_values);
    if (tensor_core_)
      bytes += held(tensor_core_->codes) + held(tensor_core_->group_params) + held(tensor_core_->svd_up) +
               held(tensor_core_->svd_down);
    for (const Tensor& tensor : checkpoint_storage_) bytes += held(tensor);
    return bytes;
  }

  bool supports(LinearRoute route) const {
    switch (route) {
      case LinearRoute::small_m:
        return gemv_.has_value();
      case LinearRoute::tensor_core:
        return tensor_core_.has_value() || fp8_row_scales_.defined();
      case LinearRoute::tensor_core_sm90:
        return tensor_core_.has_value() && tensor_core_sm90_;
      default:
        return true;
    }
  }

  // The route quantized_linear() takes for `tokens` rows of x when not forced.
  LinearRoute route_for(std::int64_t tokens) const {
    if (fp8_row_scales_.defined() && tokens <= fp8_rows_max_tokens) return LinearRoute::tensor_core;
    if (gemv_ && tokens <= small_m_max_tokens) return LinearRoute::small_m;
    if (tensor_core_ && tokens <= tensor_core_max_tokens) return LinearRoute::tensor_core;
    if (tensor_core_sm90_ && bits_ == 4 && tokens >= tensor_core_sm90_min_tokens)
      return LinearRoute::tensor_core_sm90;
    if (gemv_ && !tensor_core_ && tokens <= small_m_max_tokens_without_tensor_core) return LinearRoute::small_m;
    return LinearRoute::dequantize_cublas;
  }

  // Device workspace bytes one call with `tokens` rows needs on the current device (16-byte aligned).
  std::size_t workspace_bytes(std::int64_t tokens, LinearRoute route = LinearRoute::automatic) const {
    if (route == LinearRoute::automatic) route = route_for(tokens);
    SDNQ_REQUIRE(supports(route), UnsupportedError, "{}: route {} has no kernel for this weight ({}-bit, [{}, {}])",
                 name_, linear_route_name(route), bits_, out_features_, in_features_);
    switch (route) {
      case LinearRoute::small_m:
        return gemv_workspace_bytes(gemv_->view(), tokens);
      case LinearRoute::tensor_core:
        return tensor_core_ ? gemm_tc_workspace_bytes(tensor_core_->view(), tokens) : 0;
      case LinearRoute::tensor_core_sm90:
        return gemm_weight_only_sm90_workspace_bytes(tensor_core_->view(), tokens);
      default:
        return dense_activation_bytes(tokens) + dense_weight_bytes() + dense_scratch_bytes();
    }
  }

  // Rows of W dequantized per chunk by the dense route.
  std::int64_t dense_chunk_rows() const { return dense_chunk_rows_; }

 private:
  static constexpr std::int64_t gemv_max_rank_for_dense = 128;

  template <class T>
  void build(const LinearCodes& host) {
    out_features_ = host.out_features;
    in_features_ = host.in_features;
    svd_rank_ = host.svd_rank();
    bits_ = host.bits;
    const std::int64_t group = host.group_size > 0 ? host.group_size : host.in_features;
    const bool integer = host.value != CodeValue::lookup;
    const bool gemv_fits = layout_fits(host, CodeLayout::gemv);
    const bool tensor_core_fits = layout_fits(host, CodeLayout::tensor_core);
    layout_ = options_.layout;
    if (layout_ == CodeLayout::automatic)
      layout_ = tensor_core_fits ? CodeLayout::tensor_core : gemv_fits ? CodeLayout::gemv : CodeLayout::checkpoint;
    SDNQ_REQUIRE(layout_ != CodeLayout::tensor_core || tensor_core_fits, UnsupportedError,
                 "{}: the tensor-core layout takes 4/8-bit integer codes with out_features and in_features multiples of "
                 "64 and group size 32 or a multiple of 64, got {}-bit {} [{}, {}] group {}",
                 host.name, host.bits, integer ? "integer" : "float", host.out_features, host.in_features, group);
    SDNQ_REQUIRE(layout_ != CodeLayout::gemv || gemv_fits, UnsupportedError,
                 "{}: the GEMV layout takes codes with in_features and group size multiples of 32, got {}-bit {} "
                 "[{}, {}] group {}",
                 host.name, host.bits, integer ? "integer" : "float", host.out_features, host.in_features, group);
    if (layout_ == CodeLayout::tensor_core) {
      tensor_core_ = upload_gemm_tc_weights(repack_for_gemm_tc<T>(host, options_.scale_rounding), device_);
      tensor_core_sm90_ = weight_only_sm90_supported(device_);  // asked here: no probe launch inside a call
    }
    if (layout_ == CodeLayout::gemv) {
      const GemvWeightsHost repacked = repack_for_gemv<T>(host);
      // Native e4m3 codes with one scale a row are the 8-bit quantized-matmul weight's [N, K] bytes: the
      // weight-streaming tensor-core kernel reads them with F32 row scales (rounded to T, as the GEMV's).
      const bool one_group = repacked.group_size == repacked.in_features;
      if (repacked.float_decode == FloatDecode::fp8_e4m3fn && one_group && !host.zero_point && svd_rank_ == 0 &&
          kernel_detail::w8a8_rows_stream(out_features_, in_features_, current_gemm_tc_device())) {
        Tensor scales = Tensor::empty(Shape{out_features_}, DType::f32);
        for (std::int64_t row = 0; row < out_features_; ++row)
          scales.data_as<float>()[row] = static_cast<float>(repacked.group_params.data_as<T>()[row * 2]);
        fp8_row_scales_ = to_device(scales, device_);
      }
      gemv_ = upload_gemv_weights(repacked, device_);
    }
    if (layout_ == CodeLayout::checkpoint) upload_checkpoint_copy(host);
    if (svd_rank_ > 0 && layout_ == CodeLayout::checkpoint) {  // the repacked layouts hold the factors in T
      Tensor up = Tensor::empty(Shape{out_features_, svd_rank_}, dtype_of_v<T>);
      Tensor down = Tensor::empty(Shape{svd_rank_, in_features_}, dtype_of_v<T>);
      for (std::int64_t i = 0; i < up.numel(); ++i)
        up.data_as<T>()[i] = sdnq::cuda::detail::narrow_param<T>(*host.svd_up, i);
      for (std::int64_t i = 0; i < down.numel(); ++i)
        down.data_as<T>()[i] = sdnq::cuda::detail::narrow_param<T>(*host.svd_down, i);
      svd_up_ = to_device(up, device_);
      svd_down_ = to_device(down, device_);
    }
    plan_dense_chunks(layout_ == CodeLayout::checkpoint && host.transposed);
  }

  QuantizedLinear() = default;  // adopt_gemv fills one in

  void create_lt_handle() {
    cublasLtHandle_t lt = nullptr;
    SDNQ_CUBLAS_CHECK(cublasLtCreate(&lt));
    lt_ = std::shared_ptr<cublasLtContext>(lt, [](cublasLtHandle_t handle) { (void)cublasLtDestroy(handle); });
  }

  // Chunks of equal size within the limit, rows a multiple of 128 (cuBLAS tiles) where that fits, else of
  // 16 (tensor-core fragment blocks) or 8 (a whole number of packer blocks before every chunk); the
  // transposed checkpoint layout is not cut.
  void plan_dense_chunks(bool transposed_checkpoint) {
    const auto limit = static_cast<std::int64_t>(options_.dense_workspace_limit);
    const std::int64_t row_bytes = dense_row_elements(true) * 2 + (dense_scratch_per_row() ? in_features_ * 2 : 0);
    const std::int64_t granule = layout_ == CodeLayout::tensor_core ? 16 : 8;
    std::int64_t rows = out_features_;
    if (!transposed_checkpoint) {
      for (std::int64_t chunks = 1;; ++chunks) {
        rows = (out_features_ + chunks - 1) / chunks;
        const std::int64_t by_128 = (rows + 127) / 128 * 128, by_granule = (rows + granule - 1) / granule * granule;
        rows = by_128 * row_bytes <= limit ? by_128 : by_granule;
        if (rows * row_bytes <= limit || rows <= granule) break;
      }
      if (rows > out_features_) rows = out_features_;
    }
    dense_chunk_rows_ = rows;
  }

  void upload_checkpoint_copy(const LinearCodes& host) {
    checkpoint_ = host;
    checkpoint_storage_.push_back(to_device(host.codes, device_));
    checkpoint_.codes = checkpoint_storage_.back();
    checkpoint_storage_.push_back(to_device(host.scale, device_));
    checkpoint_.scale = checkpoint_storage_.back();
    if (host.zero_point) {
      checkpoint_storage_.push_back(to_device(*host.zero_point, device_));
      checkpoint_.zero_point = TensorView(checkpoint_storage_.back());
    }
    if (host.lookup_table) {
      checkpoint_storage_.push_back(to_device(*host.lookup_table, device_));
      checkpoint_.lookup_table = TensorView(checkpoint_storage_.back());
    }
    checkpoint_.svd_up.reset();  // the dense route adds the SVD branch by GEMMs
    checkpoint_.svd_down.reset();
  }

  // Elements per row of x_ext and W_ext (see detail/linear_dense.cuh): K without SVD (the bias goes
  // through beta = 1), else K + (r, plus 1 for a bias, rounded up to 64).
  std::int64_t dense_row_elements(bool with_bias) const {
    if (svd_rank_ == 0) return in_features_;
    return in_features_ + (svd_rank_ + (with_bias ? 1 : 0) + 63) / 64 * 64;
  }
  // Workspace of the dense route: x_ext [M, E] (with SVD only), W_ext [chunk rows, E], and for the
  // checkpoint layout with SVD a contiguous [chunk rows, K] the generic dequantize writes before it is
  // copied into W_ext.
  std::size_t dense_activation_bytes(std::int64_t tokens) const {
    if (svd_rank_ == 0) return 0;
    return static_cast<std::size_t>((tokens * dense_row_elements(true) * 2 + 255) / 256 * 256);
  }
  std::size_t dense_weight_bytes() const {
    return static_cast<std::size_t>((dense_chunk_rows_ * dense_row_elements(true) * 2 + 255) / 256 * 256);
  }
  // Only the checkpoint layout's generic dequantize writes contiguous rows that need a copy into W_ext.
  bool dense_scratch_per_row() const { return layout_ == CodeLayout::checkpoint && svd_rank_ > 0; }
  std::size_t dense_scratch_bytes() const {
    return dense_scratch_per_row() ? static_cast<std::size_t>(dense_chunk_rows_ * in_features_ * 2) : 0;
  }

  friend void quantized_linear(const QuantizedLinear&, TensorView, std::optional<TensorView>, TensorView, TensorView,
                               cublasHandle_t, cudaStream_t, LinearRoute);
  template <class T>
  friend void run_dense_route(const QuantizedLinear&, TensorView, std::optional<TensorView>, TensorView, TensorView,
                              cublasHandle_t, cudaStream_t);

  std::string name_;
  DType dtype_ = DType::bf16;
  int device_ = 0;
  QuantizedLinearOptions options_;
  std::int64_t out_features_ = 0, in_features_ = 0, svd_rank_ = 0;
  int bits_ = 0;
  CodeLayout layout_ = CodeLayout::checkpoint;
  std::optional<GemvWeightsDevice> gemv_;          // layout_ == gemv
  std::optional<GemmTcWeightsDevice> tensor_core_;  // layout_ == tensor_core
  LinearCodes checkpoint_;                  // layout_ == checkpoint: device views, no SVD factors
  std::vector<Tensor> checkpoint_storage_;  // what checkpoint_ points into
  Tensor svd_up_, svd_down_;                // T [N, r], [r, K] with the checkpoint layout
  bool tensor_core_sm90_ = false;  // the wgmma kernel runs on this device (sm_90a build, Hopper)
  // GEMV-layout native e4m3 codes, one scale a row, no SVD, shapes the weight-streaming kernel takes: F32 [N]
  // row scales for its StreamCodes::e4m3_rows (the tensor_core route); undefined otherwise.
  Tensor fp8_row_scales_;
  std::int64_t dense_chunk_rows_ = 0;
  std::shared_ptr<cublasLtContext> lt_;  // the dense route's bias epilogue
};

// The dense route: see detail/linear_dense.cuh for the extended operands.
template <class T>
void run_dense_route(const QuantizedLinear& layer, TensorView x, std::optional<TensorView> bias, TensorView y,
                     TensorView workspace, cublasHandle_t cublas, cudaStream_t stream) {
  using Kernel = std::conditional_t<std::is_same_v<T, bf16>, __nv_bfloat16, __half>;
  const cudaDataType_t type = std::is_same_v<T, bf16> ? CUDA_R_16BF : CUDA_R_16F;
  const std::int64_t tokens = x.size(0), n = layer.out_features_, k = layer.in_features_, rank = layer.svd_rank_;
  const std::int64_t row_elements = layer.dense_row_elements(bias.has_value());  // E
  const bool extended = rank > 0;  // else E = K and x goes to the GEMM as is
  // Without SVD the bias goes through the cuBLASLt epilogue, or is broadcast into y and every chunk's
  // GEMM accumulates onto it.
  const bool bias_by_epilogue = !extended && bias.has_value() && layer.options_.bias_epilogue;
  const bool bias_by_beta = !extended && bias.has_value() && !bias_by_epilogue;
  SDNQ_CUBLAS_CHECK(cublasSetStream(cublas, stream));
  if (bias_by_beta) kernel_detail::launch_broadcast_bias<Kernel>(y.data(), tokens, n, bias->data(), stream);
  auto* space = static_cast<char*>(workspace.data());
  void* x_ext = space;                                                     // T [M, E]
  void* w_ext = space + layer.dense_activation_bytes(tokens);              // T [chunk rows, E]
  void* scratch = static_cast<char*>(w_ext) + layer.dense_weight_bytes();  // T [chunk rows, K]
  // The SVD factors of the kept layout: up [N, up_stride] (the tensor-core layout pads the rank with
  // zeros to a multiple of 16, gemm_tc_rank_granule), down [≥ r, K] (its first r rows are used).
  const void* up = nullptr;
  std::int64_t up_stride = rank;
  if (extended) {
    const void* down = nullptr;
    if (layer.gemv_) {
      up = layer.gemv_->view().svd_up, down = layer.gemv_->view().svd_down;
    } else if (layer.tensor_core_) {
      up = layer.tensor_core_->view().svd_up, down = layer.tensor_core_->view().svd_down;
      up_stride = layer.tensor_core_->view().svd_rank_padded;
    } else {
      up = layer.svd_up_.data(), down = layer.svd_down_.data();
    }
    SDNQ_CUDA_CHECK(
        cudaMemcpy2DAsync(x_ext, row_elements * 2, x.data(), k * 2, k * 2, tokens, cudaMemcpyDeviceToDevice, stream));
    kernel_detail::gemm_row_major_abt(cublas, type, tokens, rank, k, x.data(), k, down, k, static_cast<T*>(x_ext) + k,
                                      row_elements, 0.0f);
    kernel_detail::launch_fill_extension<Kernel>(x_ext, tokens, k, row_elements, nullptr, 0, static_cast<int>(rank),
                                                 bias.has_value(), nullptr, stream);
  }
  int multiprocessors = 0;
  SDNQ_CUDA_CHECK(cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, layer.device_));
  for (std::int64_t row = 0; row < n; row += layer.dense_chunk_rows_) {
    const std::int64_t rows = n - row < layer.dense_chunk_rows_ ? n - row : layer.dense_chunk_rows_;
    if (layer.tensor_core_) {
      const GemmTcWeights& w = layer.tensor_core_->view();
      kernel_detail::TensorCoreLayoutChunk chunk{};
      chunk.codes = w.codes;
      chunk.group_params = w.group_params;
      chunk.out = w_ext;
      chunk.first_row = row;
      chunk.rows = rows;
      chunk.out_features = n;
      chunk.in_features = k;
      chunk.group_size = w.group_size;
      chunk.out_row_stride = row_elements;
      chunk.code_offset = w.is_signed ? static_cast<float>(1 << (w.bits - 1)) : 0.0f;
      kernel_detail::launch_dequantize_tensor_core_layout<Kernel>(w.bits, chunk, multiprocessors, stream);
    } else if (layer.gemv_ && layer.gemv_->view().bits != 2 && layer.gemv_->view().bits != 4 &&
               layer.gemv_->view().bits != 8) {  // widths 1, 3, 5, 6, 7
      const GemvWeights& w = layer.gemv_->view();
      const std::int64_t groups = w.in_features / w.group_size;
      kernel_detail::launch_dequantize_gemv_layout<Kernel>(
          w.bits, w.codes + row * (k / 32) * w.bits, static_cast<const T*>(w.group_params) + row * groups * 2,
          w.code_values, w_ext, rows, k, w.group_size, row_elements,
          w.is_signed ? static_cast<float>(1 << (w.bits - 1)) : 0.0f, multiprocessors, stream);
    } else if (layer.gemv_) {  // 2, 4, 8 bits: the memory-speed vector kernel (float codes through their table)
      const GemvWeights& w = layer.gemv_->view();
      const std::int64_t groups = w.in_features / w.group_size;
      const bool lookup = w.code_values != nullptr;
      kernel_detail::DequantizeVectorParams p{};
      p.codes = w.codes + row * (k / 32) * w.bits;
      p.scale = static_cast<const T*>(w.group_params) + row * groups * 2;
      // Unsigned floats (fnu) have zero points like unsigned integers; without one the pair holds 0.
      p.zero_point = w.is_signed ? nullptr : static_cast<const T*>(p.scale) + 1;
      p.lookup_table = w.code_values;
      p.param_stride = 2;
      p.params_in_output_dtype = true;
      p.out = w_ext;
      p.rows = rows;
      p.in_features = k;
      p.out_row_stride = row_elements;
      p.group_size = w.group_size;
      p.param_row_stride = groups;
      p.code_minus = 8388608.0f + (w.is_signed ? static_cast<float>(1 << (w.bits - 1)) : 0.0f);
      kernel_detail::dispatch_dequantize_vector<Kernel>(w.bits, lookup, p, multiprocessors, stream);
    } else {
      const LinearCodes& c = layer.checkpoint_;
      LinearCodes part = c;
      // A whole number of packer blocks precedes the chunk: row is a multiple of 8 (or 0).
      const std::int64_t block_codes = c.bits == 8   ? 1
                                       : c.bits == 1 ? 8
                                       : c.bits == 2 ? 4
                                       : c.bits == 4 ? 2
                                       : c.bits == 6 ? 4
                                                     : 8;
      const std::int64_t block_words = c.bits == 6 ? 3 : (c.bits == 3 || c.bits == 5 || c.bits == 7) ? c.bits : 1;
      const std::int64_t code_bytes =
          row * k / block_codes * block_words * static_cast<std::int64_t>(c.codes.element_size());
      const std::int64_t part_codes = c.codes.numel() * rows / n;
      part.codes = TensorView(static_cast<char*>(c.codes.data()) + code_bytes, c.codes.dtype(), Shape{part_codes},
                              c.codes.device());
      part.out_features = rows;
      if (c.group_size != -2) {
        const std::int64_t per_row = c.scale.numel() / n;
        const auto slice = [&](const TensorView& v) {
          return TensorView(static_cast<char*>(v.data()) + row * per_row * v.element_size(), v.dtype(),
                            Shape{rows * per_row}, v.device());
        };
        part.scale = slice(c.scale);
        if (c.zero_point) part.zero_point = slice(*c.zero_point);
      }
      void* target = extended ? scratch : w_ext;
      dequantize(part, TensorView(target, layer.dtype_, Shape{rows, k}, Device::cuda(layer.device_)),
                 ScaleRounding::to_output_dtype, stream);
      if (extended)
        SDNQ_CUDA_CHECK(
            cudaMemcpy2DAsync(w_ext, row_elements * 2, scratch, k * 2, k * 2, rows, cudaMemcpyDeviceToDevice, stream));
    }
    if (extended)
      kernel_detail::launch_fill_extension<Kernel>(w_ext, rows, k, row_elements, static_cast<const T*>(up) + row * up_stride,
                                                   up_stride, static_cast<int>(rank), bias.has_value(),
                                                   bias ? static_cast<const T*>(bias->data()) + row : nullptr, stream);
    if (bias_by_epilogue)
      kernel_detail::gemm_row_major_abt_bias(layer.lt_.get(), type, tokens, rows, k, x.data(), k, w_ext, k,
                                             static_cast<T*>(y.data()) + row, n,
                                             static_cast<const T*>(bias->data()) + row, stream);
    else
      kernel_detail::gemm_row_major_abt(cublas, type, tokens, rows, row_elements, extended ? x_ext : x.data(),
                                        row_elements, w_ext, row_elements, static_cast<T*>(y.data()) + row, n,
                                        bias_by_beta ? 1.0f : 0.0f);
  }
}

// y = x · dequant(W)ᵀ (+ SVD branch) (+ bias) on `stream`. x [M, K], y [M, N], bias [N]: contiguous
// tensors of layer.dtype() on the layer's device, x and y 16-byte aligned. `workspace`: device memory
// of at least layer.workspace_bytes(M, route) bytes, 16-byte aligned (may be empty when that is 0).
// `cublas`: a handle for the dequantize_cublas route (may be null when the call takes another route).
// Throws ShapeError / UnsupportedError naming the layer and what was expected, before any launch.
inline void quantized_linear(const QuantizedLinear& layer, TensorView x, std::optional<TensorView> bias, TensorView y,
                             TensorView workspace, cublasHandle_t cublas, cudaStream_t stream = nullptr,
                             LinearRoute route = LinearRoute::automatic) {
  const std::string& name = layer.name();
  const std::int64_t n = layer.out_features(), k = layer.in_features();
  const Device device = Device::cuda(layer.device());
  SDNQ_REQUIRE(x.rank() == 2 && x.size(1) == k && x.size(0) >= 1 && x.dtype() == layer.dtype() && x.is_contiguous() &&
                   x.device() == device,
               ShapeError, "{}: x must be a contiguous {} tensor [M, {}] on {}, got {} {} on {}", name,
               dtype_name(layer.dtype()), k, device.to_string(), dtype_name(x.dtype()), x.shape().to_string(),
               x.device().to_string());
  const std::int64_t tokens = x.size(0);
  SDNQ_REQUIRE(y.rank() == 2 && y.size(0) == tokens && y.size(1) == n && y.dtype() == layer.dtype() &&
                   y.is_contiguous() && y.device() == device,
               ShapeError, "{}: y must be a contiguous {} tensor [{}, {}] on {}, got {} {} on {}", name,
               dtype_name(layer.dtype()), tokens, n, device.to_string(), dtype_name(y.dtype()), y.shape().to_string(),
               y.device().to_string());
  if (bias)
    SDNQ_REQUIRE(
        bias->numel() == n && bias->dtype() == layer.dtype() && bias->is_contiguous() && bias->device() == device,
        ShapeError, "{}: bias must be a contiguous {} tensor [{}] on {}, got {} {} on {}", name,
        dtype_name(layer.dtype()), n, device.to_string(), dtype_name(bias->dtype()), bias->shape().to_string(),
        bias->device().to_string());
  // The pointers must really live where the views claim (a host pointer would fault inside a kernel).
  check_pointer_location(x, name + " x");
  check_pointer_location(y, name + " y");
  if (bias) check_pointer_location(*bias, name + " bias");
  const auto aligned = [](const void* pointer) { return reinterpret_cast<std::uintptr_t>(pointer) % 16 == 0; };
  SDNQ_REQUIRE(aligned(x.data()) && aligned(y.data()), ShapeError, "{}: x and y must be 16-byte aligned", name);
  if (route == LinearRoute::automatic) route = layer.route_for(tokens);
  SDNQ_REQUIRE(layer.supports(route), UnsupportedError,
               "{}: route {} has no kernel for this weight ({}-bit, [{}, {}]); use automatic", name,
               linear_route_name(route), layer.bits_, n, k);
  SDNQ_REQUIRE(route != LinearRoute::small_m || tokens <= gemv_max_tokens, UnsupportedError,
               "{}: route small_m takes 1..{} rows of x, got {}", name, gemv_max_tokens, tokens);
  SDNQ_REQUIRE(route != LinearRoute::dequantize_cublas || cublas != nullptr, ShapeError,
               "{}: route dequantize_cublas needs a cuBLAS handle", name);
  DeviceGuard guard(layer.device());
  const std::size_t needed = layer.workspace_bytes(tokens, route);
  SDNQ_REQUIRE(
      needed == 0 || (workspace.nbytes() >= needed && workspace.device() == device && aligned(workspace.data())),
      ShapeError, "{}: route {} with M = {} needs {} bytes of 16-byte aligned workspace on {}, got {} on {}", name,
      linear_route_name(route), tokens, needed, device.to_string(), workspace.nbytes(), workspace.device().to_string());
  if (needed > 0) check_pointer_location(workspace, name + " workspace");

  switch (route) {
    case LinearRoute::small_m:
      return gemv(layer.gemv_->view(), x, bias, y, workspace, stream);
    case LinearRoute::tensor_core:
      if (!layer.tensor_core_)  // e4m3 row-wise codes in the GEMV layout: w8a8_dequantized_linear's kernel
        return kernel_detail::launch_w8a8_rows_stream_slabs(
            layer.dtype(), true, layer.gemv_->view().codes, static_cast<const float*>(layer.fp8_row_scales_.data()),
            x.data(), bias ? bias->data() : nullptr, y.data(), tokens, n, k, current_gemm_tc_device(), stream);
      return gemm_tc(layer.tensor_core_->view(), x, bias, y, workspace, stream);
    case LinearRoute::tensor_core_sm90:
      return gemm_weight_only_sm90(layer.tensor_core_->view(), x, bias, y, workspace, stream);
    default:
      if (layer.dtype() == DType::bf16) return run_dense_route<bf16>(layer, x, bias, y, workspace, cublas, stream);
      return run_dense_route<fp16>(layer, x, bias, y, workspace, cublas, stream);
  }
}

namespace linear_detail {

inline void require_dense_operand(const TensorView& view, DType dtype, const Shape& shape, const std::string& what) {
  SDNQ_REQUIRE(view.shape() == shape && view.dtype() == dtype && view.is_contiguous() && view.device().is_cuda(),
               ShapeError, "{} must be a contiguous {} device tensor {}, got {} {} on {}", what, dtype_name(dtype),
               shape.to_string(), dtype_name(view.dtype()), view.shape().to_string(), view.device().to_string());
  check_pointer_location(view, what);
}

// y (+)= x · w_rowsᵀ on row-major operands; `beta` 1 accumulates onto what y holds.
inline void gemm_rows(cublasHandle_t cublas, DType dtype, std::int64_t tokens, std::int64_t rows, std::int64_t k,
                      const void* x, const void* w_rows, void* y, std::int64_t y_stride, float beta) {
  kernel_detail::gemm_row_major_abt(cublas, dtype == DType::bf16 ? CUDA_R_16BF : CUDA_R_16F, tokens, rows, k, x, k,
                                    w_rows, k, y, y_stride, beta);
}

inline void broadcast_bias(DType dtype, void* y, std::int64_t tokens, std::int64_t n, const void* bias,
                           cudaStream_t stream) {
  if (dtype == DType::bf16)
    kernel_detail::launch_broadcast_bias<__nv_bfloat16>(y, tokens, n, bias, stream);
  else
    kernel_detail::launch_broadcast_bias<__half>(y, tokens, n, bias, stream);
}

}  // namespace linear_detail

// y [M, N] = x [M, K] · weight [N, K]ᵀ (+ bias [N]) for dense BF16 or F16 device tensors of one dtype: one
// cuBLAS GEMM with fp32 accumulation on `stream`. A bias is broadcast into y first and the GEMM adds onto
// it (beta = 1), so y is rounded once. `name` goes into error messages.
inline void dense_linear(const TensorView& x, const TensorView& weight, std::optional<TensorView> bias,
                         const TensorView& y, cublasHandle_t cublas, cudaStream_t stream = nullptr,
                         const std::string& name = "dense_linear") {
  const DType dtype = weight.dtype();
  SDNQ_REQUIRE((dtype == DType::bf16 || dtype == DType::f16) && weight.rank() == 2, UnsupportedError,
               "{}: weight must be a BF16 or F16 matrix [N, K], got {} {}", name, dtype_name(dtype),
               weight.shape().to_string());
  SDNQ_REQUIRE(x.rank() == 2 && x.size(0) >= 1, ShapeError, "{}: x must be a matrix [M, {}], got {}", name,
               weight.size(1), x.shape().to_string());
  SDNQ_REQUIRE(cublas != nullptr, ShapeError, "{}: needs a cuBLAS handle", name);
  const std::int64_t tokens = x.size(0), n = weight.size(0), k = weight.size(1);
  linear_detail::require_dense_operand(weight, dtype, Shape{n, k}, name + " weight");
  linear_detail::require_dense_operand(x, dtype, Shape{tokens, k}, name + " x");
  linear_detail::require_dense_operand(y, dtype, Shape{tokens, n}, name + " y");
  if (bias) linear_detail::require_dense_operand(*bias, dtype, Shape{n}, name + " bias");
  SDNQ_CUBLAS_CHECK(cublasSetStream(cublas, stream));
  if (bias) linear_detail::broadcast_bias(dtype, y.data(), tokens, n, bias->data(), stream);
  linear_detail::gemm_rows(cublas, dtype, tokens, n, k, x.data(), weight.data(), y.data(), n, bias ? 1.0f : 0.0f);
}

// The dequantized path of an 8-bit quantized-matmul layer (what the reference runs below 32 tokens) over
// the gemm_w8a8 weights themselves, so the layer keeps one copy of its codes. Each code becomes
// w = code · scale rounded to the activation dtype (int8, or float8_e4m3fn), the same weight values the
// dequantize kernel writes; the products are summed in fp32 and y = round(Σ + bias) once. The dense
// weight is never materialized (without an SVD branch: no workspace, no cuBLAS). Results are
// deterministic (fixed summation order, no atomics). Two kernels:
//   - N % 32 == 0 and K % 64 == 0 (every model layer): the tensor-core weight-streaming kernel on the
//     row-major codes (detail/gemm_tc_stream_kernel.cuh, StreamCodes::*_rows), one launch per 16 tokens:
//     the weights enter the mma as T values, so 16 tokens cost about what one does (1.2-1.9x cuBLAS bf16
//     at M = 16 on FLUX's shapes, where the CUDA-core kernel reached 0.4-0.6x);
//   - otherwise (any M ≥ 1, N ≥ 1, K % 16 == 0; M > 32 in slabs of 32 tokens that each stream the weight
//     again): the CUDA-core kernel (detail/w8a8_gemv.cuh), about as fast at M = 1, limited by its fp32
//     FMAs from M = 4.
// gemm_w8a8 (activations quantized, 8-bit tensor cores) is the path from 32 tokens.
// Weights with an SVD branch (re-quantized W4A8 layers, int8 + SVD): after the 8-bit part,
// low_rank [M, rp] = x · svd_downᵀ rounded to T in `workspace` (gemm_w8a8's down-projection launch, split
// along K over the SMs), then y += low_rank · svd_upᵀ by cuBLAS; y is rounded twice there, the reference
// folds the factors into its dense weight. Those need `cublas` and w8a8_dequantized_workspace_bytes(w, M)
// bytes of 256-byte aligned workspace.
// Numbers: docs/benchmarks.md (bench_linear, "w8a8_dequantized_" rows).
// `e4m3_table` (the device F32 [256] of decoded e4m3 codes the layer holds) is not used and may be null:
// the kernels convert e4m3 codes in hardware, which gives the same 256 values. Without an SVD branch
// `cublas` may be null and `workspace` empty (w8a8_dequantized_workspace_bytes is 0).
inline std::size_t w8a8_dequantized_workspace_bytes(const W8A8Weights& w, std::int64_t tokens) {
  return kernel_detail::plan_w8a8_svd(w, tokens).bytes;
}

inline void w8a8_dequantized_linear(const W8A8Weights& w, const void* e4m3_table, const TensorView& x,
                                    std::optional<TensorView> bias, const TensorView& y, const TensorView& workspace,
                                    cublasHandle_t cublas, cudaStream_t stream = nullptr,
                                    const std::string& name = "w8a8_dequantized_linear") {
  (void)e4m3_table;
  SDNQ_REQUIRE(w.code_indices == nullptr, UnsupportedError,
               "{}: the weights hold code tables; expand them first (expand_w8a8_codes)", name);
  SDNQ_REQUIRE(w.codes != nullptr && w.scale != nullptr && (w.dtype == DType::bf16 || w.dtype == DType::f16),
               ShapeError, "{}: weights have no codes or scales, or an activation dtype other than BF16/F16", name);
  SDNQ_REQUIRE(w.out_features >= 1 && w.in_features >= 16 && w.in_features % 16 == 0, UnsupportedError,
               "{}: needs out_features >= 1 and in_features a positive multiple of 16, got [{}, {}]", name,
               w.out_features, w.in_features);
  if (w.svd_rank_padded > 0) {
    SDNQ_REQUIRE(w.svd_down != nullptr && w.svd_up != nullptr, ShapeError,
                 "{}: the weights claim an SVD branch of rank {} but have no factors", name, w.svd_rank_padded);
    SDNQ_REQUIRE(cublas != nullptr, ShapeError,
                 "{}: the weights carry an SVD branch, whose low-rank GEMMs need a cuBLAS handle", name);
    SDNQ_REQUIRE(x.rank() == 2, ShapeError, "{}: x must be a matrix [M, {}], got {}", name, w.in_features,
                 x.shape().to_string());
    const std::int64_t tokens = x.size(0), rank = w.svd_rank_padded;
    const kernel_detail::W8A8SvdPlan plan = kernel_detail::plan_w8a8_svd(w, tokens);
    SDNQ_REQUIRE(workspace.nbytes() >= plan.bytes &&
                     (plan.bytes == 0 ||
                      (workspace.device().is_cuda() && reinterpret_cast<std::uintptr_t>(workspace.data()) % 256 == 0)),
                 ShapeError, "{}: the SVD branch needs {} bytes of 256-byte aligned device workspace for {} rows, got {}",
                 name, plan.bytes, tokens, workspace.nbytes());
    W8A8Weights codes_only = w;
    codes_only.svd_down = nullptr;
    codes_only.svd_up = nullptr;
    codes_only.svd_rank_padded = 0;
    codes_only.svd_part_count = 0;
    w8a8_dequantized_linear(codes_only, e4m3_table, x, bias, y, TensorView(), nullptr, stream, name);
    if (tokens == 0) return;
    auto* low_rank = static_cast<std::uint8_t*>(workspace.data());
    (void)kernel_detail::launch_w8a8_svd_down(w, x.data(), tokens, plan, low_rank, stream);
    SDNQ_CUBLAS_CHECK(cublasSetStream(cublas, stream));
    linear_detail::gemm_rows(cublas, w.dtype, tokens, w.out_features, rank, low_rank, w.svd_up, y.data(),
                             w.out_features, 1.0f);
    return;
  }
  SDNQ_REQUIRE(reinterpret_cast<std::uintptr_t>(w.codes) % 16 == 0, ShapeError,
               "{}: the codes must be 16-byte aligned (upload_w8a8_weights allocates them so)", name);
  const std::int64_t n = w.out_features, k = w.in_features;
  SDNQ_REQUIRE(x.rank() == 2, ShapeError, "{}: x must be a matrix [M, {}], got {}", name, k, x.shape().to_string());
  const std::int64_t tokens = x.size(0);
  linear_detail::require_dense_operand(x, w.dtype, Shape{tokens, k}, name + " x");
  linear_detail::require_dense_operand(y, w.dtype, Shape{tokens, n}, name + " y");
  if (bias) linear_detail::require_dense_operand(*bias, w.dtype, Shape{n}, name + " bias");
  SDNQ_REQUIRE(reinterpret_cast<std::uintptr_t>(x.data()) % 16 == 0, ShapeError,
               "{}: x must be 16-byte aligned (the kernel reads it in 16-byte pieces)", name);
  if (tokens == 0) return;
  const bool e4m3 = w.kind == W8A8Kind::float8_e4m3fn;
  // N % 32 == 0 and K % 64 == 0 (every model layer): the tensor-core weight-streaming kernel, in slabs of
  // 16 tokens; otherwise the CUDA-core kernel, which takes any N and K % 16 == 0.
  const GemmTcDevice device = current_gemm_tc_device();
  if (kernel_detail::w8a8_rows_stream(n, k, device)) {
    kernel_detail::launch_w8a8_rows_stream_slabs(w.dtype, e4m3, w.codes, w.scale, x.data(),
                                                 bias ? bias->data() : nullptr, y.data(), tokens, n, k, device, stream);
    return;
  }
  kernel_detail::W8A8GemvParams p{};
  p.codes = w.codes;
  p.scale = w.scale;
  p.x = x.data();
  p.bias = bias ? bias->data() : nullptr;
  p.y = y.data();
  p.tokens = tokens;
  p.out_features = n;
  p.in_features = k;
  if (w.dtype == DType::bf16) {
    if (e4m3)
      kernel_detail::launch_w8a8_gemv<__nv_bfloat16, true>(p, stream);
    else
      kernel_detail::launch_w8a8_gemv<__nv_bfloat16, false>(p, stream);
  } else {
    if (e4m3)
      kernel_detail::launch_w8a8_gemv<__half, true>(p, stream);
    else
      kernel_detail::launch_w8a8_gemv<__half, false>(p, stream);
  }
}

SDNQ_KERNEL_NAMESPACE_END
