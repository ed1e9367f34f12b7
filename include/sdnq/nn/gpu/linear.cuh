#pragma once
// Linear on the GPU, bf16 activations: y [M, N] = x [M, K] · Wᵀ (+ bias), over any weight a
// WeightLoader finds, loaded under the same names and shape checks as the CPU nn::Linear:
//   dense        the file's weight narrowed to bf16 [N, K]; cuda::dense_linear (one cuBLAS GEMM, bias added
//                in fp32 before the single rounding)
//   quantized    cuda::QuantizedLinear (GEMV / tensor-core / dequantize + cuBLAS, chosen by M) for every
//                layout the CUDA kernels read: integer and float codes of up to 8 bits (native fp8 and
//                SDNQ's custom floats through a lookup table), SDNQ SVD branch. Float codes run the GEMV up
//                to 8 tokens (native fp8 converted by the hardware; float8_e4m3fn with one scale a row the
//                weight-streaming tensor-core kernel up to 32), the dequantize + cuBLAS route above; the
//                device holds their codes, not a bf16 copy.
//   quantized    layers saved for SDNQ's quantized matmul with int8 or float8_e4m3fn codes used directly:
//     matmul     cuda::gemm_w8a8 for M ≥ 32 tokens, as the reference (§5.1 step 0: fewer tokens take the
//                dequantized path, which cuda::w8a8_dequantized_linear runs over the same 8-bit weights:
//                one copy of the codes per layer; a layer held as code tables over its stored 4-bit codes
//                runs that path on the GEMV over those codes, the reference's own arithmetic)
//   fallback     layouts no kernel reads (Hadamard rotation, codebooks, > 8 bits):
//                dequantized once at load by quant::dequantize (the reference's arithmetic) into a dense
//                bf16 weight.
// Forward takes its scratch from the caller's workspace (workspace_bytes(M)); no allocation.
// Where several quantized-matmul Linears read the same rows (q/k/v, FLUX's proj_mlp), share_input()
// quantizes the rows once and each forward(LinearInput) runs the 8-bit GEMM on those codes: the same bits
// as quantizing inside every GEMM, one pass over x instead of one per layer.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sdnq/core/arena.hpp"
#include "sdnq/cuda/gemm_w8a8.cuh"
#include "sdnq/cuda/linear.cuh"
#include "sdnq/cuda/requantize_w8a8.hpp"
#include "sdnq/cuda/w8a8_code_tables.cuh"
#include "sdnq/nn/gpu/detail/device_weights.hpp"
#include "sdnq/nn/weights.hpp"

namespace sdnq::nn::gpu {

// Which kernel family a loaded Linear runs (for reports and tests).
enum class LinearKind : std::uint8_t { dense, quantized, quantized_matmul, dequantized_at_load };

inline const char* linear_kind_name(LinearKind kind) {
  switch (kind) {
    case LinearKind::dense:
      return "dense";
    case LinearKind::quantized:
      return "quantized";
    case LinearKind::quantized_matmul:
      return "quantized_matmul";
    default:
      return "dequantized_at_load";
  }
}

namespace detail {

// Whether two layers' 8-bit weights are held alike (codes of one dtype, or code tables of one group; the
// group is 0 without tables), so that their rows can be joined.
inline bool same_operand_storage(const cuda::W8A8WeightsDevice& a, const cuda::W8A8WeightsDevice& b) {
  if (cuda::w8a8_has_code_tables(a.view()) || cuda::w8a8_has_code_tables(b.view()))
    return a.view().code_table_group == b.view().code_table_group;
  return a.codes.dtype() == b.codes.dtype();
}

// Whether two layers' stored-codes GEMV forms (see Linear) can be joined row by row.
inline bool same_stored_codes(const cuda::QuantizedLinear& a, const cuda::QuantizedLinear& b) {
  const cuda::GemvWeightsDevice* x = a.gemv_weights();
  const cuda::GemvWeightsDevice* y = b.gemv_weights();
  return x != nullptr && y != nullptr && x->meta.bits == y->meta.bits && x->meta.is_signed == y->meta.is_signed &&
         x->meta.group_size == y->meta.group_size && x->meta.dtype == y->meta.dtype;
}

// Whether two quantized-matmul weights quantize their input the same way (kind, dtype, scale dtype, K).
inline bool same_input_quantization(const cuda::W8A8Weights& a, const cuda::W8A8Weights& b) {
  return a.kind == b.kind && a.dtype == b.dtype && a.scale_dtype == b.scale_dtype && a.in_features == b.in_features;
}

}  // namespace detail

// The rows a Linear reads and, when share_input() quantized them for several quantized-matmul
// Linears, their 8-bit codes (used by the layers whose quantization they fit, ignored by the others).
struct LinearInput {
  LinearInput(const TensorView& x) : rows(x) {}  // NOLINT(google-explicit-constructor): plain rows read as before
  LinearInput(const TensorView& x, const cuda::W8A8Activations& quantized) : rows(x), codes(quantized) {}
  TensorView rows;
  std::optional<cuda::W8A8Activations> codes;
};

class Linear {
 public:
  // Tokens from which a quantized-matmul layer runs the 8-bit GEMM (the reference's threshold).
  static constexpr std::int64_t quantized_matmul_min_tokens = 32;

