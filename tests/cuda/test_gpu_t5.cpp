// GPU T5EncoderModel against the reference fixtures' bf16 output (fixtures/sdnq-reference/models/t5-*,
// README "models": bf16 compute within relative L2 3e-2), against the CPU float32 model on longer
// sequences (every position bucket), and its bad-input errors.
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "cuda_test_support.hpp"
#include "fixture_paths.hpp"
#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq_catch.hpp"
#include "test_gpu_t5_support.hpp"

namespace {

namespace fs = std::filesystem;
using sdnq::DType;
using sdnq::Shape;
using sdnq::Tensor;

constexpr double bf16_tolerance = 3e-2;  // fixture README, "models"

// Every case is held to the spec's 3e-2 against output_bf16. On the H100 (2026-11-27, 9d4502a):
// t5-bf16 0.94e-2, fp8 1.49e-2, int8 1.53e-2, int8-qmm 1.77e-2, uint4-svd 1.98e-2 (3.02e-2 before the
// T5 Linears kept transformers' fp32 parameters and the norms rounded twice as T5LayerNorm does).
//
// Against the CPU float32 model at 2 × 300 tokens the GPU follows the reference's bf16 flow, not fp32:
//   t5-uint4-svd: 7.12e-2 with the ids of seed 17. A CPU emulation of the GPU's numerics gives 6.90e-2
//     for these ids, and 40 seeds give a median of 3.4e-2 with seed 17 the worst; the norm's second
//     rounding (which matches the reference's output_bf16 better) moves one of the two sequences through
//     T5's unscaled attention. With the old flow these ids gave 3.86e-2 (40 seeds: median 4.0e-2, max 7.2e-2).
//   t5-int8-qmm at 600 rows (the 8-bit GEMM; the fixture's 24 rows take the dequantized path): 5.89e-2.
//     Both sides quantize the activations to int8 per row; bf16 activations move codes across rounding
//     boundaries (one step ≈ 10× a bf16 rounding), and T5's unscaled attention amplifies it. t5-int8
//     with the same codes without the quantized matmul: 1.30e-2.
constexpr double uint4_svd_cpu_deviation_bound = 8e-2;
constexpr double quantized_matmul_cpu_deviation_bound = 8e-2;

std::vector<fs::path> t5_cases(const std::string& prefix = "t5-") { return sdnq::test::model_fixture_cases(prefix); }

fs::path t5_fixture_models() { return sdnq::test::reference_fixtures_dir() / "models"; }

bool named(const fs::path& folder, const std::string& part) {
  return folder.filename().string().find(part) != std::string::npos;
}

Tensor t5_ids(Shape shape, std::int64_t first) {
  Tensor ids = Tensor::empty(shape, DType::i64);
  for (std::int64_t i = 0; i < ids.numel(); ++i) ids.data_as<std::int64_t>()[i] = first + i % 11;
  return ids;
}

}  // namespace

TEST_CASE("gpu T5EncoderModel matches the reference bf16 output", "[cuda][gpu_models]") {
  const std::vector<fs::path> cases = t5_cases();
  if (cases.empty()) {
    WARN("no t5-* fixture cases under " << t5_fixture_models().string() << " (../shared absent): skipped");
    return;
  }
  CHECK(cases.size() == 5);  // bf16, fp8, int8, int8-qmm, uint4-svd
  for (const fs::path& folder : cases) {
    INFO(folder.filename().string());
    const sdnq::test::GpuT5Run run = sdnq::test::run_t5_case_on_gpu(folder);
    std::string kinds;
    for (const auto& kind : run.linear_kinds) kinds += kind + " ";
    INFO("Linear kinds: " << kinds);
    INFO("workspace " << run.workspace_bytes << " bytes, peak " << run.workspace_peak);
    CHECK(run.workspace_peak <= run.workspace_bytes);
    CHECK(run.linear_kinds.size() == 2 * 7);  // 2 blocks of q, k, v, o, wi_0, wi_1, wo
    INFO("last_hidden_state rel L2 " << run.rel_l2 << " (against output_fp32: " << run.rel_l2_fp32 << ")");
    WARN(folder.filename().string() << " last_hidden_state rel L2 " << run.rel_l2 << " (against output_fp32 "
                                    << run.rel_l2_fp32 << ")");
    CHECK(run.rel_l2 <= bf16_tolerance);
    const bool quantized = !named(folder, "bf16");
    const bool any_quantized_kind = std::any_of(run.linear_kinds.begin(), run.linear_kinds.end(),
                                                [](const std::string& kind) { return kind != "dense"; });
    CHECK(any_quantized_kind == quantized);
  }
}

