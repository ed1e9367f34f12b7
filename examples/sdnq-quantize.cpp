// sdnq-quantize: writes an SDNQ checkpoint (the reference's layout; diffusers and the Python sdnq
// package load it) from dense float weights, tensor by tensor.
//
//   sdnq-quantize /models/FLUX.1-dev --type uint4 --svd-rank 32 --components transformer -o /models/flux-uint4
//   sdnq-quantize /models/FLUX.1-dev/transformer --type int8 --quantized-matmul -o /models/flux-int8-transformer
//   sdnq-quantize model.safetensors --type float8_e4m3fn --dry-run -o out
//
// Exit codes: 0 done, 1 unexpected error, 2 bad arguments (unknown type, unknown component),
// 3 malformed or already-quantized input, 4 a missing input, an existing output (pass --overwrite) or a write failure.
#include <cstdio>
#include <limits>

#include <fmt/format.h>

#include "sdnq/tools/arguments.hpp"
#include "sdnq/tools/quantize_model.hpp"

namespace {

constexpr std::string_view usage_text =
    "usage: sdnq-quantize <pipeline folder | component folder | file.safetensors | org/repo> --type T -o OUT\n"
    "         [--svd-rank R] [--svd-steps N] [--group-size G] [--quantized-matmul] [--hadamard] [--codebook]\n"
    "         [--quant-conv] [--quant-embedding] [--components a,b] [--model-dtype bf16|fp16|fp32]\n"
    "         [--no-skip-keys] [--stochastic-rounding] [--seed S] [--max-shard-size 10GB] [--dry-run] [--overwrite]\n"
    "T is an SDNQ storage type: int8, uint4, float8_e4m3fn, ... --svd-rank turns SVD on. Weights larger than\n"
    "--max-shard-size (default 10GB, as diffusers; KB/MB/GB decimal, KiB/MiB/GiB binary) are sharded with an\n"
    "index. OUT is written as OUT.partial and renamed when complete; an existing OUT is refused unless --overwrite.\n";

sdnq::DType parse_model_dtype(const std::string& name) {
  if (name == "bf16" || name == "bfloat16") return sdnq::DType::bf16;
  if (name == "fp16" || name == "float16") return sdnq::DType::f16;
  if (name == "fp32" || name == "float32") return sdnq::DType::f32;
  throw sdnq::tools::UsageError(fmt::format("--model-dtype must be bf16, fp16 or fp32, got \"{}\"", name));
}

sdnq::tools::QuantizeRequest request_from(const sdnq::tools::ParsedArguments& arguments) {
  using sdnq::tools::UsageError;
  sdnq::tools::QuantizeRequest request;
  sdnq::quant::SdnqConfig& config = request.config;
  const auto type = arguments.value("--type");
  SDNQ_REQUIRE(type.has_value(), UsageError, "--type is required (e.g. --type uint4)");
  SDNQ_REQUIRE(sdnq::format::find_storage_type(*type) != nullptr, UsageError,
               "--type \"{}\" is not an SDNQ storage type (e.g. int8, uint4, float8_e4m3fn)", *type);
  config.weights_dtype = *type;
  config.group_size = arguments.integer("--group-size", 0, -2, 1 << 20);
  if (arguments.value("--svd-rank")) {
    config.use_svd = true;
    config.svd_rank = arguments.integer("--svd-rank", 32, 1, 1 << 16);
  }
  config.svd_steps = arguments.integer("--svd-steps", config.svd_steps, 1, 1000);
  config.use_quantized_matmul = arguments.flag("--quantized-matmul");
  config.use_hadamard = arguments.flag("--hadamard");
  config.use_codebook = arguments.flag("--codebook");
  config.quant_conv = arguments.flag("--quant-conv");
  config.quant_embedding = arguments.flag("--quant-embedding");
  config.add_skip_keys = !arguments.flag("--no-skip-keys");
  config.use_stochastic_rounding = arguments.flag("--stochastic-rounding");
  if (const auto size = arguments.value("--max-shard-size")) {
    try {
      request.max_shard_bytes = sdnq::io::parse_byte_size(*size);
    } catch (const sdnq::ConfigError& error) {
      throw UsageError(fmt::format("--max-shard-size: {}", error.what()));
    }
  }
  if (const auto components = arguments.value("--components")) request.components = sdnq::tools::split_list(*components);
  if (const auto dtype = arguments.value("--model-dtype")) request.model_dtype = parse_model_dtype(*dtype);
  request.seed = static_cast<std::uint64_t>(arguments.integer("--seed", 0, 0, std::numeric_limits<long long>::max()));
  request.dry_run = arguments.flag("--dry-run");
  request.overwrite = arguments.flag("--overwrite");
  return request;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace sdnq;
  try {
    const tools::OptionSpec spec{
        {"--quantized-matmul", "--hadamard", "--codebook", "--quant-conv", "--quant-embedding", "--no-skip-keys",
         "--stochastic-rounding", "--dry-run", "--overwrite", "--help"},
        {"--type", "--svd-rank", "--svd-steps", "--group-size", "--components", "--model-dtype", "--seed",
         "--max-shard-size", "-o", "--output"}};
    const tools::ParsedArguments arguments = tools::parse_arguments(argc, argv, spec);
    if (arguments.flag("--help")) {
      fmt::print("{}", usage_text);
      return 0;
    }
    SDNQ_REQUIRE(arguments.positional.size() == 1, tools::UsageError, "expected one input model, got {}",
                 arguments.positional.size());
    const auto output = arguments.value("-o") ? arguments.value("-o") : arguments.value("--output");
    SDNQ_REQUIRE(output.has_value(), tools::UsageError, "-o OUT is required");
    const tools::QuantizeRequest request = request_from(arguments);
    const tools::QuantizeResult result = tools::quantize_model(arguments.positional.front(), *output, request);
    if (request.dry_run)
      fmt::print("{}", tools::describe_plan(result));
    else
      fmt::print("{}\n", result.output.string());
    return 0;
  } catch (const tools::UsageError& error) {
    fmt::print(stderr, "sdnq-quantize: {}\n{}", error.what(), usage_text);
    return 2;
  } catch (const ConfigError& error) {
    fmt::print(stderr, "sdnq-quantize: {}\n", error.what());
    return 2;
  } catch (const IoError& error) {
    fmt::print(stderr, "sdnq-quantize: {}\n", error.what());
    return 4;
  } catch (const Error& error) {
    fmt::print(stderr, "sdnq-quantize: {}\n", error.what());
    return 3;
  } catch (const std::exception& error) {
    fmt::print(stderr, "sdnq-quantize: unexpected error: {}\n", error.what());
    return 1;
  }
}
