// sdnq-download: downloads a model from the catalog (or any Hub repo) into the shared Hugging Face
// cache, the one Python's huggingface_hub uses, and prints the snapshot folder.
//
//   sdnq-download Z-Image-Turbo-SDNQ-int8                      every file of the catalog entry's repo
//   sdnq-download Disty0/Z-Image-Turbo-SDNQ-int8 --components transformer,vae
//   sdnq-download <name | org/repo> --revision refs/pr/3
//   sdnq-download --list [--json]                              the catalog
//
// Environment: HF_ENDPOINT, HF_HOME, HF_HUB_CACHE, HF_TOKEN (or $HF_HOME/token), HF_HUB_OFFLINE.
// Exit codes: 0 done, 1 unexpected error, 2 bad arguments or unknown component, 3 not an SDNQ model,
// 4 access denied (gated repo, token), 5 repo / revision / file not found, 6 network or server error,
// 7 offline and not in the cache, 8 corrupt download or unsafe server data, 9 cache not writable / disk full.
#include <cstdio>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "sdnq/hub/catalog.hpp"
#include "sdnq/hub/client.hpp"

namespace {

enum ExitCode : int {
  exit_ok = 0,
  exit_unexpected = 1,
  exit_usage = 2,
  exit_not_sdnq = 3,
  exit_access_denied = 4,
  exit_not_found = 5,
  exit_network = 6,
  exit_offline_miss = 7,
  exit_corrupt = 8,
  exit_cache_io = 9,
};

constexpr std::string_view usage_text =
    "usage: sdnq-download <catalog name | org/repo> [--revision R] [--components a,b,...]\n"
    "       sdnq-download --list [--json]\n"
    "Downloads into the Hugging Face cache ($HF_HUB_CACHE, default ~/.cache/huggingface/hub) and prints\n"
    "the snapshot folder. --components keeps model_index.json and the named component folders only.\n";

struct Arguments {
  std::string target;
  std::string revision = "main";
  std::vector<std::string> components;
  bool list = false;
  bool json = false;
};

struct UsageError {
  std::string message;
};

std::vector<std::string> split_commas(std::string_view text) {
  std::vector<std::string> parts;
  while (!text.empty()) {
    std::size_t comma = text.find(',');
    std::string_view part = text.substr(0, comma);
    while (part.ends_with('/')) part.remove_suffix(1);
    if (!part.empty()) parts.emplace_back(part);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return parts;
}

Arguments parse_arguments(int argc, char** argv) {
  Arguments arguments;
  for (int i = 1; i < argc; ++i) {
    std::string_view argument = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError{fmt::format("{} needs a value", argument)};
      return argv[++i];
    };
    if (argument == "--list") {
      arguments.list = true;
    } else if (argument == "--json") {
      arguments.json = true;
    } else if (argument == "--revision") {
      arguments.revision = value();
    } else if (argument == "--components") {
      arguments.components = split_commas(value());
      if (arguments.components.empty()) throw UsageError{"--components needs at least one component name"};
    } else if (argument == "-h" || argument == "--help") {
      fmt::print("{}", usage_text);
      std::exit(exit_ok);
    } else if (argument.starts_with("-")) {
      throw UsageError{fmt::format("unknown option {}", argument)};
    } else if (arguments.target.empty()) {
      arguments.target = argument;
    } else {
      throw UsageError{fmt::format("more than one model given ('{}' and '{}')", arguments.target, argument)};
    }
  }
  if (!arguments.list && arguments.target.empty()) throw UsageError{"no model given"};
  return arguments;
}

void print_catalog(bool json) {
  if (json) {
    fmt::print("{}\n", sdnq::hub::catalog_json().dump(2));
    return;
  }
  fmt::print("{:<38} {:<18} {:<26} {}\n", "NAME", "FORMAT", "PIPELINE", "REPO");
  for (const sdnq::hub::CatalogEntry& entry : sdnq::hub::catalog()) {
    std::string format = entry.is_sdnq() ? std::string(sdnq::hub::to_string(entry.format)) : "not SDNQ (quanto)";
    std::string_view pipeline = entry.family->pipeline_class.empty() ? "(not diffusers)" : entry.family->pipeline_class;
    fmt::print("{:<38} {:<18} {:<26} {}\n", entry.name, format, pipeline, entry.repo_id);
  }
}

// The top-level folders of a repo, which are the pipeline's components.
std::set<std::string> component_folders(const std::vector<sdnq::hub::RepoFileEntry>& files) {
  std::set<std::string> folders;
  for (const auto& file : files)
    if (std::size_t slash = file.path.find('/'); slash != std::string::npos) folders.insert(file.path.substr(0, slash));
  return folders;
}

int download(const Arguments& arguments) {
  using namespace sdnq::hub;
  const CatalogEntry* entry = find_catalog_entry(arguments.target);
  std::string repo_id;
  if (entry) {
    require_sdnq(*entry);
    repo_id = entry->repo_id;
  } else if (arguments.target.find('/') != std::string::npos) {
    repo_id = arguments.target;
  } else {
    throw UsageError{
        fmt::format("'{}' is neither a catalog name nor a repo id (org/name); sdnq-download --list shows "
                    "the catalog",
                    arguments.target)};
  }
  validate_repo_id(repo_id);
  Repo repo{repo_id, RepoType::model};
  HubClient client;

  SnapshotOptions options;
  options.revision = arguments.revision;
  if (!arguments.components.empty()) {
    if (entry && !entry->is_diffusers_pipeline())
      throw UsageError{
          fmt::format("{} is not a diffusers pipeline, it has no components to pick: {}", entry->name, entry->notes)};
    if (!client.settings().offline) {
      std::set<std::string> available = component_folders(client.list_files(repo, arguments.revision).files);
      for (const std::string& component : arguments.components)
        if (!available.contains(component))
          throw UsageError{fmt::format("{} has no component '{}' at revision '{}'; it has: {}", repo_id, component,
                                       arguments.revision, fmt::join(available, ", "))};
    }
    options.allow_patterns.push_back("model_index.json");
    for (const std::string& component : arguments.components) options.allow_patterns.push_back(component + "/*");
  }
  TerminalProgress progress(stderr);
  options.progress = &progress;
  Snapshot snapshot = client.snapshot_download(repo, options);
  fmt::print(stderr, "{} files of {} at commit {} are in the cache\n", snapshot.files.size(), repo_id, snapshot.commit);
  fmt::print("{}\n", snapshot.folder.string());
  return exit_ok;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace sdnq::hub;
  auto fail = [](int code, std::string_view message) {
    fmt::print(stderr, "sdnq-download: error: {}\n", message);
    return code;
  };
  try {
    Arguments arguments = parse_arguments(argc, argv);
    if (arguments.list) {
      print_catalog(arguments.json);
      return exit_ok;
    }
    return download(arguments);
  } catch (const UsageError& error) {
    fmt::print(stderr, "sdnq-download: error: {}\n{}", error.message, usage_text);
    return exit_usage;
  } catch (const sdnq::ConfigError& error) {
    return fail(exit_usage, error.what());
  } catch (const sdnq::UnsupportedError& error) {
    return fail(exit_not_sdnq, error.what());
  } catch (const GatedRepoError& error) {
    return fail(exit_access_denied, error.what());
  } catch (const RepositoryNotFoundError& error) {
    return fail(exit_not_found, error.what());
  } catch (const RevisionNotFoundError& error) {
    return fail(exit_not_found, error.what());
  } catch (const EntryNotFoundError& error) {
    return fail(exit_not_found, error.what());
  } catch (const HttpError& error) {
    return fail(error.status() == 401 || error.status() == 403 ? exit_access_denied : exit_network, error.what());
  } catch (const NetworkError& error) {
    return fail(exit_network, error.what());
  } catch (const LocalEntryNotFoundError& error) {
    return fail(exit_offline_miss, error.what());
  } catch (const IntegrityError& error) {
    return fail(exit_corrupt, error.what());
  } catch (const UnsafePathError& error) {
    return fail(exit_corrupt, error.what());
  } catch (const FileMetadataError& error) {
    return fail(exit_network, error.what());
  } catch (const sdnq::IoError& error) {
    return fail(exit_cache_io, error.what());
  } catch (const std::exception& error) {
    return fail(exit_unexpected, error.what());
  }
}
