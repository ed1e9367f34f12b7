// GPU models against the reference fixtures' bf16 outputs (fixtures/sdnq-reference/models/, README:
// bf16 compute within relative L2 3e-2), and their bad-input errors.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "cuda_test_support.hpp"
#include "fixture_paths.hpp"
#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/repack.hpp"
#include "sdnq/format/storage_type.hpp"
#include "sdnq/nn/gpu/detail/device_weights.hpp"
#include "sdnq/nn/weights.hpp"
#include "sdnq/quant/layer_options.hpp"
#include "sdnq/quant/quantize.hpp"
#include "sdnq_catch.hpp"
#include "test_gpu_models_support.hpp"

namespace {

namespace fs = std::filesystem;
using sdnq::DType;
using sdnq::Shape;
using sdnq::Tensor;

constexpr double bf16_tolerance = 3e-2;  // fixture README, "models"

void check_clip_cases(const std::string& prefix, const std::string& pooled_output) {
  const std::vector<fs::path> cases = sdnq::test::model_fixture_cases(prefix);
  if (cases.empty()) {
    WARN("no " << prefix << "* fixture cases under " << (sdnq::test::reference_fixtures_dir() / "models").string() << " (../shared absent): skipped");
    return;
  }
  CHECK(cases.size() == 5);  // bf16, fp8, int8, int8-qmm, uint4-svd
  for (const fs::path& folder : cases) {
    INFO(folder.filename().string());
    const sdnq::test::GpuModelRun run = sdnq::test::run_clip_case_on_gpu(folder);
    std::string kinds;
    for (const auto& kind : run.linear_kinds) kinds += kind + " ";
    INFO("Linear kinds: " << kinds);
    INFO("workspace " << run.workspace_bytes << " bytes, peak " << run.workspace_peak);
    CHECK(run.workspace_peak <= run.workspace_bytes);
    REQUIRE(run.outputs.size() == 3);
    std::vector<std::string> names;
    for (const auto& output : run.outputs) {
      INFO(output.name << " rel L2 " << output.rel_l2);
      names.push_back(output.name);
      // clip_g-uint4-svd reached 3.34e-2 while the GPU rounded its uint4 zero points to bf16; re-centred as
      // transformers' fp32 parameters allow, it is at 1.22e-2 (H100, session 8): every case within 3e-2.
      CHECK(output.rel_l2 <= bf16_tolerance);
      WARN(folder.filename().string() << " " << output.name << " rel L2 " << output.rel_l2);
    }
    CHECK(std::find(names.begin(), names.end(), pooled_output) != names.end());
    CHECK(std::find(names.begin(), names.end(), "last_hidden_state") != names.end());
    CHECK(std::find(names.begin(), names.end(), "penultimate_hidden_state") != names.end());
    const bool quantized = folder.filename().string().find("bf16") == std::string::npos;
    const bool any_quantized_kind = std::any_of(run.linear_kinds.begin(), run.linear_kinds.end(),
                                                [](const std::string& kind) { return kind != "dense"; });
    CHECK(any_quantized_kind == quantized);
  }
}

// A scale or zero point of a LinearCodes as a float (F32, BF16 or F16).
float parameter_value(const sdnq::TensorView& view, std::int64_t index) {
  switch (view.dtype()) {
    case DType::f32:
      return static_cast<const float*>(view.data())[index];
    case DType::bf16:
      return static_cast<const sdnq::bf16*>(view.data())[index].to_float();
    default:
      return static_cast<const sdnq::fp16*>(view.data())[index].to_float();
  }
}

// The weight a LinearCodes describes, decoded here from the GEMV repack (integer codes: unpacked words,
// (q − offset)·scale + zero_point, plus svd_up·svd_down) or from the lookup table (float codes: raw bytes,
// or unpacked by the packer's rule for narrower custom floats; table[code]·scale + zero_point).
Tensor reconstruct(const sdnq::cuda::LinearCodes& codes) {
  const std::int64_t n = codes.out_features, k = codes.in_features;
  Tensor weight = Tensor::empty(Shape{n, k}, DType::f32);
  if (codes.value == sdnq::cuda::CodeValue::lookup) {
    std::vector<std::uint8_t> code_of;  // the packer's order, as the kernels unpack it (raw bytes at 8 bits)
    sdnq::cuda::detail::unpack_all_codes(codes, code_of);
    const auto* table = static_cast<const float*>(codes.lookup_table->data());
    const std::int64_t group = codes.group_size > 0 ? codes.group_size : k;
    for (std::int64_t o = 0; o < n; ++o)
      for (std::int64_t c = 0; c < k; ++c) {
        const std::int64_t index = codes.group_size == -2 ? 0 : o * (k / group) + c / group;
        const float scale = parameter_value(codes.scale, index);
        const float zero = codes.zero_point ? parameter_value(*codes.zero_point, index) : 0.0f;
        weight.data_as<float>()[o * k + c] = std::fma(table[code_of[static_cast<std::size_t>(o * k + c)]], scale, zero);
      }
    return weight;
  }
  const sdnq::cuda::GemvWeightsHost g = sdnq::cuda::repack_for_gemv<sdnq::bf16>(codes);
  const std::int64_t groups = k / g.group_size, rank = codes.svd_rank();
  for (std::int64_t o = 0; o < n; ++o)
    for (std::int64_t c = 0; c < k; ++c) {
      const std::uint32_t* chunk = g.codes.data_as<std::uint32_t>() + (o * (k / 32) + c / 32) * g.bits;
      const std::uint64_t bit = static_cast<std::uint64_t>(c % 32) * static_cast<std::uint64_t>(g.bits);
      std::uint64_t word = chunk[bit / 32];
      if (bit % 32 + static_cast<std::uint64_t>(g.bits) > 32)
        word |= static_cast<std::uint64_t>(chunk[bit / 32 + 1]) << 32;
      const auto code = static_cast<float>((word >> (bit % 32)) & ((1u << g.bits) - 1));
      const float q = code - (g.is_signed ? static_cast<float>(1 << (g.bits - 1)) : 0.0f);
      const sdnq::bf16* params = g.group_params.data_as<sdnq::bf16>() + (o * groups + c / g.group_size) * 2;
      float value = q * params[0].to_float() + params[1].to_float();
      for (std::int64_t r = 0; r < rank; ++r)
        value += g.svd_up.data_as<sdnq::bf16>()[o * rank + r].to_float() *
                 g.svd_down.data_as<sdnq::bf16>()[r * k + c].to_float();
      weight.data_as<float>()[o * k + c] = value;
    }
  return weight;
}

double relative_difference(const Tensor& actual, const Tensor& expected) {
  double difference = 0.0, norm = 0.0;
  for (std::int64_t i = 0; i < expected.numel(); ++i) {
    const double d = static_cast<double>(actual.data_as<float>()[i]) - expected.data_as<float>()[i];
    difference += d * d;
    norm += static_cast<double>(expected.data_as<float>()[i]) * expected.data_as<float>()[i];
  }
  return std::sqrt(difference / norm);
}

Tensor ids_of(Shape shape, std::int64_t value) {
  Tensor ids = Tensor::empty(shape, DType::i64);
  for (std::int64_t i = 0; i < ids.numel(); ++i) ids.data_as<std::int64_t>()[i] = value + i % 7;
  return ids;
}

}  // namespace

