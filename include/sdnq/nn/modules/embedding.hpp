#pragma once
// Embedding table lookup over a dense or SDNQ (quant_embedding) table, materialized as f32 at load.
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "sdnq/nn/tensor_ops.hpp"
#include "sdnq/nn/weights.hpp"
#include "sdnq/quant/dequantize.hpp"

namespace sdnq::nn {

// Token ids (I64 or I32 host tensor, any shape) as int64 values, in row-major order.
inline std::vector<std::int64_t> token_ids(const TensorView& ids, std::string_view what) {
  SDNQ_REQUIRE(ids.device().is_cpu() && (ids.dtype() == DType::i64 || ids.dtype() == DType::i32), ShapeError,
               "{}: ids must be a host I64 or I32 tensor, got {} {}", what, dtype_name(ids.dtype()),
               ids.shape().to_string());
  Tensor contiguous;
  TensorView source = ids;
  if (!ids.is_contiguous()) {
    contiguous = Tensor::empty(ids.shape(), ids.dtype());
    copy(contiguous, ids);
    source = contiguous.view();
  }
  std::vector<std::int64_t> values(static_cast<std::size_t>(ids.numel()));
  for (std::size_t i = 0; i < values.size(); ++i)
    values[i] = ids.dtype() == DType::i64 ? static_cast<const std::int64_t*>(source.data())[i]
                                          : static_cast<const std::int32_t*>(source.data())[i];
  return values;
}

class Embedding {
 public:
  static Embedding load(WeightLoader& weights, std::string_view prefix, std::int64_t num_embeddings, std::int64_t dim) {
    Embedding table;
    table.name_ = std::string(prefix);
    const Shape shape{num_embeddings, dim};
    if (auto quantized = weights.quantized(prefix, quant::LayerKind::embedding, shape))
      table.weight_ = quant::dequantize(*quantized, DType::f32, quant::ScalePrecision::reference_compatible);
    else
      table.weight_ = weights.dense(table.name_ + ".weight", shape);
    return table;
  }

  // ids (I64 or I32) [...] -> [..., dim]; an id outside the table is a ShapeError naming it.
  Tensor forward(const TensorView& ids) const {
    const std::vector<std::int64_t> values = token_ids(ids, "Embedding '" + name_ + "'");
    Shape shape = ids.shape();
    shape.push_back(dim());
    Tensor out = Tensor::empty(shape, DType::f32);
    const float* table = weight_.data_as<float>();
    for (std::int64_t i = 0; i < ids.numel(); ++i) {
      const std::int64_t id = values[static_cast<std::size_t>(i)];
      SDNQ_REQUIRE(id >= 0 && id < num_embeddings(), ShapeError,
                   "Embedding '{}': id {} at position {} is outside [0, {})", name_, id, i, num_embeddings());
      std::memcpy(out.data_as<float>() + i * dim(), table + id * dim(),
                  static_cast<std::size_t>(dim()) * sizeof(float));
    }
    return out;
  }

  std::int64_t num_embeddings() const { return weight_.size(0); }
  std::int64_t dim() const { return weight_.size(1); }
  const Tensor& table() const { return weight_; }  // [num_embeddings, dim] f32

 private:
  std::string name_;
  Tensor weight_;
};

}  // namespace sdnq::nn
