// sdnq/cuda/device_memory.hpp: allocation, copies in every direction, pointer checks, DeviceGuard.
#include <cstdint>
#include <cstring>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>

#include "cuda/cuda_test_support.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/cuda/device_pool.hpp"
#include "sdnq_catch.hpp"

using sdnq::test::contains;
using sdnq::test::message_of;

namespace {

// A host tensor of `shape` holding 0, 1, 2, ... as int32.
sdnq::Tensor counting_tensor(sdnq::Shape shape) {
  sdnq::Tensor tensor = sdnq::Tensor::empty(shape, sdnq::DType::i32);
  std::iota(tensor.data_as<std::int32_t>(), tensor.data_as<std::int32_t>() + tensor.numel(), 0);
  return tensor;
}

bool same_bytes(const sdnq::TensorView& a, const sdnq::TensorView& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

cudaMemoryType memory_type(const void* pointer) {
  cudaPointerAttributes attributes{};
  SDNQ_CUDA_CHECK(cudaPointerGetAttributes(&attributes, pointer));
  return attributes.type;
}

}  // namespace

TEST_CASE("cuda::empty allocates device memory that the tensor frees", "[cuda][memory]") {
  const sdnq::Tensor tensor = sdnq::cuda::empty({4, 8}, sdnq::DType::f32);
  CHECK(tensor.device() == sdnq::Device::cuda(0));
  CHECK(tensor.shape() == sdnq::Shape{4, 8});
  CHECK(tensor.nbytes() == 4 * 8 * 4);
  CHECK(memory_type(tensor.data()) == cudaMemoryTypeDevice);
  CHECK_NOTHROW(sdnq::cuda::check_pointer_location(tensor));

  const sdnq::Tensor no_elements = sdnq::cuda::empty({0, 3}, sdnq::DType::bf16);
  CHECK(no_elements.defined());
  CHECK(no_elements.nbytes() == 0);

  // 256 MiB show up in the device's free memory while the tensor lives, and come back after.
  constexpr std::size_t bytes = std::size_t{256} << 20;
  std::size_t free_before = 0, free_during = 0, free_after = 0, total = 0;
  SDNQ_CUDA_CHECK(cudaMemGetInfo(&free_before, &total));
  {
    const sdnq::Tensor large = sdnq::cuda::empty({static_cast<std::int64_t>(bytes)}, sdnq::DType::u8);
    SDNQ_CUDA_CHECK(cudaMemGetInfo(&free_during, &total));
  }
  SDNQ_CUDA_CHECK(cudaMemGetInfo(&free_after, &total));
  CHECK(free_before - free_during >= bytes);
  CHECK(free_after >= free_before - (std::size_t{8} << 20));  // allow for allocator granularity
}

TEST_CASE("cuda::empty reports impossible requests", "[cuda][memory]") {
  const std::string too_large =
      message_of<sdnq::CudaError>([] { (void)sdnq::cuda::empty({std::int64_t{1} << 50}, sdnq::DType::u8); });
  INFO(too_large);
  CHECK(contains(too_large, "1125899906842624 bytes"));
  CHECK(contains(too_large, "cuda:0"));
  CHECK(cudaGetLastError() == cudaSuccess);  // the failure is not left behind for the next check

  const int count = sdnq::cuda::device_count();
  const std::string missing =
      message_of<sdnq::UnsupportedError>([&] { (void)sdnq::cuda::empty({4}, sdnq::DType::f32, count); });
  CHECK(contains(missing, fmt::format("cuda:{} does not exist", count)));
  CHECK_THROWS_AS(sdnq::cuda::empty({-1, 4}, sdnq::DType::f32), sdnq::ShapeError);
}

TEST_CASE("cuda::zeros clears the memory", "[cuda][memory]") {
  const sdnq::Tensor zeros = sdnq::cuda::zeros({3, 5}, sdnq::DType::i32);
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
  const sdnq::Tensor host = sdnq::cuda::to_host(zeros);
  const std::vector<std::int32_t> expected(15, 0);
  CHECK(std::memcmp(host.data(), expected.data(), host.nbytes()) == 0);
}

TEST_CASE("copies in every direction carry the bytes unchanged", "[cuda][memory]") {
  const sdnq::Tensor source = counting_tensor({6, 7});

  SECTION("to_device, clone and to_host round-trip") {
    const sdnq::Tensor on_device = sdnq::cuda::to_device(source);
    CHECK(on_device.device().is_cuda());
    const sdnq::Tensor cloned = sdnq::cuda::clone(on_device);
    CHECK(cloned.data() != on_device.data());
    const sdnq::Tensor back = sdnq::cuda::to_host(cloned);
    CHECK(back.device().is_cpu());
    CHECK(same_bytes(back, source));
  }

  SECTION("copy() host to device, device to device, device to host and host to host on a stream") {
    cudaStream_t stream = nullptr;
    SDNQ_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    const sdnq::Tensor first = sdnq::cuda::empty(source.shape(), source.dtype());
    const sdnq::Tensor second = sdnq::cuda::empty(source.shape(), source.dtype());
    const sdnq::Tensor host_back = sdnq::Tensor::zeros(source.shape(), source.dtype());
    const sdnq::Tensor host_copy = sdnq::Tensor::zeros(source.shape(), source.dtype());
    sdnq::cuda::copy(first, source, stream);
    sdnq::cuda::copy(second, first, stream);
    sdnq::cuda::copy(host_back, second, stream);
    sdnq::cuda::copy(host_copy, host_back, stream);
    SDNQ_CUDA_CHECK(cudaStreamSynchronize(stream));
    SDNQ_CUDA_CHECK(cudaStreamDestroy(stream));
    CHECK(same_bytes(host_back, source));
    CHECK(same_bytes(host_copy, source));
  }

  SECTION("pinned host memory") {
    void* pinned = nullptr;
    SDNQ_CUDA_CHECK(cudaMallocHost(&pinned, source.nbytes()));
    const sdnq::TensorView pinned_view(pinned, source.dtype(), source.shape());
    const sdnq::Tensor on_device = sdnq::cuda::to_device(source);
    sdnq::cuda::copy(pinned_view, on_device);
    SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
    CHECK(same_bytes(pinned_view, source));
    SDNQ_CUDA_CHECK(cudaFreeHost(pinned));
  }

  SECTION("a strided host tensor goes to the device in logical order") {
    // The transpose of a [6, 7] tensor: shape [7, 6], strides [1, 7].
    const sdnq::TensorView transposed(source.data(), source.dtype(), {7, 6}, sdnq::Shape{1, 7}, sdnq::Device::cpu());
    const sdnq::Tensor back = sdnq::cuda::to_host(sdnq::cuda::to_device(transposed));
    const std::int32_t* values = back.data_as<std::int32_t>();
    bool in_order = true;
    for (int row = 0; row < 7; ++row)
      for (int column = 0; column < 6; ++column) in_order = in_order && values[row * 6 + column] == column * 7 + row;
    CHECK(in_order);
  }

  SECTION("empty tensors copy as a no-op") {
    const sdnq::Tensor empty_host = sdnq::Tensor::empty({0}, sdnq::DType::f32);
    const sdnq::Tensor empty_device = sdnq::cuda::to_device(empty_host);
    CHECK(sdnq::cuda::to_host(empty_device).numel() == 0);
  }
}

TEST_CASE("cuda::copy rejects tensors that do not match", "[cuda][memory]") {
  const sdnq::Tensor host = counting_tensor({4, 4});
  const sdnq::Tensor device = sdnq::cuda::empty({4, 4}, sdnq::DType::i32);
  const sdnq::Tensor other_shape = sdnq::cuda::empty({2, 8}, sdnq::DType::i32);
  const sdnq::Tensor other_dtype = sdnq::cuda::empty({4, 4}, sdnq::DType::f32);

  const std::string shape_message = message_of<sdnq::ShapeError>([&] { sdnq::cuda::copy(other_shape, host); });
  INFO(shape_message);
  CHECK(contains(shape_message, "[4, 4]"));
  CHECK(contains(shape_message, "[2, 8]"));
  CHECK_THROWS_AS(sdnq::cuda::copy(other_dtype, host), sdnq::ShapeError);

  // Every other column: shape [4, 2], strides [4, 2].
  const sdnq::TensorView strided(device.data(), sdnq::DType::i32, {4, 2}, sdnq::Shape{4, 2}, sdnq::Device::cuda(0));
  const sdnq::Tensor small = sdnq::Tensor::empty({4, 2}, sdnq::DType::i32);
  const std::string strided_message = message_of<sdnq::ShapeError>([&] { sdnq::cuda::copy(small, strided); });
  CHECK(contains(strided_message, "contiguous"));
  CHECK_THROWS_AS(sdnq::cuda::to_host(host), sdnq::ShapeError);
  CHECK_THROWS_AS(sdnq::cuda::to_device(device), sdnq::ShapeError);
}

TEST_CASE("a view whose pointer is not where its device says is rejected", "[cuda][memory]") {
  sdnq::Tensor host = counting_tensor({8});
  const sdnq::Tensor device = sdnq::cuda::empty({8}, sdnq::DType::i32);

  // Host memory labelled as cuda:0.
  const sdnq::TensorView host_as_device(host.data(), sdnq::DType::i32, {8}, sdnq::Device::cuda(0));
  const std::string host_message = message_of<sdnq::ShapeError>([&] { (void)sdnq::cuda::to_host(host_as_device); });
  INFO(host_message);
  CHECK(contains(host_message, "copy source claims to live on cuda:0"));
  CHECK(contains(host_message, "host memory"));

  // Device memory labelled as host memory.
  const sdnq::TensorView device_as_host(device.data(), sdnq::DType::i32, {8}, sdnq::Device::cpu());
  const std::string device_message = message_of<sdnq::ShapeError>([&] { sdnq::cuda::copy(device_as_host, host); });
  CHECK(contains(device_message, "copy destination claims to live on cpu"));
  CHECK(contains(device_message, "device memory on cuda:0"));

  // Device memory of cuda:0 labelled as another GPU's.
  const sdnq::TensorView wrong_gpu(device.data(), sdnq::DType::i32, {8}, sdnq::Device::cuda(1));
  const std::string wrong_gpu_message =
      message_of<sdnq::ShapeError>([&] { sdnq::cuda::check_pointer_location(wrong_gpu, "weight"); });
  CHECK(contains(wrong_gpu_message, "weight claims to live on cuda:1"));
  CHECK(contains(wrong_gpu_message, "cuda:0"));
  CHECK(cudaGetLastError() == cudaSuccess);
}

TEST_CASE("DeviceGuard makes a device current for a scope", "[cuda][memory]") {
  int before = -1;
  SDNQ_CUDA_CHECK(cudaGetDevice(&before));
  const int count = sdnq::cuda::device_count();
  const int other = count > 1 ? (before + 1) % count : before;
  {
    sdnq::cuda::DeviceGuard guard(other);
    int inside = -1;
    SDNQ_CUDA_CHECK(cudaGetDevice(&inside));
    CHECK(inside == other);
  }
  int after = -1;
  SDNQ_CUDA_CHECK(cudaGetDevice(&after));
  CHECK(after == before);
  CHECK_THROWS_AS(sdnq::cuda::DeviceGuard(count), sdnq::UnsupportedError);
  CHECK_THROWS_AS(sdnq::cuda::DeviceGuard(-1), sdnq::UnsupportedError);
}

TEST_CASE("DevicePool packs many tensors into whole pages and gives every one its own bytes", "[cuda][memory][pool]") {
  std::size_t free_before = 0, free_after = 0, total = 0;
  SDNQ_CUDA_CHECK(cudaMemGetInfo(&free_before, &total));
  {
    sdnq::cuda::DevicePool pool(0, "test pool");
    // 2.1 MiB tensors (a block of two pages each), each followed by two of ~0.5 MiB (odd sizes) that fit
    // in the tail of its block.
    std::vector<sdnq::Tensor> tensors;
    std::vector<sdnq::Tensor> sources;
    std::size_t used = 0;
    for (int i = 0; i < 24; ++i) {
      const std::int64_t elements = i % 3 == 0 ? (std::int64_t{2100} << 10) / 4 : (std::int64_t{512} << 10) / 4 + 37 * i;
      sources.push_back(counting_tensor({elements}));
      for (std::int64_t e = 0; e < elements; ++e) sources.back().data_as<std::int32_t>()[e] += i << 24;
      tensors.push_back(pool.empty({elements}, sdnq::DType::i32));
      CHECK(reinterpret_cast<std::uintptr_t>(tensors.back().data()) % sdnq::cuda::DevicePool::alignment == 0);
      CHECK(tensors.back().device() == sdnq::Device::cuda(0));
      sdnq::cuda::copy(tensors.back(), sources.back());
      used += (tensors.back().nbytes() + 255) / 256 * 256;
    }
    CHECK(pool.used_bytes() == used);
    constexpr std::size_t page = sdnq::cuda::DevicePool::page_bytes;
    CHECK(pool.reserved_bytes() == 8 * 2 * page);  // one cudaMalloc per tensor: 8 * 2 pages + 16 * 0.5 MiB
    // Every tensor kept its own bytes: none overlaps another.
    for (std::size_t i = 0; i < tensors.size(); ++i) CHECK(same_bytes(sdnq::cuda::to_host(tensors[i]), sources[i]));

    // Freed ranges are reused; a block whose tensors are all gone goes back to CUDA.
    const std::size_t reserved = pool.reserved_bytes();
    tensors.erase(tensors.begin() + 1, tensors.begin() + 12);
    const sdnq::Tensor reused = pool.empty({1000}, sdnq::DType::f32);
    CHECK(pool.reserved_bytes() <= reserved);
    tensors.clear();
    CHECK(pool.used_bytes() == 1024 * 4);
    CHECK(pool.reserved_bytes() > 0);
    CHECK(pool.reserved_bytes() <= 2 * page);
  }
  SDNQ_CUDA_CHECK(cudaMemGetInfo(&free_after, &total));
  CHECK(free_after + sdnq::cuda::DevicePool::page_bytes >= free_before);  // every block went back
}

TEST_CASE("DevicePool: tensors outlive the pool object; scopes route cuda::empty and nest", "[cuda][memory][pool]") {
  std::optional<sdnq::Tensor> survivor;
  const sdnq::Tensor source = counting_tensor({5000});
  {
    sdnq::cuda::DevicePool pool(0, "short-lived pool");
    sdnq::cuda::DevicePoolScope scope(pool);
    CHECK(sdnq::cuda::DevicePoolScope::active(0));
    survivor.emplace(sdnq::cuda::to_device(source));  // to_device -> cuda::empty -> the pool
    CHECK(pool.used_bytes() == 20224);
    {
      sdnq::cuda::DevicePool inner(0, "inner pool");
      sdnq::cuda::DevicePoolScope inner_scope(inner);
      const sdnq::Tensor zeros = sdnq::cuda::zeros({10}, sdnq::DType::f32);
      CHECK(inner.used_bytes() == 256);
      CHECK(pool.used_bytes() == 20224);
      {
        sdnq::cuda::PooledLoad load(0, "a model's own pool");  // a scope is active: it takes no pool of its own
        const sdnq::Tensor more = sdnq::cuda::empty({1}, sdnq::DType::u8);
        CHECK(inner.used_bytes() == 512);
      }
    }
    const sdnq::Tensor back_in_outer = sdnq::cuda::empty({64}, sdnq::DType::u8);
    CHECK(pool.used_bytes() == 20224 + 256);
  }
  CHECK_FALSE(sdnq::cuda::DevicePoolScope::active(0));
  CHECK(same_bytes(sdnq::cuda::to_host(*survivor), source));
  survivor.reset();  // the last tensor frees the pool's block and bookkeeping

  {
    sdnq::cuda::PooledLoad load(0, "a model's own pool");
    CHECK(sdnq::cuda::DevicePoolScope::active(0));
  }
  CHECK_FALSE(sdnq::cuda::DevicePoolScope::active(0));
}

TEST_CASE("DevicePool names itself and the tensor when the device is out of memory", "[cuda][memory][pool]") {
  sdnq::cuda::DevicePool pool(0, "weights of a test model");
  const std::string message =
      message_of<sdnq::CudaError>([&] { (void)pool.empty({std::int64_t{1} << 50}, sdnq::DType::u8); });
  INFO(message);
  CHECK(contains(message, "weights of a test model"));
  CHECK(contains(message, "[1125899906842624]"));
  CHECK(cudaGetLastError() == cudaSuccess);
  CHECK(pool.reserved_bytes() == 0);
}
