// Malformed safetensors files, built byte by byte: each must raise the right typed exception with a
// message naming the file, the tensor where there is one, and what was wrong.
#include <string>
#include <vector>

#include "io/test_safetensors_support.hpp"
#include "sdnq/io/safetensors.hpp"

using namespace sdnq;
using namespace sdnq::io;
using sdnq::test::require_error;
using sdnq::test::safetensors_bytes;
using sdnq::test::ScratchFolder;

namespace {

// A well-formed two-tensor file: "a" F32[2] at [0, 8), "b" U8[4] at [8, 12).
const std::string valid_header =
    R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[4],"data_offsets":[8,12]}})";
const std::string valid_data = std::string(
    "\x00\x00\x80\x3f\x00\x00\x00\x40"
    "wxyz",
    12);

// Writes `bytes` as <name>.safetensors and opens it.
void open_bytes(const ScratchFolder& folder, const std::string& name, const std::string& bytes) {
  const auto path = folder / name;
  sdnq::test::write_file(path, bytes);
  SafetensorsFile::open(path);
}

// One tensor entry `entry` for tensor "w", followed by `data`.
std::string one_tensor(const std::string& entry, const std::string& data = std::string(8, '\0')) {
  return safetensors_bytes(R"({"w":)" + entry + "}", data);
}

}  // namespace

TEST_CASE("safetensors errors: the reference file is valid", "[io][safetensors][errors]") {
  ScratchFolder folder;
  REQUIRE_NOTHROW(open_bytes(folder, "valid.safetensors", safetensors_bytes(valid_header, valid_data)));
}

TEST_CASE("safetensors errors: a file cut short at any point is rejected", "[io][safetensors][errors]") {
  ScratchFolder folder;
  const std::string whole = safetensors_bytes(valid_header, valid_data);
  for (std::size_t cut = 0; cut < whole.size(); ++cut) {
    INFO("cut at " << cut << " of " << whole.size());
    require_error<FormatError>([&] { open_bytes(folder, "cut.safetensors", whole.substr(0, cut)); },
                               {"cut.safetensors"});
  }
  require_error<FormatError>([&] { open_bytes(folder, "tiny.safetensors", "1234"); },
                             {"tiny.safetensors", "too short"});
  require_error<FormatError>([&] { open_bytes(folder, "data-cut.safetensors", whole.substr(0, whole.size() - 1)); },
                             {"'b'", "[8, 12]", "past the end"});
}

TEST_CASE("safetensors errors: header length beyond the file or the 100 MB limit", "[io][safetensors][errors]") {
  ScratchFolder folder;
  require_error<FormatError>(
      [&] { open_bytes(folder, "long.safetensors", safetensors_bytes(valid_header, valid_data, 4096)); },
      {"long.safetensors", "header length 4096", "past the end"});
  require_error<FormatError>([&] { open_bytes(folder, "huge.safetensors", safetensors_bytes("{}", "", 100'000'001)); },
                             {"huge.safetensors", "100000001", "limit"});
  require_error<FormatError>(
      [&] { open_bytes(folder, "max.safetensors", safetensors_bytes("{}", "", -2 + (std::int64_t{1} << 62))); },
      {"max.safetensors", "limit"});
}

TEST_CASE("safetensors errors: overlapping, gapped, reversed and out-of-range offsets", "[io][safetensors][errors]") {
  ScratchFolder folder;
  const std::string b_entry = R"("b":{"dtype":"U8","shape":[4],"data_offsets":)";
  const std::string a_entry = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)";
  require_error<FormatError>(
      [&] { open_bytes(folder, "overlap.safetensors", safetensors_bytes(a_entry + b_entry + "[6,10]}}", valid_data)); },
      {"overlap.safetensors", "'b'", "overlap", "'a'"});
  require_error<FormatError>(
      [&] {
        open_bytes(folder, "gap.safetensors", safetensors_bytes(a_entry + b_entry + "[9,13]}}", valid_data + "!"));
      },
      {"gap.safetensors", "'b'", "gap", "[8, 9)"});
  require_error<FormatError>(
      [&] {
        open_bytes(folder, "first-gap.safetensors", one_tensor(R"({"dtype":"U8","shape":[4],"data_offsets":[4,8]})"));
      },
      {"'w'", "gap", "[0, 4)"});
  require_error<FormatError>(
      [&] {
        open_bytes(folder, "reversed.safetensors", one_tensor(R"({"dtype":"U8","shape":[0],"data_offsets":[8,0]})"));
      },
      {"reversed.safetensors", "'w'", "end before they begin"});
  require_error<FormatError>(
      [&] {
        open_bytes(folder, "range.safetensors", one_tensor(R"({"dtype":"U8","shape":[16],"data_offsets":[0,16]})"));
      },
      {"range.safetensors", "'w'", "past the end of the 8-byte data section"});
  require_error<FormatError>(
      [&] { open_bytes(folder, "trailing.safetensors", safetensors_bytes(valid_header, valid_data + "junk")); },
      {"trailing.safetensors", "16 bytes", "only the first 12"});
  require_error<FormatError>([&] { open_bytes(folder, "no-tensors.safetensors", safetensors_bytes("{}", "data")); },
                             {"no-tensors.safetensors", "trailing"});
}

