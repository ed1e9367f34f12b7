// safetensors reader and writer: round trips, zero-copy views, metadata, byte-exact layout.
#include <cstring>
#include <numeric>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/test_safetensors_support.hpp"
#include "sdnq/io/safetensors.hpp"

using namespace sdnq;
using namespace sdnq::io;
using sdnq::test::ScratchFolder;

namespace {

// A tensor whose bytes follow a pattern that differs per dtype, so a mixed-up tensor is noticed.
Tensor patterned(DType dtype, Shape shape) {
  Tensor tensor = Tensor::empty(shape, dtype);
  auto* bytes = static_cast<unsigned char*>(tensor.data());
  for (std::size_t i = 0; i < tensor.nbytes(); ++i)
    bytes[i] = static_cast<unsigned char>(i * 37 + static_cast<int>(dtype) * 11 + 5);
  return tensor;
}

bool same_bytes(const TensorView& a, const TensorView& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

}  // namespace

TEST_CASE("safetensors: every dtype round-trips, zero-copy and in the given order", "[io][safetensors]") {
  ScratchFolder folder;
  std::vector<Tensor> sources;
  std::vector<NamedTensor> tensors;
  for (const auto& info : dtype_table) {
    // Wide dtypes first, so every tensor lands aligned for its element size.
    sources.push_back(patterned(info.dtype, {2, 3}));
  }
  std::vector<std::size_t> order(sources.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](auto a, auto b) { return sources[a].view().element_size() > sources[b].view().element_size(); });
  for (auto i : order) tensors.push_back({"t_" + std::string(dtype_name(sources[i].dtype())), sources[i]});

  const auto path = folder / "all.safetensors";
  write_safetensors(path, tensors, {{"format", "pt"}});

  SafetensorsFile file = SafetensorsFile::open(path);
  CHECK(file.path() == path);
  CHECK(file.metadata() == std::map<std::string, std::string>{{"format", "pt"}});
  REQUIRE(file.names().size() == tensors.size());
  CHECK(file.header().data_start() % 8 == 0);
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto& expected = tensors[i];
    CHECK(file.names()[i] == expected.name);  // offset order == the order written
    REQUIRE(file.contains(expected.name));
    const TensorInfo& info = file.info(expected.name);
    CHECK(info.dtype == expected.tensor.dtype());
    CHECK(info.shape == Shape{2, 3});
    CHECK(info.nbytes() == 6 * dtype_size(info.dtype));
    TensorView view = file.tensor(expected.name);
    CHECK(view.device().is_cpu());
    CHECK(file.mapping().contains(view.data()));
    CHECK(static_cast<const std::byte*>(view.data()) ==
          file.mapping().data() + file.header().data_start() + info.data_begin);
    CHECK(same_bytes(view, expected.tensor));
  }
  CHECK_FALSE(file.contains("t_F99"));
}