TEST_CASE("gpu CLIPTextModel (clip_l) matches the reference bf16 outputs", "[cuda][gpu_models]") {
  check_clip_cases("clip_l-", "pooled");
}

TEST_CASE("gpu CLIPTextModelWithProjection (clip_g) matches the reference bf16 outputs", "[cuda][gpu_models]") {
  check_clip_cases("clip_g-", "text_embeds");
}

TEST_CASE("gpu CLIP: quantized-matmul layers at 48 rows (gemm_w8a8) match the CPU float32 model",
          "[cuda][gpu_models]") {
  // The fixture inputs have 24 rows, below the 32 where SDNQ's quantized matmul starts; four copies of
  // the batch take the 8-bit GEMM. The CPU float32 model runs the reference quantized matmul there too.
  std::vector<fs::path> cases = sdnq::test::model_fixture_cases("clip_l-int8-qmm");
  const std::vector<fs::path> g_cases = sdnq::test::model_fixture_cases("clip_g-int8-qmm");
  cases.insert(cases.end(), g_cases.begin(), g_cases.end());
  if (cases.empty()) {
    WARN("no *-int8-qmm fixture cases under " << (sdnq::test::reference_fixtures_dir() / "models").string() << ": skipped");
    return;
  }
  for (const fs::path& folder : cases) {
    INFO(folder.filename().string());
    const sdnq::test::GpuModelRun run = sdnq::test::compare_clip_with_cpu(folder, 4);
    CHECK(std::count(run.linear_kinds.begin(), run.linear_kinds.end(), "quantized_matmul") >= 12);
    for (const auto& output : run.outputs) {
      INFO(output.name << " rel L2 against the CPU model " << output.rel_l2);
      WARN(folder.filename().string() << " x4 " << output.name << " rel L2 vs CPU f32 " << output.rel_l2);
      CHECK(output.rel_l2 <= bf16_tolerance);
    }
  }
}

