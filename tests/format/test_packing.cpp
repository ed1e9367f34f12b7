#include "fixture_paths.hpp"
#include "sdnq_catch.hpp"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "sdnq/format/packing.hpp"
#include "sdnq/format/storage_type.hpp"
#include "sdnq/io/safetensors.hpp"

using namespace sdnq;
using namespace sdnq::format;

namespace {

const int packable_widths[] = {1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15};

// An independent packer: the §1.5 formulas written as a list of bit fields, interpreted at run time.
// A field moves `width` bits starting at bit `code_bit` of code `code` to bit `word_bit` of word `word`.
struct Field {
  int word, word_bit, code, code_bit, width;
};
struct Layout {
  int codes_per_block, words_per_block, word_bits;
  std::vector<Field> fields;
};

Layout formula_layout(int n) {
  Layout layout{0, 0, n < 8 ? 8 : 16, {}};
  auto& f = layout.fields;
  auto whole_codes_in_low_bits = [&](int count) {
    for (int j = 0; j < count; ++j) f.push_back({j, 0, j, 0, n});
  };
  switch (n) {
    case 1:
    case 2:
    case 4:  // codes side by side in one byte, the first in the lowest bits
      layout.codes_per_block = 8 / n;
      layout.words_per_block = 1;
      for (int j = 0; j < 8 / n; ++j) f.push_back({0, n * j, j, 0, n});
      break;
    case 3:  // w0 = c0 | c3<<3 | (c6&3)<<6; w1 = c1 | c4<<3 | (c7&3)<<6; w2 = c2 | c5<<3 | (c6>>2&1)<<6 | (c7>>2&1)<<7
      layout = {8, 3, 8, {}};
      whole_codes_in_low_bits(3);
      f.insert(f.end(), {{0, 3, 3, 0, 3},
                         {1, 3, 4, 0, 3},
                         {2, 3, 5, 0, 3},
                         {0, 6, 6, 0, 2},
                         {1, 6, 7, 0, 2},
                         {2, 6, 6, 2, 1},
                         {2, 7, 7, 2, 1}});
      break;
    case 5:  // w_j = c_j | (c_{5+j}&7)<<5; w3 = c3 | (c5>>3&3)<<5 | (c7>>4&1)<<7; w4 = c4 | (c6>>3&3)<<5 | (c7>>3&1)<<7
      layout = {8, 5, 8, {}};
      whole_codes_in_low_bits(5);
      for (int j = 0; j < 3; ++j) f.push_back({j, 5, 5 + j, 0, 3});
      f.insert(f.end(), {{3, 5, 5, 3, 2}, {3, 7, 7, 4, 1}, {4, 5, 6, 3, 2}, {4, 7, 7, 3, 1}});
      break;
    case 6:  // w0 = c0 | (c3>>4&3)<<6; w1 = c1 | (c3>>2&3)<<6; w2 = c2 | (c3&3)<<6
      layout = {4, 3, 8, {}};
      whole_codes_in_low_bits(3);
      f.insert(f.end(), {{0, 6, 3, 4, 2}, {1, 6, 3, 2, 2}, {2, 6, 3, 0, 2}});
      break;
    case 7:  // w_j = c_j | (c7>>(6-j)&1)<<7
      layout = {8, 7, 8, {}};
      whole_codes_in_low_bits(7);
      for (int j = 0; j < 7; ++j) f.push_back({j, 7, 7, 6 - j, 1});
      break;
    case 9:  // w_j = c_j | (c_{8+j}&0x7F)<<9 (j<8); w8 = sum_k (c_{8+k}>>7&3)<<2k
      layout = {16, 9, 16, {}};
      whole_codes_in_low_bits(8);
      for (int j = 0; j < 8; ++j) f.push_back({j, 9, 8 + j, 0, 7});
      for (int k = 0; k < 8; ++k) f.push_back({8, 2 * k, 8 + k, 7, 2});
      break;
    case 10:  // w_j = c_j | (c_{5+j}&0x3F)<<10; w3 = c3 | (c5>>6&0xF)<<10 | (c7>>8&3)<<14; w4 = c4 | (c6>>6&0xF)<<10 |
              // (c7>>6&3)<<14
      layout = {8, 5, 16, {}};
      whole_codes_in_low_bits(5);
      for (int j = 0; j < 3; ++j) f.push_back({j, 10, 5 + j, 0, 6});
      f.insert(f.end(), {{3, 10, 5, 6, 4}, {3, 14, 7, 8, 2}, {4, 10, 6, 6, 4}, {4, 14, 7, 6, 2}});
      break;
    case 11:  // w_j = c_j | (c_{8+j}&0x1F)<<11; w8..w10 hold the top 6 bits of c8..c15 (c14, c15 split 4 + 2)
      layout = {16, 11, 16, {}};
      whole_codes_in_low_bits(8);
      for (int j = 0; j < 8; ++j) f.push_back({j, 11, 8 + j, 0, 5});
      f.insert(f.end(), {{8, 0, 8, 5, 6},
                         {8, 6, 11, 5, 6},
                         {8, 12, 14, 5, 4},
                         {9, 0, 9, 5, 6},
                         {9, 6, 12, 5, 6},
                         {9, 12, 15, 5, 4},
                         {10, 0, 10, 5, 6},
                         {10, 6, 13, 5, 6},
                         {10, 12, 14, 9, 2},
                         {10, 14, 15, 9, 2}});
      break;
    case 12:  // w0 = c0 | (c3>>8&0xF)<<12; w1 = c1 | (c3>>4&0xF)<<12; w2 = c2 | (c3&0xF)<<12
      layout = {4, 3, 16, {}};
      whole_codes_in_low_bits(3);
      f.insert(f.end(), {{0, 12, 3, 8, 4}, {1, 12, 3, 4, 4}, {2, 12, 3, 0, 4}});
      break;
    case 13:  // w_{3g+i} = c_{3g+i} | (c_{13+i}>>3g&7)<<13; w12 = c12 | (c13>>12&1)<<13 | (c14>>12&1)<<14 |
              // (c15>>12&1)<<15
      layout = {16, 13, 16, {}};
      whole_codes_in_low_bits(13);
      for (int g = 0; g < 4; ++g)
        for (int i = 0; i < 3; ++i) f.push_back({3 * g + i, 13, 13 + i, 3 * g, 3});
      for (int i = 0; i < 3; ++i) f.push_back({12, 13 + i, 13 + i, 12, 1});
      break;
    case 14:  // w_j = c_j | (c7>>(12-2j)&3)<<14
      layout = {8, 7, 16, {}};
      whole_codes_in_low_bits(7);
      for (int j = 0; j < 7; ++j) f.push_back({j, 14, 7, 12 - 2 * j, 2});
      break;
    case 15:  // w_j = c_j | (c15>>(14-j)&1)<<15
      layout = {16, 15, 16, {}};
      whole_codes_in_low_bits(15);
      for (int j = 0; j < 15; ++j) f.push_back({j, 15, 15, 14 - j, 1});
      break;
  }
  return layout;
}

// Packed words as unsigned integers (one byte each for 1 bit, as the reference's int64 words hold).
std::vector<std::uint64_t> formula_pack(int n, const std::vector<std::uint16_t>& codes) {
  const Layout layout = formula_layout(n);
  const std::size_t blocks = codes.size() / layout.codes_per_block;
  std::vector<std::uint64_t> words(blocks * layout.words_per_block, 0);
  for (std::size_t b = 0; b < blocks; ++b)
    for (const Field& field : layout.fields) {
      const std::uint64_t bits =
          (codes[b * layout.codes_per_block + field.code] >> field.code_bit) & ((1u << field.width) - 1);
      words[b * layout.words_per_block + field.word] |= bits << field.word_bit;
    }
  return words;
}

std::vector<std::uint16_t> formula_unpack(int n, const std::vector<std::uint64_t>& words) {
  const Layout layout = formula_layout(n);
  const std::size_t blocks = words.size() / layout.words_per_block;
  std::vector<std::uint16_t> codes(blocks * layout.codes_per_block, 0);
  for (std::size_t b = 0; b < blocks; ++b)
    for (const Field& field : layout.fields) {
      const std::uint64_t bits =
          (words[b * layout.words_per_block + field.word] >> field.word_bit) & ((1u << field.width) - 1);
      codes[b * layout.codes_per_block + field.code] |= static_cast<std::uint16_t>(bits << field.code_bit);
    }
  return codes;
}

// The packed buffer of the library as unsigned words, whatever its element type.
std::vector<std::uint64_t> words_of(int n, const std::vector<std::byte>& buffer) {
  const std::size_t size = dtype_size(packed_dtype(n));
  std::vector<std::uint64_t> words(buffer.size() / size);
  for (std::size_t i = 0; i < words.size(); ++i) {
    std::uint64_t word = 0;
    std::memcpy(&word, buffer.data() + i * size, size);  // little-endian host
    words[i] = word;
  }
  return words;
}

std::vector<std::byte> bytes_of(int n, const std::vector<std::uint64_t>& words) {
  const std::size_t size = dtype_size(packed_dtype(n));
  std::vector<std::byte> buffer(words.size() * size);
  for (std::size_t i = 0; i < words.size(); ++i) std::memcpy(buffer.data() + i * size, &words[i], size);
  return buffer;
}

std::vector<std::uint16_t> random_codes(int n, std::size_t count, std::mt19937& rng) {
  std::uniform_int_distribution<int> code(0, (1 << n) - 1);
  std::vector<std::uint16_t> codes(count);
  for (auto& c : codes) c = static_cast<std::uint16_t>(code(rng));
  return codes;
}

std::vector<std::byte> library_pack(int n, const std::vector<std::uint16_t>& codes) {
  const Shape shape = packed_shape(n, static_cast<std::int64_t>(codes.size()));
  std::vector<std::byte> buffer(static_cast<std::size_t>(shape.numel()) * dtype_size(packed_dtype(n)));
  pack_codes(n, codes, buffer.data());
  return buffer;
}

std::vector<std::uint16_t> library_unpack(int n, std::vector<std::byte>& buffer, std::size_t count) {
  std::vector<std::uint16_t> codes(count);
  const Shape shape = packed_shape(n, static_cast<std::int64_t>(count));
  unpack_codes(n, TensorView(buffer.data(), packed_dtype(n), shape), codes);
  return codes;
}

}  // namespace

