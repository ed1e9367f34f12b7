// sdnq-quantize's sharded output (QuantizeRequest::max_shard_bytes, --max-shard-size): diffusers' shard
// names and index, read back through the sharded reader identical to the single-file output, no
// temporaries left; the size strings huggingface_hub accepts.
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "sdnq/io/safetensors.hpp"
#include "sdnq/io/sharded.hpp"
#include "sdnq/tools/quantize_model.hpp"
#include "sdnq_catch.hpp"

namespace {

namespace fs = std::filesystem;
using namespace sdnq;

struct ShardTestFolder {
  fs::path path = fs::temp_directory_path() / fmt::format("sdnq-tools-shard-test-{}", ::getpid());
  ShardTestFolder() {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~ShardTestFolder() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
};

// Six bf16 Linear weights [128, 256] (64 KiB each) with distinct values, and a bias.
void write_component(const fs::path& folder) {
  fs::create_directories(folder);
  std::ofstream(folder / "config.json") << R"({"_class_name": "ToyTransformer2DModel"})";
  std::vector<Tensor> weights;
  std::vector<io::NamedTensor> named;
  for (int layer = 0; layer < 6; ++layer) {
    Tensor weight = Tensor::empty(Shape{128, 256}, DType::bf16);
    for (std::int64_t i = 0; i < weight.numel(); ++i)
      weight.data_as<bf16>()[i] = bf16(std::sin(0.37f * static_cast<float>(i) + static_cast<float>(layer)) * 0.05f);
    weights.push_back(std::move(weight));
  }
  Tensor bias = Tensor::empty(Shape{128}, DType::bf16);
  for (std::int64_t i = 0; i < 128; ++i) bias.data_as<bf16>()[i] = bf16(0.01f * static_cast<float>(i));
  for (int layer = 0; layer < 6; ++layer)
    named.push_back({fmt::format("blocks.{}.ff.weight", layer), weights[static_cast<std::size_t>(layer)].view()});
  named.push_back({"blocks.0.ff.bias", bias.view()});
  io::write_safetensors(folder / "diffusion_pytorch_model.safetensors", named, {{"format", "pt"}});
}

// Runs the built sdnq-quantize (<build>/examples) with `arguments`; returns {exit code, output}.
std::pair<int, std::string> run_quantize_tool(const std::string& arguments) {
  const fs::path program = fs::read_symlink("/proc/self/exe").parent_path().parent_path() / "examples/sdnq-quantize";
  REQUIRE(fs::exists(program));  // build it too: cmake --build <build> --target sdnq-quantize
  std::FILE* pipe = ::popen((program.string() + " " + arguments + " 2>&1").c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string output;
  std::array<char, 4096> buffer{};
  while (const std::size_t got = std::fread(buffer.data(), 1, buffer.size(), pipe)) output.append(buffer.data(), got);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

}  // namespace

TEST_CASE("sdnq-quantize --max-shard-size and --stochastic-rounding on the command line", "[tools][quantize][smoke]") {
  ShardTestFolder temp;
  write_component(temp.path / "transformer");
  const std::string source = (temp.path / "transformer").string();
  const auto [code, output] = run_quantize_tool(
      source + " --type int6 --stochastic-rounding --seed 9 --max-shard-size 100KB -o " + (temp.path / "out").string());
  INFO(output);
  REQUIRE(code == 0);
  CHECK(fs::exists(temp.path / "out/diffusion_pytorch_model.safetensors.index.json"));
  CHECK(fs::exists(temp.path / "out/diffusion_pytorch_model-00001-of-00002.safetensors"));
  const auto config = nlohmann::json::parse(std::ifstream(temp.path / "out/quantization_config.json"));
  CHECK(config["use_stochastic_rounding"] == true);
  const auto [bad_code, bad_output] =
      run_quantize_tool(source + " --type int8 --max-shard-size 10XB -o " + (temp.path / "bad").string());
  CHECK(bad_code == 2);
  CHECK(bad_output.find("--max-shard-size") != std::string::npos);
}

TEST_CASE("sdnq-quantize shards its output above max_shard_bytes", "[tools][quantize][sharded]") {
  ShardTestFolder temp;
  write_component(temp.path / "transformer");
  tools::QuantizeRequest request;
  request.config.weights_dtype = "int8";
  request.interactive_progress = false;
  tools::quantize_model((temp.path / "transformer").string(), temp.path / "single", request);
  request.max_shard_bytes = 70'000;  // an int8 layer is 32 KiB of codes + 512 B of scales: two per shard
  tools::quantize_model((temp.path / "transformer").string(), temp.path / "sharded", request);

  const fs::path out = temp.path / "sharded";
  CHECK_FALSE(fs::exists(out / "diffusion_pytorch_model.safetensors"));
  const auto index = nlohmann::json::parse(std::ifstream(out / "diffusion_pytorch_model.safetensors.index.json"));
  const io::Checkpoint single = io::open_checkpoint(temp.path / "single");
  std::uint64_t total = 0;
  for (const auto& name : single.names()) total += single.info(name).nbytes();
  CHECK(index["metadata"]["total_size"] == total);
  std::set<std::string> shards;
  for (const auto& [tensor, shard] : index["weight_map"].items()) shards.insert(shard.get<std::string>());
  CHECK(shards == std::set<std::string>{"diffusion_pytorch_model-00001-of-00003.safetensors",
                                        "diffusion_pytorch_model-00002-of-00003.safetensors",
                                        "diffusion_pytorch_model-00003-of-00003.safetensors"});
  for (const auto& entry : fs::directory_iterator(out)) {
    const std::string name = entry.path().filename().string();
    CHECK(name.find("partial") == std::string::npos);  // no temporary shard or data file left
  }

  const io::Checkpoint sharded = io::open_checkpoint(out);
  REQUIRE(sharded.is_sharded());
  CHECK(sharded.names().size() == single.names().size());
  for (const auto& name : single.names()) {
    INFO(name);
    const TensorView a = sharded.tensor(name), b = single.tensor(name);
    CHECK(a.dtype() == b.dtype());
    CHECK(a.shape() == b.shape());
    CHECK(std::memcmp(a.data(), b.data(), b.nbytes()) == 0);
    for (const auto& shard : sharded.file_of(name).metadata()) CHECK((shard.first == "format" && shard.second == "pt"));
  }
  // The configs are the single-file run's.
  CHECK(nlohmann::json::parse(std::ifstream(out / "quantization_config.json")) ==
        nlohmann::json::parse(std::ifstream(temp.path / "single/quantization_config.json")));
}

TEST_CASE("max shard sizes are read as huggingface_hub reads them", "[tools][quantize][sharded]") {
  CHECK(io::parse_byte_size("10GB") == 10'000'000'000ull);
  CHECK(io::parse_byte_size("5GiB") == 5ull << 30);
  CHECK(io::parse_byte_size("500MB") == 500'000'000ull);
  CHECK(io::parse_byte_size("64KiB") == 65536);
  CHECK(io::parse_byte_size("1000") == 1000);
  CHECK(io::default_max_shard_bytes == io::parse_byte_size("10GB"));
  for (const char* bad : {"", "GB", "10 GB", "-5GB", "1.5GB", "0", "10gb", "99999999999999999999"})
    CHECK_THROWS_AS(io::parse_byte_size(bad), ConfigError);
}
