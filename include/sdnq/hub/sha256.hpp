#pragma once
// SHA-256 (FIPS 180-4), incremental. The Hub names LFS blobs by the sha256 of their content, so a
// download is verified against its etag while it streams in.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define SDNQ_SHA256_HAS_X86_EXTENSIONS 1
#else
#define SDNQ_SHA256_HAS_X86_EXTENSIONS 0
#endif

namespace sdnq::hub {

namespace detail {

inline constexpr std::array<std::uint32_t, 64> sha256_round_constants = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

constexpr std::uint32_t rotate_right(std::uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

// The FIPS 180-4 compression function over `block_count` consecutive 64-byte blocks, in plain C++.
inline void sha256_blocks_portable(std::array<std::uint32_t, 8>& state, const std::uint8_t* data,
                                   std::size_t block_count) {
  for (; block_count > 0; --block_count, data += 64) {
    std::array<std::uint32_t, 64> schedule;
    for (std::size_t i = 0; i < 16; ++i)
      schedule[i] = (std::uint32_t{data[4 * i]} << 24) | (std::uint32_t{data[4 * i + 1]} << 16) |
                    (std::uint32_t{data[4 * i + 2]} << 8) | std::uint32_t{data[4 * i + 3]};
    for (std::size_t i = 16; i < 64; ++i) {
      std::uint32_t s0 =
          rotate_right(schedule[i - 15], 7) ^ rotate_right(schedule[i - 15], 18) ^ (schedule[i - 15] >> 3);
      std::uint32_t s1 =
          rotate_right(schedule[i - 2], 17) ^ rotate_right(schedule[i - 2], 19) ^ (schedule[i - 2] >> 10);
      schedule[i] = schedule[i - 16] + s0 + schedule[i - 7] + s1;
    }
    auto [a, b, c, d, e, f, g, h] = state;
    for (std::size_t i = 0; i < 64; ++i) {
      std::uint32_t sum1 = rotate_right(e, 6) ^ rotate_right(e, 11) ^ rotate_right(e, 25);
      std::uint32_t choose = (e & f) ^ (~e & g);
      std::uint32_t t1 = h + sum1 + choose + sha256_round_constants[i] + schedule[i];
      std::uint32_t sum0 = rotate_right(a, 2) ^ rotate_right(a, 13) ^ rotate_right(a, 22);
      std::uint32_t majority = (a & b) ^ (a & c) ^ (b & c);
      std::uint32_t t2 = sum0 + majority;
      h = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
  }
}

#if SDNQ_SHA256_HAS_X86_EXTENSIONS
// CPUID leaf 7, EBX bit 29: the SHA extensions (Intel since Ice Lake/Goldmont, AMD since Zen). About 6x the
// portable code, which matters because every downloaded LFS byte is hashed on curl's receive path.
inline bool cpu_has_sha_extensions() {
  static const bool has_them = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) == 0) return false;
    const bool sha = (ebx >> 29) & 1u;
    if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0) return false;
    const bool ssse3 = (ecx >> 9) & 1u, sse41 = (ecx >> 19) & 1u;
    return sha && ssse3 && sse41;
  }();
  return has_them;
}

// The same compression with the SHA-NI instructions. They keep the state as two registers holding
// (A, B, E, F) and (C, D, G, H), highest lane first; each sha256rnds2 does two rounds.
__attribute__((target("sha,sse4.1,ssse3"))) inline void sha256_blocks_x86(std::array<std::uint32_t, 8>& state,
                                                                          const std::uint8_t* data,
                                                                          std::size_t block_count) {
  const __m128i big_endian_words = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
  __m128i abcd = _mm_loadu_si128(reinterpret_cast<const __m128i*>(&state[0]));  // lanes A B C D
  __m128i efgh = _mm_loadu_si128(reinterpret_cast<const __m128i*>(&state[4]));  // lanes E F G H
  __m128i badc = _mm_shuffle_epi32(abcd, 0xB1);
  __m128i hgfe = _mm_shuffle_epi32(efgh, 0x1B);
  __m128i abef = _mm_alignr_epi8(badc, hgfe, 8);     // lanes F E B A
  __m128i cdgh = _mm_blend_epi16(hgfe, badc, 0xF0);  // lanes H G D C
  for (; block_count > 0; --block_count, data += 64) {
    const __m128i abef_before = abef, cdgh_before = cdgh;
    __m128i words[4];  // the message schedule, four words per register, rolling
    for (int group = 0; group < 16; ++group) {
      __m128i& current = words[group & 3];
      if (group < 4) {
        current = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(data + 16 * group)),
                                   big_endian_words);
      } else {
        // W[t] = W[t-16] + s0(W[t-15]) + W[t-7] + s1(W[t-2]), four at a time.
        const __m128i& minus1 = words[(group - 1) & 3];
        const __m128i& minus2 = words[(group - 2) & 3];
        const __m128i& minus3 = words[(group - 3) & 3];
        __m128i next = _mm_sha256msg1_epu32(current, minus3);
        next = _mm_add_epi32(next, _mm_alignr_epi8(minus1, minus2, 4));
        current = _mm_sha256msg2_epu32(next, minus1);
      }
      __m128i message = _mm_add_epi32(
          current, _mm_loadu_si128(reinterpret_cast<const __m128i*>(&sha256_round_constants[4 * group])));
      cdgh = _mm_sha256rnds2_epu32(cdgh, abef, message);  // two rounds; the old (A,B,E,F) is now (C,D,G,H)
      message = _mm_shuffle_epi32(message, 0x0E);
      abef = _mm_sha256rnds2_epu32(abef, cdgh, message);
    }
    abef = _mm_add_epi32(abef, abef_before);
    cdgh = _mm_add_epi32(cdgh, cdgh_before);
  }
  __m128i feba = _mm_shuffle_epi32(abef, 0x1B);  // lanes A B E F
  __m128i ghcd = _mm_shuffle_epi32(cdgh, 0xB1);  // lanes G H C D
  abcd = _mm_blend_epi16(feba, ghcd, 0xF0);
  efgh = _mm_alignr_epi8(ghcd, feba, 8);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(&state[0]), abcd);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(&state[4]), efgh);
}
#endif