  // `layout`: the code layout a quantized layer keeps where the weight fits it (cuda::CodeLayout;
  // otherwise, and for automatic, tensor-core where it fits, else GEMV, else checkpoint). Measured on one H100 (bench_linear): gemv is 1.3-1.6x faster at M = 1 and equal or
  // 1-3 % faster at M >= 1024; tensor_core wins for M of about 4..192 (e.g. CLIP's 77 tokens).
  // `scale_rounding`: none for components whose reference keeps scale and zero point in fp32 (CLIP
  // and T5 through transformers), see cuda::repack_for_gemm_tc; diffusers' loader rounds them (the default).
  static Linear load(WeightLoader& weights, std::string_view prefix, std::int64_t in_features,
                     std::int64_t out_features, bool bias, int device,
                     cuda::CodeLayout layout = cuda::CodeLayout::automatic,
                     cuda::ScaleRounding scale_rounding = cuda::ScaleRounding::to_output_dtype) {
    Linear layer;
    layer.name_ = std::string(prefix);
    layer.in_features_ = in_features;
    layer.out_features_ = out_features;
    layer.device_ = device;
    const Shape shape{out_features, in_features};
    if (auto quantized = weights.quantized(prefix, quant::LayerKind::linear, shape)) {
      const std::optional<detail::HostLinearCodes> codes = detail::linear_codes_of(*quantized);
      if (auto matmul = quantized_matmul_weights(*quantized, codes, weights.requantized_matmul(), device)) {
        // One copy of the codes: the 8-bit GEMM's weights, also read by the dequantized small-M path.
        layer.matmul_ = cuda::upload_w8a8_weights(*matmul, device);
        layer.kind_ = LinearKind::quantized_matmul;
        // Code-table indices that are the stored 4-bit codes also run the reference's small-M path (§5.1
        // step 0: the stored weight dequantized) on the GEMV, for the group parameters' bytes.
        if (codes && scale_rounding == cuda::ScaleRounding::to_output_dtype &&
            cuda::table_indices_are_stored_codes(*matmul, codes->codes))
          layer.quantized_ =
              stored_codes_gemv(*layer.matmul_, cuda::to_device(cuda::gemv_group_params<bf16>(codes->codes), device),
                                codes->codes, layer.name_, device);
      } else if (codes) {
        cuda::QuantizedLinearOptions options;
        options.layout = cuda::QuantizedLinear::layout_fits(codes->codes, layout) ? layout
                                                                                  : cuda::CodeLayout::automatic;
        options.scale_rounding = scale_rounding;
        layer.quantized_.emplace(codes->codes, DType::bf16, device, options);
        layer.kind_ = LinearKind::quantized;
      } else {
        // Into f32 the parameters are never rounded to bf16, whatever scale_rounding asks.
        const Tensor dense = quant::dequantize(*quantized, DType::f32, quant::ScalePrecision::reference_compatible);
        layer.weight_ = detail::upload_bf16(dense, device, layer.name_ + ".weight");
        layer.kind_ = LinearKind::dequantized_at_load;
      }
    } else {
      layer.weight_ = detail::upload_bf16(weights.stored_float(layer.name_ + ".weight", shape), device, layer.name_);
    }
    if (bias)
      layer.bias_ =
          detail::upload_bf16(weights.stored_float(layer.name_ + ".bias", Shape{out_features}), device, layer.name_ + ".bias");
    return layer;
  }

