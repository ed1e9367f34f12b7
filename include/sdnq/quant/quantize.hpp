#pragma once
// The quantizer of one layer weight (§3.1–§3.10, `sdnq_quantize_layer_weight`): layout from
// derive_layout, then on an fp32 working copy: Hadamard rotation, SVD split, per-group scales with the
// reference's op order, rounding / clamping / encoding, packing and the direct-matmul transposition.
//
// Choices where the reference is undefined or random:
// - a constant group of an integer type gives 0/0 in the reference (undefined integer cast); here its
//   codes are 0, so it decodes to its zero point (unsigned) or to 0 (signed, the all-zero group);
// - non-finite weights are rejected (FormatError naming the layer) instead of producing NaN scales;
// - SVD factors come from a seeded randomized SVD (the reference's are random, never reproducible);
// - stochastic rounding follows the reference's rules with seeded, per-element draws
//   (detail/write_stochastic.hpp): reproducible for a seed, never equal to the reference's own draws.
// float8_e4m3fnuz / e5m2fnuz weights are U8 tensors holding torch's codes (DType has no entry for
// them; the safetensors header names them through stored_safetensors_dtype), float8_e8m0fnu weights
// F8_E8M0 with torch's rounding and its dropped sign, exactly what the reference writes.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sdnq/core/error.hpp"
#include "sdnq/core/parallel.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/format/custom_float.hpp"
#include "sdnq/format/packing.hpp"
#include "sdnq/quant/codebook.hpp"
#include "sdnq/quant/dequantize.hpp"
#include "sdnq/quant/detail/read_decode.hpp"
#include "sdnq/quant/detail/write_quantize_steps.hpp"
#include "sdnq/quant/hadamard.hpp"
#include "sdnq/quant/layout.hpp"

namespace sdnq::quant {

// Owning result; the tensors are stored under <layer>.weight / .scale / .zero_point / .svd_up / .svd_down.
struct QuantizedTensors {
  LayerLayout layout;
  Tensor weight, scale;
  std::optional<Tensor> zero_point, svd_up, svd_down;
  std::string name = "layer";