TEST_CASE("packing: the field tables of the test cover every bit once", "[format][packing]") {
  for (int n : packable_widths) {
    INFO("bits " << n);
    const Layout layout = formula_layout(n);
    CHECK(layout.codes_per_block * n == layout.words_per_block * layout.word_bits);
    std::vector<int> code_bits(layout.codes_per_block * n, 0), word_bits(layout.words_per_block * layout.word_bits, 0);
    for (const Field& field : layout.fields)
      for (int bit = 0; bit < field.width; ++bit) {
        ++code_bits.at(field.code * n + field.code_bit + bit);
        ++word_bits.at(field.word * layout.word_bits + field.word_bit + bit);
      }
    for (int count : code_bits) CHECK(count == 1);
    for (int count : word_bits) CHECK(count == 1);
  }
}

TEST_CASE("packing: block sizes, dtypes and shapes", "[format][packing]") {
  for (int n : packable_widths) {
    INFO("bits " << n);
    const Layout layout = formula_layout(n);
    CHECK(pack_block_size(n) == layout.codes_per_block);
    CHECK(pack_block_words(n) == layout.words_per_block);
    const std::int64_t numel = 64 * 48;  // a multiple of every block size
    const Shape shape = packed_shape(n, numel);
    if (n == 1 || n == 2 || n == 4) {
      CHECK(shape == Shape{numel * n / 8});
    } else {
      CHECK(shape == Shape{numel / layout.codes_per_block, layout.words_per_block});
    }
  }
  CHECK(packed_dtype(1) == DType::i64);
  CHECK(packed_dtype(3) == DType::u8);
  CHECK(packed_dtype(7) == DType::u8);
  CHECK(packed_dtype(9) == DType::i16);
  CHECK(packed_dtype(15) == DType::i16);
  CHECK_THROWS_AS(packed_dtype(8), UnsupportedError);
  CHECK_THROWS_AS(pack_block_size(16), UnsupportedError);
  CHECK_THROWS_AS(pack_block_size(0), UnsupportedError);
  // The packed dtype agrees with the storage-type table for every packed integer type.
  for (const auto& type : all_storage_types())
    if (type.uses_bit_packer()) CHECK(packed_dtype(type.bits) == type.stored_dtype);
}