  // Device scratch bytes forward() needs for `tokens` rows of x (forward(LinearInput) needs no more).
  std::size_t workspace_bytes(std::int64_t tokens) const {
    if (matmul_ && tokens >= quantized_matmul_min_tokens)
      return Arena::footprint(cuda::w8a8_activations_bytes(matmul_->view(), tokens)) + svd_workspace_bytes(tokens) +
             expanded_codes_bytes();
    if (quantized_) return Arena::footprint(quantized_->workspace_bytes(tokens));
    if (matmul_)
      return footprint_or_zero(cuda::w8a8_dequantized_workspace_bytes(matmul_->view(), tokens)) +
             expanded_codes_bytes();
    return 0;
  }

  // Bytes the layer holds on its device (weight in whichever form it runs, bias; the codes a table layer's
  // GEMV shares with its tables counted once).
  std::size_t device_bytes() const {
    const auto held = [](const Tensor& tensor) { return tensor.defined() ? tensor.nbytes() : std::size_t{0}; };
    std::size_t bytes = held(weight_) + held(bias_);
    if (matmul_)
      bytes += held(matmul_->codes) + held(matmul_->scale) + held(matmul_->svd_down) + held(matmul_->svd_up) +
               held(matmul_->code_indices) + held(matmul_->code_tables);
    if (quantized_) bytes += quantized_->device_bytes();
    return bytes;
  }

  // x [M, K] bf16 -> y [M, N] bf16, contiguous device tensors; scratch from `arena`.
  void forward(const TensorView& x, const TensorView& y, Arena& arena, cublasHandle_t cublas,
               cudaStream_t stream) const {
    SDNQ_REQUIRE(x.rank() == 2 && x.size(1) == in_features_ && x.dtype() == DType::bf16 && x.is_contiguous(),
                 ShapeError, "Linear '{}': x must be a contiguous BF16 [M, {}] device tensor, got {} {}", name_,
                 in_features_, dtype_name(x.dtype()), x.shape().to_string());
    SDNQ_REQUIRE(joined_into_.empty(), UnsupportedError, "Linear '{}' was concatenated into '{}'; run that one",
                 name_, joined_into_);
    const std::int64_t tokens = x.size(0);
    SDNQ_REQUIRE(y.rank() == 2 && y.size(0) == tokens && y.size(1) == out_features_ && y.dtype() == DType::bf16 &&
                     y.is_contiguous(),
                 ShapeError, "Linear '{}': y must be a contiguous BF16 [{}, {}] device tensor, got {} {}", name_,
                 tokens, out_features_, dtype_name(y.dtype()), y.shape().to_string());
    std::optional<TensorView> bias;
    if (bias_.defined()) bias = bias_.view();
    ArenaScope scope(arena);
    if (matmul_ && tokens >= quantized_matmul_min_tokens) {
      // x quantized by its own pass, then the GEMM on the codes: same bits as quantizing inside the GEMM,
      // whose claimed-row quantization is latency-bound (see docs/benchmarks.md, "quantize separately").
      const TensorView buffer =
          take_scratch(arena, cuda::w8a8_activations_bytes(matmul_->view(), tokens), "8-bit codes of x");
      const cuda::W8A8Activations codes = cuda::quantize_w8a8_activations(matmul_->view(), x, buffer, stream);
      return gemm_on_codes(matmul_->view(), codes, bias, y, arena, stream);
    }
    if (quantized_) {  // weight-only, or a table layer's stored codes below 32 tokens
      const TensorView scratch = take_scratch(arena, quantized_->workspace_bytes(tokens), "scratch");
      return cuda::quantized_linear(*quantized_, x, bias, y, scratch, cublas, stream);
    }
    if (matmul_) {
      const cuda::W8A8Weights weights = expanded(matmul_->view(), arena, stream);
      const TensorView scratch = take_scratch(arena, cuda::w8a8_dequantized_workspace_bytes(weights, tokens),
                                              "low-rank product of the SVD branch");
      return cuda::w8a8_dequantized_linear(weights, nullptr, x, bias, y, scratch, cublas, stream, name_);
    }
    cuda::dense_linear(x, weight_.view(), bias, y, cublas, stream, name_);
  }

