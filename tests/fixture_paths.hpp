#pragma once
// Where the reference fixtures written by the Python implementation live, for every test binary:
// $SDNQ_FIXTURES when set, else ../shared/fixtures/sdnq-reference beside the checkout (CI's layout).
// Tests that need them skip with a WARN when neither exists (a checkout without ../shared).
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "sdnq_catch.hpp"

namespace sdnq::test {

// The fixture root (holding codecs/ and models/), whether or not it exists.
inline std::filesystem::path reference_fixtures_dir() {
  if (const char* configured = std::getenv("SDNQ_FIXTURES"); configured != nullptr && *configured != '\0')
    return configured;
  return (data_dir() / "../../../shared/fixtures/sdnq-reference").lexically_normal();
}

// The case folders in `models_folder` whose name starts with `prefix` ("flux-", "t5-", ...), sorted;
// empty when the folder is absent.
inline std::vector<std::filesystem::path> cases_named(const std::filesystem::path& models_folder,
                                                      const std::string& prefix) {
  std::vector<std::filesystem::path> cases;
  std::error_code error;
  if (!std::filesystem::is_directory(models_folder, error)) return cases;
  for (const auto& entry : std::filesystem::directory_iterator(models_folder))
    if (entry.path().filename().string().rfind(prefix, 0) == 0) cases.push_back(entry.path());
  std::sort(cases.begin(), cases.end());
  return cases;
}

// The reference fixtures' model cases starting with `prefix`.
inline std::vector<std::filesystem::path> model_fixture_cases(const std::string& prefix) {
  return cases_named(reference_fixtures_dir() / "models", prefix);
}

}  // namespace sdnq::test