TEST_CASE("gpu T5EncoderModel on 300 tokens (all position buckets, beyond max_distance) matches the CPU model",
          "[cuda][gpu_models]") {
  // 2 × 300 tokens: offsets up to ±299 reach the logarithmic buckets and the clamp past ±128; 600 rows
  // run the quantized-matmul GEMM in t5-int8-qmm. Against the CPU float32 model on the same ids.
  const std::vector<fs::path> cases = t5_cases();
  if (cases.empty()) {
    WARN("no t5-* fixture cases under " << t5_fixture_models().string() << ": skipped");
    return;
  }
  for (const fs::path& folder : cases) {
    INFO(folder.filename().string());
    const sdnq::test::GpuT5Run run = sdnq::test::compare_t5_with_cpu(folder, 2, 300, 17);
    INFO("rel L2 against the CPU float32 model " << run.rel_l2);
    WARN(folder.filename().string() << " 2x300 tokens rel L2 vs CPU f32 " << run.rel_l2);
    const double bound = named(folder, "int8-qmm")    ? quantized_matmul_cpu_deviation_bound
                         : named(folder, "uint4-svd") ? uint4_svd_cpu_deviation_bound
                                                      : bf16_tolerance;
    CHECK(run.rel_l2 <= bound);
    CHECK(run.workspace_peak <= run.workspace_bytes);
    if (named(folder, "int8-qmm"))
      CHECK(std::count(run.linear_kinds.begin(), run.linear_kinds.end(), "quantized_matmul") >= 1);
  }
}

TEST_CASE("gpu T5EncoderModel: bad inputs are refused with errors naming the model", "[cuda][gpu_models]") {
  using sdnq::test::contains;
  using sdnq::test::message_of;
  using sdnq::test::run_t5_on_gpu_with_ids;
  const std::vector<fs::path> cases = t5_cases("t5-bf16");
  if (cases.empty()) {
    WARN("no t5-bf16 fixture case under " << t5_fixture_models().string() << ": skipped");
    return;
  }
  const fs::path folder = cases.front();
  const std::string rank = message_of<sdnq::ShapeError>([&] { run_t5_on_gpu_with_ids(folder, t5_ids({12}, 5), 12); });
  CHECK(contains(rank, "T5EncoderModel (GPU): input_ids must be [batch, tokens]"));
  const std::string empty = message_of<sdnq::ShapeError>([&] { run_t5_on_gpu_with_ids(folder, t5_ids({2, 0}, 5), 1); });
  CHECK(contains(empty, "tokens >= 1, got [2, 0]"));
  // 40 tokens in a workspace sized for 12: T5 has no position table, the workspace bounds the length.
  const std::string too_long = message_of<sdnq::ShapeError>([&] {
    run_t5_on_gpu_with_ids(folder, t5_ids({2, 40}, 5), 12);
  });
  CHECK(contains(too_long, "T5EncoderModel (GPU): input_ids [2, 40] need"));
  CHECK(contains(too_long, "longer than the workspace was sized for"));
  const std::string vocabulary = message_of<sdnq::ShapeError>([&] {
    run_t5_on_gpu_with_ids(folder, t5_ids({2, 12}, 995), 12);
  });
  CHECK(contains(vocabulary, "outside the vocabulary [0, 1000)"));
  Tensor float_ids = Tensor::empty(Shape{2, 12}, DType::f32);
  for (std::int64_t i = 0; i < float_ids.numel(); ++i) float_ids.data_as<float>()[i] = 3.0f;
  const std::string dtype = message_of<sdnq::ShapeError>([&] { run_t5_on_gpu_with_ids(folder, float_ids, 12); });
  CHECK(contains(dtype, "contiguous I64 or I32 tensor on cuda:0, got F32"));
  const std::string host = message_of<sdnq::ShapeError>([&] {
    run_t5_on_gpu_with_ids(folder, t5_ids({2, 12}, 5), 12, true);
  });
  CHECK(contains(host, "on cpu"));
}