  // forward() on pre-quantized rows: runs the 8-bit GEMM on input.codes where they fit this layer's
  // quantization (the same bits as quantizing x here), else forward(input.rows).
  void forward(const LinearInput& input, const TensorView& y, Arena& arena, cublasHandle_t cublas,
               cudaStream_t stream) const {
    const cuda::W8A8Weights* weights = quantized_matmul_at(input.rows.size(0));
    if (weights == nullptr || !input.codes || !cuda::w8a8_activations_fit(*weights, *input.codes))
      return forward(input.rows, y, arena, cublas, stream);
    std::optional<TensorView> bias;
    if (bias_.defined()) bias = bias_.view();
    ArenaScope scope(arena);
    gemm_on_codes(*weights, *input.codes, bias, y, arena, stream);
  }

  // One Linear computing `parts` (Linears of one input width on one device) side by side: y [M, ΣN], the
  // weights' rows and biases concatenated on the device, one wider GEMM instead of several. Possible where
  // every part holds a dense weight (dense or dequantized at load) or every part is an 8-bit quantized-matmul
  // layer with the same input quantization, and all have a bias or none: then the parts' device memory is
  // released (forward on them throws) and the joined Linear returned; else nullopt, the parts untouched.
  // SVD branches join too: svd_down's rows one part after another, svd_up block-diagonal (part i's
  // [N_i, rp_i] in its own rank columns, zeros elsewhere), so each output still sees only its own factors;
  // the part table (W8A8Weights::svd_parts) lets each output tile of the GEMM multiply only the ranks of
  // the parts it covers.
  static std::optional<Linear> concatenate(std::span<Linear* const> parts, const std::string& name) {
    if (parts.empty()) return std::nullopt;
    const Linear& first = *parts[0];
    bool dense = true, matmul = first.matmul_.has_value();
    std::int64_t rows = 0;
    for (const Linear* part : parts) {
      if (part->in_features_ != first.in_features_ || part->device_ != first.device_ ||
          part->bias_.defined() != first.bias_.defined() || !part->joined_into_.empty())
        return std::nullopt;
      dense = dense && part->weight_.defined();
      matmul = matmul && part->matmul_ &&
               detail::same_input_quantization(part->matmul_->view(), first.matmul_->view()) &&
               detail::same_operand_storage(*part->matmul_, *first.matmul_) &&
               part->quantized_.has_value() == first.quantized_.has_value() &&
               (!first.quantized_ || detail::same_stored_codes(*part->quantized_, *first.quantized_));
      rows += part->out_features_;
    }
    // Parts with an SVD branch must agree on the dtype their low-rank sum is rounded to.
    std::int64_t ranks = 0;
    std::optional<bool> svd_in_activation_dtype;
    for (const Linear* part : parts) {
      if (!matmul || part->matmul_->view().svd_rank_padded == 0) continue;
      ranks += part->matmul_->view().svd_rank_padded;
      if (svd_in_activation_dtype && *svd_in_activation_dtype != part->matmul_->view().svd_in_activation_dtype)
        matmul = false;
      svd_in_activation_dtype = part->matmul_->view().svd_in_activation_dtype;
    }
    // Stored-codes GEMVs read every joined rank (zero blocks included).
    if (matmul && first.quantized_ && ranks > cuda::kernel_detail::gemv_max_rank) matmul = false;
    if (!dense && !matmul) return std::nullopt;
    cuda::DeviceGuard guard(first.device_);
    // Row blocks of each part's tensor (selected by `of`) one after another in a new device tensor.
    const auto join = [&](const auto& of, std::int64_t columns, DType dtype) {
      Tensor joined = cuda::empty(columns == 0 ? Shape{rows} : Shape{rows, columns}, dtype, first.device_);
      std::size_t offset = 0;
      for (const Linear* part : parts) {
        const Tensor& piece = of(*part);
        SDNQ_CUDA_CHECK(cudaMemcpy(static_cast<std::byte*>(joined.data()) + offset, piece.data(), piece.nbytes(),
                                   cudaMemcpyDeviceToDevice));
        offset += piece.nbytes();
      }
      return joined;
    };
    Linear joined;
    joined.name_ = name;
    joined.in_features_ = first.in_features_;
    joined.out_features_ = rows;
    joined.device_ = first.device_;
    joined.kind_ = dense ? first.kind_ : LinearKind::quantized_matmul;
    if (first.bias_.defined())
      joined.bias_ = join([](const Linear& l) -> const Tensor& { return l.bias_; }, 0, first.bias_.dtype());
    if (dense) {
      joined.weight_ =
          join([](const Linear& l) -> const Tensor& { return l.weight_; }, first.in_features_, first.weight_.dtype());
    } else {
      cuda::W8A8WeightsDevice weights;
      weights.meta = first.matmul_->view();
      weights.meta.out_features = rows;
      if (cuda::w8a8_has_code_tables(weights.meta)) {  // indices and tables are row-major like the codes
        weights.code_indices = join([](const Linear& l) -> const Tensor& { return l.matmul_->code_indices; },
                                    first.in_features_ / 2, DType::u8);
        weights.code_tables = join([](const Linear& l) -> const Tensor& { return l.matmul_->code_tables; },
                                   first.matmul_->code_tables.numel() / first.out_features_, DType::i8);
        weights.meta.code_indices = static_cast<const std::uint8_t*>(weights.code_indices.data());
        weights.meta.code_tables = static_cast<const std::int8_t*>(weights.code_tables.data());
      } else {
        weights.codes = join([](const Linear& l) -> const Tensor& { return l.matmul_->codes; }, first.in_features_,
                             first.matmul_->codes.dtype());
      }
      weights.scale = join([](const Linear& l) -> const Tensor& { return l.matmul_->scale; }, 0, DType::f32);
      weights.meta.codes = weights.codes.defined() ? weights.codes.data() : nullptr;
      weights.meta.scale = static_cast<const float*>(weights.scale.data());
      weights.meta.svd_down = weights.meta.svd_up = nullptr;
      weights.meta.svd_rank_padded = 0;
      weights.meta.svd_part_count = 0;
      if (ranks > 0) join_svd(parts, rows, ranks, *svd_in_activation_dtype, weights);
      joined.matmul_ = std::move(weights);
      if (first.quantized_) {
        const cuda::GemvWeights& part = first.quantized_->gemv_weights()->meta;
        Tensor group_params =
            join([](const Linear& l) -> const Tensor& { return l.quantized_->gemv_weights()->group_params; },
                 part.in_features / part.group_size * 2, part.dtype);
        joined.quantized_ = stored_codes_gemv(*joined.matmul_, std::move(group_params), part.bits, part.is_signed,
                                              part.group_size, name, first.device_);
      }
    }
    for (Linear* part : parts) {
      part->weight_ = Tensor();
      part->bias_ = Tensor();
      part->matmul_.reset();
      part->quantized_.reset();
      part->joined_into_ = name;
    }
    return joined;
  }