TEST_CASE("safetensors errors: dtype, shape and size problems", "[io][safetensors][errors]") {
  ScratchFolder folder;
  require_error<FormatError>(
      [&] {
        open_bytes(folder, "dtype.safetensors", one_tensor(R"({"dtype":"F33","shape":[2],"data_offsets":[0,8]})"));
      },
      {"dtype.safetensors", "'w'", "unknown dtype \"F33\"", "F8_E4M3"});
  require_error<UnsupportedError>(
      [&] { open_bytes(folder, "c64.safetensors", one_tensor(R"({"dtype":"C64","shape":[1],"data_offsets":[0,8]})")); },
      {"c64.safetensors", "'w'", "C64", "not support"});
  require_error<FormatError>(
      [&] {
        open_bytes(folder, "size.safetensors", one_tensor(R"({"dtype":"F32","shape":[3],"data_offsets":[0,8]})"));
      },
      {"size.safetensors", "'w'", "8 bytes", "F32 [3] needs 12"});
  require_error<FormatError>(
      [&] { open_bytes(folder, "neg.safetensors", one_tensor(R"({"dtype":"U8","shape":[-8],"data_offsets":[0,8]})")); },
      {"neg.safetensors", "'w'", "negative"});
  require_error<FormatError>(
      [&] {
        open_bytes(folder, "negoff.safetensors", one_tensor(R"({"dtype":"U8","shape":[8],"data_offsets":[-1,8]})"));
      },
      {"'w'", "data_offsets[0]", "negative"});
  require_error<FormatError>(
      [&] {
        open_bytes(folder, "overflow.safetensors",
                   one_tensor(R"({"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,8]})"));
      },
      {"overflow.safetensors", "'w'", "overflows"});
  require_error<FormatError>(
      [&] {
        open_bytes(folder, "bytes-overflow.safetensors",
                   one_tensor(R"({"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,8]})"));
      },
      {"'w'", "byte size", "overflows"});
  require_error<FormatError>(
      [&] {
        open_bytes(folder, "rank.safetensors",
                   one_tensor(R"({"dtype":"U8","shape":[1,1,1,1,1,1,1,1,8],"data_offsets":[0,8]})"));
      },
      {"rank.safetensors", "'w'", "rank 9", "at most 8"});
  require_error<FormatError>(
      [&] {
        open_bytes(folder, "big-dim.safetensors",
                   one_tensor(R"({"dtype":"U8","shape":[18446744073709551615],"data_offsets":[0,8]})"));
      },
      {"'w'", "too large"});
}

TEST_CASE("safetensors errors: invalid UTF-8 in the header", "[io][safetensors][errors]") {
  ScratchFolder folder;
  for (std::string bad : {std::string("\xff"), std::string("\xc0\x80"), std::string("\xed\xa0\x80"),
                          std::string("\xf4\x90\x80\x80"), std::string("\xe2\x82")}) {
    const std::string header = R"({"w)" + bad + R"(":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}})";
    require_error<FormatError>([&] { open_bytes(folder, "utf8.safetensors", safetensors_bytes(header, "12345678")); },
                               {"utf8.safetensors", "UTF-8", "header offset 3"});
  }
}

