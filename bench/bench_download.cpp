// Download throughput of the Hub client (sdnq::hub::HubClient) on loopback, against a Hub stand-in
// that this program starts on 127.0.0.1 (loopback_hub_server.hpp, sendfile from the page cache).
// The cases, in the order they run; the first four are ceilings on the same bytes, to show where the
// download's time goes:
//   Sha256                   the client's SHA-256 alone, one thread, over an 8 MiB buffer
//   RawSocketRead/streams    a plain recv() loop (16 KiB = curl's default buffer, and 1 MiB reads) of
//                            the served file(s), no HTTP library, nothing written
//   CurlDiscard/streams      libcurl through the client's HTTP layer, bytes counted and dropped
//   WriteFsync               writing SIZE bytes to the cache's disk in 16 KiB pieces, then fsync
//   Download/one_file        download_file of one file of SIZE bytes (one stream)
//   Download/parallel        snapshot_download of the same SIZE in 8 files, on 8 worker threads
// Both downloads go into a fresh cache per iteration with everything real use does: HEAD + 302, GET
// into blobs/<etag>.incomplete, SHA-256 verification against the etag, fsync, rename, snapshot link.
// Counters: bytes = bytes per second (k/M/G are powers of 1000, so "1.5G/s" is 1.5 GB/s);
// bytes_per_cpu_s = bytes per CPU-second of the whole process (all threads, the server included),
// which a busy shared machine disturbs less than wall-clock time; peak_rss_MiB = getrusage's peak
// RSS of the whole process so far, so each case's value also covers the cases before it.
//
// Run: bench_download [--size=2G] [benchmark flags]
//   SIZE: --size= or SDNQ_BENCH_DOWNLOAD_SIZE (bytes, or with a K/M/G suffix, powers of 1024;
//   default 2G). Data and caches live in a temporary folder under SDNQ_BENCH_DIR, else TMPDIR, else
//   /tmp, removed at the end (also on errors and Ctrl-C). SDNQ_BENCH_PORT picks the port (default: any).
#if __has_include(<curl/curl.h>)

#include <sys/resource.h>
#include <sys/socket.h>

#include <atomic>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include "download_bench_data.hpp"
#include "loopback_hub_server.hpp"
#include "sdnq/hub/client.hpp"

namespace {

using namespace sdnq;
using bench::LoopbackHubServer;
using bench::ServedData;

constexpr int parallel_file_count = 8;
const hub::Repo one_file_repo{"sdnq-bench/one-file"};
const hub::Repo parallel_repo{"sdnq-bench/eight-files"};

std::uint64_t parse_size(std::string_view text) {
  std::string digits(text);
  int shift = 0;  // K, M, G: powers of 1024
  if (!digits.empty()) {
    const char suffix = static_cast<char>(std::toupper(static_cast<unsigned char>(digits.back())));
    shift = suffix == 'K' ? 10 : suffix == 'M' ? 20 : suffix == 'G' ? 30 : 0;
    if (shift != 0) digits.pop_back();
  }
  char* end = nullptr;
  const std::uint64_t count = std::strtoull(digits.c_str(), &end, 10);
  const std::uint64_t smallest = 8 * parallel_file_count;
  const bool valid = !digits.empty() && *end == '\0' && count <= (UINT64_MAX >> shift);
  const std::uint64_t size = valid ? count << shift : 0;
  if (size < smallest || size % 8 != 0)
    throw ConfigError(
        fmt::format("download size '{}' is not a multiple of 8 bytes of at least {} (e.g. 2G, 256M)", text, smallest));
  return size;
}

// "2GiB", "256MiB", "3000B": the size in benchmark names.
std::string size_label(std::uint64_t bytes) {
  for (auto [shift, unit] : {std::pair{30, "GiB"}, std::pair{20, "MiB"}, std::pair{10, "KiB"}})
    if (bytes % (1ull << shift) == 0) return fmt::format("{}{}", bytes >> shift, unit);
  return fmt::format("{}B", bytes);
}

std::filesystem::path bench_parent_folder() {
  for (const char* name : {"SDNQ_BENCH_DIR", "TMPDIR"})
    if (const char* value = std::getenv(name); value != nullptr && *value != '\0') return value;
  return "/tmp";
}

std::uint16_t requested_port() {
  const char* value = std::getenv("SDNQ_BENCH_PORT");
  if (value == nullptr || *value == '\0') return 0;
  char* end = nullptr;
  unsigned long port = std::strtoul(value, &end, 10);
  if (*end != '\0' || port > 65535) throw ConfigError(fmt::format("SDNQ_BENCH_PORT='{}' is not a port number", value));
  return static_cast<std::uint16_t>(port);
}

// The commit the stand-in reports: deterministic, derived from the repo id and its files' digests.
std::string commit_of(const std::string& repo_id, const std::vector<bench::ServedFile>& files) {
  hub::Sha256 hash;
  hash.update(repo_id);
  for (const bench::ServedFile& file : files) hash.update(file.sha256);
  return hash.finish_hex().substr(0, 40);
}

std::vector<bench::ServedRepo> served_repos(const ServedData& data) {
  bench::ServedRepo one_file{one_file_repo.id, "", {{"model.safetensors", data.file, 0, data.size, data.sha256}}};
  bench::ServedRepo parallel{parallel_repo.id, "", {}};
  for (std::size_t i = 0; i < data.slice_sizes.size(); ++i)
    parallel.files.push_back({fmt::format("model-{:05}-of-{:05}.safetensors", i + 1, data.slice_sizes.size()),
                              data.file, data.slice_offsets[i], data.slice_sizes[i], data.slice_sha256[i]});
  for (bench::ServedRepo* repo : {&one_file, &parallel}) repo->commit = commit_of(repo->id, repo->files);
  return {one_file, parallel};
}

struct Context {
  std::filesystem::path work_folder;
  const ServedData* data = nullptr;
  const LoopbackHubServer* server = nullptr;
  std::vector<bench::ServedRepo> repos;  // one_file, parallel
};

double peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

// CPU seconds of the whole process (every thread, the in-process server included) over the timed
// work: on a shared machine, bytes per CPU-second is steadier than bytes per wall-clock second.
class ProcessCpuMeter {
 public:
  void start() { started_ = now(); }
  void stop() { seconds_ += now() - started_; }
  double seconds() const { return seconds_; }

