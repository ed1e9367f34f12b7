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

namespace sdnq::hub {

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
      compress(block_.data());
      buffered_ = 0;
    }
    for (; size >= block_.size(); data += block_.size(), size -= block_.size()) compress(data);
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

  static constexpr std::uint32_t rotate_right(std::uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

  void compress(const std::uint8_t* block) {
    static constexpr std::array<std::uint32_t, 64> round_constants = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
    std::array<std::uint32_t, 64> schedule;
    for (std::size_t i = 0; i < 16; ++i)
      schedule[i] = (std::uint32_t{block[4 * i]} << 24) | (std::uint32_t{block[4 * i + 1]} << 16) |
                    (std::uint32_t{block[4 * i + 2]} << 8) | std::uint32_t{block[4 * i + 3]};
    for (std::size_t i = 16; i < 64; ++i) {
      std::uint32_t s0 =
          rotate_right(schedule[i - 15], 7) ^ rotate_right(schedule[i - 15], 18) ^ (schedule[i - 15] >> 3);
      std::uint32_t s1 =
          rotate_right(schedule[i - 2], 17) ^ rotate_right(schedule[i - 2], 19) ^ (schedule[i - 2] >> 10);
      schedule[i] = schedule[i - 16] + s0 + schedule[i - 7] + s1;
    }
    auto [a, b, c, d, e, f, g, h] = state_;
    for (std::size_t i = 0; i < 64; ++i) {
      std::uint32_t sum1 = rotate_right(e, 6) ^ rotate_right(e, 11) ^ rotate_right(e, 25);
      std::uint32_t choose = (e & f) ^ (~e & g);
      std::uint32_t t1 = h + sum1 + choose + round_constants[i] + schedule[i];
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
    state_[0] += a;
    state_[1] += b;
    state_[2] += c;
    state_[3] += d;
    state_[4] += e;
    state_[5] += f;
    state_[6] += g;
    state_[7] += h;
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
