#pragma once
// One block of the reference packer (`src/sdnq/packed_int/pack.py`, `unpack.py`; docs/sdnq-format.md §1.5):
// B codes of n bits <-> W words of S bits. The formulas are the doc's table, one width per branch; the first
// codes of a block are OR-ed in unmasked, exactly as the reference does, so a quirk-Q1 code of 2^n spills
// into its neighbour's bits the same way. constexpr, so device code can call them too.
#include <cstdint>
#include <numeric>
#include <type_traits>

namespace sdnq::format::detail {

template <int Bits>
struct PackedBlock {
  static_assert(Bits >= 1 && Bits <= 15 && Bits != 8, "the packer handles 1..7 and 9..15 bits");
  // Codes per block (B): the fewest whole codes that fill whole words; words per block (W).
  static constexpr int word_bits = Bits < 8 ? 8 : 16;
  static constexpr int codes = word_bits / std::gcd(Bits, word_bits);
  static constexpr int words = codes * Bits / word_bits;
  // 1-bit words are int64 (quirk Q2), sub-word words int16 on disk (handled here as their uint16 bits).
  using Word = std::conditional_t<Bits == 1, std::int64_t, std::conditional_t<(Bits < 8), std::uint8_t, std::uint16_t>>;

  static constexpr void pack(const std::uint16_t* c, Word* w) {
    using U = unsigned;
    if constexpr (Bits == 1) {
      U byte = 0;
      for (int j = 0; j < 8; ++j) byte |= U{c[j]} << j;
      w[0] = static_cast<Word>(byte & 0xFFu);
    } else if constexpr (Bits == 2) {
      w[0] = static_cast<Word>(c[0] | c[1] << 2 | c[2] << 4 | c[3] << 6);
    } else if constexpr (Bits == 4) {
      w[0] = static_cast<Word>(c[0] | c[1] << 4);
    } else if constexpr (Bits == 3) {
      w[0] = static_cast<Word>(c[0] | c[3] << 3 | (c[6] & 3) << 6);
      w[1] = static_cast<Word>(c[1] | c[4] << 3 | (c[7] & 3) << 6);
      w[2] = static_cast<Word>(c[2] | c[5] << 3 | (c[6] >> 2 & 1) << 6 | (c[7] >> 2 & 1) << 7);
    } else if constexpr (Bits == 5) {
      for (int j = 0; j < 3; ++j) w[j] = static_cast<Word>(c[j] | (c[5 + j] & 7) << 5);
      w[3] = static_cast<Word>(c[3] | (c[5] >> 3 & 3) << 5 | (c[7] >> 4 & 1) << 7);
      w[4] = static_cast<Word>(c[4] | (c[6] >> 3 & 3) << 5 | (c[7] >> 3 & 1) << 7);
    } else if constexpr (Bits == 6) {
      w[0] = static_cast<Word>(c[0] | (c[3] >> 4 & 3) << 6);
      w[1] = static_cast<Word>(c[1] | (c[3] >> 2 & 3) << 6);
      w[2] = static_cast<Word>(c[2] | (c[3] & 3) << 6);
    } else if constexpr (Bits == 7) {
      for (int j = 0; j < 7; ++j) w[j] = static_cast<Word>(c[j] | (c[7] >> (6 - j) & 1) << 7);
    } else if constexpr (Bits == 9) {
      U spare = 0;
      for (int j = 0; j < 8; ++j) {
        w[j] = static_cast<Word>(c[j] | (c[8 + j] & 0x7F) << 9);
        spare |= U(c[8 + j] >> 7 & 3) << (2 * j);
      }
      w[8] = static_cast<Word>(spare);
    } else if constexpr (Bits == 10) {
      for (int j = 0; j < 3; ++j) w[j] = static_cast<Word>(c[j] | (c[5 + j] & 0x3F) << 10);
      w[3] = static_cast<Word>(c[3] | (c[5] >> 6 & 0xF) << 10 | (c[7] >> 8 & 3) << 14);
      w[4] = static_cast<Word>(c[4] | (c[6] >> 6 & 0xF) << 10 | (c[7] >> 6 & 3) << 14);
    } else if constexpr (Bits == 11) {
      for (int j = 0; j < 8; ++j) w[j] = static_cast<Word>(c[j] | (c[8 + j] & 0x1F) << 11);
      w[8] = static_cast<Word>((c[8] >> 5 & 0x3F) | (c[11] >> 5 & 0x3F) << 6 | (c[14] >> 5 & 0xF) << 12);
      w[9] = static_cast<Word>((c[9] >> 5 & 0x3F) | (c[12] >> 5 & 0x3F) << 6 | (c[15] >> 5 & 0xF) << 12);
      w[10] = static_cast<Word>((c[10] >> 5 & 0x3F) | (c[13] >> 5 & 0x3F) << 6 | (c[14] >> 9 & 3) << 12 |
                                (c[15] >> 9 & 3) << 14);
    } else if constexpr (Bits == 12) {
      w[0] = static_cast<Word>(c[0] | (c[3] >> 8 & 0xF) << 12);
      w[1] = static_cast<Word>(c[1] | (c[3] >> 4 & 0xF) << 12);
      w[2] = static_cast<Word>(c[2] | (c[3] & 0xF) << 12);
    } else if constexpr (Bits == 13) {
      for (int g = 0; g < 4; ++g)
        for (int i = 0; i < 3; ++i) w[3 * g + i] = static_cast<Word>(c[3 * g + i] | (c[13 + i] >> (3 * g) & 7) << 13);
      w[12] = static_cast<Word>(c[12] | (c[13] >> 12 & 1) << 13 | (c[14] >> 12 & 1) << 14 | (c[15] >> 12 & 1) << 15);
    } else if constexpr (Bits == 14) {
      for (int j = 0; j < 7; ++j) w[j] = static_cast<Word>(c[j] | (c[7] >> (12 - 2 * j) & 3) << 14);
    } else if constexpr (Bits == 15) {
      for (int j = 0; j < 15; ++j) w[j] = static_cast<Word>(c[j] | (c[15] >> (14 - j) & 1) << 15);
    }
  }

