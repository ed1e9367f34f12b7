// Sharded checkpoints: the writer's naming and index, the reader's validation, open_checkpoint and
// find_weights_file.
#include <cstring>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/test_safetensors_support.hpp"
#include "sdnq/io/sharded.hpp"

using namespace sdnq;
using namespace sdnq::io;
using sdnq::test::require_error;
using sdnq::test::ScratchFolder;

namespace {

// Five tensors of 16, 40, 8, 64 and 4 bytes whose values encode (tensor, element).
struct FiveTensors {
  std::vector<std::vector<float>> storage;
  std::vector<NamedTensor> named;
  FiveTensors() {
    const std::vector<std::int64_t> sizes = {4, 10, 2, 16, 1};
    storage.resize(sizes.size());
    for (std::size_t t = 0; t < sizes.size(); ++t) {
      for (std::int64_t i = 0; i < sizes[t]; ++i) storage[t].push_back(static_cast<float>(t * 100 + i));
      named.push_back(
          {"block." + std::to_string(t) + ".weight", TensorView(storage[t].data(), DType::f32, {sizes[t]})});
    }
  }
};

void check_values(const Checkpoint& checkpoint, const FiveTensors& source) {
  for (const auto& named : source.named) {
    REQUIRE(checkpoint.contains(named.name));
    TensorView view = checkpoint.tensor(named.name);
    REQUIRE(view.shape() == named.tensor.shape());
    CHECK(std::memcmp(view.data(), named.tensor.data(), named.tensor.nbytes()) == 0);
    CHECK(checkpoint.info(named.name).dtype == DType::f32);
    CHECK(checkpoint.file_of(named.name).mapping().contains(view.data()));
  }
}

nlohmann::json read_json(const std::filesystem::path& path) {
  return nlohmann::json::parse(sdnq::test::read_file(path));
}

// A folder with two valid shards ("a" in one, "b" in the other); the test writes the index.
struct TwoShards {
  ScratchFolder folder;
  float a[2] = {1, 2};
  float b[1] = {3};
  TwoShards() {
    write_safetensors(folder / "m-00001-of-00002.safetensors", {{"a", TensorView(a, DType::f32, {2})}});
    write_safetensors(folder / "m-00002-of-00002.safetensors", {{"b", TensorView(b, DType::f32, {1})}});
  }
  std::filesystem::path index(const std::string& text) const {
    sdnq::test::write_file(folder / "m.safetensors.index.json", text);
    return folder / "m.safetensors.index.json";
  }
};

}  // namespace

TEST_CASE("sharded: writes huggingface-named shards and an index, and reads them back", "[io][sharded]") {
  ScratchFolder folder;
  FiveTensors source;
  // 64-byte shards: {16, 40, 8} = 64, {64}, {4}.
  const auto written =
      write_sharded_safetensors(folder.path(), "diffusion_pytorch_model", source.named, 64, {{"format", "pt"}});
  CHECK(written == folder / "diffusion_pytorch_model.safetensors.index.json");
  for (const char* shard :
       {"diffusion_pytorch_model-00001-of-00003.safetensors", "diffusion_pytorch_model-00002-of-00003.safetensors",
        "diffusion_pytorch_model-00003-of-00003.safetensors"})
    CHECK(std::filesystem::is_regular_file(folder / shard));
  CHECK_FALSE(std::filesystem::exists(folder / "diffusion_pytorch_model.safetensors"));

  const nlohmann::json index = read_json(written);
  CHECK(index["metadata"]["total_size"] == 16 + 40 + 8 + 64 + 4);
  CHECK(index["weight_map"] ==
        nlohmann::json{{"block.0.weight", "diffusion_pytorch_model-00001-of-00003.safetensors"},
                       {"block.1.weight", "diffusion_pytorch_model-00001-of-00003.safetensors"},
                       {"block.2.weight", "diffusion_pytorch_model-00001-of-00003.safetensors"},
                       {"block.3.weight", "diffusion_pytorch_model-00002-of-00003.safetensors"},
                       {"block.4.weight", "diffusion_pytorch_model-00003-of-00003.safetensors"}});

  const Checkpoint checkpoint = open_checkpoint(written);
  CHECK(checkpoint.is_sharded());
  CHECK(checkpoint.path() == written);
  CHECK(checkpoint.metadata() == std::map<std::string, std::string>{{"format", "pt"}});
  CHECK(checkpoint.names() == std::vector<std::string>{"block.0.weight", "block.1.weight", "block.2.weight",
                                                       "block.3.weight", "block.4.weight"});
  check_values(checkpoint, source);
  require_error<FormatError>([&] { checkpoint.tensor("block.9.weight"); },
                             {"diffusion_pytorch_model.safetensors.index.json", "'block.9.weight'"});

  const auto sharded = ShardedSafetensors::open(written);
  CHECK(sharded.shards().size() == 3);
  CHECK(sharded.index_metadata()["total_size"] == 132);
  CHECK(sharded.file_of("block.3.weight").path() == folder / "diffusion_pytorch_model-00002-of-00003.safetensors");
  // The folder form finds the index.
  CHECK(open_checkpoint(folder.path()).is_sharded());
}