  // The 8-bit GEMM's weights when forward() at `tokens` rows runs it (quantized matmul, ≥ 32 tokens), else null.
  const cuda::W8A8Weights* quantized_matmul_at(std::int64_t tokens) const {
    return matmul_ && tokens >= quantized_matmul_min_tokens ? &matmul_->view() : nullptr;
  }

  const std::string& name() const { return name_; }
  std::int64_t in_features() const { return in_features_; }
  std::int64_t out_features() const { return out_features_; }
  LinearKind kind() const { return kind_; }

 private:
  // The 8-bit GEMM's weights for a quantized-matmul layer, or nullopt where another kernel runs it:
  //   - int8 / float8_e4m3fn codes the reference uses directly (one scale per output, no zero point), as
  //     stored (float8_e5m2 and uint8 ones take the weight-only kernels);
  //   - with RequantizedMatmul::int8_at_load, layers the reference re-quantizes per call and signed packed
  //     codes (cuda::requantize_for_w8a8): the int8 operand once, 8 bits a weight on the device (or the
  //     e4m3 one for an fp8 product: re-quantized, or custom float values; code tables with int8 only).
  // An SVD branch only where gemm_w8a8 runs one (int8 on Hopper), else the weight-only kernels take it.
  static std::optional<cuda::W8A8WeightsHost> quantized_matmul_weights(const quant::QuantizedWeight& layer,
                                                                       const std::optional<detail::HostLinearCodes>& codes,
                                                                       RequantizedMatmul policy, int device) {
    const quant::LayerLayout& layout = layer.layout;
    if (!layout.use_quantized_matmul) return std::nullopt;
    const std::int64_t n = layout.original_shape[0], k = layout.original_shape[1];
    const bool svd = layer.svd_up.has_value() && layout.svd_rank > 0;
    if (svd && !cuda::gemm_w8a8_runs_svd(n, k, device)) return std::nullopt;
    if (codes && !layout.re_quantize_for_matmul && !codes->codes.zero_point && codes->codes.bits == 8 &&
        k % 16 == 0 &&
        (codes->codes.codes.dtype() == DType::i8 || (codes->codes.codes.dtype() == DType::f8_e4m3fn && !svd)))
      return cuda::repack_for_w8a8<bf16>(codes->codes, layout.dequantize_fp32);
    if ((policy == RequantizedMatmul::int8_at_load || policy == RequantizedMatmul::int8_tables_at_load) &&
        cuda::requantizes_for_w8a8(layer))
      return cuda::requantize_for_w8a8<bf16>(layer, policy == RequantizedMatmul::int8_tables_at_load
                                                        ? cuda::W8A8OperandStorage::code_tables_where_smaller
                                                        : cuda::W8A8OperandStorage::int8_codes);
    return std::nullopt;
  }