inline void sha256_blocks(std::array<std::uint32_t, 8>& state, const std::uint8_t* data, std::size_t block_count) {
#if SDNQ_SHA256_HAS_X86_EXTENSIONS
  if (cpu_has_sha_extensions()) return sha256_blocks_x86(state, data, block_count);
#endif
  sha256_blocks_portable(state, data, block_count);
}

}  // namespace detail

class Sha256 {
 public:
  Sha256() { reset(); }

  void reset() {
    state_ = {0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au, 0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u};
    buffered_ = 0;
    total_bytes_ = 0;
  }

  void update(std::span<const std::byte> bytes) {
    const auto* data = reinterpret_cast<const std::uint8_t*>(bytes.data());
    std::size_t size = bytes.size();
    total_bytes_ += size;
    if (buffered_ > 0) {
      std::size_t take = std::min(size, block_.size() - buffered_);
      std::copy_n(data, take, block_.begin() + static_cast<std::ptrdiff_t>(buffered_));
      buffered_ += take;
      data += take;
      size -= take;
      if (buffered_ < block_.size()) return;
      detail::sha256_blocks(state_, block_.data(), 1);
      buffered_ = 0;
    }
    const std::size_t whole_blocks = size / block_.size();
    detail::sha256_blocks(state_, data, whole_blocks);
    data += whole_blocks * block_.size();
    size -= whole_blocks * block_.size();
    std::copy_n(data, size, block_.begin());
    buffered_ = size;
  }
  void update(std::string_view text) { update(std::as_bytes(std::span(text.data(), text.size()))); }

  // The digest of everything passed to update(); the object is reset afterwards.
  std::array<std::uint8_t, 32> finish() {
    const std::uint64_t bit_length = total_bytes_ * 8;
    static constexpr std::uint8_t padding_start = 0x80;
    update_raw(&padding_start, 1);
    static constexpr std::array<std::uint8_t, 64> zeros{};
    std::size_t zero_count = (buffered_ <= 56) ? 56 - buffered_ : 64 + 56 - buffered_;
    update_raw(zeros.data(), zero_count);
    std::array<std::uint8_t, 8> length_bytes;
    for (int i = 0; i < 8; ++i)
      length_bytes[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(bit_length >> (56 - 8 * i));
    update_raw(length_bytes.data(), length_bytes.size());
    std::array<std::uint8_t, 32> digest;
    for (std::size_t i = 0; i < 8; ++i)
      for (std::size_t j = 0; j < 4; ++j) digest[4 * i + j] = static_cast<std::uint8_t>(state_[i] >> (24 - 8 * j));
    reset();
    return digest;
  }

  // Lowercase hex, the form the Hub uses in etags.
  std::string finish_hex() {
    static constexpr char hex_digits[] = "0123456789abcdef";
    std::string text;
    for (std::uint8_t byte : finish()) {
      text.push_back(hex_digits[byte >> 4]);
      text.push_back(hex_digits[byte & 15]);
    }
    return text;
  }

 private:
  // Padding bytes must not count towards the message length.
  void update_raw(const std::uint8_t* data, std::size_t size) {
    std::uint64_t saved_total = total_bytes_;
    update(std::as_bytes(std::span(data, size)));
    total_bytes_ = saved_total;
  }

  std::array<std::uint32_t, 8> state_;
  std::array<std::uint8_t, 64> block_{};
  std::size_t buffered_ = 0;
  std::uint64_t total_bytes_ = 0;
};

inline std::string sha256_hex(std::string_view text) {
  Sha256 hash;
  hash.update(text);
  return hash.finish_hex();
}

}  // namespace sdnq::hub
