// The Hub client against tests/hub/server/fake_hub.py on 127.0.0.1: metadata, redirects to a second
// host name, the cache layout of huggingface_hub, resume, integrity, retries, typed errors, offline.
// Expected etags are sha256 / git blob sha1 values computed with Python's hashlib from the same bytes.
#include <sys/resource.h>

#include <csignal>
#include <fstream>
#include <sstream>

#include "fake_hub_server.hpp"
#include "sdnq/hub/client.hpp"
#include "sdnq_catch.hpp"

using namespace sdnq::hub;
using sdnq::test::FakeHub;
using sdnq::test::TemporaryFolder;

namespace {

constexpr const char* commit_main = "1111111111111111111111111111111111111111";
constexpr const char* commit_other = "2222222222222222222222222222222222222222";
constexpr const char* index_text = R"({"_class_name": "FluxPipeline"})";
constexpr const char* index_sha1 = "bad3703d9d11d8d76211d45888efe14fb4dd3138";
constexpr const char* vae_sha256 = "aca1cd027e979588d14b877b7b0cb8585ad9fec599eb45801992ee5382b3760f";  // 1 MiB
constexpr const char* transformer_sha256 = "e96834bcc05a586c98e386ce7cec05f18a25d4b7eb5d8df2730cc4307cef6604";
constexpr const char* corrupt_sha256 = "c1ee15bb1e0c280e882ecbfd8f9eb338b66fb9e1fd025ea5b863aeab70aabcfc";
constexpr const char* encoder_sha256 = "7dd5c0e1f325d62f748c159ecebea765b43c1eee4f999c73724054e0241ce470";

std::string repeated(std::string_view text, int count) {
  std::string result;
  for (int i = 0; i < count; ++i) result += text;
  return result;
}
std::string vae_bytes() { return repeated("0123456789abcdef", 65536); }
std::string transformer_bytes() { return repeated("sdnq", 50000); }

nlohmann::json lfs(std::string text, int repeat, nlohmann::json faults = nlohmann::json::array()) {
  return {{"text", text}, {"repeat", repeat}, {"lfs", true}, {"faults", faults}};
}
nlohmann::json regular(std::string text) { return {{"text", text}}; }

nlohmann::json test_manifest() {
  nlohmann::json pipeline = {
      {"commit", commit_main},
      {"refs", {{"main", commit_main}, {"refs/pr/1", commit_main}}},
      {"files",
       {{"model_index.json", regular(index_text)},
        {"vae/config.json", regular(R"({"latent_channels": 16})")},
        {"vae/diffusion_pytorch_model.safetensors", lfs("0123456789abcdef", 65536)},
        {"transformer/config.json", regular(R"({"num_layers": 19})")},
        {"transformer/diffusion_pytorch_model.safetensors", lfs("sdnq", 50000, {"cut_once:70000"})},
        {"text_encoder/model.safetensors", lfs("text encoder weights ", 3000, {"rate_limit_once"})},
        {"scheduler/scheduler_config.json", regular(R"({"shift": 3.0})")}}}};
  return {
      {"accepted_token", "hf_good"},
      {"page_size", 3},
      {"repos",
       {{"sdnq-test/tiny-pipeline", pipeline},
        {"sdnq-test/old-name", {{"redirect_to", "sdnq-test/tiny-pipeline"}}},
        {"sdnq-test/gated",
         {{"commit", commit_other},
          {"refs", {{"main", commit_other}}},
          {"gated", true},
          {"files", {{"model_index.json", regular(index_text)}}}}},
        {"sdnq-test/corrupt",
         {{"commit", commit_other},
          {"refs", {{"main", commit_other}}},
          {"files", {{"weights.safetensors", lfs("corrupt me ", 10000, {"corrupt"})}}}}},
        {"sdnq-test/flaky",
         {{"commit", commit_other},
          {"refs", {{"main", commit_other}}},
          {"files",
           {{"weights.safetensors", lfs("flaky ", 30000, {"server_error_once", "ignore_range", "cut_once:5000"})}}}}},
        {"sdnq-test/evil",
         {{"commit", commit_other},
          {"refs", {{"main", commit_other}}},
          {"files", {{"model_index.json", regular(index_text)}}},
          {"extra_listed_paths", {"../escape.txt"}}}}}}};
}

HubSettings test_settings(const std::string& endpoint, const std::filesystem::path& cache) {
  HubSettings settings;
  settings.endpoint = endpoint;
  settings.hf_home = cache.parent_path();
  settings.cache_dir = cache;
  settings.token = "hf_good";
  settings.metadata_timeout = std::chrono::seconds(5);
  settings.download_timeout = std::chrono::seconds(5);
  settings.max_retries = 3;
  settings.first_retry_delay = std::chrono::milliseconds(50);
  settings.max_workers = 4;
  return settings;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

// Requests whose path contains `fragment`.
std::vector<nlohmann::json> requests_for(const FakeHub& hub, std::string_view fragment) {
  std::vector<nlohmann::json> found;
  for (auto& request : hub.requests())
    if (request["path"].get<std::string>().find(fragment) != std::string::npos) found.push_back(request);
  return found;
}

const Repo pipeline_repo{"sdnq-test/tiny-pipeline", RepoType::model};

// Lists regular files and links under a folder, relative paths, sorted.
std::vector<std::string> tree_of(const std::filesystem::path& folder) {
  std::vector<std::string> entries;
  for (auto& entry : std::filesystem::recursive_directory_iterator(folder))
    if (!entry.is_directory() || entry.is_symlink())
      entries.push_back(entry.path().lexically_relative(folder).generic_string());
  std::sort(entries.begin(), entries.end());
  return entries;
}

}  // namespace

TEST_CASE("HEAD metadata gives commit, etag, size and the download location", "[hub][client]") {
  TemporaryFolder folder("hub-metadata");
  FakeHub hub(test_manifest(), folder.path());
  HubClient client(test_settings(hub.endpoint(), folder.path() / "hub"));

  FileMetadata index = client.file_metadata(pipeline_repo, "model_index.json");
  CHECK(index.commit == commit_main);
  CHECK(index.etag == index_sha1);
  CHECK(index.size == 31);
  CHECK(index.location == hub.endpoint() + "/sdnq-test/tiny-pipeline/resolve/main/model_index.json");

  FileMetadata vae = client.file_metadata(pipeline_repo, "vae/diffusion_pytorch_model.safetensors", "refs/pr/1");
  CHECK(vae.etag == vae_sha256);  // X-Linked-Etag wins over ETag
  CHECK(vae.size == 1048576);     // X-Linked-Size, not the redirect's Content-Length
  CHECK(vae.location == fmt::format("http://localhost:{}/cdn/{}", hub.cdn_port(), vae_sha256));
  CHECK(requests_for(hub, "/resolve/refs%2Fpr%2F1/vae/diffusion_pytorch_model.safetensors").size() == 1);

  // A renamed repo answers with a relative redirect, followed on the same host with the token.
  FileMetadata renamed = client.file_metadata({"sdnq-test/old-name"}, "model_index.json");
  CHECK(renamed.etag == index_sha1);
  auto followed = requests_for(hub, "/sdnq-test/tiny-pipeline/resolve/main/model_index.json");
  REQUIRE(followed.size() == 2);
  CHECK(followed.back()["authorization"] == "Bearer hf_good");
  CHECK(followed.back()["method"] == "HEAD");
}

TEST_CASE("downloads lay out the cache exactly as huggingface_hub does", "[hub][client][cache]") {
  TemporaryFolder folder("hub-layout");
  FakeHub hub(test_manifest(), folder.path());
  const std::filesystem::path cache = folder.path() / "hub";
  HubClient client(test_settings(hub.endpoint(), cache));

  auto vae = client.download_file(pipeline_repo, "vae/diffusion_pytorch_model.safetensors");
  auto index = client.download_file(pipeline_repo, "model_index.json", "refs/pr/1");

  const std::filesystem::path repo = cache / "models--sdnq-test--tiny-pipeline";
  CHECK(vae == repo / "snapshots" / commit_main / "vae" / "diffusion_pytorch_model.safetensors");
  CHECK(index == repo / "snapshots" / commit_main / "model_index.json");
  REQUIRE(std::filesystem::is_symlink(vae));
  CHECK(std::filesystem::read_symlink(vae) == fmt::format("../../../blobs/{}", vae_sha256));
  CHECK(std::filesystem::read_symlink(index) == fmt::format("../../blobs/{}", index_sha1));
  CHECK(read_file(vae) == vae_bytes());
  CHECK(read_file(index) == index_text);
  CHECK(read_file(repo / "refs" / "main") == commit_main);  // 40 hex, no trailing newline
  CHECK(read_file(repo / "refs" / "refs" / "pr" / "1") == commit_main);
  CHECK(read_file(cache / "CACHEDIR.TAG").starts_with("Signature: 8a477f597d28d172789f06886806bc55\n"));
  CHECK(tree_of(repo) == std::vector<std::string>{
                             fmt::format("blobs/{}", vae_sha256),
                             fmt::format("blobs/{}", index_sha1),
                             "refs/main",
                             "refs/refs/pr/1",
                             fmt::format("snapshots/{}/model_index.json", commit_main),
                             fmt::format("snapshots/{}/vae/diffusion_pytorch_model.safetensors", commit_main),
                         });
  CHECK(std::filesystem::exists(cache / ".locks" / "models--sdnq-test--tiny-pipeline" /
                                fmt::format("{}.lock", vae_sha256)));

  // The token reaches the Hub, never the CDN on the other host name.
  bool cdn_seen = false;
  for (auto& request : hub.requests()) {
    if (request["server"] == "cdn") {
      cdn_seen = true;
      CHECK(request["authorization"] == "");
      CHECK(request["host"].get<std::string>().starts_with("localhost:"));
    } else {
      CHECK(request["authorization"] == "Bearer hf_good");
      CHECK(request["user_agent"].get<std::string>().starts_with("sdnq-cpp/"));
    }
  }
  CHECK(cdn_seen);

  // Asking by commit for a file that is there sends nothing.
  std::size_t before = client.request_count();
  CHECK(client.download_file(pipeline_repo, "vae/diffusion_pytorch_model.safetensors", commit_main) == vae);
  CHECK(client.request_count() == before);
}

TEST_CASE("a connection cut mid-file is resumed with a Range request", "[hub][client][resume]") {
  TemporaryFolder folder("hub-cut");
  FakeHub hub(test_manifest(), folder.path());
  HubClient client(test_settings(hub.endpoint(), folder.path() / "hub"));
  auto path = client.download_file(pipeline_repo, "transformer/diffusion_pytorch_model.safetensors");
  CHECK(read_file(path) == transformer_bytes());
  auto cdn = requests_for(hub, fmt::format("/cdn/{}", transformer_sha256));
  REQUIRE(cdn.size() == 2);
  CHECK(cdn[0]["range"] == "");
  CHECK(cdn[1]["range"] == "bytes=70000-");
}

TEST_CASE("a partial .incomplete file left by an earlier run is resumed", "[hub][client][resume]") {
  TemporaryFolder folder("hub-partial");
  FakeHub hub(test_manifest(), folder.path());
  const std::filesystem::path blobs = folder.path() / "hub" / "models--sdnq-test--tiny-pipeline" / "blobs";
  std::filesystem::create_directories(blobs);
  std::ofstream(blobs / fmt::format("{}.incomplete", vae_sha256), std::ios::binary) << vae_bytes().substr(0, 100000);
  HubClient client(test_settings(hub.endpoint(), folder.path() / "hub"));
  auto path = client.download_file(pipeline_repo, "vae/diffusion_pytorch_model.safetensors");
  CHECK(read_file(path) == vae_bytes());
  auto cdn = requests_for(hub, fmt::format("/cdn/{}", vae_sha256));
  REQUIRE(cdn.size() == 1);
  CHECK(cdn[0]["range"] == "bytes=100000-");
  CHECK_FALSE(std::filesystem::exists(blobs / fmt::format("{}.incomplete", vae_sha256)));
}

TEST_CASE("a server that ignores Range is read again from the start", "[hub][client][resume]") {
  TemporaryFolder folder("hub-norange");
  FakeHub hub(test_manifest(), folder.path());
  HubClient client(test_settings(hub.endpoint(), folder.path() / "hub"));
  // 503 on the first HEAD (retried), then a cut at 5000 bytes, then a 200 answer to the Range request.
  auto path = client.download_file({"sdnq-test/flaky"}, "weights.safetensors");
  CHECK(read_file(path) == repeated("flaky ", 30000));
  CHECK(requests_for(hub, "/sdnq-test/flaky/resolve/main/weights.safetensors").size() == 2);
  auto cdn = requests_for(hub, "/cdn/");
  REQUIRE(cdn.size() == 2);
  CHECK(cdn[1]["range"] == "bytes=5000-");
}

TEST_CASE("an LFS file whose bytes do not hash to its etag is rejected and removed", "[hub][client][integrity]") {
  TemporaryFolder folder("hub-corrupt");
  FakeHub hub(test_manifest(), folder.path());
  HubClient client(test_settings(hub.endpoint(), folder.path() / "hub"));
  Repo corrupt{"sdnq-test/corrupt"};
  try {
    client.download_file(corrupt, "weights.safetensors");
    FAIL("a corrupt download was accepted");
  } catch (const IntegrityError& error) {
    std::string message = error.what();
    CHECK(message.find("sha256 mismatch") != std::string::npos);
    CHECK(message.find(corrupt_sha256) != std::string::npos);
    CHECK(message.find("weights.safetensors") != std::string::npos);
  }
  const std::filesystem::path repo = folder.path() / "hub" / "models--sdnq-test--corrupt";
  CHECK(std::filesystem::is_empty(repo / "blobs"));
  CHECK_FALSE(std::filesystem::exists(repo / "snapshots"));
}

TEST_CASE("429 with Retry-After is waited out and retried", "[hub][client][retry]") {
  TemporaryFolder folder("hub-429");
  FakeHub hub(test_manifest(), folder.path());
  HubClient client(test_settings(hub.endpoint(), folder.path() / "hub"));
  auto started = std::chrono::steady_clock::now();
  auto path = client.download_file(pipeline_repo, "text_encoder/model.safetensors");
  auto waited = std::chrono::steady_clock::now() - started;
  CHECK(waited >= std::chrono::milliseconds(950));  // Retry-After: 1, not the 50 ms backoff
  CHECK(read_file(path) == repeated("text encoder weights ", 3000));
  CHECK(requests_for(hub, "/resolve/main/text_encoder/model.safetensors").size() == 2);
  CHECK(std::filesystem::read_symlink(path).filename() == encoder_sha256);
}

TEST_CASE("gated, missing and unknown repos, files and revisions raise typed errors", "[hub][client][errors]") {
  TemporaryFolder folder("hub-errors");
  FakeHub hub(test_manifest(), folder.path());
  HubSettings settings = test_settings(hub.endpoint(), folder.path() / "hub");
  auto message_of = [](auto&& action) -> std::string {
    try {
      action();
    } catch (const HubError& error) {
      return error.what();
    }
    return "no error";
  };

  settings.token.reset();
  HubClient anonymous(settings);
  CHECK_THROWS_AS(anonymous.download_file({"sdnq-test/gated"}, "model_index.json"), GatedRepoError);
  std::string no_token = message_of([&] { anonymous.download_file({"sdnq-test/gated"}, "model_index.json"); });
  CHECK(no_token.find("accept the licence on " + hub.endpoint() + "/sdnq-test/gated") != std::string::npos);
  CHECK(no_token.find("HF_TOKEN") != std::string::npos);

  settings.token = "hf_not_approved";
  HubClient unapproved(settings);
  try {
    unapproved.download_file({"sdnq-test/gated"}, "model_index.json");
    FAIL("a gated repo was served to an unapproved token");
  } catch (const GatedRepoError& error) {
    CHECK(error.status() == 403);
    CHECK(std::string(error.what()).find("no access yet") != std::string::npos);
  }

  settings.token = "hf_good";
  HubClient approved(settings);
  CHECK(read_file(approved.download_file({"sdnq-test/gated"}, "model_index.json")) == index_text);

  std::string missing_repo =
      message_of([&] { approved.download_file({"sdnq-test/nothing-here"}, "model_index.json"); });
  CHECK(missing_repo.find("repository sdnq-test/nothing-here not found") != std::string::npos);
  CHECK_THROWS_AS(approved.download_file({"sdnq-test/nothing-here"}, "model_index.json"), RepositoryNotFoundError);

  CHECK_THROWS_AS(approved.download_file(pipeline_repo, "vae/missing.json"), EntryNotFoundError);
  std::string missing_file = message_of([&] { approved.download_file(pipeline_repo, "vae/missing.json"); });
  CHECK(missing_file.find("'vae/missing.json' not found in sdnq-test/tiny-pipeline at revision 'main'") !=
        std::string::npos);
  // The 404 left the .no_exist marker and the ref, as huggingface_hub leaves them.
  const std::filesystem::path repo = folder.path() / "hub" / "models--sdnq-test--tiny-pipeline";
  CHECK(std::filesystem::is_regular_file(repo / ".no_exist" / commit_main / "vae" / "missing.json"));
  CHECK(read_file(repo / "refs" / "main") == commit_main);

  CHECK_THROWS_AS(approved.download_file(pipeline_repo, "model_index.json", "v9"), RevisionNotFoundError);
  std::string missing_revision = message_of([&] { approved.snapshot_download(pipeline_repo, {.revision = "v9"}); });
  CHECK(missing_revision.find("revision 'v9' not found in sdnq-test/tiny-pipeline") != std::string::npos);

  CHECK_THROWS_AS(approved.download_file(pipeline_repo, "../outside.json"), UnsafePathError);
  CHECK_THROWS_AS(approved.download_file(pipeline_repo, "/etc/passwd"), UnsafePathError);
}

TEST_CASE("snapshot_download fetches only the selected components, in parallel", "[hub][client][snapshot]") {
  TemporaryFolder folder("hub-snapshot");
  FakeHub hub(test_manifest(), folder.path());
  HubClient client(test_settings(hub.endpoint(), folder.path() / "hub"));
  std::FILE* log = std::tmpfile();
  TerminalProgress progress(log, false);
  Snapshot snapshot = client.snapshot_download(
      pipeline_repo, {.allow_patterns = {"model_index.json", "vae/*", "scheduler/"}, .progress = &progress});
  const std::filesystem::path repo = folder.path() / "hub" / "models--sdnq-test--tiny-pipeline";
  CHECK(snapshot.commit == commit_main);
  CHECK(snapshot.folder == repo / "snapshots" / commit_main);
  CHECK(snapshot.files == std::vector<std::string>{"model_index.json", "scheduler/scheduler_config.json",
                                                   "vae/config.json", "vae/diffusion_pytorch_model.safetensors"});
  CHECK(tree_of(snapshot.folder) == std::vector<std::string>{"model_index.json", "scheduler/scheduler_config.json",
                                                             "vae/config.json",
                                                             "vae/diffusion_pytorch_model.safetensors"});
  CHECK(read_file(snapshot.folder / "vae" / "diffusion_pytorch_model.safetensors") == vae_bytes());
  // The listing came in pages of 3 (Link rel="next") and is cached per commit.
  CHECK(requests_for(hub, "/api/models/sdnq-test/tiny-pipeline/tree/").size() == 3);
  auto tree = nlohmann::json::parse(read_file(repo / "trees" / fmt::format("{}.json", commit_main)));
  CHECK(tree["format_version"] == 1);
  CHECK(tree["files"].size() == 7);
  CHECK(tree["files"]["vae/diffusion_pytorch_model.safetensors"]["lfs_sha256"] == vae_sha256);
  // One line per finished file when the output is not a terminal.
  std::rewind(log);
  std::string lines;
  for (int c; (c = std::fgetc(log)) != EOF;) lines += static_cast<char>(c);
  std::fclose(log);
  CHECK(std::count(lines.begin(), lines.end(), '\n') == 4);
  CHECK(lines.find("vae/diffusion_pytorch_model.safetensors (1.00 MiB)") != std::string::npos);

  // Run again: the listing comes from trees/<commit>.json, the files from the cache.
  std::size_t before = hub.requests().size();
  client.snapshot_download(pipeline_repo, {.allow_patterns = {"vae/*"}});
  CHECK(hub.requests().size() == before + 1);  // only the revision -> commit lookup

  CHECK_THROWS_AS(client.snapshot_download(pipeline_repo, {.allow_patterns = {"unet/*"}}), EntryNotFoundError);
}

TEST_CASE("file paths from the server that would leave the cache are refused", "[hub][client][errors]") {
  TemporaryFolder folder("hub-evil");
  FakeHub hub(test_manifest(), folder.path());
  HubClient client(test_settings(hub.endpoint(), folder.path() / "hub"));
  CHECK_THROWS_AS(client.snapshot_download({"sdnq-test/evil"}), UnsafePathError);
  CHECK_FALSE(std::filesystem::exists(folder.path() / "hub" / "models--sdnq-test--evil" / "escape.txt"));
  CHECK_FALSE(std::filesystem::exists(folder.path() / "hub" / "escape.txt"));
}

TEST_CASE("a cache built the Python way is used offline with zero requests", "[hub][client][offline]") {
  TemporaryFolder folder("hub-offline");
  const std::filesystem::path cache = folder.path() / "hub";
  // The tree huggingface_hub writes, built by hand: blobs, relative links, refs without newline.
  const std::filesystem::path repo = cache / "models--Disty0--Z-Image-Turbo-SDNQ-int8";
  const std::string etag_config = "0123456789abcdef0123456789abcdef01234567";
  const std::string etag_weights = std::string(64, 'e');
  std::filesystem::create_directories(repo / "blobs");
  std::filesystem::create_directories(repo / "refs");
  std::filesystem::create_directories(repo / "snapshots" / commit_other / "vae");
  std::ofstream(repo / "blobs" / etag_config) << R"({"scaling_factor": 0.3611})";
  std::ofstream(repo / "blobs" / etag_weights) << "weights";
  std::ofstream(repo / "refs" / "main") << commit_other;
  std::filesystem::create_symlink("../../../blobs/" + etag_config,
                                  repo / "snapshots" / commit_other / "vae" / "config.json");
  std::filesystem::create_symlink("../../../blobs/" + etag_weights,
                                  repo / "snapshots" / commit_other / "vae" / "diffusion_pytorch_model.safetensors");
  std::filesystem::create_directories(repo / ".no_exist" / commit_other / "vae");
  std::ofstream(repo / ".no_exist" / commit_other / "vae" / "diffusion_pytorch_model.bin");

  HubSettings settings = test_settings("http://127.0.0.1:9", cache);  // nothing listens there
  settings.offline = true;
  HubClient client(settings);
  Repo repo_id{"Disty0/Z-Image-Turbo-SDNQ-int8"};
  auto config = client.download_file(repo_id, "vae/config.json");
  CHECK(config == repo / "snapshots" / commit_other / "vae" / "config.json");
  CHECK(read_file(config) == R"({"scaling_factor": 0.3611})");
  Snapshot snapshot = client.snapshot_download(repo_id, {.allow_patterns = {"vae/*"}});
  CHECK(snapshot.commit == commit_other);
  CHECK(snapshot.files == std::vector<std::string>{"vae/config.json", "vae/diffusion_pytorch_model.safetensors"});
  CHECK(client.request_count() == 0);

  try {
    client.download_file(repo_id, "transformer/config.json");
    FAIL("an uncached file was served offline");
  } catch (const LocalEntryNotFoundError& error) {
    std::string message = error.what();
    CHECK(message.find("HF_HUB_OFFLINE is set") != std::string::npos);
    CHECK(message.find("'transformer/config.json' of Disty0/Z-Image-Turbo-SDNQ-int8") != std::string::npos);
  }
  std::string known_missing;
  try {
    client.download_file(repo_id, "vae/diffusion_pytorch_model.bin");
  } catch (const LocalEntryNotFoundError& error) {
    known_missing = error.what();
  }
  CHECK(known_missing.find("does not exist in Disty0/Z-Image-Turbo-SDNQ-int8") != std::string::npos);
  CHECK_THROWS_AS(client.snapshot_download(repo_id, {.allow_patterns = {"text_encoder/*"}}), LocalEntryNotFoundError);
  CHECK_THROWS_AS(client.snapshot_download(repo_id, {.revision = "v2"}), LocalEntryNotFoundError);
  CHECK(client.request_count() == 0);

  // Online but unreachable: the same cache answers after one failed attempt.
  settings.offline = false;
  settings.max_retries = 0;
  HubClient unreachable(settings);
  CHECK(unreachable.download_file(repo_id, "vae/config.json") == config);
  CHECK(unreachable.snapshot_download(repo_id, {.allow_patterns = {"vae/*"}}).files.size() == 2);
}

TEST_CASE("a full disk or an unwritable cache leaves nothing half-written", "[hub][client][errors]") {
  TemporaryFolder folder("hub-diskfull");
  FakeHub hub(test_manifest(), folder.path());
  const std::filesystem::path cache = folder.path() / "hub";
  HubClient client(test_settings(hub.endpoint(), cache));
  client.download_file(pipeline_repo, "model_index.json");  // folders and refs exist before the limit

  // RLIMIT_FSIZE makes writes beyond 64 KiB fail with EFBIG, as a full disk fails them with ENOSPC.
  rlimit saved{};
  ::getrlimit(RLIMIT_FSIZE, &saved);
  auto previous_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit small = saved;
  small.rlim_cur = 64 * 1024;
  ::setrlimit(RLIMIT_FSIZE, &small);
  bool threw_io_error = false;
  try {
    client.download_file(pipeline_repo, "vae/diffusion_pytorch_model.safetensors");
  } catch (const sdnq::IoError& error) {
    threw_io_error = std::string(error.what()).find("cannot write") != std::string::npos;
  }
  ::setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, previous_handler);
  CHECK(threw_io_error);
  const std::filesystem::path repo = cache / "models--sdnq-test--tiny-pipeline";
  CHECK(tree_of(repo / "blobs") == std::vector<std::string>{index_sha1});
  CHECK(tree_of(repo / "snapshots") == std::vector<std::string>{fmt::format("{}/model_index.json", commit_main)});