  // The GEMV over a table layer's stored 4-bit codes (`matmul`'s indices) with `group_params` (GEMV layout, on
  // the device), borrowing the indices and the zero-padded SVD factors from `matmul`, which must outlive it
  // (both are members of one Linear).
  static cuda::QuantizedLinear stored_codes_gemv(const cuda::W8A8WeightsDevice& matmul, Tensor group_params, int bits,
                                                 bool is_signed, std::int64_t group_size, const std::string& name,
                                                 int device) {
    const cuda::W8A8Weights& w = matmul.view();
    cuda::GemvWeightsDevice gemv;
    gemv.group_params = std::move(group_params);
    gemv.meta = cuda::GemvWeights{bits,
                                  is_signed,
                                  w.out_features,
                                  w.in_features,
                                  group_size,
                                  w.dtype,
                                  reinterpret_cast<const std::uint32_t*>(w.code_indices),
                                  gemv.group_params.data(),
                                  w.svd_rank_padded,
                                  w.svd_up,
                                  w.svd_down};
    return cuda::QuantizedLinear::adopt_gemv(std::move(gemv), name, device);
  }
  static cuda::QuantizedLinear stored_codes_gemv(const cuda::W8A8WeightsDevice& matmul, Tensor group_params,
                                                 const cuda::LinearCodes& codes, const std::string& name, int device) {
    return stored_codes_gemv(matmul, std::move(group_params), codes.bits,
                             codes.value == cuda::CodeValue::signed_integer,
                             codes.group_size > 0 ? codes.group_size : codes.in_features, name, device);
  }

