// derive_layout against the worked examples of the format doc (§3.6, §6.1, §6.2).
#include <string>

#include "sdnq/quant/layout.hpp"
#include "sdnq_catch.hpp"

using sdnq::Shape;
using sdnq::quant::derive_layout;
using sdnq::quant::LayerKind;
using sdnq::quant::LayerOptions;

namespace {

LayerOptions options(const char* dtype, std::int64_t group_size = 0) {
  LayerOptions result;
  result.weights_type = &sdnq::format::storage_type(dtype);
  result.group_size = group_size;
  return result;
}

}  // namespace

TEST_CASE("§3.6 auto group sizes for a Linear with C = 3072", "[quant][layout]") {
  const Shape linear{3072, 3072};
  const auto group_of = [&](LayerOptions layer_options) {
    const auto layout = derive_layout(linear, LayerKind::linear, layer_options);
    return std::pair{layout.group_size, layout.num_groups};
  };
  CHECK(group_of(options("uint4")) == std::pair<std::int64_t, std::int64_t>{64, 48});
  auto svd = options("uint4");
  svd.use_svd = true;
  CHECK(group_of(svd) == std::pair<std::int64_t, std::int64_t>{128, 24});
  CHECK(group_of(options("int4")).first == 64);
  CHECK(group_of(options("uint2")).first == 16);
  CHECK(group_of(options("int8")) == std::pair<std::int64_t, std::int64_t>{1024, 3});
  CHECK(group_of(options("uint8")) == std::pair<std::int64_t, std::int64_t>{1024, 3});
  auto direct = options("int8");
  direct.use_quantized_matmul = true;
  CHECK(group_of(direct).first == -1);
  auto codebook = options("uint4");
  codebook.use_codebook = true;
  CHECK(group_of(codebook).first == 512);
}

TEST_CASE("§3.6 divisor search for a non-divisible channel count", "[quant][layout]") {
  const auto layout = derive_layout(Shape{64, 3000}, LayerKind::linear, options("int8", 128));
  CHECK(layout.group_size == 150);
  CHECK(layout.num_groups == 20);
  CHECK(layout.quantized_shape == Shape{64, 20, 150});
  CHECK(layout.scale_shape == Shape{64, 20, 1});
  CHECK(layout.result_shape == Shape{64, 3000});
  // a prime channel count has no divisor: one group, recorded row-wise
  const auto prime = derive_layout(Shape{64, 127}, LayerKind::linear, options("int8", 16));
  CHECK(prime.group_size == -1);
  CHECK(prime.num_groups == 1);
  CHECK(prime.scale_shape == Shape{64, 1});
  CHECK(prime.result_shape.rank() == 0);
}

TEST_CASE("§6.1 Conv2d and Embedding examples", "[quant][layout]") {
  const auto conv = derive_layout(Shape{128, 64, 3, 3}, LayerKind::conv2d, options("uint4"));
  CHECK(conv.group_size == 32);
  CHECK(conv.quantized_shape == Shape{128, 2, 32, 3, 3});
  CHECK(conv.stored_weight_shape == Shape{36864});
  CHECK(conv.scale_shape == Shape{128, 2, 1, 3, 3});
  CHECK(conv.has_zero_point);

  auto direct = options("int8");
  direct.use_quantized_matmul = true;
  const auto conv_qmm = derive_layout(Shape{128, 64, 3, 3}, LayerKind::conv2d, direct);
  CHECK(conv_qmm.transposed);
  CHECK(conv_qmm.stored_weight_shape == Shape{576, 128});
  CHECK(conv_qmm.scale_shape == Shape{1, 128});
  CHECK(conv_qmm.result_shape == Shape{128, 64, 3, 3});

  const auto embedding = derive_layout(Shape{1000, 256}, LayerKind::embedding, options("uint4"));
  CHECK(embedding.stored_weight_shape == Shape{128000});
  CHECK(embedding.scale_shape == Shape{1000, 8, 1});
  // embeddings never use quantized matmul
  auto embedding_qmm = options("int8");
  embedding_qmm.use_quantized_matmul = true;
  CHECK_FALSE(derive_layout(Shape{1000, 256}, LayerKind::embedding, embedding_qmm).transposed);
}

