#pragma once
#include <string>
// Builds against Catch2 v3 (GPU machine) and v2 (Debian 12, CI).
#if __has_include(<catch2/catch_test_macros.hpp>)
#include <catch2/catch_approx.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>
#include <catch2/matchers/catch_matchers_exception.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>
// The v2 spellings the tests use: unqualified Approx, and Matchers::Contains for substrings (v3 calls
// it ContainsSubstring).
using Catch::Approx;
namespace Catch::Matchers {
inline auto Contains(const std::string& text, CaseSensitive sensitivity = CaseSensitive::Yes) {
  return ContainsSubstring(text, sensitivity);
}
}  // namespace Catch::Matchers
#else
#include <catch2/catch.hpp>
#endif

#include <filesystem>
#include <string>

namespace sdnq::test {
// The project's own test data (a slice of the reference fixtures lives here).
inline std::filesystem::path data_dir() { return SDNQ_TEST_DATA_DIR; }
}  // namespace sdnq::test