TEST_CASE("gpu Linear: rows quantized once by share_input give the bits of per-layer quantization",
          "[cuda][gpu_models]") {
  // 48 rows take the 8-bit GEMM: the three int8 layers share one quantization only where it fits (the third
  // computes its activation scales in bf16, so it quantizes x itself; so does the uint4 layer's dense path).
  // 16 rows run the dequantized path: nothing is quantized up front.
  for (const std::int64_t tokens : {48, 300, 16}) {
    INFO("tokens " << tokens);
    const sdnq::test::SharedInputRun run = sdnq::test::compare_shared_input(tokens);
    CHECK(run.quantized_once == (tokens >= 32));
    CHECK((run.shared_bytes > 0) == (tokens >= 32));
    REQUIRE(run.identical.size() == 4);
    for (std::size_t i = 0; i < run.identical.size(); ++i) {
      INFO("layer " << i << " rel L2 vs CPU " << run.rel_l2_to_cpu[i]);
      CHECK(run.identical[i]);
      CHECK(run.rel_l2_to_cpu[i] <= bf16_tolerance);
    }
  }
}

TEST_CASE(
    "gpu Linear: quantized-matmul layers the reference re-quantizes run W4A8 (or e4m3) with int8_at_load (as "
    "int8 codes or code tables), weight-only by default",
    "[cuda][gpu_models][w8a8]") {
  // Layers: uint4 g64 + SVD r32, uint4 g64, int8 + SVD r16, int4 row-wise, float8_e5m2, uint4 row-wise, and
  // with an e4m3 product float4_e2m1fn row-wise (its values used directly) and uint4 g64 (re-quantized).
  using sdnq::nn::RequantizedMatmul;
  constexpr std::size_t uint4_g64_svd = 0, uint4_g64 = 1, int8_svd = 2, int4_rows = 3, e5m2 = 4, uint4_rows = 5,
                        e2m1_fp8 = 6, uint4_fp8 = 7;
  const auto policy_name = [](RequantizedMatmul policy) {
    return policy == RequantizedMatmul::int8_at_load          ? "int8_at_load"
           : policy == RequantizedMatmul::int8_tables_at_load ? "int8_tables_at_load"
                                                              : "stored_codes";
  };
  for (const std::int64_t tokens : {300, 48, 16, 4}) {
    std::optional<sdnq::test::RequantizedLinearRun> int8_codes;  // the int8_at_load run, for the tables
    for (const RequantizedMatmul policy :
         {RequantizedMatmul::int8_at_load, RequantizedMatmul::int8_tables_at_load, RequantizedMatmul::stored_codes}) {
      INFO(policy_name(policy) << ", tokens " << tokens);
      const bool at_load = policy != RequantizedMatmul::stored_codes;
      sdnq::test::RequantizedLinearRun run = sdnq::test::compare_requantized_linears(tokens, policy);
      REQUIRE(run.kinds.size() == 8);
      CHECK(run.re_quantized_by_reference[uint4_g64]);  // grouped: re-quantized per call by the reference
      CHECK(run.peak <= run.workspace_bytes);
      for (std::size_t i = 0; i < run.kinds.size(); ++i) {
        INFO(run.names[i] << ": " << run.kinds[i] << ", rel L2 vs CPU " << run.rel_l2_to_cpu[i] << ", "
                          << run.device_bytes[i] << " device bytes");
        // The 8-bit GEMM takes int8 codes used directly, and at load what the reference re-quantizes or
        // reads as signed packed codes (int8) or as e4m3 values; an SVD branch only where gemm_w8a8 runs
        // one. float8_e5m2 (no e4m3 x e5m2 GEMM here) and uint4 with a zero point stay weight-only.
        bool matmul = i == int8_svd || (at_load && i != e5m2 && i != uint4_rows);
        if (run.svd[i] && !run.svd_runs_here) matmul = false;
        // Weight-only, custom float codes stay codes too (read through a lookup table).
        CHECK(run.kinds[i] == (matmul ? "quantized_matmul" : "quantized"));
        CHECK(run.identical[i]);
        // From 32 tokens the CPU model quantizes x like the reference: to e4m3 for the e4m3 products
        // (steps of 2^-3 relative), which the GPU's weight-only kernels do not.
        // A weight re-quantized to e4m3 (uint4_fp8) is that operand exactly in a bf16 model (the host
        // test of requantize_for_w8a8); the float32 CPU model re-quantizes unrounded values, and e4m3's
        // 3-bit mantissa rounds some of them the other way (1.3e-2 measured from 32 tokens). Below 32
        // tokens the e4m3 operand is dequantized where the reference dequantizes the stored codes: its
        // re-quantization error, 2.4e-2 measured (int8's is ~4e-3).
        const bool e4m3_product = i == e5m2 || i == e2m1_fp8 || i == uint4_fp8;
        const double bound = e4m3_product && tokens >= 32 && !matmul ? 6e-2 : i == uint4_fp8 && matmul ? 3e-2 : 1e-2;
        CHECK(run.rel_l2_to_cpu[i] <= bound);
      }
      // Joined by concatenate where all three run the 8-bit GEMM (their SVD factors block-diagonal): each
      // column block as its part computed it, up to the split of the wider down-projection's sums.
      // With code tables the uint4 layers hold tables and int8 + SVD codes: those three are not joined
      // (joining would expand the tables for good and give up their memory); the two uint4 layers are.
      const bool tabled = policy == RequantizedMatmul::int8_tables_at_load;
      const bool joinable = run.kinds[0] == "quantized_matmul" && run.kinds[1] == "quantized_matmul" &&
                            (tabled || run.kinds[int8_svd] == "quantized_matmul");
      CHECK_FALSE(run.mixed_storage_joined);
      CHECK(run.joined_kind == (joinable ? "quantized_matmul" : ""));
      CHECK(run.joined_rel_l2.size() == (joinable ? (tabled ? 2u : 3u) : 0u));
      // Joined tables stay tables: the parts' bytes, plus the zero rows of the block-diagonal svd_up for
      // the layer without a branch (96 outputs x 64 padded ranks, bf16).
      if (tabled && joinable) CHECK(run.joined_device_bytes == run.device_bytes[0] + run.device_bytes[1] + 96 * 64 * 2);
      for (const double error : run.joined_rel_l2) {
        INFO("joined block rel L2 vs its part " << error);
        CHECK(error <= 2e-3);
      }
      // The memory side: int8_at_load holds the uint4 layer's int8 operand (96 x 128 bytes), the code
      // tables 4-bit indices + 16 bytes a 64-input group (6 bits a weight) + the stored codes' group
      // parameters for the GEMV (bf16 scale and zero point a group), stored_codes its 4-bit codes.
      const std::size_t codes_at_8_bits = 96 * 128, tables = 96 * 64 + 96 * 2 * 16, group_params = 96 * 2 * 2 * 2;
      if (policy == RequantizedMatmul::int8_at_load && run.kinds[uint4_g64] == "quantized_matmul") {
        CHECK(run.device_bytes[uint4_g64] >= codes_at_8_bits);
        int8_codes = std::move(run);
        continue;
      }
      CHECK(run.device_bytes[uint4_g64] < codes_at_8_bits);
      if (policy != RequantizedMatmul::int8_tables_at_load || !int8_codes) continue;
      // Code tables expand to the int8 operand exactly: every output bit for bit as with int8 codes, for
      // each layer and for the joined one; only the uint4 layers (g64, packed) hold tables, int4 row-wise
      // (one 128-input table a row) too.
      CHECK(run.device_bytes[uint4_g64] ==
            int8_codes->device_bytes[uint4_g64] - codes_at_8_bits + tables + group_params);
      CHECK(run.device_bytes[int4_rows] < int8_codes->device_bytes[int4_rows]);
      CHECK(run.device_bytes[int8_svd] == int8_codes->device_bytes[int8_svd]);
      CHECK(run.device_bytes[uint4_g64_svd] < int8_codes->device_bytes[uint4_g64_svd]);
      CHECK(run.device_bytes[uint4_fp8] == int8_codes->device_bytes[uint4_fp8]);  // tables: int8 products only
      // Below 32 tokens the table layers over stored 4-bit codes (the uint4 ones and int4 row-wise) run
      // those codes dequantized, as the reference: on the GEMV layout's kernels, the same bits as a
      // weight-only layer kept in that layout (GEMV up to 8 tokens; above, dequantize + cuBLAS, where the
      // SVD branch's zero-padded ranks widen the GEMM's extended K). The others expand their operand.
      const bool small = tokens < 32;
      std::optional<sdnq::test::RequantizedLinearRun> gemv_layout;
      if (small) gemv_layout = sdnq::test::compare_requantized_linears(tokens, RequantizedMatmul::stored_codes, true);
      for (std::size_t i = 0; i < run.outputs.size(); ++i) {
        INFO(run.names[i]);
        const bool stored_codes = small && (i == uint4_g64_svd || i == uint4_g64 || i == int4_rows);
        const sdnq::test::RequantizedLinearRun& expected = stored_codes ? *gemv_layout : *int8_codes;
        REQUIRE(run.outputs[i].nbytes() == expected.outputs[i].nbytes());
        if (stored_codes && run.svd[i] && tokens > 8) {
          CHECK(relative_difference(run.outputs[i], expected.outputs[i]) <= 1e-3);
          continue;
        }
        CHECK(std::memcmp(run.outputs[i].data(), expected.outputs[i].data(), run.outputs[i].nbytes()) == 0);
      }
    }
  }
}