TEST_CASE("§6.2 worked examples for a [3072, 3072] Linear", "[quant][layout]") {
  auto svd = options("uint4");
  svd.use_svd = true;
  svd.svd_rank = 32;
  const auto a = derive_layout(Shape{3072, 3072}, LayerKind::linear, svd);
  CHECK(a.quantized_shape == Shape{3072, 24, 128});
  CHECK(a.stored_weight_shape == Shape{4718592});
  CHECK(a.scale_shape == Shape{3072, 24, 1});
  CHECK(a.svd_up_shape == Shape{3072, 32});
  CHECK(a.svd_down_shape == Shape{32, 3072});
  svd.use_quantized_matmul = true;
  const auto a_qmm = derive_layout(Shape{3072, 3072}, LayerKind::linear, svd);
  CHECK(a_qmm.stored_weight_shape == Shape{4718592});
  CHECK(a_qmm.scale_shape == Shape{3072, 24, 1});
  CHECK(a_qmm.svd_up_shape == Shape{32, 3072});
  CHECK(a_qmm.svd_down_shape == Shape{3072, 32});
  CHECK(a_qmm.re_quantize_for_matmul);
  CHECK_FALSE(a_qmm.transposed);

  const auto b = derive_layout(Shape{3072, 3072}, LayerKind::linear, options("int8"));
  CHECK(b.stored_weight_shape == Shape{3072, 3, 1024});
  CHECK(b.scale_shape == Shape{3072, 3, 1});
  CHECK_FALSE(b.has_zero_point);
  auto direct = options("int8");
  direct.use_quantized_matmul = true;
  const auto b_qmm = derive_layout(Shape{768, 3072}, LayerKind::linear, direct);
  CHECK(b_qmm.transposed);
  CHECK(b_qmm.stored_weight_shape == Shape{3072, 768});
  CHECK(b_qmm.scale_shape == Shape{1, 768});
  const auto b_plain = derive_layout(Shape{768, 3072}, LayerKind::linear, options("int8"));
  CHECK(b_plain.stored_weight_shape == Shape{768, 3, 1024});
}

TEST_CASE("§3.1 requant predicate and §3.2 gating", "[quant][layout]") {
  auto layout_of = [](const char* dtype, Shape shape, std::int64_t group_size = -1) {
    auto layer_options = options(dtype, group_size);
    layer_options.use_quantized_matmul = true;
    return derive_layout(shape, LayerKind::linear, layer_options);
  };
  CHECK_FALSE(layout_of("int4", Shape{64, 256}).re_quantize_for_matmul);  // direct, but packed: not transposed
  CHECK_FALSE(layout_of("int4", Shape{64, 256}).transposed);
  CHECK(layout_of("uint8", Shape{64, 256}).transposed);                  // uint8 matmul
  CHECK(layout_of("int9", Shape{64, 256}).re_quantize_for_matmul);        // more bits than int8
  CHECK(layout_of("float6_e3m2fn", Shape{64, 256}).matmul_type->name == "float8_e4m3fn");
  CHECK_FALSE(layout_of("float6_e3m2fn", Shape{64, 256}).re_quantize_for_matmul);
  CHECK(layout_of("float4_e2m2fnu", Shape{64, 256}).re_quantize_for_matmul);  // unsigned with a float matmul
  CHECK(layout_of("float8_e4m3fn_sdnq", Shape{64, 256}).re_quantize_for_matmul);  // max 480 > 448
  CHECK(layout_of("float8_e4m3fn", Shape{64, 256}).transposed);
  CHECK_FALSE(layout_of("int8", Shape{64, 24}).use_quantized_matmul);   // C < 32
  CHECK_FALSE(layout_of("int8", Shape{40, 256}).use_quantized_matmul);  // out % 16 != 0
  auto float_weights_int_matmul = options("float8_e4m3fn", -1);
  float_weights_int_matmul.use_quantized_matmul = true;
  float_weights_int_matmul.quantized_matmul_dtype = "int8";
  CHECK(derive_layout(Shape{64, 256}, LayerKind::linear, float_weights_int_matmul).re_quantize_for_matmul);
}

