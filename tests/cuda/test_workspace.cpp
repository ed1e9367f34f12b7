// sdnq/cuda/workspace.hpp: one device allocation handed out by an Arena.
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>

#include "cuda/cuda_test_support.hpp"
#include "sdnq/cuda/workspace.hpp"
#include "sdnq_catch.hpp"

using sdnq::test::contains;
using sdnq::test::message_of;

TEST_CASE("cuda::Workspace hands out device tensors that hold what is written to them", "[cuda][workspace]") {
  sdnq::cuda::Workspace workspace(1 << 20, 0, "test workspace");
  CHECK(workspace.capacity() == (1u << 20));
  sdnq::Arena& arena = workspace.arena();

  sdnq::TensorView first = arena.take({1000}, sdnq::DType::i32, "first");
  sdnq::TensorView second = arena.take({33, 7}, sdnq::DType::bf16, "second");
  CHECK(first.device() == sdnq::Device::cuda(0));
  sdnq::cuda::check_pointer_location(first, "first");
  sdnq::cuda::check_pointer_location(second, "second");
  CHECK(reinterpret_cast<std::uintptr_t>(second.data()) % sdnq::Arena::alignment == 0);

  sdnq::Tensor host = sdnq::Tensor::empty({1000}, sdnq::DType::i32);
  std::iota(host.data_as<std::int32_t>(), host.data_as<std::int32_t>() + 1000, -500);
  sdnq::cuda::copy(first, host.view());
  SDNQ_CUDA_CHECK(cudaMemset(second.data(), 0xAB, second.nbytes()));  // must not touch `first`
  sdnq::Tensor back = sdnq::cuda::to_host(first);
  for (int i = 0; i < 1000; ++i) REQUIRE(back.data_as<std::int32_t>()[i] == i - 500);
  CHECK(workspace.peak() == sdnq::Arena::footprint({1000}, sdnq::DType::i32) +
                                sdnq::Arena::footprint({33, 7}, sdnq::DType::bf16));
}

TEST_CASE("cuda::Workspace: too small a workspace is a ResourceError naming it", "[cuda][workspace]") {
  sdnq::cuda::Workspace workspace(4096, 0, "vae decoder workspace");
  const std::string message = message_of<sdnq::ResourceError>([&] { (void)workspace.arena().take({4096}, sdnq::DType::f32, "conv_in"); });
  CHECK(contains(message, "vae decoder workspace"));
  CHECK(contains(message, "conv_in"));
  CHECK_THROWS_AS(workspace.arena().take({4096}, sdnq::DType::f32, "conv_in"), sdnq::ResourceError);
}