TEST_CASE("gpu Linear: the checkpoint's quantized layers translate into the kernels' LinearCodes",
          "[cuda][gpu_models]") {
  // Host only: the LinearCodes each quantized fixture layer becomes must describe the weight that the
  // CPU dequantizer (quant::dequantize, the reference arithmetic) produces; bf16 parameters allow ~2^-8.
  std::vector<fs::path> cases = sdnq::test::model_fixture_cases("clip_l-");
  if (cases.empty()) {
    WARN("no clip_l-* fixture cases under " << (sdnq::test::reference_fixtures_dir() / "models").string() << ": skipped");
    return;
  }
  int checked = 0;
  for (const fs::path& folder : cases) {
    sdnq::nn::WeightLoader weights = sdnq::nn::WeightLoader::open(folder);
    for (const auto& [prefix, in, out] :
         {std::tuple{"encoder.layers.0.self_attn.q_proj", 64, 64}, std::tuple{"encoder.layers.1.mlp.fc1", 64, 128},
          std::tuple{"encoder.layers.1.mlp.fc2", 128, 64}}) {
      INFO(folder.filename().string() << " " << prefix);
      auto quantized = weights.quantized(prefix, sdnq::quant::LayerKind::linear, Shape{out, in});
      if (folder.filename().string() == "clip_l-bf16") {
        CHECK(!quantized.has_value());
        continue;
      }
      REQUIRE(quantized.has_value());
      const auto codes = sdnq::nn::gpu::detail::linear_codes_of(*quantized);
      REQUIRE(codes.has_value());
      const Tensor expected =
          sdnq::quant::dequantize(*quantized, DType::f32, sdnq::quant::ScalePrecision::reference_compatible);
      const double difference = relative_difference(reconstruct(codes->codes), expected);
      INFO("relative L2 " << difference);
      CHECK(difference < 1e-2);
      ++checked;
    }
  }
  CHECK(checked == 12);  // 3 layers of the fp8, int8, int8-qmm and uint4-svd cases
}

