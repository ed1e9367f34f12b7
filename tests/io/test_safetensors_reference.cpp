// Files written by the reference Python implementation (safetensors' Rust writer), from the shared
// fixtures (SDNQ_FIXTURES, default ../shared/fixtures/sdnq-reference beside the repository):
// the reader accepts them, and rewriting their tensors in the same order with the same metadata
// reproduces them byte for byte, which pins the writer's header format to the reference's.
#include <algorithm>
#include <vector>

#include "fixture_paths.hpp"
#include "io/test_safetensors_support.hpp"
#include "sdnq/io/safetensors.hpp"

using namespace sdnq;
using namespace sdnq::io;

TEST_CASE("safetensors: reference-written files are read and rewritten byte for byte", "[io][safetensors]") {
  const std::filesystem::path fixtures = sdnq::test::reference_fixtures_dir();
  std::vector<std::filesystem::path> files;
  if (std::filesystem::is_directory(fixtures))
    for (const auto& entry : std::filesystem::recursive_directory_iterator(fixtures))
      if (entry.path().extension() == ".safetensors") files.push_back(entry.path());
  if (files.empty()) {
    WARN("no reference safetensors files under " << fixtures.string() << " (set SDNQ_FIXTURES)");
    return;
  }

  sdnq::test::ScratchFolder folder;
  for (const auto& path : files) {
    INFO(path.string());
    const SafetensorsFile file = SafetensorsFile::open(path);
    std::vector<NamedTensor> tensors;
    for (const auto& name : file.names()) {
      const TensorInfo& info = file.info(name);
      const bool renamed = info.safetensors_dtype != dtype_name(info.dtype);  // the fnuz floats, read as U8
      tensors.push_back({name, file.tensor(name), renamed ? info.safetensors_dtype : ""});
    }
    const auto rewritten = folder / "rewritten.safetensors";
    write_safetensors(rewritten, tensors, file.metadata());
    // With more than one metadata entry the reference's key order is a hash map's; compare the data only.
    if (file.metadata().size() <= 1) {
      CHECK(sdnq::test::read_file(rewritten) == sdnq::test::read_file(path));
    } else {
      const SafetensorsFile again = SafetensorsFile::open(rewritten);
      CHECK(again.metadata() == file.metadata());
      for (const auto& name : file.names()) CHECK(std::ranges::equal(again.bytes(name), file.bytes(name)));
    }
  }
}
