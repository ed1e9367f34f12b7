// SHA-256 against the NIST vectors, fnmatch against Python's fnmatchcase, repo ids, URLs and settings.
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "sdnq/hub/patterns.hpp"
#include "sdnq/hub/repo.hpp"
#include "sdnq/hub/settings.hpp"
#include "sdnq/hub/sha256.hpp"
#include "sdnq_catch.hpp"

using namespace sdnq::hub;

TEST_CASE("sha256 matches the FIPS 180-4 example vectors", "[hub][sha256]") {
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(sha256_hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrs"
                   "mnopqrstnopqrstu") == "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
  // One million 'a', fed in uneven pieces so that block boundaries fall everywhere.
  Sha256 hash;
  std::string piece(997, 'a');
  std::size_t remaining = 1000000;
  while (remaining > 0) {
    std::size_t take = std::min(remaining, piece.size());
    hash.update(std::string_view(piece).substr(0, take));
    remaining -= take;
  }
  CHECK(hash.finish_hex() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  // Lengths around the padding boundary (55, 56, 64 bytes); values from Python's hashlib.
  CHECK(sha256_hex(std::string(55, 'a')) == "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
  CHECK(sha256_hex(std::string(56, 'a')) == "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
  CHECK(sha256_hex(std::string(64, 'a')) == "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}

TEST_CASE("sha256: the SHA-NI path computes the same compression as the portable code", "[hub][sha256]") {
#if SDNQ_SHA256_HAS_X86_EXTENSIONS
  if (!detail::cpu_has_sha_extensions()) {
    WARN("this CPU has no SHA extensions: only the portable path (checked by the vectors above) runs here");
    return;
  }
  std::mt19937 generator(5);
  std::vector<std::uint8_t> data(64 * 37);
  for (auto& byte : data) byte = static_cast<std::uint8_t>(generator());
  for (std::size_t blocks : {0u, 1u, 2u, 3u, 17u, 37u}) {
    std::array<std::uint32_t, 8> portable_state{}, x86_state{};
    for (auto& word : portable_state) word = static_cast<std::uint32_t>(generator());
    x86_state = portable_state;
    detail::sha256_blocks_portable(portable_state, data.data(), blocks);
    detail::sha256_blocks_x86(x86_state, data.data(), blocks);
    CAPTURE(blocks);
    CHECK(x86_state == portable_state);
  }
#else
  WARN("not an x86 build: only the portable path exists");
#endif
}

TEST_CASE("fnmatch_case follows Python's fnmatch.fnmatchcase", "[hub][patterns]") {
  CHECK(fnmatch_case("*.json", "model_index.json"));
  CHECK(fnmatch_case("*.json", "vae/config.json"));  // '*' also matches '/'
  CHECK(fnmatch_case("vae/*", "vae/sub/x.bin"));
  CHECK_FALSE(fnmatch_case("*.JSON", "config.json"));  // case-sensitive
  CHECK(fnmatch_case("text_encoder_?/*", "text_encoder_2/config.json"));
  CHECK_FALSE(fnmatch_case("text_encoder_?/*", "text_encoder/config.json"));
  CHECK(fnmatch_case("model.[0-9]*", "model.3.bin"));
  CHECK_FALSE(fnmatch_case("model.[!0-9]*", "model.3.bin"));
  CHECK(fnmatch_case("model.[!0-9]*", "model.a.bin"));
  CHECK(fnmatch_case("[]]x", "]x"));  // ']' first in a set is a member
  CHECK(fnmatch_case("a[b", "a[b"));  // an unclosed '[' is literal
  CHECK_FALSE(fnmatch_case("a[b", "ab"));
  CHECK(fnmatch_case("[z-a]*", "") == false);
  CHECK_FALSE(fnmatch_case("[z-a]", "m"));  // a reversed range matches nothing
  CHECK(fnmatch_case("*a*b*c", "xaxxbxxc"));
  CHECK_FALSE(fnmatch_case("*a*b*c", "xaxxbxxcx"));
  CHECK(fnmatch_case("", ""));
  CHECK_FALSE(fnmatch_case("", "a"));
  CHECK(fnmatch_case("**", ""));
}

TEST_CASE("path selection applies allow then ignore patterns like filter_repo_objects", "[hub][patterns]") {
  std::vector<std::string> files = {"model_index.json", "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
                                    "unet/config.json", "unet/model.bin",  "README.md"};
  CHECK(filter_paths(files, {"vae/", "model_index.json"}, {}) ==
        std::vector<std::string>{"model_index.json", "vae/config.json", "vae/diffusion_pytorch_model.safetensors"});
  CHECK(filter_paths(files, {}, {"*.bin", "*.md"}) ==
        std::vector<std::string>{"model_index.json", "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
                                 "unet/config.json"});
  CHECK(filter_paths(files, {"unet\\*"}, {"*.bin"}) == std::vector<std::string>{"unet/config.json"});
  CHECK(filter_paths(files, {"nothing/*"}, {}).empty());
}

TEST_CASE("repo ids are validated as huggingface_hub validates them", "[hub][repo]") {
  CHECK_NOTHROW(validate_repo_id("Disty0/FLUX.1-dev-SDNQ-uint4-svd-r32"));
  CHECK_NOTHROW(validate_repo_id("gpt2"));
  CHECK_THROWS_AS(validate_repo_id(""), sdnq::ConfigError);
  CHECK_THROWS_AS(validate_repo_id("a/b/c"), sdnq::ConfigError);
  CHECK_THROWS_AS(validate_repo_id("org/../x"), sdnq::ConfigError);
  CHECK_THROWS_AS(validate_repo_id("org/na--me"), sdnq::ConfigError);
  CHECK_THROWS_AS(validate_repo_id("org/name.git"), sdnq::ConfigError);
  CHECK_THROWS_AS(validate_repo_id("org/-name"), sdnq::ConfigError);
  CHECK_THROWS_AS(validate_repo_id("org/na me"), sdnq::ConfigError);
  CHECK_THROWS_AS(validate_repo_id("org/" + std::string(97, 'a')), sdnq::ConfigError);
}

TEST_CASE("resolve and API URLs encode revisions and paths as hf_hub_url does", "[hub][repo]") {
  Repo model{"Disty0/FLUX.1-dev-SDNQ-uint4-svd-r32", RepoType::model};
  CHECK(model.folder_name() == "models--Disty0--FLUX.1-dev-SDNQ-uint4-svd-r32");
  CHECK(Repo{"org/data", RepoType::dataset}.folder_name() == "datasets--org--data");
  CHECK(Repo{"solo", RepoType::space}.folder_name() == "spaces--solo");
  CHECK(resolve_url("https://huggingface.co", model, "main", "vae/config.json") ==
        "https://huggingface.co/Disty0/FLUX.1-dev-SDNQ-uint4-svd-r32/resolve/main/vae/config.json");
  CHECK(resolve_url("http://127.0.0.1:1", model, "refs/pr/3", repo_file_path("sub dir", "a b+c.json")) ==
        "http://127.0.0.1:1/Disty0/FLUX.1-dev-SDNQ-uint4-svd-r32/resolve/refs%2Fpr%2F3/sub%20dir/a%20b%2Bc.json");
  CHECK(resolve_url("https://h", Repo{"org/data", RepoType::dataset}, "v1.0", "x.parquet") ==
        "https://h/datasets/org/data/resolve/v1.0/x.parquet");
  CHECK(resolve_url("https://h", Repo{"org/app", RepoType::space}, "main", "app.py") ==
        "https://h/spaces/org/app/resolve/main/app.py");
  CHECK(revision_info_url("https://h", model, "refs/pr/1") ==
        "https://h/api/models/Disty0/FLUX.1-dev-SDNQ-uint4-svd-r32/revision/refs%2Fpr%2F1");
  CHECK(tree_url("https://h", Repo{"org/data", RepoType::dataset}, "main") ==
        "https://h/api/datasets/org/data/tree/main?recursive=true&expand=false");
  CHECK(repo_file_path("", "model_index.json") == "model_index.json");
  CHECK(is_commit_hash("0123456789abcdef0123456789abcdef01234567"));
  CHECK_FALSE(is_commit_hash("0123456789ABCDEF0123456789abcdef01234567"));
  CHECK_FALSE(is_commit_hash("main"));
  CHECK(parse_repo_type("dataset") == RepoType::dataset);
  CHECK_THROWS_AS(parse_repo_type("repo"), sdnq::ConfigError);
}

namespace {
// Sets environment variables for one test and restores them afterwards.
class ScopedEnvironment {
 public:
  void set(const char* name, const char* value) {
    const char* old = std::getenv(name);
    saved_.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
    if (value)
      ::setenv(name, value, 1);
    else
      ::unsetenv(name);
  }
  ~ScopedEnvironment() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
      if (it->second)
        ::setenv(it->first.c_str(), it->second->c_str(), 1);
      else
        ::unsetenv(it->first.c_str());
    }
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};
}  // namespace

TEST_CASE("settings come from the environment variables huggingface_hub reads", "[hub][settings]") {
  auto home = std::filesystem::temp_directory_path() / fmt::format("sdnq-hub-settings-{}", ::getpid());
  std::filesystem::create_directories(home);
  ScopedEnvironment environment;
  for (const char* name : {"HF_ENDPOINT", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN",
                           "HF_TOKEN_PATH", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_IMPLICIT_TOKEN",
                           "HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT", "XDG_CACHE_HOME"})
    environment.set(name, nullptr);
  environment.set("HF_HOME", home.c_str());

  SECTION("defaults below HF_HOME, token from $HF_HOME/token without its newline") {
    { std::ofstream(home / "token") << "  hf_abc123\r\n"; }
    HubSettings settings = HubSettings::from_environment();
    CHECK(settings.endpoint == "https://huggingface.co");
    CHECK(settings.cache_dir == home / "hub");
    REQUIRE(settings.token);
    CHECK(*settings.token == "hf_abc123");
    CHECK_FALSE(settings.offline);
    CHECK(settings.metadata_timeout == std::chrono::seconds(10));
  }
  SECTION("explicit variables win; an empty token file is no token") {
    { std::ofstream(home / "token") << "\n"; }
    CHECK_FALSE(HubSettings::from_environment().token);
    environment.set("HF_ENDPOINT", "http://127.0.0.1:8080/");
    environment.set("HF_HUB_CACHE", "$HF_HOME/elsewhere");
    environment.set("HF_TOKEN", "hf_env");
    environment.set("HF_HUB_OFFLINE", "yes");
    environment.set("HF_HUB_ETAG_TIMEOUT", "3");
    HubSettings settings = HubSettings::from_environment();
    CHECK(settings.endpoint == "http://127.0.0.1:8080");
    CHECK(settings.cache_dir == home / "elsewhere");
    CHECK(settings.token == std::optional<std::string>("hf_env"));
    CHECK(settings.offline);
    CHECK(settings.metadata_timeout == std::chrono::seconds(3));
    environment.set("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1");
    CHECK_FALSE(HubSettings::from_environment().token);
  }
  SECTION("legacy names and XDG_CACHE_HOME") {
    environment.set("HF_HOME", nullptr);
    environment.set("XDG_CACHE_HOME", home.c_str());
    environment.set("HUGGINGFACE_HUB_CACHE", (home / "legacy").c_str());
    environment.set("HUGGING_FACE_HUB_TOKEN", "hf_legacy");
    environment.set("TRANSFORMERS_OFFLINE", "1");
    HubSettings settings = HubSettings::from_environment();
    CHECK(settings.hf_home == home / "huggingface");
    CHECK(settings.cache_dir == home / "legacy");
    CHECK(settings.token == std::optional<std::string>("hf_legacy"));
    CHECK(settings.offline);
  }
  std::filesystem::remove_all(home);
}