TEST_CASE("sharded: one file without index when everything fits, stale files replaced", "[io][sharded]") {
  ScratchFolder folder;
  FiveTensors source;
  write_sharded_safetensors(folder.path(), "model", source.named, 32);  // 40 and 64 bytes get shards of their own
  CHECK(std::filesystem::exists(folder / "model-00005-of-00005.safetensors"));

  const auto written = write_sharded_safetensors(folder.path(), "model", source.named, 1 << 20);
  CHECK(written == folder / "model.safetensors");
  // The earlier index and shards are gone: nothing can load the stale save instead.
  CHECK(std::distance(std::filesystem::directory_iterator(folder.path()), {}) == 1);
  const Checkpoint checkpoint = open_checkpoint(written);
  CHECK_FALSE(checkpoint.is_sharded());
  check_values(checkpoint, source);

  write_sharded_safetensors(folder.path(), "model", source.named, 100);
  CHECK_FALSE(std::filesystem::exists(folder / "model.safetensors"));
  check_values(open_checkpoint(folder / "model.safetensors.index.json"), source);

  require_error<FormatError>(
      [&] {
        write_sharded_safetensors(folder.path(), "dup", {source.named[0], source.named[0]}, 8);
      },
      {"'block.0.weight'", "twice"});
  CHECK_FALSE(std::filesystem::exists(folder / "dup-00001-of-00002.safetensors"));  // checked before writing
  require_error<ConfigError>([&] { write_sharded_safetensors(folder.path(), "../up", source.named, 8); },
                             {"../up", "plain file name"});
}

TEST_CASE("sharded: index problems name the index and the entry", "[io][sharded][errors]") {
  TwoShards shards;
  const std::string a_and_b =
      R"({"metadata":{"total_size":12},"weight_map":{"a":"m-00001-of-00002.safetensors","b":"m-00002-of-00002.safetensors"}})";
  REQUIRE(open_checkpoint(shards.index(a_and_b)).names() == std::vector<std::string>{"a", "b"});

  require_error<IoError>(
      [&] { ShardedSafetensors::open(shards.index(R"({"weight_map":{"a":"m-00009-of-00009.safetensors"}})")); },
      {"m.safetensors.index.json", "m-00009-of-00009.safetensors", "'a'", "No such file"});
  for (const char* escape : {"../x.safetensors", "/etc/passwd", "sub/m-00001-of-00002.safetensors", "..", ".", ""}) {
    INFO("shard name: " << escape);
    nlohmann::json index = {{"weight_map", {{"a", escape}}}};
    require_error<FormatError>([&] { ShardedSafetensors::open(shards.index(index.dump())); },
                               {"m.safetensors.index.json", "'a'", "plain file name"});
  }
  require_error<FormatError>(
      [&] { ShardedSafetensors::open(shards.index(R"({"weight_map":{"c":"m-00001-of-00002.safetensors"}})")); },
      {"m.safetensors.index.json", "'c'", "m-00001-of-00002.safetensors", "no such tensor"});
  require_error<FormatError>([&] { ShardedSafetensors::open(shards.index(R"({"weight_map":{"a":)")); },
                             {"m.safetensors.index.json", "invalid JSON"});
  require_error<FormatError>([&] { ShardedSafetensors::open(shards.index(R"({"metadata":{}})")); },
                             {"m.safetensors.index.json", "weight_map"});
  require_error<FormatError>([&] { ShardedSafetensors::open(shards.index(R"({"weight_map":{"a":1}})")); },
                             {"m.safetensors.index.json", "'a'", "shard file name", "integer"});
  require_error<FormatError>([&] { ShardedSafetensors::open(shards.index(R"({"weight_map":[]})")); },
                             {"m.safetensors.index.json", "weight_map"});
  require_error<FormatError>([&] { ShardedSafetensors::open(shards.index("[1]")); },
                             {"m.safetensors.index.json", "JSON object"});
  require_error<FormatError>(
      [&] {
        ShardedSafetensors::open(
            shards.index(R"({"weight_map":{"a":"m-00001-of-00002.safetensors","a":"m-00002-of-00002.safetensors"}})"));
      },
      {"m.safetensors.index.json", "duplicate", "\"a\""});
  require_error<FormatError>([&] { ShardedSafetensors::open(shards.index("{\"weight_map\":{\"\xff\":\"x\"}}")); },
                             {"m.safetensors.index.json", "UTF-8"});
  require_error<IoError>([&] { ShardedSafetensors::open(shards.folder / "absent.safetensors.index.json"); },
                         {"absent.safetensors.index.json"});

  // A shard that is itself malformed: both names in the message.
  sdnq::test::write_file(shards.folder / "broken.safetensors", sdnq::test::safetensors_bytes("{", ""));
  require_error<FormatError>(
      [&] { ShardedSafetensors::open(shards.index(R"({"weight_map":{"a":"broken.safetensors"}})")); },
      {"m.safetensors.index.json", "broken.safetensors", "invalid JSON"});
}