TEST_CASE("safetensors errors: invalid JSON and JSON of the wrong shape", "[io][safetensors][errors]") {
  ScratchFolder folder;
  auto expect_format_error = [&](const std::string& header, std::initializer_list<std::string_view> expected,
                                 const std::string& data = "") {
    INFO("header: " << header);
    require_error<FormatError>([&] { open_bytes(folder, "json.safetensors", safetensors_bytes(header, data)); },
                               expected);
    // Every message names the file.
    require_error<FormatError>([&] { open_bytes(folder, "json.safetensors", safetensors_bytes(header, data)); },
                               {"json.safetensors"});
  };
  expect_format_error(R"({"w":)", {"invalid JSON"});
  expect_format_error(R"({} trailing)", {"invalid JSON"});
  expect_format_error(R"([])", {"must be a JSON object"});
  expect_format_error(R"( {})", {"must be a JSON object"});
  expect_format_error("", {"must be a JSON object"});
  expect_format_error(std::string("{\0}", 3), {"invalid JSON"});
  expect_format_error(R"({"w":[1,2]})", {"'w'", "entry must be an object", "array"});
  expect_format_error(R"({"w":{"dtype":5,"shape":[],"data_offsets":[0,1]}})", {"'w'", "dtype must be a string"});
  expect_format_error(R"({"w":{"dtype":"U8","shape":"1","data_offsets":[0,1]}})", {"'w'", "shape must be an array"});
  expect_format_error(R"({"w":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}})",
                      {"'w'", "non-negative integer", "floating-point"});
  expect_format_error(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0]}})", {"'w'", "data_offsets must be"});
  expect_format_error(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":"0,1"}})", {"'w'", "data_offsets must be"});
  expect_format_error(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,true]}})", {"'w'", "data_offsets[1]"});
  expect_format_error(R"({"w":{"dtype":"U8","shape":[1]}})", {"'w'", "missing field \"data_offsets\""});
  expect_format_error(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"extra":1}})",
                      {"'w'", "unexpected field \"extra\""});
  expect_format_error(R"({"__metadata__":{"format":1}})", {"__metadata__", "\"format\"", "must be a string"});
  expect_format_error(R"({"__metadata__":["pt"]})", {"__metadata__", "must be an object"});
  expect_format_error(R"({"w":{"dtype":"U8","shape":[[[1]]],"data_offsets":[0,1]}})", {"nested deeper"});
}

TEST_CASE("safetensors errors: duplicate JSON keys", "[io][safetensors][errors]") {
  ScratchFolder folder;
  const std::string entry = R"({"dtype":"U8","shape":[4],"data_offsets":[0,4]})";
  require_error<FormatError>(
      [&] {
        open_bytes(folder, "dup.safetensors", safetensors_bytes(R"({"w":)" + entry + R"(,"w":)" + entry + "}", "1234"));
      },
      {"dup.safetensors", "duplicate", "\"w\""});
  require_error<FormatError>(
      [&] {
        open_bytes(folder, "dup-field.safetensors",
                   safetensors_bytes(R"({"w":{"dtype":"U8","dtype":"U8","shape":[4],"data_offsets":[0,4]}})", "1234"));
      },
      {"dup-field.safetensors", "duplicate", "\"dtype\""});
  require_error<FormatError>(
      [&] { open_bytes(folder, "dup-meta.safetensors", safetensors_bytes(R"({"__metadata__":{"a":"1","a":"2"}})")); },
      {"dup-meta.safetensors", "duplicate", "\"a\""});
}

TEST_CASE("safetensors errors: missing files, folders and tensor names", "[io][safetensors][errors]") {
  ScratchFolder folder;
  require_error<IoError>([&] { SafetensorsFile::open(folder / "absent.safetensors"); },
                         {"absent.safetensors", "No such file"});
  require_error<IoError>([&] { SafetensorsFile::open(folder.path()); }, {folder.path().string(), "not a regular file"});
  require_error<FormatError>([&] { open_bytes(folder, "empty.safetensors", ""); }, {"empty.safetensors", "0 bytes"});

  const auto path = folder / "valid.safetensors";
  sdnq::test::write_file(path, safetensors_bytes(valid_header, valid_data));
  SafetensorsFile file = SafetensorsFile::open(path);
  require_error<FormatError>([&] { file.tensor("missing.weight"); }, {"valid.safetensors", "'missing.weight'"});
  require_error<FormatError>([&] { file.info("c"); }, {"valid.safetensors", "'c'"});
}

TEST_CASE("safetensors errors: the in-memory parser labels errors with the given name", "[io][safetensors][errors]") {
  const std::string bytes = one_tensor(R"({"dtype":"F32","shape":[3],"data_offsets":[0,8]})");
  std::span<const std::byte> span(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size());
  require_error<FormatError>([&] { parse_safetensors_header(span, "buffer#7"); }, {"buffer#7", "'w'"});
  const std::string good = safetensors_bytes(valid_header, valid_data);
  auto header = parse_safetensors_header({reinterpret_cast<const std::byte*>(good.data()), good.size()}, "good");
  REQUIRE(header.tensors.size() == 2);
  CHECK(header.header_length == valid_header.size());
  CHECK(header.tensors[1].name == "b");
  CHECK(header.tensors[1].data_begin == 8);
}