TEST_CASE("packing: random codes pack byte-exactly like the §1.5 formulas and round trip", "[format][packing]") {
  std::mt19937 rng(1234);
  for (int n : packable_widths) {
    INFO("bits " << n);
    const std::size_t count = 16 * 97;
    const auto codes = random_codes(n, count, rng);
    auto packed = library_pack(n, codes);
    CHECK(words_of(n, packed) == formula_pack(n, codes));
    CHECK(library_unpack(n, packed, count) == codes);

    // Any bit pattern unpacks like the formulas (the file is the truth, valid codes or not).
    std::vector<std::uint64_t> words(count * n / (n == 1 ? 8 : n < 8 ? 8 : 16));
    std::uniform_int_distribution<std::uint32_t> word(0, n < 8 ? 0xFF : 0xFFFF);
    for (auto& w : words) w = word(rng);
    auto buffer = bytes_of(n, words);
    const auto unpacked = library_unpack(n, buffer, count);
    CHECK(unpacked == formula_unpack(n, words));
    CHECK(words_of(n, library_pack(n, unpacked)) == words);  // every bit of a word belongs to one code
  }
}

TEST_CASE("packing: templated entry points equal the run-time dispatch", "[format][packing]") {
  std::mt19937 rng(7);
  const auto codes = random_codes(5, 64, rng);
  std::vector<std::uint8_t> typed(40), dispatched(40);
  pack<5>(codes, typed.data());
  pack_codes(5, codes, dispatched.data());
  CHECK(typed == dispatched);
  std::vector<std::uint16_t> back(64);
  unpack<5>(typed.data(), back);
  CHECK(back == codes);
}

