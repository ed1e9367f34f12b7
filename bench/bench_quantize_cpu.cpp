// CPU quantization throughput of quant::quantize_weight on a 3072x3072 bf16 Linear weight, in GB of
// bf16 input per second (int8, uint4 + SVD rank 32, uint4 (bit packing), uint4 codebook), and the peak resident memory
// of the sdnq-quantize program on a synthetic ~1 GB bf16 component written to the temp folder (deleted afterwards): the
// tool streams tensor by tensor, so its peak should track the largest tensor, not the component.
//
// Run: bench_quantize_cpu --benchmark_min_time=1s    (the RSS case spawns <build>/examples/sdnq-quantize)
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <random>
#include <string>

#include <benchmark/benchmark.h>

#include "sdnq/io/safetensors.hpp"
#include "sdnq/quant/quantize.hpp"

namespace {

using namespace sdnq;
namespace fs = std::filesystem;

constexpr std::int64_t rows = 3072, columns = 3072;

Tensor random_weight(std::int64_t out, std::int64_t in, std::uint32_t seed) {  // [out, in] bf16
  Tensor weight = Tensor::empty(Shape{out, in}, DType::bf16);
  std::mt19937 generator(seed);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  for (std::int64_t i = 0; i < weight.numel(); ++i) weight.data_as<bf16>()[i] = bf16(normal(generator));
  return weight;
}

void bench_quantize(benchmark::State& state, const std::string& type, std::int64_t svd_rank, bool codebook = false) {
  static const Tensor weight = random_weight(rows, columns, 7);
  quant::LayerOptions options;
  options.weights_type = &format::storage_type(type);
  options.use_svd = svd_rank > 0;
  options.svd_rank = svd_rank;
  options.use_codebook = codebook;
  for (auto _ : state) {
    auto quantized = quant::quantize_weight(weight.view(), quant::LayerKind::linear, options, DType::bf16);
    benchmark::DoNotOptimize(quantized.weight.data());
  }
  state.counters["bf16_in"] = benchmark::Counter(static_cast<double>(weight.nbytes()),
                                                 benchmark::Counter::kIsIterationInvariantRate,
                                                 benchmark::Counter::kIs1000);
}

void BM_QuantizeInt8(benchmark::State& state) { bench_quantize(state, "int8", 0); }
void BM_QuantizeUint4Svd32(benchmark::State& state) { bench_quantize(state, "uint4", 32); }
void BM_QuantizeUint4(benchmark::State& state) { bench_quantize(state, "uint4", 0); }
void BM_QuantizeUint4Codebook(benchmark::State& state) { bench_quantize(state, "uint4", 0, true); }

// Peak RSS of `sdnq-quantize <component> --type uint4` on 64 tensors of 4096x2048 bf16 (16 MiB each,
// 1 GiB in all): the child's ru_maxrss from wait4.
void BM_QuantizeToolPeakRss(benchmark::State& state) {
  const fs::path tool = fs::read_symlink("/proc/self/exe").parent_path().parent_path() / "examples/sdnq-quantize";
  if (!fs::exists(tool)) {
    state.SkipWithError(("build sdnq-quantize first: " + tool.string() + " is missing").c_str());
    return;
  }
  const fs::path folder = fs::temp_directory_path() / fmt::format("sdnq-bench-rss-{}", ::getpid());
  fs::remove_all(folder);
  fs::create_directories(folder / "component");
  constexpr int tensor_count = 64;
  const Tensor weight = random_weight(4096, 2048, 11);  // one tensor's data, written under every name
  std::vector<io::NamedTensor> tensors;
  for (int i = 0; i < tensor_count; ++i) tensors.push_back({fmt::format("blocks.{}.linear.weight", i), weight.view()});
  io::write_safetensors(folder / "component/diffusion_pytorch_model.safetensors", tensors, {{"format", "pt"}});
  const double input_bytes = static_cast<double>(weight.nbytes()) * tensor_count;

  for (auto _ : state) {
    fs::remove_all(folder / "out");
    const std::string component = (folder / "component").string(), out = (folder / "out").string();
    const pid_t child = ::fork();
    if (child == 0) {
      ::execl(tool.c_str(), tool.c_str(), component.c_str(), "--type", "uint4", "-o", out.c_str(),
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    int status = 0;
    rusage usage{};
    ::wait4(child, &status, 0, &usage);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      state.SkipWithError("sdnq-quantize failed");
      break;
    }
    state.counters["peak_rss_MiB"] = static_cast<double>(usage.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB
  }
  state.counters["input_MiB"] = input_bytes / (1 << 20);
  state.counters["largest_tensor_MiB"] = static_cast<double>(weight.nbytes()) / (1 << 20);
  state.counters["bf16_in"] =
      benchmark::Counter(input_bytes, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
  fs::remove_all(folder);
}

BENCHMARK(BM_QuantizeInt8)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_QuantizeUint4Svd32)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_QuantizeUint4)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_QuantizeUint4Codebook)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_QuantizeToolPeakRss)->Unit(benchmark::kSecond)->UseRealTime()->Iterations(1);

}  // namespace

BENCHMARK_MAIN();