 private:
  static double now() {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    auto seconds = [](const timeval& time) { return static_cast<double>(time.tv_sec) + time.tv_usec * 1e-6; };
    return seconds(usage.ru_utime) + seconds(usage.ru_stime);
  }
  double started_ = 0, seconds_ = 0;
};

void report(benchmark::State& state, double bytes_per_iteration, const ProcessCpuMeter& cpu) {
  state.counters["bytes"] = benchmark::Counter(bytes_per_iteration, benchmark::Counter::kIsIterationInvariantRate,
                                               benchmark::Counter::kIs1000);
  const double total_bytes = bytes_per_iteration * static_cast<double>(state.iterations());
  if (cpu.seconds() > 0)
    state.counters["bytes_per_cpu_s"] =
        benchmark::Counter(total_bytes / cpu.seconds(), benchmark::Counter::kDefaults, benchmark::Counter::kIs1000);
  state.counters["peak_rss_MiB"] = peak_rss_mib();
}

// Runs read_stream(0..streams-1) on one thread each; returns the bytes they report in total.
template <class ReadStream>
std::uint64_t run_streams(int streams, ReadStream&& read_stream) {
  std::atomic<std::uint64_t> total{0};
  std::vector<std::thread> threads;
  std::exception_ptr failure;
  std::mutex failure_mutex;
  for (int i = 0; i < streams; ++i)
    threads.emplace_back([&, i] {
      try {
        total += read_stream(i);
      } catch (...) {
        std::lock_guard lock(failure_mutex);
        failure = std::current_exception();
      }
    });
  for (std::thread& thread : threads) thread.join();
  if (failure) std::rethrow_exception(failure);
  return total;
}

// The files the `streams` readers fetch: the one big file, or the slices.
const std::vector<bench::ServedFile>& stream_files(const Context& context, int streams) {
  return streams == 1 ? context.repos[0].files : context.repos[1].files;
}

// GET of `target` with a bare socket, reading `buffer_size` at a time; returns the body's size.
std::uint64_t raw_socket_get(std::uint16_t port, const std::string& target, std::size_t buffer_size) {
  int socket = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (socket < 0) throw IoError(fmt::format("cannot create a socket: {}", std::strerror(errno)));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string request = fmt::format("GET {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n", target, port);
  if (::connect(socket, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      !bench::detail::send_all(socket, request)) {
    int error = errno;
    ::close(socket);
    throw IoError(fmt::format("raw GET {} on port {} failed: {}", target, port, std::strerror(error)));
  }
  std::vector<char> buffer(buffer_size);
  std::string head;
  std::uint64_t body_bytes = 0;
  bool in_body = false;
  for (;;) {
    ssize_t got = ::recv(socket, buffer.data(), buffer.size(), 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    if (in_body) {
      body_bytes += static_cast<std::uint64_t>(got);
      continue;
    }
    head.append(buffer.data(), static_cast<std::size_t>(got));
    if (std::size_t end = head.find("\r\n\r\n"); end != std::string::npos) {
      in_body = true;
      body_bytes = head.size() - end - 4;
      if (!head.starts_with("HTTP/1.1 200")) {
        ::close(socket);
        throw IoError(fmt::format("raw GET {}: {}", target, head.substr(0, head.find("\r\n"))));
      }
    }
  }
  ::close(socket);
  return body_bytes;
}

hub::HubSettings settings_for(const Context& context, const std::filesystem::path& cache) {
  hub::HubSettings settings;  // not from_environment(): no token, no HF_HUB_OFFLINE from the caller's shell
  settings.endpoint = context.server->endpoint();
  settings.hf_home = cache;
  settings.cache_dir = cache;
  settings.max_workers = parallel_file_count;
  return settings;
}

// Each iteration downloads into a fresh cache; creating and deleting it are not timed.
template <class Download>
void bench_download(benchmark::State& state, const Context& context, Download&& download) {
  int cache_number = 0;
  ProcessCpuMeter cpu;
  for (auto _ : state) {
    state.PauseTiming();
    std::optional<bench::TemporaryFolder> cache;
    cache.emplace(context.work_folder, fmt::format("cache-{}-", cache_number++));
    hub::HubClient client(settings_for(context, cache->path()));
    state.ResumeTiming();
    std::uint64_t downloaded = 0;
    cpu.start();
    try {
      downloaded = download(client);
    } catch (const std::exception& error) {
      state.SkipWithError(error.what());
      break;
    }
    cpu.stop();
    if (downloaded != context.data->size) {
      state.SkipWithError(fmt::format("{} bytes in the snapshot, expected {}", downloaded, context.data->size).c_str());
      break;
    }
    state.PauseTiming();
    cache.reset();  // deleting the downloaded copy is not timed
    state.ResumeTiming();
  }
  report(state, static_cast<double>(context.data->size), cpu);
}

void register_benchmarks(const Context& context) {
  const std::string label = size_label(context.data->size);
  auto finish = [](benchmark::internal::Benchmark* benchmark) {
    benchmark->UseRealTime()->Unit(benchmark::kMillisecond);
  };

  finish(benchmark::RegisterBenchmark("Sha256", [](benchmark::State& state) {
    std::vector<std::uint64_t> words(1u << 20);  // 8 MiB
    bench::fill_data(words, 0);
    const auto bytes = std::as_bytes(std::span(words));
    ProcessCpuMeter cpu;
    cpu.start();
    for (auto _ : state) {
      hub::Sha256 hash;
      hash.update(bytes);
      benchmark::DoNotOptimize(hash.finish());
    }
    cpu.stop();
    report(state, static_cast<double>(bytes.size()), cpu);
  }));

  for (int streams : {1, parallel_file_count}) {
    for (std::size_t buffer_size : {std::size_t{16} << 10, std::size_t{1} << 20}) {
      auto name = fmt::format("RawSocketRead/streams:{}/read:{}KiB/{}", streams, buffer_size >> 10, label);
      finish(benchmark::RegisterBenchmark(name.c_str(), [&context, streams, buffer_size](benchmark::State& state) {
        const auto& files = stream_files(context, streams);
        ProcessCpuMeter cpu;
        cpu.start();
        for (auto _ : state) {
          std::uint64_t received = run_streams(streams, [&](int i) {
            return raw_socket_get(context.server->port(), "/cdn/" + files[static_cast<std::size_t>(i)].sha256,
                                  buffer_size);
          });
          if (received != context.data->size) state.SkipWithError("the raw read came up short");
        }
        cpu.stop();
        report(state, static_cast<double>(context.data->size), cpu);
      }));
    }
  }

  for (int streams : {1, parallel_file_count}) {
    auto name = fmt::format("CurlDiscard/streams:{}/{}", streams, label);
    finish(benchmark::RegisterBenchmark(name.c_str(), [&context, streams](benchmark::State& state) {
      const auto& files = stream_files(context, streams);
      ProcessCpuMeter cpu;
      cpu.start();
      for (auto _ : state) {
        std::uint64_t received = 0;
        try {
          received = run_streams(streams, [&](int i) {
            std::uint64_t count = 0;
            hub::detail::BodySink sink = [&](const hub::detail::HttpResponse&, std::string_view piece) {
              count += piece.size();
            };
            hub::detail::HttpRequest request;
            request.url = context.server->cdn_url(files[static_cast<std::size_t>(i)]);
            hub::detail::perform(request, &sink);
            return count;
          });
        } catch (const std::exception& error) {
          state.SkipWithError(error.what());
          break;
        }
        if (received != context.data->size) state.SkipWithError("the curl read came up short");
      }
      cpu.stop();
      report(state, static_cast<double>(context.data->size), cpu);
    }));
  }

  finish(benchmark::RegisterBenchmark(
      fmt::format("WriteFsync/pieces:16KiB/{}", label).c_str(), [&context](benchmark::State& state) {
        std::vector<std::uint64_t> words(2048);  // 16 KiB
        bench::fill_data(words, 0);
        const auto piece = std::as_bytes(std::span(words));
        ProcessCpuMeter cpu;
        for (auto _ : state) {
          state.PauseTiming();
          std::optional<bench::TemporaryFolder> folder;
          folder.emplace(context.work_folder, "write-");
          try {
            hub::detail::PartialFile file(folder->path() / "blob.incomplete");
            state.ResumeTiming();
            cpu.start();
            for (std::uint64_t written = 0; written < context.data->size; written += piece.size())
              file.write({reinterpret_cast<const char*>(piece.data()), piece.size()}, {});
            file.commit(folder->path() / "blob");
            cpu.stop();
          } catch (const std::exception& error) {
            state.SkipWithError(error.what());
            break;
          }
          state.PauseTiming();
          folder.reset();  // deleting the file is not timed
          state.ResumeTiming();
        }
        report(state, static_cast<double>(context.data->size), cpu);
      }));

  finish(benchmark::RegisterBenchmark(
      fmt::format("Download/one_file/{}", label).c_str(), [&context](benchmark::State& state) {
        bench_download(state, context, [](hub::HubClient& client) {
          return std::filesystem::file_size(client.download_file(one_file_repo, "model.safetensors"));
        });
      }));

  auto parallel_name =
      fmt::format("Download/parallel/files:{}/{}", parallel_file_count, size_label(context.data->slice_sizes[0]));
  finish(benchmark::RegisterBenchmark(parallel_name.c_str(), [&context](benchmark::State& state) {
    bench_download(state, context, [](hub::HubClient& client) {
      hub::Snapshot snapshot = client.snapshot_download(parallel_repo);
      std::uint64_t total = 0;
      for (const std::string& path : snapshot.files) total += std::filesystem::file_size(snapshot.folder / path);
      return total;
    });
  }));
}

// Takes --size=... out of argv (Google Benchmark rejects flags it does not know).
std::optional<std::string> take_size_flag(int& argc, char** argv) {
  std::optional<std::string> size;
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    std::string_view argument = argv[i];
    if (argument.starts_with("--size="))
      size = std::string(argument.substr(7));
    else
      argv[kept++] = argv[i];
  }
  argc = kept;
  return size;
}

}  // namespace

int main(int argc, char** argv) {
  bench::block_termination_signals();  // before any thread: only the cleanup thread sees Ctrl-C
  std::optional<std::string> size_flag = take_size_flag(argc, argv);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  try {
    const char* size_env = std::getenv("SDNQ_BENCH_DOWNLOAD_SIZE");
    const std::uint64_t size = parse_size(size_flag                                    ? *size_flag
                                          : (size_env != nullptr && *size_env != '\0') ? size_env
                                                                                       : "2G");
    const std::filesystem::path parent = bench_parent_folder();
    // The served data plus one downloaded copy (or the WriteFsync file) at a time, plus some slack.
    bench::require_free_space(parent, 2 * size + (64ull << 20));
    bench::TemporaryFolder work_folder(parent, "sdnq-bench-download-");
    bench::remove_on_signal(work_folder.path());

    fmt::print(stderr, "bench_download: writing and hashing {} of served data in {}\n", hub::format_bytes(size),
               work_folder.path().string());
    const ServedData data = bench::write_served_data(work_folder.path() / "served.bin", size, parallel_file_count);
    Context context{work_folder.path(), &data, nullptr, served_repos(data)};
    LoopbackHubServer server(context.repos, requested_port());
    context.server = &server;
    fmt::print(stderr, "bench_download: loopback Hub on {}\n", server.endpoint());

    register_benchmarks(context);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
  } catch (const std::exception& error) {
    fmt::print(stderr, "bench_download: {}\n", error.what());
    return 1;
  }
  return 0;
}

#else  // no libcurl: the Hub client, and so this benchmark, cannot be built

#include <cstdio>

int main() {
  std::fputs("bench_download: skipped, built without libcurl (the Hub client sdnq::hub needs it)\n", stderr);
  return 0;
}

#endif
