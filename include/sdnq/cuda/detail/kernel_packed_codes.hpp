#pragma once
// Decoding one block of the reference packer's sub-byte layout (sdnq-format.md §1.5) into its codes,
// for widths 1..8. Host and device code share it: the dequantize kernel reads checkpoint bytes with
// it, and the host repack (repack.hpp) uses it to turn checkpoint codes into the GEMV layout.
//
// A block is `block_codes` consecutive codes stored in `block_words` words of `word_bytes` bytes:
// bytes for widths 2..7, one int64 per 8 codes for width 1 (quirk Q2: only its low byte is used),
// and a plain byte per code for width 8 (native int8/uint8/fp8 or raw 8-bit custom-float codes).
#include <cstdint>

#include "sdnq/core/detail/scalar_bits.hpp"  // SDNQ_HOST_DEVICE

namespace sdnq::cuda::detail {

template <int Bits>
struct ReferencePacking {
  static_assert(Bits >= 1 && Bits <= 8, "the reference packer's byte layouts cover widths 1..8");
  // (block_codes, block_words) per width, from the §1.5 table; width 8 is unpacked (one byte per code).
  static constexpr int block_codes = Bits == 1 ? 8 : Bits == 2 ? 4 : Bits == 4 ? 2 : Bits == 6 ? 4 : Bits == 8 ? 1 : 8;
  static constexpr int block_words = Bits == 1 ? 1 : Bits == 2 ? 1 : Bits == 4 ? 1 : Bits == 6 ? 3 : Bits == 8 ? 1 : Bits;
  static constexpr std::uint32_t code_mask = (1u << Bits) - 1u;

  // `bytes` holds the block's words, one byte each (the low byte of the int64 word for width 1).
  SDNQ_HOST_DEVICE static constexpr void decode(const std::uint32_t (&bytes)[block_words],
                                                std::uint32_t (&codes)[block_codes]) {
    if constexpr (Bits == 1 || Bits == 2 || Bits == 4 || Bits == 8) {
      for (int j = 0; j < block_codes; ++j) codes[j] = (bytes[0] >> (j * Bits)) & code_mask;
    } else if constexpr (Bits == 3) {
      for (int j = 0; j < 3; ++j) codes[j] = bytes[j] & 7u;
      for (int j = 0; j < 3; ++j) codes[3 + j] = (bytes[j] >> 3) & 7u;
      codes[6] = ((bytes[0] >> 6) & 3u) | (((bytes[2] >> 6) & 1u) << 2);
      codes[7] = ((bytes[1] >> 6) & 3u) | (((bytes[2] >> 7) & 1u) << 2);
    } else if constexpr (Bits == 5) {
      for (int j = 0; j < 5; ++j) codes[j] = bytes[j] & 31u;
      codes[5] = ((bytes[0] >> 5) & 7u) | (((bytes[3] >> 5) & 3u) << 3);
      codes[6] = ((bytes[1] >> 5) & 7u) | (((bytes[4] >> 5) & 3u) << 3);
      codes[7] = ((bytes[2] >> 5) & 7u) | (((bytes[4] >> 7) & 1u) << 3) | (((bytes[3] >> 7) & 1u) << 4);
    } else if constexpr (Bits == 6) {
      for (int j = 0; j < 3; ++j) codes[j] = bytes[j] & 63u;
      codes[3] = (((bytes[0] >> 6) & 3u) << 4) | (((bytes[1] >> 6) & 3u) << 2) | ((bytes[2] >> 6) & 3u);
    } else {  // Bits == 7
      std::uint32_t last = 0;
      for (int j = 0; j < 7; ++j) {
        codes[j] = bytes[j] & 127u;
        last |= ((bytes[j] >> 7) & 1u) << (6 - j);
      }
      codes[7] = last;
    }
  }
};

// Bytes one stored word of a width occupies on disk (width 1 is stored as int64, quirk Q2).
SDNQ_HOST_DEVICE constexpr int reference_word_bytes(int bits) { return bits == 1 ? 8 : 1; }

}  // namespace sdnq::cuda::detail
