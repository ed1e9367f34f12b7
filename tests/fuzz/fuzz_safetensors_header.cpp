// libFuzzer target: the safetensors header parser over arbitrary bytes. Anything but an sdnq::Error
// escaping, a sanitizer report, or a parsed header that breaks the promises below is a finding.
//
// Each input is parsed twice: as a whole file, and as header JSON (up to its last '}') followed by
// data with the correct 8-byte length put in front, so mutations reach the JSON validation without
// having to guess the length prefix.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "sdnq/io/safetensors.hpp"

namespace {

[[noreturn]] void broken_promise() { __builtin_trap(); }

// What parse_safetensors_header guarantees when it returns.
void check_promises(const sdnq::io::SafetensorsHeader& header, std::size_t file_size) {
  if (header.header_length > sdnq::io::max_safetensors_header_length) broken_promise();
  std::uint64_t covered = 0;
  for (const auto& tensor : header.tensors) {
    if (tensor.data_begin != covered || tensor.data_end < tensor.data_begin) broken_promise();
    std::uint64_t bytes = sdnq::dtype_size(tensor.dtype);
    for (auto extent : tensor.shape) {
      if (extent < 0) broken_promise();
      bytes *= static_cast<std::uint64_t>(extent);
    }
    if (bytes != tensor.nbytes()) broken_promise();
    covered = tensor.data_end;
  }
  if (header.data_start() + covered != file_size) broken_promise();
}

void parse(std::span<const std::byte> file) {
  try {
    check_promises(sdnq::io::parse_safetensors_header(file, "fuzz input"), file.size());
  } catch (const sdnq::Error&) {
    // Rejecting malformed input with a typed error is the expected outcome.
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto* bytes = reinterpret_cast<const std::byte*>(data);
  parse({bytes, size});

  std::uint64_t header_length = size;  // up to the last '}'; the rest is data
  for (std::size_t i = size; i-- > 0;) {
    if (data[i] == '}') {
      header_length = i + 1;
      break;
    }
  }
  std::vector<std::byte> wrapped(8 + size);
  std::memcpy(wrapped.data(), &header_length, 8);
  if (size) std::memcpy(wrapped.data() + 8, data, size);
  parse(wrapped);
  return 0;
}