  // A cache path that cannot be a folder (it runs through a regular file).
  std::ofstream(folder.path() / "plain-file") << "x";
  HubClient unwritable(test_settings(hub.endpoint(), folder.path() / "plain-file" / "hub"));
  CHECK_THROWS_AS(unwritable.download_file(pipeline_repo, "model_index.json"), sdnq::IoError);
}

TEST_CASE("the terminal progress line shows bytes, throughput and ETA", "[hub][progress]") {
  std::FILE* out = std::tmpfile();
  TerminalProgress progress(out, true);
  progress.begin(2, 4096);
  progress.file_started("a.bin", 4096, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(120));
  progress.bytes_received("a.bin", 1024);
  progress.file_finished("a.bin", 4096, false);
  progress.end();
  std::rewind(out);
  std::string text;
  for (int c; (c = std::fgetc(out)) != EOF;) text += static_cast<char>(c);
  std::fclose(out);
  CHECK(text.find("\r[0/2] 1.00 KiB / 4.00 KiB") != std::string::npos);
  CHECK(text.find("ETA ") != std::string::npos);
  CHECK(text.find("a.bin 25%") != std::string::npos);
  CHECK(text.ends_with("\n"));
  CHECK(format_bytes(1536) == "1.50 KiB");
  CHECK(format_bytes(17) == "17 B");
  CHECK(format_duration(185) == "3m05s");
}
