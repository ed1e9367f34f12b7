// sdnq-quantize: writes an SDNQ checkpoint (the reference's layout; diffusers and the Python sdnq
// package load it) from dense float weights, tensor by tensor.
//
//   sdnq-quantize /models/FLUX.1-dev --type uint4 --svd-rank 32 --components transformer -o /models/flux-uint4
//   sdnq-quantize /models/FLUX.1-dev/transformer --type int8 --quantized-matmul -o /models/flux-int8-transformer
//   sdnq-quantize model.safetensors --type float8_e4m3fn --dry-run -o out
//   sdnq-quantize /models/FLUX.1-dev/transformer --type uint4 --dynamic --skip proj_out -o /models/flux-dynamic
//
// Exit codes: 0 done, 1 unexpected error, 2 bad arguments (unknown type, unknown component),
// 3 malformed or already-quantized input, 4 a missing input, an existing output (pass --overwrite) or a write failure.
#include <cstdio>

#include <fmt/format.h>

#include "sdnq/tools/quantize_arguments.hpp"

int main(int argc, char** argv) {
  using namespace sdnq;
  try {
    const tools::ParsedArguments arguments = tools::parse_arguments(argc, argv, tools::quantize_option_spec());
    if (arguments.flag("--help")) {
      fmt::print("{}", tools::quantize_usage_text);
      return 0;
    }
    SDNQ_REQUIRE(arguments.positional.size() == 1, tools::UsageError, "expected one input model, got {}",
                 arguments.positional.size());
    const auto output = arguments.value("-o") ? arguments.value("-o") : arguments.value("--output");
    SDNQ_REQUIRE(output.has_value(), tools::UsageError, "-o OUT is required");
    const tools::QuantizeRequest request = tools::quantize_request_from(arguments);
    const tools::QuantizeResult result = tools::quantize_model(arguments.positional.front(), *output, request);
    if (request.dry_run)
      fmt::print("{}", tools::describe_plan(result));
    else
      fmt::print("{}\n", result.output.string());
    return 0;
  } catch (const tools::UsageError& error) {
    fmt::print(stderr, "sdnq-quantize: {}\n{}", error.what(), tools::quantize_usage_text);
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
