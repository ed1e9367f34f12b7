// Launchers of the op tests (declared in test_ops_launchers.hpp).
#include <cuda_runtime.h>

#include <optional>
#include <stdexcept>

#include "cuda/test_ops_launchers.hpp"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/cuda/ops/all.cuh"

namespace sdnq::test::ops {

namespace {

namespace device_ops = sdnq::cuda::ops;

// A stream of its own, so the ops really run on the stream they are given.
struct Stream {
  cudaStream_t stream{};
  Stream() { SDNQ_CUDA_CHECK(cudaStreamCreate(&stream)); }
  ~Stream() { cudaStreamDestroy(stream); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
};

Tensor poisoned(const Shape& shape, DType dtype) {
  Tensor t = cuda::empty(shape, dtype);
  SDNQ_CUDA_CHECK(cudaMemset(t.data(), 0xFF, t.nbytes()));
  return t;
}

Tensor finish(const Stream& s, const Tensor& out) {
  SDNQ_CUDA_CHECK(cudaStreamSynchronize(s.stream));
  return cuda::to_host(out);
}

std::optional<Tensor> upload_optional(const TensorView* t) {
  if (t == nullptr) return std::nullopt;
  return cuda::to_device(*t);
}

}  // namespace

Tensor activation(const TensorView& x, nn::Activation act, bool in_place) {
  Stream s;
  Tensor dx = cuda::to_device(x);
  if (in_place) {
    device_ops::activation(dx, dx, act, s.stream);
    return finish(s, dx);
  }
  Tensor out = poisoned(x.shape(), x.dtype());
  device_ops::activation(dx, out, act, s.stream);
  return finish(s, out);
}

Tensor activation_rows(const TensorView& x, std::int64_t x_first, std::int64_t columns, std::int64_t out_width,
                       std::int64_t out_first, nn::Activation act) {
  Stream s;
  Tensor dx = cuda::to_device(x);
  Tensor out = poisoned(Shape{x.size(0), out_width}, x.dtype());
  const auto element = [](const Tensor& t, std::int64_t offset) {
    return static_cast<std::byte*>(t.data()) + offset * static_cast<std::int64_t>(dtype_size(t.dtype()));
  };
  const TensorView source(element(dx, x_first), x.dtype(), Shape{x.size(0), columns}, Shape{x.size(1), 1},
                          dx.device());
  const TensorView target(element(out, out_first), x.dtype(), Shape{x.size(0), columns}, Shape{out_width, 1},
                          out.device());
  device_ops::activation_rows(source, target, act, s.stream);
  return finish(s, out);
}

Tensor geglu(const TensorView& x) {
  Stream s;
  Tensor dx = cuda::to_device(x);
  Shape shape = x.shape();
  shape[shape.rank() - 1] /= 2;
  Tensor out = poisoned(shape, x.dtype());
  device_ops::geglu(dx, out, s.stream);
  return finish(s, out);
}

Tensor add(const TensorView& a, const TensorView& b) {
  Stream s;
  Tensor da = cuda::to_device(a), db = cuda::to_device(b);
  Tensor out = poisoned(a.shape(), a.dtype());
  device_ops::add(da, db, out, s.stream);
  return finish(s, out);
}

Tensor add_vector(const TensorView& x, const TensorView& v) {
  Stream s;
  Tensor dx = cuda::to_device(x), dv = cuda::to_device(v);
  Tensor out = poisoned(x.shape(), x.dtype());
  device_ops::add_vector(dx, dv, out, s.stream);
  return finish(s, out);
}

Tensor mul_vector(const TensorView& x, const TensorView& v) {
  Stream s;
  Tensor dx = cuda::to_device(x), dv = cuda::to_device(v);
  Tensor out = poisoned(x.shape(), x.dtype());
  device_ops::mul_vector(dx, dv, out, s.stream);
  return finish(s, out);
}

Tensor add_channel_vector(const TensorView& x, const TensorView& v) {
  Stream s;
  Tensor dx = cuda::to_device(x), dv = cuda::to_device(v);
  Tensor out = poisoned(x.shape(), x.dtype());
  device_ops::add_channel_vector(dx, dv, out, s.stream);
  return finish(s, out);
}

Tensor modulate(const TensorView& x, const TensorView& emb, int chunks, int shift_index, int scale_index) {
  Stream s;
  Tensor dx = cuda::to_device(x), demb = cuda::to_device(emb);
  Tensor out = poisoned(x.shape(), x.dtype());
  device_ops::modulate(dx, device_ops::modulation_chunk(demb, chunks, shift_index),
                       device_ops::modulation_chunk(demb, chunks, scale_index), out, s.stream);
  return finish(s, out);
}

Tensor gated_add(const TensorView& residual, const TensorView& emb, int chunks, int gate_index,
                 const TensorView& update) {
  Stream s;
  Tensor dr = cuda::to_device(residual), demb = cuda::to_device(emb), du = cuda::to_device(update);
  device_ops::gated_add(dr, device_ops::modulation_chunk(demb, chunks, gate_index), du, dr, s.stream);  // in place
  return finish(s, dr);
}

Tensor layer_norm(const TensorView& x, const TensorView* weight, const TensorView* bias, float eps) {
  Stream s;
  Tensor dx = cuda::to_device(x);
  const std::optional<Tensor> dw = upload_optional(weight), db = upload_optional(bias);
  Tensor out = poisoned(x.shape(), x.dtype());
  const TensorView w = dw ? dw->view() : TensorView(), b = db ? db->view() : TensorView();
  device_ops::layer_norm(dx, dw ? &w : nullptr, db ? &b : nullptr, eps, out, s.stream);
  return finish(s, out);
}

Tensor layer_norm_modulate(const TensorView& x, const TensorView& emb, int chunks, int shift_index, int scale_index,
                           float eps) {
  Stream s;
  Tensor dx = cuda::to_device(x), demb = cuda::to_device(emb);
  Tensor out = poisoned(x.shape(), x.dtype());
  device_ops::layer_norm_modulate(dx, device_ops::modulation_chunk(demb, chunks, shift_index),
                                  device_ops::modulation_chunk(demb, chunks, scale_index), eps, out, s.stream);
  return finish(s, out);
}

Tensor rms_norm(const TensorView& x, const TensorView* weight, float eps, bool t5_two_step_rounding) {
  Stream s;
  Tensor dx = cuda::to_device(x);
  const std::optional<Tensor> dw = upload_optional(weight);
  Tensor out = poisoned(x.shape(), x.dtype());
  const TensorView w = dw ? dw->view() : TensorView();
  if (t5_two_step_rounding)
    device_ops::rms_norm(dx, dw ? &w : nullptr, eps, out, device_ops::RmsNormRounding::t5_two_step, s.stream);
  else
    device_ops::rms_norm(dx, dw ? &w : nullptr, eps, out, s.stream);  // the default overload, as callers use it
  return finish(s, out);
}

Tensor group_norm(const TensorView& x, int groups, const TensorView* weight, const TensorView* bias, float eps,
                  bool silu) {
  Stream s;
  Tensor dx = cuda::to_device(x);
  const std::optional<Tensor> dw = upload_optional(weight), db = upload_optional(bias);
  Tensor out = poisoned(x.shape(), x.dtype());
  const TensorView w = dw ? dw->view() : TensorView(), b = db ? db->view() : TensorView();
  device_ops::group_norm(dx, groups, dw ? &w : nullptr, db ? &b : nullptr, eps, out, silu, s.stream);
  return finish(s, out);
}

Tensor softmax(const TensorView& x) {
  Stream s;
  Tensor dx = cuda::to_device(x);
  Tensor out = poisoned(x.shape(), x.dtype());
  device_ops::softmax(dx, out, s.stream);
  return finish(s, out);
}

Tensor rope(const TensorView& x, const TensorView& cos, const TensorView& sin) {
  Stream s;
  const std::int64_t b = x.size(0), l = x.size(1), h = x.size(2), d = x.size(3);
  Tensor dx = cuda::to_device(x), dc = cuda::to_device(cos), ds = cuda::to_device(sin);
  const TensorView heads = device_ops::split_heads(dx.view().reshaped(Shape{b, l, h * d}), h, d);
  device_ops::apply_rope(heads, dc, ds, heads, s.stream);
  return finish(s, dx);
}

Tensor timestep_embedding(const TensorView& t, int dim, bool flip_sin_to_cos, float shift, float scale, int max_period,
                          DType out_dtype) {
  Stream s;
  Tensor dt = cuda::to_device(t);
  Tensor out = poisoned(Shape{t.size(0), dim}, out_dtype);
  device_ops::timestep_embedding(dt, dim, flip_sin_to_cos, shift, scale, max_period, out, s.stream);
  return finish(s, out);
}

Tensor upsample_nearest2x(const TensorView& x) {
  Stream s;
  Tensor dx = cuda::to_device(x);
  Tensor out = poisoned(Shape{x.size(0), x.size(1), 2 * x.size(2), 2 * x.size(3)}, x.dtype());
  device_ops::upsample_nearest2x(dx, out, s.stream);
  return finish(s, out);
}

Tensor patchify(const TensorView& image, int patch, bool channel_major) {
  Stream s;
  Tensor di = cuda::to_device(image);
  const std::int64_t b = image.size(0), c = image.size(1), h = image.size(2), w = image.size(3);
  Tensor out = poisoned(Shape{b, (h / patch) * (w / patch), c * patch * patch}, image.dtype());
  device_ops::patchify(di, patch,
                       channel_major ? device_ops::PatchOrder::channel_major : device_ops::PatchOrder::channel_minor,
                       out, s.stream);
  return finish(s, out);
}

Tensor unpatchify(const TensorView& tokens, int patch, bool channel_major, const Shape& image_shape) {
  Stream s;
  Tensor dt = cuda::to_device(tokens);
  Tensor out = poisoned(image_shape, tokens.dtype());
  device_ops::unpatchify(dt, patch,
                         channel_major ? device_ops::PatchOrder::channel_major : device_ops::PatchOrder::channel_minor,
                         out, s.stream);
  return finish(s, out);
}

void call_with_bad_argument(const std::string& which) {
  const Tensor x = cuda::empty(Shape{2, 5, 24}, DType::bf16);
  const Tensor x16 = cuda::empty(Shape{2, 5, 24}, DType::f16);
  const Tensor x32 = cuda::empty(Shape{2, 5, 24}, DType::f32);
  const Tensor wrong = cuda::empty(Shape{2, 5, 23}, DType::bf16);
  const Tensor vector = cuda::empty(Shape{23}, DType::bf16);
  const Tensor emb = cuda::empty(Shape{2, 6 * 24}, DType::bf16);
  if (which == "activation dtype") device_ops::activation(x32, x32, device_ops::Activation::silu, nullptr);
  if (which == "activation out shape") device_ops::activation(x, wrong, device_ops::Activation::silu, nullptr);
  if (which == "activation out dtype") device_ops::activation(x, x16, device_ops::Activation::silu, nullptr);
  if (which == "geglu odd") device_ops::geglu(wrong, wrong, nullptr);
  if (which == "add_vector length") device_ops::add_vector(x, vector, x, nullptr);
  if (which == "modulate batch") {
    const Tensor other = cuda::empty(Shape{3, 24}, DType::bf16);
    device_ops::modulate(x, other, other, x, nullptr);
  }
  if (which == "modulation_chunk") device_ops::modulation_chunk(emb, 5, 0);
  if (which == "layer_norm weight") {
    const TensorView w = vector;
    device_ops::layer_norm(x, &w, nullptr, 1e-5f, x, nullptr);
  }
  if (which == "layer_norm_modulate shift") {
    const Tensor shift = cuda::empty(Shape{2, 23}, DType::bf16);
    device_ops::layer_norm_modulate(x, shift, shift, 1e-6f, x, nullptr);
  }
  if (which == "group_norm groups") device_ops::group_norm(x, 2, nullptr, nullptr, 1e-5f, x, false, nullptr);
  if (which == "rope table") {
    const Tensor table = cuda::empty(Shape{5, 8}, DType::f32);
    device_ops::apply_rope(x.view().reshaped(Shape{2, 1, 5, 24}), table, table, x.view().reshaped(Shape{2, 1, 5, 24}),
                           nullptr);
  }
  if (which == "patchify odd") {
    const Tensor image = cuda::empty(Shape{1, 4, 5, 6}, DType::bf16);
    const Tensor tokens = cuda::empty(Shape{1, 6, 16}, DType::bf16);
    device_ops::patchify(image, 2, device_ops::PatchOrder::channel_major, tokens, nullptr);
  }
  if (which == "upsample out") device_ops::upsample_nearest2x(x.view().reshaped(Shape{1, 2, 5, 24}), x, nullptr);
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
}

}  // namespace sdnq::test::ops