  // The joined SVD factors of concatenate(): svd_down [Σ rp_i, K] (part after part) and a block-diagonal
  // svd_up [Σ N_i, Σ rp_i] in the activation dtype, every part's padded ranks kept (Σ rp_i stays a multiple
  // of 64), and the part table saying which ranks each column block reads (the parts' own tables shifted;
  // a part without a branch reads none). Above w8a8_max_svd_parts blocks there is no table: every output
  // then multiplies all Σ rp_i ranks, zeros included.
  static void join_svd(std::span<Linear* const> parts, std::int64_t rows, std::int64_t ranks, bool in_activation_dtype,
                       cuda::W8A8WeightsDevice& weights) {
    const Linear& first = *parts[0];
    const int device = first.device_;
    const std::int64_t k = first.in_features_;
    const DType dtype = first.matmul_->view().dtype;
    const std::size_t element = dtype_size(dtype);
    weights.svd_down = cuda::empty(Shape{ranks, k}, dtype, device);
    weights.svd_up = cuda::empty(Shape{rows, ranks}, dtype, device);
    SDNQ_CUDA_CHECK(cudaMemset(weights.svd_down.data(), 0, weights.svd_down.nbytes()));
    SDNQ_CUDA_CHECK(cudaMemset(weights.svd_up.data(), 0, weights.svd_up.nbytes()));
    std::int64_t rank_offset = 0, row_offset = 0;
    std::vector<cuda::kernel_detail::W8A8SvdPart> table;
    for (const Linear* part : parts) {
      const cuda::W8A8Weights& w = part->matmul_->view();
      const auto shifted = [&](std::int64_t column_end, std::int64_t rank_begin, std::int64_t rank) {
        table.push_back({static_cast<int>(row_offset + column_end), static_cast<int>(rank_offset + rank_begin),
                         static_cast<int>(rank)});
      };
      if (w.svd_rank_padded == 0)
        shifted(w.out_features, 0, 0);
      else if (w.svd_part_count == 0)
        shifted(w.out_features, 0, w.svd_rank_padded);
      for (int i = 0; i < w.svd_part_count; ++i)
        shifted(w.svd_parts[static_cast<std::size_t>(i)].column_end,
                w.svd_parts[static_cast<std::size_t>(i)].rank_begin, w.svd_parts[static_cast<std::size_t>(i)].rank);
      if (w.svd_rank_padded > 0) {
        SDNQ_CUDA_CHECK(cudaMemcpy(static_cast<std::byte*>(weights.svd_down.data()) + rank_offset * k * element,
                                   w.svd_down, static_cast<std::size_t>(w.svd_rank_padded * k) * element,
                                   cudaMemcpyDeviceToDevice));
        // Part rows [row_offset, + N_i), rank columns [rank_offset, + rp_i).
        SDNQ_CUDA_CHECK(cudaMemcpy2D(
            static_cast<std::byte*>(weights.svd_up.data()) + (row_offset * ranks + rank_offset) * element,
            static_cast<std::size_t>(ranks) * element, w.svd_up, static_cast<std::size_t>(w.svd_rank_padded) * element,
            static_cast<std::size_t>(w.svd_rank_padded) * element, static_cast<std::size_t>(w.out_features),
            cudaMemcpyDeviceToDevice));
      }
      rank_offset += w.svd_rank_padded;
      row_offset += w.out_features;
    }
    weights.meta.svd_down = weights.svd_down.data();
    weights.meta.svd_up = weights.svd_up.data();
    weights.meta.svd_rank_padded = ranks;
    weights.meta.svd_in_activation_dtype = in_activation_dtype;
    weights.meta.svd_part_count = 0;
    if (table.size() <= weights.meta.svd_parts.size()) {
      std::copy(table.begin(), table.end(), weights.meta.svd_parts.begin());
      weights.meta.svd_part_count = static_cast<int>(table.size());
    }
  }

  static std::size_t footprint_or_zero(std::size_t bytes) { return bytes == 0 ? 0 : Arena::footprint(bytes); }

  TensorView take_scratch(Arena& arena, std::size_t bytes, std::string_view purpose) const {
    if (bytes == 0) return TensorView();
    return arena.take(Shape{static_cast<std::int64_t>(bytes)}, DType::u8, name_ + ": " + std::string(purpose));
  }

  // Scratch for the int8 operand of weights held as code tables (0 for codes).
  std::size_t expanded_codes_bytes() const {
    return matmul_ ? footprint_or_zero(cuda::w8a8_expanded_codes_bytes(matmul_->view())) : 0;
  }

  // `held` itself, or for code tables its int8 operand expanded into scratch from `arena`.
  cuda::W8A8Weights expanded(const cuda::W8A8Weights& held, Arena& arena, cudaStream_t stream) const {
    const std::size_t bytes = cuda::w8a8_expanded_codes_bytes(held);
    if (bytes == 0) return held;
    const TensorView scratch = take_scratch(arena, bytes, "int8 operand expanded from its code tables");
    return cuda::expand_w8a8_codes(held, scratch.data(), bytes, stream, name_);
  }

  // Workspace of the 8-bit GEMM on codes: the SVD branch's down-projection, if any.
  std::size_t svd_workspace_bytes(std::int64_t tokens) const {
    return matmul_ ? footprint_or_zero(cuda::kernel_detail::plan_w8a8_svd(matmul_->view(), tokens).bytes) : 0;
  }

