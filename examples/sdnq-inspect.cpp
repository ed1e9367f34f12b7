// sdnq-inspect: what a model folder holds, per component — class, whether it is SDNQ-quantized (and
// with which storage types, SVD ranks and skipped modules), and its size on disk, loaded, and dense.
//
//   sdnq-inspect /models/FLUX.1-dev-SDNQ-uint4-svd-r32          a diffusers pipeline folder
//   sdnq-inspect /models/FLUX.1-dev-SDNQ-uint4-svd-r32/transformer
//   sdnq-inspect Disty0/FLUX.1-dev-SDNQ-uint4-svd-r32 --json    a repo already in the HF cache (offline)
//
// Exit codes: 0 done, 1 unexpected error, 2 bad arguments, 3 unreadable or malformed model files.
#include <cstdio>

#include <fmt/format.h>

#include "sdnq/tools/arguments.hpp"
#include "sdnq/tools/inspect.hpp"

namespace {

constexpr std::string_view usage_text =
    "usage: sdnq-inspect <pipeline folder | component folder | file.safetensors | org/repo> [--json]\n"
    "A repo id is looked up in the Hugging Face cache only ($HF_HUB_CACHE); nothing is downloaded.\n";

}  // namespace

int main(int argc, char** argv) {
  using namespace sdnq;
  try {
    const tools::ParsedArguments arguments = tools::parse_arguments(argc, argv, {{"--json", "--help"}, {}});
    if (arguments.flag("--help")) {
      fmt::print("{}", usage_text);
      return 0;
    }
    SDNQ_REQUIRE(arguments.positional.size() == 1, tools::UsageError, "expected one model path or repo id, got {}",
                 arguments.positional.size());
    const tools::ModelReport report = tools::inspect_model(arguments.positional.front());
    if (arguments.flag("--json"))
      fmt::print("{}\n", tools::to_json(report).dump(2));
    else
      fmt::print("{}", tools::to_text(report));
    return 0;
  } catch (const tools::UsageError& error) {
    fmt::print(stderr, "sdnq-inspect: {}\n{}", error.what(), usage_text);
    return 2;
  } catch (const Error& error) {
    fmt::print(stderr, "sdnq-inspect: {}\n", error.what());
    return 3;
  } catch (const std::exception& error) {
    fmt::print(stderr, "sdnq-inspect: unexpected error: {}\n", error.what());
    return 1;
  }
}