TEST_CASE("packing: quirk Q1 codes of 2^n are packed as the reference packs them", "[format][packing]") {
  // uint9: c0 = 512 lands on bit 9 of word 0, which is bit 0 of code 8's field; c8 = 512 loses its top bit.
  std::vector<std::uint16_t> codes(16, 0);
  codes[0] = 512;
  std::vector<std::uint16_t> packed(9);
  pack<9>(codes, packed.data());
  CHECK(packed[0] == 0x200);
  std::vector<std::uint16_t> back(16);
  unpack<9>(packed.data(), back);
  CHECK(back[0] == 0);  // the group maximum decodes as the group minimum
  CHECK(back[8] == 1);  // and bit 0 of a neighbour is corrupted

  std::fill(codes.begin(), codes.end(), 0);
  codes[8] = 512;
  pack<9>(codes, packed.data());
  for (auto word : packed) CHECK(word == 0);

  // uint15: the spare code c15 = 2^15 keeps no bit; c0 = 2^15 sets bit 15 of word 0 (c15's bit 14).
  std::vector<std::uint16_t> codes15(16, 0);
  codes15[0] = 32768;
  std::vector<std::uint16_t> packed15(15);
  pack<15>(codes15, packed15.data());
  CHECK(packed15[0] == 0x8000);
  std::vector<std::uint16_t> back15(16);
  unpack<15>(packed15.data(), back15);
  CHECK(back15[0] == 0);
  CHECK(back15[15] == 1u << 14);
}

TEST_CASE("packing: offset binary of signed codes", "[format][packing]") {
  CHECK(to_code(-16, 5, true) == 0);
  CHECK(to_code(15, 5, true) == 31);
  CHECK(to_code(0, 5, true) == 16);
  CHECK(to_code(7, 4, false) == 7);
  CHECK(from_code(0, 5, true) == -16);
  CHECK(from_code(31, 5, true) == 15);
  CHECK(from_code(255, 9, true) == -1);
  for (int q = -256; q <= 255; ++q) CHECK(from_code(to_code(q, 9, true), 9, true) == q);
}

TEST_CASE("packing: bad sizes and dtypes are clear errors", "[format][packing]") {
  std::vector<std::uint16_t> codes(63, 1);
  std::vector<std::uint8_t> out(64);
  CHECK_THROWS_AS(pack_codes(5, codes, out.data()), ShapeError);
  CHECK_THROWS_AS(packed_shape(9, 24), ShapeError);
  CHECK_THROWS_AS(pack_codes(8, codes, out.data()), UnsupportedError);

  std::vector<std::uint8_t> bytes(37);
  std::vector<std::uint16_t> decoded(64);
  try {
    unpack_codes(5, TensorView(bytes.data(), DType::u8, Shape{37}), decoded);
    FAIL("expected FormatError");
  } catch (const FormatError& error) {
    CHECK(std::string(error.what()) == "packed uint5 weight has 37 bytes, expected 40 for 64 codes");
  }
  std::vector<std::int16_t> words(54);
  try {
    unpack_codes(9, TensorView(words.data(), DType::u8, Shape{54}), decoded, "linear.weight");
    FAIL("expected FormatError");
  } catch (const FormatError& error) {
    CHECK(std::string(error.what()) == "packed uint9 linear.weight has dtype U8, expected I16");
  }
  CHECK_THROWS_AS(unpack_codes(9, TensorView(words.data(), DType::i16, Shape{54}), decoded), FormatError);
  CHECK_NOTHROW(unpack_codes(9, TensorView(words.data(), DType::i16, Shape{4, 9}), decoded));

  // 1 bit: int64 words holding bytes (what the reference writes), or U8/BOOL bytes; nothing else.
  std::vector<std::int64_t> one_bit_words(8, 0xA5);
  CHECK_NOTHROW(unpack_codes(1, TensorView(one_bit_words.data(), DType::i64, Shape{8}), decoded));
  CHECK(decoded[0] == 1);
  CHECK(decoded[1] == 0);
  CHECK(decoded[7] == 1);
  std::vector<std::uint8_t> one_bit_bytes(8, 0x5A);
  CHECK_NOTHROW(unpack_codes(1, TensorView(one_bit_bytes.data(), DType::boolean, Shape{8}), decoded));
  CHECK(decoded[0] == 0);
  CHECK(decoded[1] == 1);
  CHECK_THROWS_AS(unpack_codes(1, TensorView(one_bit_words.data(), DType::i32, Shape{16}), decoded), FormatError);
  one_bit_words[3] = 256;
  CHECK_THROWS_WITH(unpack_codes(1, TensorView(one_bit_words.data(), DType::i64, Shape{8}), decoded),
                    "packed uint1 weight element 3 is 256, but 1-bit weights hold one byte (0..255) per int64 word");
}