TEST_CASE("gpu Linear: every float storage type of at most 8 bits stays as codes, read through a lookup table",
          "[cuda][gpu_models][host]") {
  // Host only: the LinearCodes of a random layer quantized to each custom float (and native fp8) must describe
  // the weight the CPU dequantizer produces (its own decoder); a wrong table or code order is O(1) off.
  int checked = 0;
  for (const sdnq::format::StorageType& type : sdnq::format::all_storage_types()) {
    const bool native_fp8 = type.stored_dtype == DType::f8_e4m3fn || type.stored_dtype == DType::f8_e5m2;
    if (!(type.is_custom_float() || native_fp8) || type.bits > 8) continue;
    INFO(type.name);
    sdnq::quant::LayerOptions options;
    options.weights_type = &type;
    options.group_size = 32;
    Tensor weight = Tensor::empty(Shape{48, 128}, DType::f32);
    std::mt19937 random(static_cast<std::uint32_t>(17 + checked));
    std::normal_distribution<float> normal(0.0f, 0.05f);
    for (std::int64_t i = 0; i < weight.numel(); ++i) weight.data_as<float>()[i] = normal(random);
    const sdnq::quant::QuantizedTensors quantized =
        sdnq::quant::quantize_weight(weight.view(), sdnq::quant::LayerKind::linear, options, DType::bf16, 5);
    const auto codes = sdnq::nn::gpu::detail::linear_codes_of(quantized.view());
    REQUIRE(codes.has_value());
    CHECK(codes->codes.value == sdnq::cuda::CodeValue::lookup);
    CHECK(codes->codes.bits == type.bits);
    const Tensor expected =
        sdnq::quant::dequantize(quantized.view(), DType::f32, sdnq::quant::ScalePrecision::reference_compatible);
    const double difference = relative_difference(reconstruct(codes->codes), expected);
    INFO("relative L2 " << difference);
    CHECK(difference < 1e-6);
    ++checked;
  }
  CHECK(checked >= 20);
}

