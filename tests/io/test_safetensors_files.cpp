// The file layer under safetensors: MappedFile and AtomicFileWriter.
#include <sys/resource.h>
#include <sys/stat.h>

#include <csignal>
#include <vector>

#include "io/test_safetensors_support.hpp"
#include "sdnq/io/atomic_file.hpp"
#include "sdnq/io/mapped_file.hpp"
#include "sdnq/io/safetensors.hpp"

using namespace sdnq;
using namespace sdnq::io;
using sdnq::test::read_file;
using sdnq::test::require_error;
using sdnq::test::ScratchFolder;

TEST_CASE("MappedFile: maps whole files, empty ones too, and moves", "[io][mapped_file]") {
  ScratchFolder folder;
  sdnq::test::write_file(folder / "text", "hello, mapping");
  MappedFile mapped = MappedFile::open(folder / "text");
  REQUIRE(mapped.size() == 14);
  CHECK(std::string(reinterpret_cast<const char*>(mapped.data()), mapped.size()) == "hello, mapping");
  CHECK(mapped.contains(mapped.data() + 13));
  CHECK_FALSE(mapped.contains(mapped.data() + 15));

  const std::byte* address = mapped.data();
  MappedFile moved = std::move(mapped);
  CHECK(moved.data() == address);
  CHECK(mapped.data() == nullptr);  // NOLINT: the moved-from state is part of the contract
  CHECK(moved.path() == folder / "text");

  sdnq::test::write_file(folder / "empty", "");
  MappedFile empty = MappedFile::open(folder / "empty");
  CHECK(empty.empty());
  CHECK(empty.data() == nullptr);
  CHECK(empty.bytes().empty());

  require_error<IoError>([&] { MappedFile::open(folder / "absent"); }, {"cannot open", "absent", "No such file"});
  require_error<IoError>([&] { MappedFile::open(folder.path()); }, {"not a regular file"});
  // A FIFO would block a plain open() until a writer appears; it is refused at once instead.
  REQUIRE(::mkfifo((folder / "fifo").c_str(), 0600) == 0);
  require_error<IoError>([&] { MappedFile::open(folder / "fifo"); }, {"fifo", "not a regular file"});
}

TEST_CASE("AtomicFileWriter: the target appears only on commit", "[io][atomic_file]") {
  ScratchFolder folder;
  const auto target = folder / "out.bin";
  sdnq::test::write_file(target, "old content");
  {
    AtomicFileWriter writer(target);
    writer.write(std::string_view("new "));
    writer.write(std::string_view("content"));
    CHECK(writer.bytes_written() == 11);
    CHECK(writer.temporary().parent_path() == folder.path());
    CHECK(std::filesystem::exists(writer.temporary()));
    CHECK(read_file(target) == "old content");  // untouched until commit
    writer.commit();
    require_error<IoError>([&] { writer.write(std::string_view("late")); }, {"out.bin", "already committed"});
  }
  CHECK(read_file(target) == "new content");
  CHECK(std::distance(std::filesystem::directory_iterator(folder.path()), {}) == 1);
  CHECK((std::filesystem::status(target).permissions() & std::filesystem::perms::owner_read) !=
        std::filesystem::perms::none);
}

TEST_CASE("AtomicFileWriter: dropped without commit, nothing is left behind", "[io][atomic_file]") {
  ScratchFolder folder;
  const auto target = folder / "never.bin";
  try {
    AtomicFileWriter writer(target);
    writer.write(std::string_view("partial"));
    throw std::runtime_error("failure while writing");
  } catch (const std::runtime_error&) {
  }
  CHECK_FALSE(std::filesystem::exists(target));
  CHECK(std::filesystem::is_empty(folder.path()));

  require_error<IoError>([&] { AtomicFileWriter writer(folder / "no-such-folder" / "x.bin"); },
                         {"no-such-folder/x.bin", "No such file"});
}

TEST_CASE("AtomicFileWriter: a write error names the file and leaves the old one intact", "[io][atomic_file]") {
  ScratchFolder folder;
  const auto target = folder / "limited.safetensors";
  sdnq::test::write_file(target, "previous");
  // A file-size limit makes write() fail (EFBIG), as a full disk (ENOSPC) would.
  struct rlimit saved {};
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &saved) == 0);
  auto previous_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit limited = saved;
  limited.rlim_cur = 4096;
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &limited) == 0);

  std::vector<float> big(4096, 1.0f);  // 16 KiB of data
  std::string message;
  try {
    write_safetensors(target, {{"big", TensorView(big.data(), DType::f32, {4096})}});
  } catch (const IoError& error) {
    message = error.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, previous_handler);

  INFO(message);
  CHECK(message.find("limited.safetensors") != std::string::npos);
  CHECK(message.find("File too large") != std::string::npos);
  CHECK(read_file(target) == "previous");
  CHECK(std::distance(std::filesystem::directory_iterator(folder.path()), {}) == 1);
}
