#pragma once
// Shared by the UNet and VAE tests: where the reference fixture cases are, and scratch copies of a
// case whose config.json or weights a test edits (to provoke load errors or to build a variant).
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "sdnq/io/safetensors.hpp"
#include "sdnq_catch.hpp"

namespace sdnq::test {

// ../shared beside the checkout (CI), or SDNQ_FIXTURES; may not exist.
inline std::filesystem::path full_fixture_models() {
  const char* configured = std::getenv("SDNQ_FIXTURES");
  const std::filesystem::path root = configured != nullptr
                                         ? std::filesystem::path(configured)
                                         : data_dir() / "../../../shared/fixtures/sdnq-reference";
  return root / "models";
}

inline std::vector<std::filesystem::path> model_cases(const std::filesystem::path& folder, const std::string& prefix) {
  std::vector<std::filesystem::path> cases;
  if (!std::filesystem::exists(folder)) return cases;
  for (const auto& entry : std::filesystem::directory_iterator(folder))
    if (entry.path().filename().string().rfind(prefix, 0) == 0) cases.push_back(entry.path());
  std::sort(cases.begin(), cases.end());
  return cases;
}

// A writable copy of a fixture case in the temp directory, removed with the object.
class ScratchCase {
 public:
  explicit ScratchCase(const std::filesystem::path& source) {
    static std::atomic<int> counter{0};
    folder_ = std::filesystem::temp_directory_path() /
              ("sdnq_nn_case_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(folder_);
    std::filesystem::create_directories(folder_);
    for (const auto& entry : std::filesystem::directory_iterator(source))
      std::filesystem::copy_file(entry.path(), folder_ / entry.path().filename());
    for (const auto& entry : std::filesystem::directory_iterator(folder_))
      std::filesystem::permissions(entry.path(), std::filesystem::perms::owner_write, std::filesystem::perm_options::add);
  }
  ScratchCase(const ScratchCase&) = delete;
  ScratchCase& operator=(const ScratchCase&) = delete;
  ~ScratchCase() {
    std::error_code ignored;
    std::filesystem::remove_all(folder_, ignored);
  }

  const std::filesystem::path& folder() const { return folder_; }

  void edit_config(const std::function<void(nlohmann::json&)>& edit) const {
    const auto path = folder_ / "config.json";
    nlohmann::json config = nlohmann::json::parse(std::ifstream(path));
    edit(config);
    std::ofstream(path) << config.dump(2);
  }

  // Rewrites the weights file: `edit(name, tensor)` returns the tensor to store under that name (the
  // same view, a reshaped view, or a new tensor the edit keeps alive in `keep`), or nullopt to drop it.
  using WeightEdit = std::function<std::optional<TensorView>(const std::string& name, TensorView tensor,
                                                             std::vector<Tensor>& keep)>;
  void edit_weights(const WeightEdit& edit) const {
    const auto path = folder_ / "diffusion_pytorch_model.safetensors";
    std::vector<Tensor> keep;
    std::vector<io::NamedTensor> written;
    {
      const io::SafetensorsFile file = io::SafetensorsFile::open(path);
      for (const auto& name : file.names()) {
        Tensor owned = Tensor::empty(file.tensor(name).shape(), file.tensor(name).dtype());
        copy(owned, file.tensor(name));
        keep.push_back(std::move(owned));
        if (auto stored = edit(name, keep.back().view(), keep)) written.push_back({name, *stored});
      }
    }
    const auto edited = folder_ / "edited.safetensors";
    io::write_safetensors(edited, written);
    std::filesystem::rename(edited, path);
  }

 private:
  std::filesystem::path folder_;
};

}  // namespace sdnq::test