  // The 8-bit GEMM on codes quantized for `weights`, its SVD scratch (if any) from `arena`.
  void gemm_on_codes(const cuda::W8A8Weights& held, const cuda::W8A8Activations& codes, std::optional<TensorView> bias,
                     const TensorView& y, Arena& arena, cudaStream_t stream) const {
    const cuda::W8A8Weights weights = expanded(held, arena, stream);
    const TensorView scratch = take_scratch(arena, cuda::gemm_w8a8_workspace_bytes(weights, codes),
                                            "down-projection of the SVD branch");
    // gemm_w8a8 checks y and the codes before launching.
    cuda::gemm_w8a8(weights, codes, bias, y, scratch, stream);
  }

  std::string name_;
  std::int64_t in_features_ = 0, out_features_ = 0;
  int device_ = 0;
  LinearKind kind_ = LinearKind::dense;
  Tensor weight_;                                   // [N, K] bf16 on the device (dense and fallback)
  Tensor bias_;                                     // [N] bf16 on the device, or undefined
  // Every kernel-readable SDNQ layout; for a quantized-matmul layer whose code tables index its stored 4-bit
  // codes, the GEMV on those codes that runs below 32 tokens (borrowing matmul_'s indices and SVD factors).
  std::optional<cuda::QuantizedLinear> quantized_;
  std::optional<cuda::W8A8WeightsDevice> matmul_;   // int8 / e4m3 quantized matmul (direct or re-quantized)
  std::string joined_into_;                         // set when concatenate() took this layer's weights
};

namespace detail {

// The weights whose input quantization share_input() applies for `tokens` rows read by `readers`: the first
// reader's that runs the 8-bit GEMM, when at least one more reader runs it with the same quantization; else null.
inline const cuda::W8A8Weights* shared_quantization(std::span<const Linear* const> readers, std::int64_t tokens) {
  const cuda::W8A8Weights* first = nullptr;
  int sharing = 0;
  for (const Linear* reader : readers) {
    const cuda::W8A8Weights* weights = reader->quantized_matmul_at(tokens);
    if (weights == nullptr) continue;
    if (first == nullptr) first = weights;
    if (same_input_quantization(*first, *weights)) ++sharing;
  }
  return sharing >= 2 ? first : nullptr;
}

}  // namespace detail

// Arena bytes share_input() takes for `tokens` rows read by `readers` (0 when it quantizes nothing).
inline std::size_t shared_input_bytes(std::span<const Linear* const> readers, std::int64_t tokens) {
  const cuda::W8A8Weights* weights = detail::shared_quantization(readers, tokens);
  return weights == nullptr ? 0 : Arena::footprint(cuda::w8a8_activations_bytes(*weights, tokens));
}
inline std::size_t shared_input_bytes(std::initializer_list<const Linear*> readers, std::int64_t tokens) {
  return shared_input_bytes(std::span<const Linear* const>(readers.begin(), readers.size()), tokens);
}

// x [M, K] for the Linears in `readers`: when two or more of them run the 8-bit GEMM with one quantization of
// x, quantizes x once into `arena` (released with the caller's scope) so that each of their forwards skips it.
inline LinearInput share_input(const TensorView& x, std::span<const Linear* const> readers, Arena& arena,
                               cudaStream_t stream) {
  const cuda::W8A8Weights* weights = detail::shared_quantization(readers, x.size(0));
  if (weights == nullptr) return LinearInput(x);
  const std::size_t bytes = cuda::w8a8_activations_bytes(*weights, x.size(0));
  const TensorView buffer =
      arena.take(Shape{static_cast<std::int64_t>(bytes)}, DType::u8, "8-bit codes of rows shared by several Linears");
  return LinearInput(x, cuda::quantize_w8a8_activations(*weights, x, buffer, stream));
}
inline LinearInput share_input(const TensorView& x, std::initializer_list<const Linear*> readers, Arena& arena,
                               cudaStream_t stream) {
  return share_input(x, std::span<const Linear* const>(readers.begin(), readers.size()), arena, stream);
}

}  // namespace sdnq::nn::gpu