// Quantized convs run on their codes (im2row × the position-major Linear): against the CPU float32 conv
// of the same dequantized weight within the bf16 tolerance, and smaller on the device than bf16.
TEST_CASE("gpu Conv2d: quantized convs run on their codes and match the CPU conv", "[cuda][gpu_models][conv]") {
  struct Case {
    const char* type;
    Shape x;
    std::int64_t out_channels;
    int kernel, stride, padding;
    bool svd = false, quantized_matmul = false, hadamard = false;
  };
  const std::vector<Case> cases = {
      {"uint4", Shape{2, 64, 13, 11}, 96, 3, 1, 1},                     // groups of 32 channels
      {"uint4", Shape{1, 64, 15, 15}, 64, 3, 2, 1, true},               // zero point + SVD, stride 2
      {"int8", Shape{2, 96, 9, 7}, 48, 1, 1, 0},                        // 1x1, row-wise
      {"int8", Shape{1, 64, 10, 10}, 64, 3, 1, 1, false, true},         // direct matmul: the implicit-GEMM conv
      {"float8_e4m3fn", Shape{2, 32, 9, 9}, 48, 3, 2, 1, false, true},  // likewise, e4m3, stride 2
      {"float8_e4m3fn", Shape{2, 32, 8, 12}, 40, 3, 1, 1},              // float codes (lookup)
      {"float5_e3m1fn", Shape{1, 32, 9, 9}, 40, 3, 1, 1},               // packed custom float codes (lookup)
      {"int6", Shape{1, 48, 9, 9}, 32, 3, 1, 1},                        // packed, generic width
      {"uint4", Shape{2, 32, 256, 256}, 32, 3, 1, 1},                   // 131072 rows: two im2row chunks
      {"uint4", Shape{1, 64, 8, 8}, 32, 3, 1, 1, false, false, true},   // Hadamard: dequantized at load
  };
  for (const Case& c : cases) {
    INFO(c.type << " x " << c.x.to_string() << " -> " << c.out_channels << ", " << c.kernel << "x" << c.kernel
                << " stride " << c.stride << (c.svd ? " svd" : "") << (c.quantized_matmul ? " qmm" : "")
                << (c.hadamard ? " hadamard" : ""));
    sdnq::quant::LayerOptions options;
    options.weights_type = &sdnq::format::storage_type(c.type);
    options.use_svd = c.svd;
    options.svd_rank = 16;
    options.use_quantized_matmul = c.quantized_matmul;
    options.use_hadamard = c.hadamard;
    const auto run = sdnq::test::compare_quantized_conv_with_cpu(options, c.x, c.out_channels, c.kernel, c.stride,
                                                                 c.padding);
    INFO("rel L2 " << run.rel_l2 << ", " << run.device_bytes << " device bytes (bf16 " << run.dense_bf16_bytes << ")");
    // e4m3 activations (the reference's fp8 quantized matmul: 3 mantissa bits) alone put the conv ~2.5e-2
    // from the float32 conv of the same weight; conv2d_w8a8's own test matches the reference's quantized path.
    const bool fp8_activations = c.quantized_matmul && std::string(c.type) == "float8_e4m3fn";
    CHECK(run.rel_l2 <= (fp8_activations ? 3e-2 : 1e-2));
    CHECK(run.runs_on_codes == !c.hadamard);
    CHECK(run.runs_quantized_matmul == c.quantized_matmul);
    // Codes, not a bf16 copy (the tensor-core layout pads small SVD factors, so those cases are not sized).
    const bool eight_bit = std::string(c.type) == "int8" || std::string(c.type) == "float8_e4m3fn";
    if (!c.hadamard && !c.svd) CHECK(run.device_bytes < (eight_bit ? run.dense_bf16_bytes : run.dense_bf16_bytes / 2));
  }
}