namespace {

// Unpacking and re-packing every packed weight of a reference file gives back the file's bytes.
// Returns how many weights were checked.
int check_fixture_round_trip(const std::filesystem::path& path, std::string_view weights_dtype) {
  const StorageType& type = storage_type(weights_dtype);
  if (!type.uses_bit_packer()) return 0;
  const auto file = io::SafetensorsFile::open(path);
  int checked = 0;
  for (const std::string& name : file.names()) {
    const TensorView packed = file.tensor(name);
    if (!name.ends_with(".weight") || packed.dtype() != type.stored_dtype) continue;
    INFO(path.string() << " " << name);
    const std::span<const std::byte> stored = file.bytes(name);
    // 1 bit: each int64 word holds 8 codes; otherwise every stored bit is a code bit.
    const std::int64_t codes =
        type.bits == 1 ? packed.numel() * 8 : static_cast<std::int64_t>(stored.size()) * 8 / type.bits;
    CHECK(packed.shape() == packed_shape(type.bits, codes));
    std::vector<std::uint16_t> unpacked(static_cast<std::size_t>(codes));
    unpack_codes(type.bits, packed, unpacked, name);
    CHECK(std::all_of(unpacked.begin(), unpacked.end(), [&](std::uint16_t code) { return code < (1u << type.bits); }));
    std::vector<std::byte> repacked(stored.size());
    pack_codes(type.bits, unpacked, repacked.data());
    CHECK(std::equal(repacked.begin(), repacked.end(), stored.begin(), stored.end()));
    ++checked;
  }
  return checked;
}

}  // namespace

TEST_CASE("packing: reference fixture weights unpack and re-pack to the same bytes", "[format][packing][fixtures]") {
  // A copy of the reference's packed weights, one storage type per width (tests/data/format/<type>.safetensors).
  int checked = 0;
  std::set<int> widths;
  for (const auto& entry : std::filesystem::directory_iterator(sdnq::test::data_dir() / "format")) {
    if (entry.path().extension() != ".safetensors") continue;
    const std::string weights_dtype = entry.path().stem().string();
    const int count = check_fixture_round_trip(entry.path(), weights_dtype);
    CHECK(count == 1);
    checked += count;
    widths.insert(storage_type(weights_dtype).bits);
  }
  CHECK(checked == 16);
  CHECK(widths.size() == 14);  // every packed width 1..7, 9..15
}

TEST_CASE("packing: every packed weight of the full reference fixtures, when present", "[format][packing][fixtures]") {
  // CI has ../shared beside the checkout; elsewhere SDNQ_FIXTURES may point to it, or the test has nothing to do.
  const std::filesystem::path root = sdnq::test::reference_fixtures_dir();
  if (!std::filesystem::exists(root / "codecs")) {
    WARN("reference fixtures not found at " << root.string() << "; checked the copies in tests/data only");
    return;
  }
  int checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator(root / "codecs")) {
    const std::string case_name = entry.path().filename().string();
    const std::string weights_dtype = case_name.substr(0, case_name.find('-'));
    if (find_storage_type(weights_dtype) == nullptr) continue;
    checked += check_fixture_round_trip(entry.path() / "diffusion_pytorch_model.safetensors", weights_dtype);
  }
  CHECK(checked > 150);
}
