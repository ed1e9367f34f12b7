// sdnq-inspect's library functions (sdnq/tools/inspect.hpp) on the fixture models and on folders
// built here, repo ids resolved from a local Hugging Face cache, and smoke runs of both built tools.
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "sdnq/io/safetensors.hpp"
#include "sdnq/tools/inspect.hpp"
#include "sdnq_catch.hpp"

namespace {

namespace fs = std::filesystem;
using namespace sdnq;

struct ScratchDir {
  fs::path path;
  ScratchDir() {
    static int counter = 0;
    path = fs::temp_directory_path() / fmt::format("sdnq-inspect-test-{}-{}", ::getpid(), counter++);
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~ScratchDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
};

void write_file(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

struct ProgramRun {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

// Runs a built tool (beside this test binary: <build>/examples/<name>) and collects its output.
ProgramRun run_tool(const std::string& name, const std::string& arguments) {
  const fs::path program = fs::read_symlink("/proc/self/exe").parent_path().parent_path() / "examples" / name;
  REQUIRE(fs::exists(program));  // build the tools too: cmake --build <build> --target sdnq-inspect sdnq-quantize
  ProgramRun run;
  std::FILE* pipe = ::popen((program.string() + " " + arguments + " 2>&1").c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::array<char, 4096> buffer{};
  while (const std::size_t got = std::fread(buffer.data(), 1, buffer.size(), pipe)) run.output.append(buffer.data(), got);
  const int status = ::pclose(pipe);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

// Independently of inspect: the layers with a `.scale` sibling, read with the plain safetensors reader.
std::int64_t count_scale_tensors(const fs::path& file) {
  const io::SafetensorsFile safetensors = io::SafetensorsFile::open(file);
  std::int64_t count = 0;
  for (const auto& name : safetensors.names()) count += name.ends_with(".scale");
  return count;
}

}  // namespace

TEST_CASE("sdnq-inspect counts the storage types, SVD ranks and skipped modules of the fixture models",
          "[tools][inspect]") {
  for (const char* model : {"flux-uint4-svd", "sd3-uint4-svd", "t5-uint4-svd"}) {
    INFO("model " << model);
    const fs::path folder = test::data_dir() / "models" / model;
    const tools::ModelReport report = tools::inspect_model(folder.string());
    REQUIRE(report.kind == tools::SourceKind::component);
    REQUIRE(report.components.size() == 1);
    const tools::ComponentReport& component = report.components[0];
    const nlohmann::ordered_json config = nlohmann::ordered_json::parse(std::ifstream(folder / "config.json"));
    CHECK(component.is_sdnq());
    CHECK(component.quantization_summary() == "SDNQ");
    const std::string class_name =
        config.contains("_class_name") ? config["_class_name"] : config["architectures"][0];
    CHECK(component.class_name == class_name);
    const auto& quantization = config["quantization_config"];
    const std::int64_t layers = count_scale_tensors(folder / (fs::exists(folder / "model.safetensors")
                                                                  ? "model.safetensors"
                                                                  : "diffusion_pytorch_model.safetensors"));
    CHECK(component.quantized_layer_count == layers);
    CHECK(component.layers_by_type ==
          std::map<std::string, std::int64_t>{{quantization["weights_dtype"].get<std::string>(), layers}});
    CHECK(component.layers_by_svd_rank ==
          std::map<std::int64_t, std::int64_t>{{quantization["svd_rank"].get<std::int64_t>(), layers}});
    CHECK(component.skipped_modules.size() == quantization["modules_to_not_convert"].size());
    CHECK(component.bytes_on_disk == fs::file_size(component.has_weights ? io::find_weights_file(folder) : folder));
    CHECK(component.bytes_loaded < component.dense_bf16_bytes);

    const nlohmann::ordered_json json = tools::to_json(report);
    CHECK(json["components"][0]["sdnq"] == true);
    CHECK(json["components"][0]["quantized_layers"] == layers);
    CHECK(tools::to_text(report).find(fmt::format("quantized layers: {}", layers)) != std::string::npos);
  }
}

TEST_CASE("sdnq-inspect reports other quantization methods as not SDNQ", "[tools][inspect]") {
  ScratchDir temp;
  const fs::path pipeline = temp.path / "pipeline";
  write_file(pipeline / "model_index.json",
             R"({"_class_name": "FluxPipeline", "transformer": ["diffusers", "FluxTransformer2DModel"],)"
             R"( "text_encoder_2": ["transformers", "T5EncoderModel"], "vae": ["diffusers", "AutoencoderKL"],)"
             R"( "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"]})");
  fs::create_directories(pipeline / "transformer");
  fs::copy(test::data_dir() / "models/flux-uint4-svd/diffusion_pytorch_model.safetensors", pipeline / "transformer");
  write_file(pipeline / "transformer/config.json", R"({"_class_name": "FluxTransformer2DModel"})");
  write_file(pipeline / "transformer/quantization_map.json", R"({"x_embedder": {"weights": "qint8"}})");
  fs::create_directories(pipeline / "text_encoder_2");
  fs::copy(test::data_dir() / "models/t5-bf16/model.safetensors", pipeline / "text_encoder_2");
  write_file(pipeline / "text_encoder_2/config.json",
             R"({"architectures": ["T5EncoderModel"], "quantization_config": {"quant_method": "bitsandbytes"}})");
  fs::create_directories(pipeline / "vae");
  fs::copy(test::data_dir() / "models/flux-bf16/diffusion_pytorch_model.safetensors", pipeline / "vae");
  write_file(pipeline / "vae/config.json", R"({"_class_name": "AutoencoderKL"})");
  write_file(pipeline / "scheduler/scheduler_config.json", R"({"_class_name": "FlowMatchEulerDiscreteScheduler"})");

  const tools::ModelReport report = tools::inspect_model(pipeline.string());
  REQUIRE(report.components.size() == 4);
  std::map<std::string, std::string> summaries;
  for (const auto& component : report.components) summaries[component.name] = component.quantization_summary();
  CHECK(summaries["transformer"] == "quantized with quanto, not SDNQ");
  CHECK(summaries["text_encoder_2"] == "quantized with bitsandbytes, not SDNQ");
  CHECK(summaries["vae"] == "not quantized");
  CHECK(report.components[0].layers_by_type.empty());  // .scale tensors of a non-SDNQ model are not SDNQ layers
  CHECK(tools::to_text(report).find("scheduler: (no class) (no weights)") != std::string::npos);
}

TEST_CASE("sdnq-inspect resolves a repo id from the Hugging Face cache without the network", "[tools][inspect]") {
  ScratchDir temp;
  const std::string commit = "0123456789abcdef0123456789abcdef01234567";
  const fs::path repo = temp.path / "hub/models--Disty0--Toy-SDNQ-uint4";
  write_file(repo / "refs/main", commit);
  const fs::path snapshot = repo / "snapshots" / commit / "transformer";
  fs::create_directories(snapshot);
  for (const char* file : {"config.json", "quantization_config.json", "diffusion_pytorch_model.safetensors"})
    fs::copy(test::data_dir() / "models/flux-uint4-svd" / file, snapshot / file);
  write_file(repo / "snapshots" / commit / "model_index.json",
             R"({"transformer": ["diffusers", "FluxTransformer2DModel"]})");

  ::setenv("HF_HUB_CACHE", (temp.path / "hub").c_str(), 1);
  const tools::ModelReport report = tools::inspect_model("Disty0/Toy-SDNQ-uint4");
  CHECK(report.path == repo / "snapshots" / commit);
  REQUIRE(report.components.size() == 1);
  CHECK(report.components[0].is_sdnq());
  try {
    tools::inspect_model("Disty0/Not-Downloaded");
    FAIL("no error for a repo that is not cached");
  } catch (const IoError& error) {
    CHECK(std::string(error.what()).find("is not in the Hugging Face cache") != std::string::npos);
  }
  ::unsetenv("HF_HUB_CACHE");
}

TEST_CASE("sdnq-quantize and sdnq-inspect run as programs with their exit codes", "[tools][smoke]") {
  ScratchDir temp;
  const fs::path source = test::data_dir() / "models/flux-bf16";
  const std::string out = (temp.path / "out").string();
  const ProgramRun quantize = run_tool("sdnq-quantize", source.string() + " --type uint4 --svd-rank 8 -o " + out);
  INFO(quantize.output);
  CHECK(quantize.exit_code == 0);
  CHECK(quantize.output.find("flux-bf16: ") != std::string::npos);  // the one line per component off a terminal

  const ProgramRun inspect = run_tool("sdnq-inspect", out + " --json");
  INFO(inspect.output);
  REQUIRE(inspect.exit_code == 0);
  const auto json = nlohmann::json::parse(inspect.output);
  CHECK(json["components"][0]["sdnq"] == true);
  CHECK(json["components"][0]["layers_by_type"].contains("uint4"));

  const ProgramRun again = run_tool("sdnq-quantize", source.string() + " --type uint4 -o " + out);
  CHECK(again.exit_code == 4);
  CHECK(again.output.find("already exists; pass --overwrite") != std::string::npos);
  const ProgramRun bad_type = run_tool("sdnq-quantize", source.string() + " --type uint99 -o " + out + "-x");
  CHECK(bad_type.exit_code == 2);
  CHECK(bad_type.output.find("--type \"uint99\" is not an SDNQ storage type") != std::string::npos);
  const ProgramRun missing = run_tool("sdnq-inspect", (temp.path / "nowhere").string());
  CHECK(missing.exit_code == 3);
  CHECK(missing.output.find("no such file or folder") != std::string::npos);
}