TEST_CASE("gpu CLIP text model: bad input ids are clear errors", "[cuda][gpu_models]") {
  const std::vector<fs::path> cases = sdnq::test::model_fixture_cases("clip_l-bf16");
  if (cases.empty()) {
    WARN("no clip_l-bf16 fixture case under " << (sdnq::test::reference_fixtures_dir() / "models").string() << ": skipped");
    return;
  }
  const fs::path folder = cases.front();
  SECTION("ids of rank 1") {
    const auto message = sdnq::test::message_of<sdnq::ShapeError>(
        [&] { sdnq::test::run_clip_on_gpu_with_ids(folder, ids_of(Shape{12}, 5)); });
    CHECK(sdnq::test::contains(message, "input_ids must be [batch, tokens]"));
    CHECK(sdnq::test::contains(message, "[12]"));
  }
  SECTION("more tokens than the position table") {
    const auto message = sdnq::test::message_of<sdnq::ShapeError>([&] {
      sdnq::test::run_clip_on_gpu_with_ids(folder, ids_of(Shape{1, 78}, 5));
    });
    CHECK(sdnq::test::contains(message, "78 tokens"));
    CHECK(sdnq::test::contains(message, "max_position_embeddings = 77"));
  }
  SECTION("an id outside the vocabulary") {
    const auto message = sdnq::test::message_of<sdnq::ShapeError>([&] {
      sdnq::test::run_clip_on_gpu_with_ids(folder, ids_of(Shape{1, 8}, 995));
    });
    CHECK(sdnq::test::contains(message, "outside the vocabulary [0, 1000)"));
  }
  SECTION("ids left on the host") {
    const auto message = sdnq::test::message_of<sdnq::ShapeError>([&] {
      sdnq::test::run_clip_on_gpu_with_ids(folder, ids_of(Shape{1, 8}, 5), true);
    });
    CHECK(sdnq::test::contains(message, "on cuda:0"));
  }
}