TEST_CASE("§3.5 the SVD rank is clamped to the smaller dimension of the 2-D view", "[quant][layout]") {
  auto svd = options("uint4");
  svd.use_svd = true;
  svd.svd_rank = 48;
  CHECK(derive_layout(Shape{64, 256}, LayerKind::linear, svd).svd_rank == 48);
  const auto clamped = derive_layout(Shape{32, 256}, LayerKind::linear, svd);
  CHECK(clamped.svd_rank == 32);
  CHECK(clamped.svd_up_shape == Shape{32, 32});
  CHECK(clamped.group_size == 128);  // the SVD term of the auto group size counts: 2^(1+4+1+1)
  // conv: the view is [out, C*k*k]; the reference fixtures store rank 3 for decoder.conv_out [3, 32, 3, 3]
  // quantized with svd_rank 8
  svd.svd_rank = 8;
  const auto conv_out = derive_layout(Shape{3, 32, 3, 3}, LayerKind::conv2d, svd);
  CHECK(conv_out.svd_rank == 3);
  CHECK(conv_out.svd_up_shape == Shape{3, 3});
  CHECK(conv_out.svd_down_shape == Shape{3, 288});
  CHECK(derive_layout(Shape{64, 8, 3, 3}, LayerKind::conv2d, svd).svd_rank == 8);
}

TEST_CASE("ConvTranspose grouping: square ones split axis 1, non-square ones cannot exist", "[quant][layout]") {
  const auto rowwise = derive_layout(Shape{64, 32, 4, 4}, LayerKind::conv_transpose2d, options("int8", -1));
  CHECK(rowwise.scale_shape == Shape{1, 32, 4, 4});
  const auto square = derive_layout(Shape{64, 64, 2, 2}, LayerKind::conv_transpose2d, options("int8", 32));
  CHECK(square.quantized_shape == Shape{64, 32, 2, 2, 2});
  CHECK(square.scale_shape == Shape{64, 1, 2, 2, 2});
  CHECK(square.reduction_axis == 1);
  CHECK_THROWS_AS(derive_layout(Shape{64, 32, 2, 2}, LayerKind::conv_transpose2d, options("int8", 32)),
                  sdnq::UnsupportedError);
}

TEST_CASE("tensor-wise, codebook and Hadamard layouts", "[quant][layout]") {
  const auto tensorwise = derive_layout(Shape{64, 256}, LayerKind::linear, options("uint4", -2));
  CHECK(tensorwise.scale_shape == Shape{1, 1});
  CHECK(tensorwise.reduction_axis == -1);
  auto codebook = options("uint2");
  codebook.use_codebook = true;
  const auto levels = derive_layout(Shape{64, 256}, LayerKind::linear, codebook);
  CHECK(levels.group_size == 128);  // 2^(1+2+1+3)
  CHECK(levels.scale_shape == Shape{64, 2, 4});
  CHECK_FALSE(levels.has_zero_point);
  codebook.group_size = -2;
  CHECK(derive_layout(Shape{64, 256}, LayerKind::linear, codebook).scale_shape == Shape{4});
  auto bad_codebook = options("int4");
  bad_codebook.use_codebook = true;
  CHECK_THROWS_AS(derive_layout(Shape{64, 256}, LayerKind::linear, bad_codebook), sdnq::ConfigError);
  auto hadamard = options("int4");
  hadamard.use_hadamard = true;
  hadamard.hadamard_group_size = 64;
  CHECK(derive_layout(Shape{64, 256}, LayerKind::linear, hadamard).hadamard_size == 64);
  CHECK(derive_layout(Shape{64, 96}, LayerKind::linear, hadamard).hadamard_size == 32);
}

TEST_CASE("derive_layout rejects shapes a layer kind cannot have", "[quant][layout]") {
  CHECK_THROWS_AS(derive_layout(Shape{64, 3, 3}, LayerKind::linear, options("int8")), sdnq::ShapeError);
  CHECK_THROWS_AS(derive_layout(Shape{64, 32}, LayerKind::conv2d, options("int8")), sdnq::ShapeError);
  CHECK_THROWS_AS(derive_layout(Shape{64, 0}, LayerKind::linear, options("int8")), sdnq::ShapeError);
  // 3 * 5 = 15 codes cannot fill 2-code uint4 blocks: the reference cannot store it
  CHECK_THROWS_AS(derive_layout(Shape{3, 5}, LayerKind::linear, options("uint4")), sdnq::UnsupportedError);
}