  QuantizedWeight view() const {
    QuantizedWeight result{layout, weight.view(), scale.view(), std::nullopt, std::nullopt, std::nullopt, name};
    if (zero_point) result.zero_point = zero_point->view();
    if (svd_up) result.svd_up = svd_up->view();
    if (svd_down) result.svd_down = svd_down->view();
    return result;
  }
};

// Settings of the quantizing machine and call that the options do not carry.
struct QuantizeControls {
  std::string_view layer_name = "layer";  // parameter prefix, for error messages
  std::uint64_t seed = 0;                 // randomized SVD
  // The reference's process-global `use_tensorwise_fp8_matmul` (§3.3): true on CPUs, GPUs below sm_90
  // and with the Triton kernels — the machine the reference fixtures were written on.
  bool tensorwise_fp8_matmul = true;
};

// The weight after Hadamard rotation and SVD split: what every candidate dtype of dynamic
// quantization starts from (§3.11 applies both once).
struct PreparedWeight {
  Shape shape;                // original shape
  std::vector<float> values;  // fp32, C order
  int hadamard_size = 0;
  std::optional<Tensor> svd_up, svd_down;  // model dtype, [rows, rank] and [rank, cols] (not yet oriented)
};

// The dtype name to write in the safetensors header for a layer's stored weight: "F8_E4M3FNUZ" /
// "F8_E5M2FNUZ" for the fnuz floats (stored as U8 bytes), empty (the tensor's own dtype) otherwise.
inline std::string stored_safetensors_dtype(const format::StorageType& type) {
  if (type.name == "float8_e4m3fnuz") return "F8_E4M3FNUZ";
  if (type.name == "float8_e5m2fnuz") return "F8_E5M2FNUZ";
  return {};
}

namespace detail {

inline void require_quantizable_input(TensorView weight, DType model_dtype, const LayerOptions& options,
                                      std::string_view name) {
  SDNQ_REQUIRE(weight.device().is_cpu(), ShapeError, "{}: the CPU quantizer needs a host weight, got {}", name,
               weight.device().to_string());
  const DType dtype = weight.dtype();
  SDNQ_REQUIRE(dtype == DType::f32 || dtype == DType::bf16 || dtype == DType::f16, UnsupportedError,
               "{}: weight dtype {} cannot be quantized (F32, BF16 or F16)", name, dtype_name(dtype));
  SDNQ_REQUIRE(model_dtype == DType::f32 || model_dtype == DType::bf16 || model_dtype == DType::f16, UnsupportedError,
               "{}: model dtype {} is not supported (F32, BF16 or F16)", name, dtype_name(model_dtype));
  SDNQ_REQUIRE(options.weights_type != nullptr, ConfigError, "{}: LayerOptions.weights_type is not set", name);
}

// Re-throws the active sdnq exception with the layer name in front, keeping its type.
[[noreturn]] inline void rethrow_with_layer(std::string_view name) {
  try {
    throw;
  } catch (const ShapeError& error) {
    throw ShapeError(fmt::format("{}: {}", name, error.what()));
  } catch (const ConfigError& error) {
    throw ConfigError(fmt::format("{}: {}", name, error.what()));
  } catch (const UnsupportedError& error) {
    throw UnsupportedError(fmt::format("{}: {}", name, error.what()));
  } catch (const FormatError& error) {
    throw FormatError(fmt::format("{}: {}", name, error.what()));
  }
}

// Integer (or codebook index) q -> the code handed to the packer.
inline std::uint16_t packer_code(std::int64_t q, const format::StorageType& type) {
  return static_cast<std::uint16_t>(type.is_unsigned ? q : q - static_cast<std::int64_t>(type.min));
}

// format::pack_codes over chunks of whole pack blocks on the thread pool: the blocks are independent,
// so the bytes are the same.
inline void pack_codes_in_parallel(int bits, std::span<const std::uint16_t> codes, void* out) {
  const auto numel = static_cast<std::int64_t>(codes.size());
  format::require_packable_numel(bits, numel);
  const std::int64_t block = format::pack_block_size(bits), words = format::pack_block_words(bits);
  const auto word_bytes = static_cast<std::int64_t>(dtype_size(format::packed_dtype(bits)));
  auto* bytes = static_cast<std::uint8_t*>(out);
  format::detail::dispatch_packed_width(bits, [&](auto width) {
    parallel_for(0, numel / block, std::max<std::int64_t>(1, (1 << 14) / block),
                 [&](std::int64_t begin, std::int64_t end) {
                   format::pack<width()>(codes.subspan(begin * block, (end - begin) * block),
                                         bytes + begin * words * word_bytes);
                 });
  });
}

// Writes the codes of `grouped` (untransposed C order) into the stored weight tensor.
template <class CodeOf>
Tensor store_codes(const LayerLayout& layout, std::int64_t numel, CodeOf&& code_of) {
  const format::StorageType& type = *layout.weights_type;
  if (type.uses_bit_packer()) {
    std::vector<std::uint16_t> codes(static_cast<std::size_t>(numel));
    parallel_for(0, numel, 1 << 16, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t e = begin; e < end; ++e) codes[e] = static_cast<std::uint16_t>(code_of(e));
    });
    Tensor packed = Tensor::empty(layout.stored_weight_shape, format::packed_dtype(type.bits));
    pack_codes_in_parallel(type.bits, codes, packed.data());
    return packed;
  }
  Tensor stored = Tensor::empty(layout.quantized_shape, type.stored_dtype);
  const std::int64_t rows = layout.transposed ? layout.quantized_shape[1] : 0;  // grouped [rows, cols]
  const std::int64_t cols = layout.transposed ? layout.quantized_shape[0] : 0;
  parallel_for(0, numel, 1 << 16, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t e = begin; e < end; ++e) {
      const std::int64_t target = layout.transposed ? (e % cols) * rows + e / cols : e;
      code_of.store(stored, target, e);
    }
  });
  return stored;
}

}  // namespace detail

