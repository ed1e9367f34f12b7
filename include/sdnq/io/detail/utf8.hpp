#pragma once
// UTF-8 validation with the rules of Rust's str::from_utf8 (what the reference safetensors reader
// applies to the header): no overlong forms, no surrogates, nothing above U+10FFFF.
#include <cstddef>
#include <optional>
#include <string_view>

namespace sdnq::io::detail {

// The offset of the first byte that does not start or continue a valid sequence, if any.
inline std::optional<std::size_t> find_invalid_utf8(std::string_view text) {
  auto byte_at = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  auto in = [](unsigned char value, unsigned char low, unsigned char high) { return value >= low && value <= high; };
  std::size_t i = 0;
  while (i < text.size()) {
    const unsigned char lead = byte_at(i);
    if (lead < 0x80) {
      ++i;
      continue;
    }
    std::size_t length = 0;
    unsigned char second_low = 0x80, second_high = 0xBF;  // the second byte's range depends on the lead
    if (in(lead, 0xC2, 0xDF)) {
      length = 2;
    } else if (in(lead, 0xE0, 0xEF)) {
      length = 3;
      if (lead == 0xE0) second_low = 0xA0;   // overlong
      if (lead == 0xED) second_high = 0x9F;  // surrogates
    } else if (in(lead, 0xF0, 0xF4)) {
      length = 4;
      if (lead == 0xF0) second_low = 0x90;   // overlong
      if (lead == 0xF4) second_high = 0x8F;  // above U+10FFFF
    } else {
      return i;
    }
    if (i + length > text.size()) return i;
    if (!in(byte_at(i + 1), second_low, second_high)) return i;
    for (std::size_t k = 2; k < length; ++k)
      if (!in(byte_at(i + k), 0x80, 0xBF)) return i;
    i += length;
  }
  return std::nullopt;
}

inline bool is_valid_utf8(std::string_view text) { return !find_invalid_utf8(text).has_value(); }

}  // namespace sdnq::io::detail
