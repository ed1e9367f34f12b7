// sdnq-download end to end against the fake Hub: the program is spawned with HF_ENDPOINT pointing at
// the local server and its exit code, stdout and stderr are checked for each kind of outcome.
// The program is found beside the test binary (build/<dir>/examples/sdnq-download), or at
// SDNQ_DOWNLOAD_TOOL when the build defines it.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "fake_hub_server.hpp"
#include "sdnq_catch.hpp"

using sdnq::test::FakeHub;
using sdnq::test::TemporaryFolder;

namespace {

std::filesystem::path download_tool() {
#ifdef SDNQ_DOWNLOAD_TOOL
  return SDNQ_DOWNLOAD_TOOL;
#else
  return std::filesystem::read_symlink("/proc/self/exe").parent_path().parent_path() / "examples" / "sdnq-download";
#endif
}

struct ToolResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string slurp(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

// Runs the tool with exactly the given environment (plus PATH and the sanitizer options); at most 60 s.
ToolResult run_tool(const std::vector<std::string>& arguments, const std::vector<std::string>& environment,
                    const std::filesystem::path& folder) {
  std::filesystem::path tool = download_tool();
  REQUIRE(std::filesystem::exists(tool));  // build the sdnq-download target (examples) next to sdnq_tests
  std::string out_path = (folder / "tool.out").string(), err_path = (folder / "tool.err").string();
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<std::string> argv_storage = {tool.string()};
  argv_storage.insert(argv_storage.end(), arguments.begin(), arguments.end());
  std::vector<std::string> env_storage = environment;
  for (const char* inherited : {"PATH", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"})
    if (const char* value = std::getenv(inherited)) env_storage.push_back(fmt::format("{}={}", inherited, value));
  std::vector<char*> argv, envp;
  for (auto& argument : argv_storage) argv.push_back(argument.data());
  for (auto& variable : env_storage) envp.push_back(variable.data());
  argv.push_back(nullptr);
  envp.push_back(nullptr);
  pid_t pid = -1;
  int spawned = ::posix_spawn(&pid, tool.c_str(), &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  REQUIRE(spawned == 0);
  ToolResult result;
  int status = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      FAIL("sdnq-download did not finish within 60 s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.out = slurp(out_path);
  result.err = slurp(err_path);
  return result;
}

nlohmann::json tool_manifest() {
  auto file = [](std::string text, bool lfs) {
    return nlohmann::json{{"text", text}, {"repeat", lfs ? 4096 : 1}, {"lfs", lfs}};
  };
  nlohmann::json files = {{"model_index.json", file(R"({"_class_name": "ZImagePipeline"})", false)},
                          {"vae/config.json", file(R"({"shift_factor": 0.1159})", false)},
                          {"vae/diffusion_pytorch_model.safetensors", file("vae weights ", true)},
                          {"transformer/config.json", file(R"({"dim": 3840})", false)},
                          {"transformer/diffusion_pytorch_model.safetensors", file("transformer weights ", true)}};
  const char* commit = "3333333333333333333333333333333333333333";
  return {
      {"accepted_token", "hf_good"},
      {"repos",
       {{"Disty0/Z-Image-Turbo-SDNQ-int8", {{"commit", commit}, {"refs", {{"main", commit}}}, {"files", files}}},
        {"sdnq-test/gated", {{"commit", commit}, {"refs", {{"main", commit}}}, {"gated", true}, {"files", files}}}}}};
}

}  // namespace

TEST_CASE("sdnq-download lists the catalog", "[hub][tool]") {
  TemporaryFolder folder("tool-list");
  ToolResult listed = run_tool({"--list"}, {}, folder.path());
  CHECK(listed.exit_code == 0);
  CHECK(std::count(listed.out.begin(), listed.out.end(), '\n') == 31);  // header + 30 entries
  CHECK(listed.out.find("Z-Image-Turbo-SDNQ-int8") != std::string::npos);
  CHECK(listed.out.find("not SDNQ (quanto)") != std::string::npos);
  ToolResult json = run_tool({"--list", "--json"}, {}, folder.path());
  CHECK(json.exit_code == 0);
  CHECK(nlohmann::json::parse(json.out)["entries"].size() == 30);
}

TEST_CASE("sdnq-download fetches the chosen components into the shared cache", "[hub][tool]") {
  TemporaryFolder folder("tool-download");
  FakeHub hub(tool_manifest(), folder.path());
  const std::filesystem::path home = folder.path() / "hf-home";
  std::vector<std::string> environment = {"HF_ENDPOINT=" + hub.endpoint(), "HF_HOME=" + home.string(),
                                          "HOME=" + folder.path().string()};
  const std::filesystem::path snapshot = home / "hub" / "models--Disty0--Z-Image-Turbo-SDNQ-int8" / "snapshots" /
                                         "3333333333333333333333333333333333333333";

  ToolResult result = run_tool({"Z-Image-Turbo-SDNQ-int8", "--components", "vae"}, environment, folder.path());
  INFO(result.err);
  CHECK(result.exit_code == 0);
  CHECK(result.out == snapshot.string() + "\n");
  CHECK(std::filesystem::is_regular_file(snapshot / "model_index.json"));
  CHECK(slurp(snapshot / "vae" / "diffusion_pytorch_model.safetensors").size() == 12 * 4096);
  CHECK_FALSE(std::filesystem::exists(snapshot / "transformer"));
  // Not a terminal: one line per finished file on stderr.
  CHECK(result.err.find("vae/diffusion_pytorch_model.safetensors (48.0 KiB)") != std::string::npos);

  ToolResult unknown_component =
      run_tool({"Disty0/Z-Image-Turbo-SDNQ-int8", "--components", "unet"}, environment, folder.path());
  CHECK(unknown_component.exit_code == 2);
  CHECK(unknown_component.err.find("has no component 'unet'") != std::string::npos);
  CHECK(unknown_component.err.find("transformer, vae") != std::string::npos);

  // Offline, the cached components are served and the missing one is named.
  environment.push_back("HF_HUB_OFFLINE=1");
  ToolResult offline = run_tool({"Z-Image-Turbo-SDNQ-int8", "--components", "vae"}, environment, folder.path());
  CHECK(offline.exit_code == 0);
  CHECK(offline.out == snapshot.string() + "\n");
  ToolResult offline_miss =
      run_tool({"Z-Image-Turbo-SDNQ-int8", "--components", "transformer"}, environment, folder.path());
  CHECK(offline_miss.exit_code == 7);
  CHECK(offline_miss.err.find("missing transformer/config.json") != std::string::npos);
}

TEST_CASE("sdnq-download explains each failure with its own exit code", "[hub][tool]") {
  TemporaryFolder folder("tool-errors");
  FakeHub hub(tool_manifest(), folder.path());
  std::vector<std::string> environment = {"HF_ENDPOINT=" + hub.endpoint(), "HF_HOME=" + (folder.path() / "hf").string(),
                                          "HOME=" + folder.path().string()};

  ToolResult quanto = run_tool({"FLUX.1-dev-qint8"}, environment, folder.path());
  CHECK(quanto.exit_code == 3);
  CHECK(quanto.err.find("not an SDNQ checkpoint") != std::string::npos);

  ToolResult gated = run_tool({"sdnq-test/gated"}, environment, folder.path());
  CHECK(gated.exit_code == 4);
  CHECK(gated.err.find("HF_TOKEN") != std::string::npos);

  std::vector<std::string> with_token = environment;
  with_token.push_back("HF_TOKEN=hf_good");
  CHECK(run_tool({"sdnq-test/gated", "--components", "vae"}, with_token, folder.path()).exit_code == 0);

  ToolResult missing_repo = run_tool({"sdnq-test/nothing-here"}, environment, folder.path());
  CHECK(missing_repo.exit_code == 5);
  CHECK(missing_repo.err.find("sdnq-test/nothing-here") != std::string::npos);

  ToolResult missing_revision = run_tool({"Z-Image-Turbo-SDNQ-int8", "--revision", "v9"}, environment, folder.path());
  CHECK(missing_revision.exit_code == 5);
  CHECK(missing_revision.err.find("revision 'v9'") != std::string::npos);

  CHECK(run_tool({"no-such-model"}, environment, folder.path()).exit_code == 2);
  CHECK(run_tool({"Z-Image-Turbo-SDNQ-int8", "--bogus"}, environment, folder.path()).exit_code == 2);
  CHECK(run_tool({}, environment, folder.path()).exit_code == 2);

  std::vector<std::string> offline = environment;
  offline.push_back("HF_HUB_OFFLINE=1");
  ToolResult offline_miss = run_tool({"Chroma1-HD-SDNQ-uint4"}, offline, folder.path());
  CHECK(offline_miss.exit_code == 7);
  CHECK(offline_miss.err.find("Disty0/Chroma1-HD-SDNQ-uint4-svd-r32") != std::string::npos);

  // Nothing listens on port 9 and nothing is cached: the cache miss is reported, at once (no retries).
  std::vector<std::string> unreachable = {"HF_ENDPOINT=http://127.0.0.1:9",
                                          "HF_HOME=" + (folder.path() / "hf").string(), "HF_HUB_ETAG_TIMEOUT=2"};
  ToolResult network = run_tool({"sdnq-test/never-cached"}, unreachable, folder.path());
  CHECK(network.exit_code == 7);
  CHECK(network.err.find("could not be reached") != std::string::npos);
}