// Steps §3.4 and §3.5: the fp32 working copy, rotated, with the low-rank part split off.
inline PreparedWeight prepare_weight(TensorView weight, const LayerLayout& layout, const LayerOptions& options,
                                     DType model_dtype, const QuantizeControls& controls) {
  PreparedWeight prepared;
  prepared.shape = weight.shape();
  prepared.values.resize(static_cast<std::size_t>(weight.numel()));
  Tensor contiguous;
  TensorView source = weight;
  if (!weight.is_contiguous()) {
    contiguous = Tensor::empty(weight.shape(), weight.dtype());
    copy(contiguous, weight);
    source = contiguous.view();
  }
  // Widen in parallel (the input dtype is F32, BF16 or F16), then name the first non-finite value if any.
  std::atomic<bool> all_finite{true};
  parallel_for(0, weight.numel(), 1 << 16, [&](std::int64_t begin, std::int64_t end) {
    float* out = prepared.values.data();
    switch (source.dtype()) {
      case DType::bf16:
        for (std::int64_t i = begin; i < end; ++i) out[i] = source.data_as<bf16>()[i].to_float();
        break;
      case DType::f16:
        for (std::int64_t i = begin; i < end; ++i) out[i] = source.data_as<fp16>()[i].to_float();
        break;
      default:
        for (std::int64_t i = begin; i < end; ++i)
          out[i] = static_cast<float>(detail::load_float_from(source.dtype(), source.data(), i));
    }
    bool finite = true;
    for (std::int64_t i = begin; i < end; ++i) finite &= std::isfinite(out[i]);
    if (!finite) all_finite.store(false);
  });
  if (!all_finite.load())
    for (std::int64_t i = 0; i < weight.numel(); ++i) {
      const double value = detail::load_float_from(source.dtype(), source.data(), i);
      SDNQ_REQUIRE(std::isfinite(value), FormatError, "{}: weight {} has a non-finite value ({}) at flat index {}",
                   controls.layer_name, weight.shape().to_string(), value, i);
    }
  prepared.hadamard_size = layout.hadamard_size;
  if (layout.hadamard_size != 0)
    rotate_hadamard(TensorView(prepared.values.data(), DType::f32, prepared.shape), layout.hadamard_size);
  if (layout.svd_rank > 0) {
    const std::int64_t rows = prepared.shape[0], cols = prepared.shape.numel() / rows;
    auto split = detail::split_low_rank(prepared.values, rows, cols, layout.svd_rank, options.svd_steps, model_dtype,
                                        controls.seed);
    prepared.svd_up = std::move(split.up);
    prepared.svd_down = std::move(split.down);
  }
  return prepared;
}