  static constexpr void unpack(const Word* w, std::uint16_t* c) {
    constexpr unsigned low = (1u << Bits) - 1;
    auto word = [w](int k) { return static_cast<unsigned>(w[k]) & (word_bits == 8 ? 0xFFu : 0xFFFFu); };
    auto set = [c](int j, unsigned value) { c[j] = static_cast<std::uint16_t>(value); };
    if constexpr (Bits == 1 || Bits == 2 || Bits == 4) {
      // Whole codes side by side, the first in the lowest bits; for 1 bit the int64 word holds a byte.
      for (int j = 0; j < codes; ++j) set(j, static_cast<unsigned>(w[0] >> (Bits * j)) & low);
    } else {
      for (int j = 0; j < words; ++j) set(j, word(j) & low);
      if constexpr (Bits == 3) {
        set(3, word(0) >> 3 & 7);
        set(4, word(1) >> 3 & 7);
        set(5, word(2) >> 3 & 7);
        set(6, (word(0) >> 6 & 3) | (word(2) >> 6 & 1) << 2);
        set(7, (word(1) >> 6 & 3) | (word(2) >> 7 & 1) << 2);
      } else if constexpr (Bits == 5) {
        set(5, (word(0) >> 5 & 7) | (word(3) >> 5 & 3) << 3);
        set(6, (word(1) >> 5 & 7) | (word(4) >> 5 & 3) << 3);
        set(7, (word(2) >> 5 & 7) | (word(4) >> 7 & 1) << 3 | (word(3) >> 7 & 1) << 4);
      } else if constexpr (Bits == 6) {
        set(3, (word(0) >> 6 & 3) << 4 | (word(1) >> 6 & 3) << 2 | (word(2) >> 6 & 3));
      } else if constexpr (Bits == 7) {
        unsigned last = 0;
        for (int j = 0; j < 7; ++j) last |= (word(j) >> 7 & 1) << (6 - j);
        set(7, last);
      } else if constexpr (Bits == 9) {
        // Words 0..7 hold codes 0..7 whole and the low 7 bits of codes 8..15; word 8 their top 2 bits.
        for (int j = 0; j < 8; ++j) set(8 + j, (word(j) >> 9 & 0x7F) | (word(8) >> (2 * j) & 3) << 7);
      } else if constexpr (Bits == 10) {
        set(5, (word(0) >> 10 & 0x3F) | (word(3) >> 10 & 0xF) << 6);
        set(6, (word(1) >> 10 & 0x3F) | (word(4) >> 10 & 0xF) << 6);
        set(7, (word(2) >> 10 & 0x3F) | (word(4) >> 14 & 3) << 6 | (word(3) >> 14 & 3) << 8);
      } else if constexpr (Bits == 11) {
        // Words 0..7 hold codes 0..7 whole and the low 5 bits of codes 8..15; words 8..10 the rest.
        const unsigned high[8] = {word(8) & 0x3F,
                                  word(9) & 0x3F,
                                  word(10) & 0x3F,
                                  word(8) >> 6 & 0x3F,
                                  word(9) >> 6 & 0x3F,
                                  word(10) >> 6 & 0x3F,
                                  (word(8) >> 12 & 0xF) | (word(10) >> 12 & 3) << 4,
                                  (word(9) >> 12 & 0xF) | (word(10) >> 14 & 3) << 4};
        for (int j = 0; j < 8; ++j) set(8 + j, (word(j) >> 11 & 0x1F) | high[j] << 5);
      } else if constexpr (Bits == 12) {
        set(3, (word(0) >> 12 & 0xF) << 8 | (word(1) >> 12 & 0xF) << 4 | (word(2) >> 12 & 0xF));
      } else if constexpr (Bits == 13) {
        for (int i = 0; i < 3; ++i) {
          unsigned code = (word(12) >> (13 + i) & 1) << 12;
          for (int g = 0; g < 4; ++g) code |= (word(3 * g + i) >> 13 & 7) << (3 * g);
          set(13 + i, code);
        }
      } else if constexpr (Bits == 14) {
        unsigned last = 0;
        for (int j = 0; j < 7; ++j) last |= (word(j) >> 14 & 3) << (12 - 2 * j);
        set(7, last);
      } else if constexpr (Bits == 15) {
        unsigned last = 0;
        for (int j = 0; j < 15; ++j) last |= (word(j) >> 15 & 1) << (14 - j);
        set(15, last);
      }
    }
  }
};

}  // namespace sdnq::format::detail