TEST_CASE("safetensors: the writer's bytes match the format, byte by byte", "[io][safetensors]") {
  ScratchFolder folder;
  std::vector<float> values = {1.5f, -2.0f};
  std::vector<std::uint8_t> flags = {1, 0, 1};
  const auto path = folder / "small.safetensors";
  write_safetensors(
      path, {{"w", TensorView(values.data(), DType::f32, {2})}, {"flags", TensorView(flags.data(), DType::u8, {3})}},
      {{"format", "pt"}});

  // Metadata first, tensors in the given order, compact JSON, spaces up to a multiple of 8.
  std::string header = R"({"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("flags":{"dtype":"U8","shape":[3],"data_offsets":[8,11]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  std::string data(reinterpret_cast<const char*>(values.data()), 8);
  data += std::string("\x01\x00\x01", 3);
  CHECK(sdnq::test::read_file(path) == sdnq::test::safetensors_bytes(header, data));
}

TEST_CASE("safetensors: reads a file built by hand, scalars and empty tensors included", "[io][safetensors]") {
  ScratchFolder folder;
  const std::string header = R"({"scale":{"dtype":"F32","shape":[],"data_offsets":[8,12]},)"
                             R"("empty":{"dtype":"BF16","shape":[0,7],"data_offsets":[8,8]},)"
                             R"("ids":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}})";
  std::int32_t ids[2] = {-7, 123456};
  float scale = 0.25f;
  std::string data(reinterpret_cast<const char*>(ids), 8);
  data.append(reinterpret_cast<const char*>(&scale), 4);
  const auto path = folder / "hand.safetensors";
  sdnq::test::write_file(path, sdnq::test::safetensors_bytes(header, data));

  SafetensorsFile file = SafetensorsFile::open(path);
  CHECK(file.metadata().empty());
  CHECK(file.names() == std::vector<std::string>{"ids", "empty", "scale"});
  TensorView view = file.tensor("ids");
  CHECK(view.shape() == Shape{2});
  CHECK(view.data_as<const std::int32_t>()[0] == -7);
  CHECK(view.data_as<const std::int32_t>()[1] == 123456);
  CHECK(file.tensor("scale").rank() == 0);
  CHECK(file.tensor("scale").data_as<const float>()[0] == 0.25f);
  CHECK(file.tensor("empty").numel() == 0);
  CHECK(file.info("empty").data_begin == 8);
  CHECK(file.info("empty").data_end == 8);
}

TEST_CASE("safetensors: a tensor at an offset unaligned for its dtype is copied to aligned memory",
          "[io][safetensors]") {
  ScratchFolder folder;
  const std::string header = R"({"bytes":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},)"
                             R"("value":{"dtype":"F32","shape":[1],"data_offsets":[3,7]}})";
  const float value = 3.75f;
  std::string data = "abc";
  data.append(reinterpret_cast<const char*>(&value), 4);
  // 8 + 104 = 112: the data section starts 8-aligned, so "value" sits at an odd address.
  std::string padded = header;
  padded.append((8 - padded.size() % 8) % 8, ' ');
  const auto path = folder / "unaligned.safetensors";
  sdnq::test::write_file(path, sdnq::test::safetensors_bytes(padded, data));

  SafetensorsFile file = SafetensorsFile::open(path);
  TensorView view = file.tensor("value");
  CHECK(reinterpret_cast<std::uintptr_t>(view.data()) % alignof(float) == 0);
  CHECK_FALSE(file.mapping().contains(view.data()));
  CHECK(view.data_as<const float>()[0] == 3.75f);
  CHECK(file.tensor("value").data() == view.data());  // copied once
  CHECK(file.mapping().contains(file.tensor("bytes").data()));
  CHECK(std::memcmp(file.bytes("value").data(), &value, 4) == 0);
}

TEST_CASE("safetensors: non-contiguous sources are written in row-major order", "[io][safetensors]") {
  ScratchFolder folder;
  // [3, 4] row-major holding 0..11; its transpose is a [4, 3] view with strides [1, 4].
  std::vector<std::int16_t> matrix(12);
  std::iota(matrix.begin(), matrix.end(), std::int16_t{0});
  TensorView transposed(matrix.data(), DType::i16, {4, 3}, {1, 4}, Device::cpu());
  REQUIRE_FALSE(transposed.is_contiguous());

  const auto path = folder / "transposed.safetensors";
  write_safetensors(path, {{"t", transposed}});
  SafetensorsFile file = SafetensorsFile::open(path);
  TensorView view = file.tensor("t");
  REQUIRE(view.shape() == Shape{4, 3});
  const auto* read = view.data_as<const std::int16_t>();
  for (int row = 0; row < 4; ++row)
    for (int column = 0; column < 3; ++column) CHECK(read[row * 3 + column] == column * 4 + row);
}

TEST_CASE("safetensors: metadata and names with non-ASCII characters survive", "[io][safetensors]") {
  ScratchFolder folder;
  double value = 2.5;
  const std::map<std::string, std::string> metadata = {
      {"format", "pt"}, {"quantization_config", R"({"weights_dtype": "int8", "group_size": 0})"}, {"ünï", "çødé"}};
  const auto path = folder / "meta.safetensors";
  write_safetensors(path, {{"θ.weight", TensorView(&value, DType::f64, {})}}, metadata);
  SafetensorsFile file = SafetensorsFile::open(path);
  CHECK(file.metadata() == metadata);
  CHECK(file.tensor("θ.weight").data_as<const double>()[0] == 2.5);

  // An empty checkpoint is valid: "{}" padded, no data.
  const auto empty_path = folder / "empty.safetensors";
  write_safetensors(empty_path, std::span<const NamedTensor>{});
  CHECK(sdnq::test::read_file(empty_path) == sdnq::test::safetensors_bytes("{}      "));
  CHECK(SafetensorsFile::open(empty_path).names().empty());
}

TEST_CASE("safetensors: the writer rejects duplicate names, reserved names and device views", "[io][safetensors]") {
  ScratchFolder folder;
  float values[2] = {1, 2};
  TensorView view(values, DType::f32, {2});
  const auto path = folder / "bad.safetensors";
  using sdnq::test::require_error;
  require_error<FormatError>(
      [&] {
        write_safetensors(path, {{"a", view}, {"b", view}, {"a", view}});
      },
      {"bad.safetensors", "'a'", "twice"});
  require_error<FormatError>([&] { write_safetensors(path, {{"__metadata__", view}}); }, {"__metadata__", "reserved"});
  require_error<ShapeError>(
      [&] {
        write_safetensors(path, {{"gpu", TensorView(values, DType::f32, {2}, {1}, Device::cuda(0))}});
      },
      {"bad.safetensors", "'gpu'", "cuda:0", "host"});
  require_error<FormatError>([&] { write_safetensors(path, {{std::string("bad\xff"), view}}); }, {"UTF-8"});
  std::uint8_t bytes[2] = {0x7f, 0x80};
  require_error<FormatError>(
      [&] {
        write_safetensors(path, {{"f", TensorView(values, DType::f32, {2}), "F8_E4M3FNUZ"}});
      },
      {"bad.safetensors", "'f'", "F8_E4M3FNUZ", "1-byte"});
  require_error<FormatError>(
      [&] {
        write_safetensors(path, {{"f", TensorView(bytes, DType::u8, {2}), "F99"}});
      },
      {"'f'", "\"F99\""});
  CHECK_FALSE(std::filesystem::exists(path));
  CHECK(std::filesystem::is_empty(folder.path()));

  // A valid override: the header says F8_E4M3FNUZ, the bytes are the U8 view's.
  const auto fnuz = folder / "fnuz.safetensors";
  write_safetensors(fnuz, {{"f", TensorView(bytes, DType::u8, {2}), "F8_E4M3FNUZ"}});
  std::string header = R"({"f":{"dtype":"F8_E4M3FNUZ","shape":[2],"data_offsets":[0,2]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  CHECK(sdnq::test::read_file(fnuz) == sdnq::test::safetensors_bytes(header, "\x7f\x80"));  // no temporary left either
}
