#pragma once
// Sub-byte / sub-word packing of integer codes, bit-exact with the reference packer (docs/sdnq-format.md
// §1.5). Widths 1..7 and 9..15; the flattened (C-order) codes are cut into blocks of B codes, each block
// becoming W words: uint8 bytes for n <= 7, int16 words for 9..15, and int64 words holding one byte each for
// n = 1 (quirk Q2). Signed integers are packed in offset binary (code = q - min): see to_code / from_code.
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "sdnq/core/dtype.hpp"
#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/format/detail/packed_block.hpp"

namespace sdnq::format {

inline bool is_packable_width(int bits) { return bits >= 1 && bits <= 15 && bits != 8; }

namespace detail {
inline void require_packable_width(int bits) {
  SDNQ_REQUIRE(is_packable_width(bits), UnsupportedError,
               "the SDNQ bit packer handles widths 1..7 and 9..15, not {} bits", bits);
}

// Calls `body(std::integral_constant<int, Bits>{})` for a run-time width.
template <class Body>
decltype(auto) dispatch_packed_width(int bits, Body&& body) {
  require_packable_width(bits);
  switch (bits) {
    case 1:
      return body(std::integral_constant<int, 1>{});
    case 2:
      return body(std::integral_constant<int, 2>{});
    case 3:
      return body(std::integral_constant<int, 3>{});
    case 4:
      return body(std::integral_constant<int, 4>{});
    case 5:
      return body(std::integral_constant<int, 5>{});
    case 6:
      return body(std::integral_constant<int, 6>{});
    case 7:
      return body(std::integral_constant<int, 7>{});
    case 9:
      return body(std::integral_constant<int, 9>{});
    case 10:
      return body(std::integral_constant<int, 10>{});
    case 11:
      return body(std::integral_constant<int, 11>{});
    case 12:
      return body(std::integral_constant<int, 12>{});
    case 13:
      return body(std::integral_constant<int, 13>{});
    case 14:
      return body(std::integral_constant<int, 14>{});
    default:
      return body(std::integral_constant<int, 15>{});
  }
}

inline std::string packed_name(int bits) { return "uint" + std::to_string(bits); }
}  // namespace detail

// B: how many consecutive codes form one packed block; numel must be a multiple of it.
inline int pack_block_size(int bits) {
  return detail::dispatch_packed_width(bits, [](auto width) { return detail::PackedBlock<width()>::codes; });
}

// W: words per block.
inline int pack_block_words(int bits) {
  return detail::dispatch_packed_width(bits, [](auto width) { return detail::PackedBlock<width()>::words; });
}

// Element dtype of the packed tensor as the reference writes it: I64 (1 bit), U8 (2..7), I16 (9..15).
inline DType packed_dtype(int bits) {
  detail::require_packable_width(bits);
  return bits == 1 ? DType::i64 : bits < 8 ? DType::u8 : DType::i16;
}

inline void require_packable_numel(int bits, std::int64_t numel) {
  const int block = pack_block_size(bits);
  SDNQ_REQUIRE(numel >= 0 && numel % block == 0, ShapeError,
               "cannot pack {} codes of {} bits: the packer works on blocks of {} codes, so the element count "
               "must be a multiple of {} (the reference packer fails on this tensor too)",
               numel, bits, block, block);
}

// 1-D [numel * n / 8] for n in {1, 2, 4} (for n = 1 that many int64 words), else 2-D [numel / B, W].
inline Shape packed_shape(int bits, std::int64_t numel) {
  require_packable_numel(bits, numel);
  const std::int64_t blocks = numel / pack_block_size(bits);
  if (bits == 1 || bits == 2 || bits == 4) return Shape{blocks};
  return Shape{blocks, pack_block_words(bits)};
}

// Offset binary of signed packed integers (§1.2): code = q - min = q + 2^(n-1), and back.
constexpr std::uint16_t to_code(std::int32_t q, int bits, bool is_signed) {
  return static_cast<std::uint16_t>(is_signed ? q + (std::int32_t{1} << (bits - 1)) : q);
}
constexpr std::int32_t from_code(std::uint16_t code, int bits, bool is_signed) {
  return is_signed ? std::int32_t{code} - (std::int32_t{1} << (bits - 1)) : std::int32_t{code};
}

// Packs codes (each < 2^Bits; uint9..15's quirk-Q1 code 2^n is packed the way the reference does) into `out`,
// which must hold packed_shape(Bits, codes.size()) elements of packed_dtype(Bits).
template <int Bits>
void pack(std::span<const std::uint16_t> codes, void* out) {
  using Block = detail::PackedBlock<Bits>;
  require_packable_numel(Bits, static_cast<std::int64_t>(codes.size()));
  auto* words = static_cast<typename Block::Word*>(out);
  const std::size_t blocks = codes.size() / Block::codes;
  for (std::size_t b = 0; b < blocks; ++b) Block::pack(codes.data() + b * Block::codes, words + b * Block::words);
}

// Inverse of pack<Bits>: `packed` holds codes.size() / B blocks of packed_dtype(Bits) words.
template <int Bits>
void unpack(const void* packed, std::span<std::uint16_t> codes) {
  using Block = detail::PackedBlock<Bits>;
  require_packable_numel(Bits, static_cast<std::int64_t>(codes.size()));
  const auto* words = static_cast<const typename Block::Word*>(packed);
  const std::size_t blocks = codes.size() / Block::codes;
  for (std::size_t b = 0; b < blocks; ++b) Block::unpack(words + b * Block::words, codes.data() + b * Block::codes);
}

inline void pack_codes(int bits, std::span<const std::uint16_t> codes, void* out) {
  detail::dispatch_packed_width(bits, [&](auto width) { pack<width()>(codes, out); });
}

// Unpacks a packed weight tensor as read from a file into codes.size() codes, after checking that its dtype
// and element count are what the reference writes for that many codes. 1-bit weights are accepted as I64
// words (what the reference writes, Q2) or as U8/BOOL bytes. `tensor_name` only labels error messages.
inline void unpack_codes(int bits, TensorView packed, std::span<std::uint16_t> codes,
                         std::string_view tensor_name = "weight") {
  const std::int64_t numel = static_cast<std::int64_t>(codes.size());
  require_packable_numel(bits, numel);
  const std::string what = fmt::format("packed {} {}", detail::packed_name(bits), tensor_name);
  SDNQ_REQUIRE(packed.device().is_cpu(), FormatError, "{} is on {}; unpack_codes reads host memory", what,
               packed.device().to_string());
  SDNQ_REQUIRE(packed.is_contiguous(), FormatError, "{} with shape {} is not contiguous", what,
               packed.shape().to_string());

  const bool one_bit_bytes = bits == 1 && (packed.dtype() == DType::u8 || packed.dtype() == DType::boolean);
  const DType expected_dtype = packed_dtype(bits);
  SDNQ_REQUIRE(packed.dtype() == expected_dtype || one_bit_bytes, FormatError, "{} has dtype {}, expected {}{}", what,
               dtype_name(packed.dtype()), dtype_name(expected_dtype), bits == 1 ? " (or U8/BOOL bytes)" : "");

  const std::int64_t expected_elements = numel / pack_block_size(bits) * pack_block_words(bits);
  const std::int64_t expected_bytes = expected_elements * static_cast<std::int64_t>(dtype_size(packed.dtype()));
  SDNQ_REQUIRE(packed.numel() == expected_elements, FormatError, "{} has {} bytes, expected {} for {} codes", what,
               packed.nbytes(), expected_bytes, numel);

  if (bits != 1) {
    detail::dispatch_packed_width(bits, [&](auto width) { unpack<width()>(packed.data(), codes); });
    return;
  }
  // 1 bit: every word must hold a byte value; widen U8/BOOL bytes to the reference's int64 words.
  const auto* bytes = static_cast<const std::uint8_t*>(packed.data());
  const auto* words = static_cast<const std::int64_t*>(packed.data());
  for (std::int64_t index = 0; index < expected_elements; ++index) {
    const std::int64_t word = one_bit_bytes ? std::int64_t{bytes[index]} : words[index];
    SDNQ_REQUIRE(word >= 0 && word <= 0xFF, FormatError,
                 "{} element {} is {}, but 1-bit weights hold one byte (0..255) per int64 word", what, index, word);
    detail::PackedBlock<1>::unpack(&word, codes.data() + index * 8);
  }
}

}  // namespace sdnq::format