TEST_CASE("sharded: a shard may be a symlink, as in the Hugging Face cache", "[io][sharded]") {
  ScratchFolder root;
  std::filesystem::create_directories(root / "blobs");
  std::filesystem::create_directories(root / "snapshot");
  float value[1] = {42};
  write_safetensors(root / "blobs" / "0123abcd", {{"x", TensorView(value, DType::f32, {1})}});
  std::filesystem::create_symlink("../blobs/0123abcd", root / "snapshot" / "model-00001-of-00001.safetensors");
  sdnq::test::write_file(root / "snapshot" / "model.safetensors.index.json",
                         R"({"weight_map":{"x":"model-00001-of-00001.safetensors"}})");
  const Checkpoint checkpoint = open_checkpoint(root / "snapshot");
  CHECK(checkpoint.tensor("x").data_as<const float>()[0] == 42.0f);
}

TEST_CASE("find_weights_file: diffusers and transformers names, variants, and what was looked for", "[io][sharded]") {
  ScratchFolder folder;
  require_error<IoError>([&] { find_weights_file(folder.path()); },
                         {folder.path().string(), "diffusion_pytorch_model.safetensors.index.json",
                          "diffusion_pytorch_model.safetensors", "model.safetensors.index.json", "model.safetensors"});
  require_error<IoError>([&] { find_weights_file(folder / "absent"); }, {"absent", "not a folder"});

  sdnq::test::write_file(folder / "model.safetensors", "");
  CHECK(find_weights_file(folder.path()) == folder / "model.safetensors");
  sdnq::test::write_file(folder / "diffusion_pytorch_model.safetensors", "");
  CHECK(find_weights_file(folder.path()) == folder / "diffusion_pytorch_model.safetensors");
  sdnq::test::write_file(folder / "diffusion_pytorch_model.safetensors.index.json", "");
  CHECK(find_weights_file(folder.path()) == folder / "diffusion_pytorch_model.safetensors.index.json");

  // fp16 files are used only when asked for, and then only they are.
  sdnq::test::write_file(folder / "model.fp16.safetensors", "");
  CHECK(find_weights_file(folder.path(), "fp16") == folder / "model.fp16.safetensors");
  sdnq::test::write_file(folder / "diffusion_pytorch_model.safetensors.index.fp16.json", "");
  CHECK(find_weights_file(folder.path(), "fp16") == folder / "diffusion_pytorch_model.safetensors.index.fp16.json");
  require_error<IoError>([&] { find_weights_file(folder.path(), "bf16"); },
                         {"model.bf16.safetensors", "diffusion_pytorch_model.safetensors.index.bf16.json"});
}