// Steps §3.6–§3.10 on a prepared weight: scales, codes, packing, transposition (SVD factors copied).
inline QuantizedTensors quantize_prepared(const PreparedWeight& prepared, const LayerLayout& layout,
                                          const LayerOptions& options, DType model_dtype,
                                          const QuantizeControls& controls) {
  const format::StorageType& type = *layout.weights_type;
  const std::vector<float>& values = prepared.values;
  const std::int64_t numel = static_cast<std::int64_t>(values.size());
  const detail::SliceGeometry geometry = detail::slice_geometry(layout);
  const std::optional<DType> scale_dtype =
      detail::scale_dtype_for(layout, options.dequantize_fp32, model_dtype, controls.tensorwise_fp8_matmul);
  const DType stored_scale_dtype = scale_dtype.value_or(DType::f32);

  QuantizedTensors result;
  result.layout = layout;
  result.name = std::string(controls.layer_name);
  if (prepared.svd_up) {
    result.svd_up = detail::oriented_factor(*prepared.svd_up, layout.use_quantized_matmul);
    result.svd_down = detail::oriented_factor(*prepared.svd_down, layout.use_quantized_matmul);
    SDNQ_REQUIRE(result.svd_up->shape() == layout.svd_up_shape && result.svd_down->shape() == layout.svd_down_shape,
                 ShapeError, "{}: SVD factors {} / {} do not match the layout's {} / {}", controls.layer_name,
                 result.svd_up->shape().to_string(), result.svd_down->shape().to_string(),
                 layout.svd_up_shape.to_string(), layout.svd_down_shape.to_string());
  }

  if (layout.use_codebook) {
    const std::int64_t level_count = layout.levels();
    const detail::SliceGeometry level_geometry{geometry.outer, level_count, geometry.inner};
    std::vector<std::uint16_t> indices(static_cast<std::size_t>(numel));
    result.scale = Tensor::empty(layout.scale_shape, stored_scale_dtype);
    // Each slice's codebook is its own Lloyd-Max run: slices in parallel, the same bits.
    parallel_for(0, geometry.slices(), std::max<std::int64_t>(1, (1 << 12) / geometry.length),
                 [&](std::int64_t slice_begin, std::int64_t slice_end) {
                   std::vector<float> row(static_cast<std::size_t>(geometry.length));
                   std::vector<float> levels(static_cast<std::size_t>(level_count));
                   std::vector<std::uint16_t> row_indices(row.size());
                   for (std::int64_t s = slice_begin; s < slice_end; ++s) {
                     for (std::int64_t l = 0; l < geometry.length; ++l) row[l] = values[geometry.element(s, l)];
                     lloyd_max_codebook(row, options.codebook_steps, levels, row_indices);
                     for (std::int64_t l = 0; l < geometry.length; ++l)
                       indices[geometry.element(s, l)] = row_indices[l];
                     for (std::int64_t l = 0; l < level_count; ++l)
                       detail::store_float_as(stored_scale_dtype, result.scale.data(), level_geometry.element(s, l),
                                              levels[l]);
                   }
                 });
    struct IndexCodes {
      const std::vector<std::uint16_t>& indices;
      std::uint16_t operator()(std::int64_t e) const { return indices[e]; }
      void store(Tensor& stored, std::int64_t target, std::int64_t e) const {
        static_cast<std::uint8_t*>(stored.data())[target] = static_cast<std::uint8_t>(indices[e]);  // uint8 only
      }
    };
    SDNQ_REQUIRE(type.uses_bit_packer() || type.stored_dtype == DType::u8, UnsupportedError,
                 "{}: codebook quantization stores {} only up to 8 bits", controls.layer_name, type.name);
    result.weight = detail::store_codes(layout, numel, IndexCodes{indices});
    return result;
  }

  const detail::SliceScales scales = detail::compute_scales(values, geometry, type, scale_dtype);
  std::optional<detail::StochasticRounding> stochastic;
  if (options.use_stochastic_rounding) stochastic.emplace(controls.seed, controls.layer_name);
  // q of every element, C order of the grouped (untransposed) tensor
  std::vector<float> quantized(static_cast<std::size_t>(numel));
  parallel_for(0, geometry.slices(), std::max<std::int64_t>(1, (1 << 14) / geometry.length),
               [&](std::int64_t slice_begin, std::int64_t slice_end) {
                 for (std::int64_t s = slice_begin; s < slice_end; ++s) {
                   const float* zero_point = type.is_unsigned ? &scales.zero_point[s] : nullptr;
                   for (std::int64_t l = 0; l < geometry.length; ++l) {
                     const std::int64_t e = geometry.element(s, l);
                     quantized[e] = detail::quantized_value(values[e], scales.scale[s], zero_point, type,
                                                            stochastic ? &*stochastic : nullptr, e);
                   }
                 }
               });
  result.scale = Tensor::empty(layout.scale_shape, stored_scale_dtype);
  for (std::size_t s = 0; s < scales.scale.size(); ++s)
    detail::store_float_as(stored_scale_dtype, result.scale.data(), static_cast<std::int64_t>(s), scales.scale[s]);
  if (type.is_unsigned) {
    result.zero_point = Tensor::empty(layout.scale_shape, stored_scale_dtype);
    for (std::size_t s = 0; s < scales.zero_point.size(); ++s)
      detail::store_float_as(stored_scale_dtype, result.zero_point->data(), static_cast<std::int64_t>(s),
                             scales.zero_point[s]);
  }

  struct ValueCodes {
    const std::vector<float>& quantized;
    const format::StorageType& type;
    std::uint32_t operator()(std::int64_t e) const {
      if (type.is_custom_float())
        return format::encode_custom_float(format::custom_float_of(type), quantized[e]);
      return detail::packer_code(detail::integer_of(quantized[e], type), type);
    }
    void store(Tensor& stored, std::int64_t target, std::int64_t e) const {
      const float q = quantized[e];
      void* data = stored.data();
      if (type.is_custom_float()) {  // 8 / 16-bit custom floats: the raw code
        const std::uint32_t code = (*this)(e);
        if (type.bits == 8)
          static_cast<std::uint8_t*>(data)[target] = static_cast<std::uint8_t>(code);
        else
          static_cast<std::uint16_t*>(data)[target] = static_cast<std::uint16_t>(code);
        return;
      }
      if (detail::is_fnuz_type(type)) {
        static_cast<std::uint8_t*>(data)[target] = detail::encode_fnuz_byte(q, type.exponent, type.mantissa);
        return;
      }
      if (type.stored_dtype == DType::f8_e8m0) {
        static_cast<std::uint8_t*>(data)[target] = detail::encode_e8m0_byte(q);
        return;
      }
      if (!type.is_integer) return detail::store_float_as(type.stored_dtype, data, target, q);
      const std::int64_t integer = detail::integer_of(q, type);
      switch (type.stored_dtype) {
        case DType::i8: static_cast<std::int8_t*>(data)[target] = static_cast<std::int8_t>(integer); return;
        case DType::u8: static_cast<std::uint8_t*>(data)[target] = static_cast<std::uint8_t>(integer); return;
        case DType::i16: static_cast<std::int16_t*>(data)[target] = static_cast<std::int16_t>(integer); return;
        case DType::u16: static_cast<std::uint16_t*>(data)[target] = static_cast<std::uint16_t>(integer); return;
        case DType::i32: static_cast<std::int32_t*>(data)[target] = static_cast<std::int32_t>(integer); return;
        case DType::u32: static_cast<std::uint32_t*>(data)[target] = static_cast<std::uint32_t>(integer); return;
        default: break;
      }
      throw UnsupportedError(fmt::format("no integer store for {} codes", dtype_name(type.stored_dtype)));
    }
  };
  result.weight = detail::store_codes(layout, numel, ValueCodes{quantized, type});
  return result;
}

// Quantizes one weight (PyTorch layout: Linear [out, in], ConvNd [out, in/groups, *k], ConvTransposeNd
// [in, out/groups, *k], Embedding [num, dim]) as the reference does when loading a model with an
// SDNQConfig: the weight widened to fp32, `model_dtype` the model's torch_dtype.
inline QuantizedTensors quantize_weight(TensorView weight, LayerKind kind, const LayerOptions& options,
                                        DType model_dtype, const QuantizeControls& controls) {
  detail::require_quantizable_input(weight, model_dtype, options, controls.layer_name);
  LayerLayout layout;
  try {
    layout = derive_layout(weight.shape(), kind, options);
  } catch (const Error&) {
    detail::rethrow_with_layer(controls.layer_name);
  }
  const PreparedWeight prepared = prepare_weight(weight, layout, options, model_dtype, controls);
  return quantize_prepared(prepared, layout, options, model_dtype, controls);
}

inline QuantizedTensors quantize_weight(TensorView weight, LayerKind kind, const LayerOptions& options,
                                        DType model_dtype, std::uint64_t seed = 0) {
  QuantizeControls controls;
  controls.seed = seed;
  return quantize_weight(weight, kind, options, model_dtype, controls);
}

}  // namespace sdnq::quant
