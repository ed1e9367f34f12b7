#pragma once
// What kernels and loaders pass around: a non-owning TensorView (pointer, dtype, shape, strides,
// device) and an owning, move-only Tensor. Not a tensor framework: no ops, no autograd, copies are
// explicit. Device memory is allocated by sdnq/cuda/device_memory.hpp, which hands it to Tensor::adopt.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <utility>

#include <fmt/format.h>

#include "sdnq/core/dtype.hpp"
#include "sdnq/core/error.hpp"

namespace sdnq {

inline constexpr int max_rank = 8;

// A fixed-capacity list of extents (or strides). Negative indices count from the back.
class Shape {
 public:
  constexpr Shape() = default;
  constexpr Shape(std::initializer_list<std::int64_t> dims) { assign(dims.begin(), dims.end()); }
  explicit Shape(std::span<const std::int64_t> dims) { assign(dims.begin(), dims.end()); }

  constexpr int rank() const { return rank_; }
  constexpr std::int64_t operator[](int axis) const { return dims_[normalize(axis)]; }
  constexpr std::int64_t& operator[](int axis) { return dims_[normalize(axis)]; }
  constexpr std::int64_t numel() const {
    std::int64_t n = 1;
    for (int i = 0; i < rank_; ++i) n *= dims_[i];
    return n;
  }
  std::span<const std::int64_t> dims() const { return {dims_.data(), static_cast<std::size_t>(rank_)}; }
  const std::int64_t* begin() const { return dims_.data(); }
  const std::int64_t* end() const { return dims_.data() + rank_; }

  void push_back(std::int64_t extent) {
    SDNQ_REQUIRE(rank_ < max_rank, ShapeError, "shape {} cannot grow beyond rank {}", to_string(), max_rank);
    dims_[rank_++] = extent;
  }

  friend constexpr bool operator==(const Shape& a, const Shape& b) {
    if (a.rank_ != b.rank_) return false;
    for (int i = 0; i < a.rank_; ++i)
      if (a.dims_[i] != b.dims_[i]) return false;
    return true;
  }

  std::string to_string() const { return fmt::format("[{}]", fmt::join(dims(), ", ")); }

 private:
  template <class It>
  constexpr void assign(It first, It last) {
    for (; first != last; ++first) {
      if (rank_ >= max_rank) throw ShapeError("tensor rank exceeds the supported maximum of 8");
      dims_[rank_++] = *first;
    }
  }
  constexpr int normalize(int axis) const {
    int index = axis < 0 ? axis + rank_ : axis;
    if (index < 0 || index >= rank_) throw ShapeError("axis out of range for tensor rank");
    return index;
  }

  std::array<std::int64_t, max_rank> dims_{};
  int rank_ = 0;
};

// Row-major (C-order) strides in elements for `shape`.
inline Shape contiguous_strides(const Shape& shape) {
  Shape strides = shape;
  std::int64_t step = 1;
  for (int axis = shape.rank() - 1; axis >= 0; --axis) {
    strides[axis] = step;
    step *= shape[axis];
  }
  return strides;
}

enum class DeviceKind : std::uint8_t { cpu, cuda };

struct Device {
  DeviceKind kind = DeviceKind::cpu;
  int index = 0;

  static constexpr Device cpu() { return {DeviceKind::cpu, 0}; }
  static constexpr Device cuda(int index = 0) { return {DeviceKind::cuda, index}; }
  constexpr bool is_cpu() const { return kind == DeviceKind::cpu; }
  constexpr bool is_cuda() const { return kind == DeviceKind::cuda; }
  friend constexpr bool operator==(Device, Device) = default;
  std::string to_string() const { return is_cpu() ? std::string("cpu") : fmt::format("cuda:{}", index); }
};

class TensorView {
 public:
  TensorView() = default;
  TensorView(void* data, DType dtype, Shape shape, Device device = Device::cpu())
      : TensorView(data, dtype, shape, contiguous_strides(shape), device) {}
  TensorView(void* data, DType dtype, Shape shape, Shape strides, Device device)
      : data_(data), dtype_(dtype), shape_(shape), strides_(strides), device_(device) {
    SDNQ_REQUIRE(shape.rank() == strides.rank(), ShapeError, "shape {} and strides {} differ in rank",
                 shape.to_string(), strides.to_string());
  }

  void* data() const { return data_; }
  template <class T>
  T* data_as() const {
    SDNQ_REQUIRE(dtype_of_v<std::remove_const_t<T>> == dtype_, ShapeError,
                 "tensor holds {} elements, accessed as {}", dtype_name(dtype_),
                 dtype_name(dtype_of_v<std::remove_const_t<T>>));
    return static_cast<T*>(data_);
  }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int rank() const { return shape_.rank(); }
  std::int64_t size(int axis) const { return shape_[axis]; }
  std::int64_t stride(int axis) const { return strides_[axis]; }
  std::int64_t numel() const { return shape_.numel(); }
  std::size_t element_size() const { return dtype_size(dtype_); }
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * element_size(); }
  Device device() const { return device_; }
  bool empty() const { return numel() == 0; }

  bool is_contiguous() const {
    std::int64_t expected = 1;
    for (int axis = rank() - 1; axis >= 0; --axis) {
      if (shape_[axis] != 1 && strides_[axis] != expected) return false;
      expected *= shape_[axis];
    }
    return true;
  }

  // Same memory seen with another shape of equal element count; needs a contiguous view.
  TensorView reshaped(Shape shape) const {
    SDNQ_REQUIRE(is_contiguous(), ShapeError, "cannot reshape a non-contiguous tensor {}", shape_.to_string());
    SDNQ_REQUIRE(shape.numel() == numel(), ShapeError, "cannot reshape {} ({} elements) to {} ({} elements)",
                 shape_.to_string(), numel(), shape.to_string(), shape.numel());
    return TensorView(data_, dtype_, shape, device_);
  }

  // The sub-tensor at `index` along the first axis (rank drops by one).
  TensorView operator[](std::int64_t index) const {
    SDNQ_REQUIRE(rank() >= 1 && index >= 0 && index < shape_[0], ShapeError,
                 "index {} out of range for tensor {}", index, shape_.to_string());
    Shape shape, strides;
    for (int axis = 1; axis < rank(); ++axis) {
      shape.push_back(shape_[axis]);
      strides.push_back(strides_[axis]);
    }
    auto* base = static_cast<std::byte*>(data_) + index * strides_[0] * static_cast<std::int64_t>(element_size());
    return TensorView(base, dtype_, shape, strides, device_);
  }

 private:
  void* data_ = nullptr;
  DType dtype_ = DType::f32;
  Shape shape_;
  Shape strides_;
  Device device_ = Device::cpu();
};

// Owning, move-only storage for one contiguous tensor. Copies are explicit: clone() or copy().
class Tensor {
 public:
  using Deleter = void (*)(void*);

  Tensor() = default;
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;
  Tensor(Tensor&& other) noexcept { swap(other); }
  Tensor& operator=(Tensor&& other) noexcept {
    Tensor(std::move(other)).swap(*this);
    return *this;
  }
  ~Tensor() {
    if (deleter_ != nullptr && view_.data() != nullptr) deleter_(view_.data());
  }

  // Uninitialised host memory, 64-byte aligned.
  static Tensor empty(Shape shape, DType dtype) {
    SDNQ_REQUIRE(shape.numel() >= 0, ShapeError, "negative extent in shape {}", shape.to_string());
    constexpr std::size_t alignment = 64;
    std::size_t bytes = static_cast<std::size_t>(shape.numel()) * dtype_size(dtype);
    std::size_t rounded = std::max<std::size_t>(alignment, (bytes + alignment - 1) / alignment * alignment);
    void* data = std::aligned_alloc(alignment, rounded);
    if (data == nullptr)
      throw std::bad_alloc();
    return adopt(data, &std::free, dtype, shape, Device::cpu());
  }
  static Tensor zeros(Shape shape, DType dtype) {
    Tensor tensor = empty(shape, dtype);
    std::memset(tensor.data(), 0, tensor.nbytes());
    return tensor;
  }
  // Takes ownership of `data`, released with `deleter`.
  static Tensor adopt(void* data, Deleter deleter, DType dtype, Shape shape, Device device) {
    Tensor tensor;
    tensor.view_ = TensorView(data, dtype, shape, device);
    tensor.deleter_ = deleter;
    return tensor;
  }
  // Memory that `owner` keeps alive, e.g. a range of a pooled block that the owner's deleter gives back.
  static Tensor adopt(void* data, std::shared_ptr<void> owner, DType dtype, Shape shape, Device device) {
    Tensor tensor;
    tensor.view_ = TensorView(data, dtype, shape, device);
    tensor.owner_ = std::move(owner);
    return tensor;
  }

  // A host copy (device tensors are cloned by sdnq::cuda::clone).
  Tensor clone() const;

  const TensorView& view() const { return view_; }
  operator TensorView() const { return view_; }  // NOLINT: a Tensor is usable wherever a view is

  void* data() const { return view_.data(); }
  template <class T>
  T* data_as() const { return view_.data_as<T>(); }
  DType dtype() const { return view_.dtype(); }
  const Shape& shape() const { return view_.shape(); }
  int rank() const { return view_.rank(); }
  std::int64_t size(int axis) const { return view_.size(axis); }
  std::int64_t numel() const { return view_.numel(); }
  std::size_t nbytes() const { return view_.nbytes(); }
  Device device() const { return view_.device(); }
  bool defined() const { return view_.data() != nullptr; }

  // Reinterprets the same storage with another shape of equal element count.
  void reshape(Shape shape) { view_ = view_.reshaped(shape); }

 private:
  void swap(Tensor& other) noexcept {
    std::swap(view_, other.view_);
    std::swap(deleter_, other.deleter_);
    std::swap(owner_, other.owner_);
  }
  TensorView view_;
  Deleter deleter_ = nullptr;
  std::shared_ptr<void> owner_;  // instead of a deleter, for memory shared with others
};

// Element-wise copy between host tensors of equal dtype and shape, any strides.
inline void copy(TensorView destination, TensorView source) {
  SDNQ_REQUIRE(destination.device().is_cpu() && source.device().is_cpu(), ShapeError,
               "sdnq::copy handles host tensors; use sdnq::cuda::copy for {} -> {}", source.device().to_string(),
               destination.device().to_string());
  SDNQ_REQUIRE(destination.dtype() == source.dtype() && destination.shape() == source.shape(), ShapeError,
               "copy from {} {} into {} {}: dtype and shape must agree", dtype_name(source.dtype()),
               source.shape().to_string(), dtype_name(destination.dtype()), destination.shape().to_string());
  if (destination.is_contiguous() && source.is_contiguous()) {
    if (source.nbytes() > 0) std::memcpy(destination.data(), source.data(), source.nbytes());
    return;
  }
  const auto element = static_cast<std::int64_t>(source.element_size());
  const int rank = source.rank();
  std::array<std::int64_t, max_rank> index{};
  for (std::int64_t n = 0, total = source.numel(); n < total; ++n) {
    std::int64_t source_offset = 0, destination_offset = 0;
    for (int axis = 0; axis < rank; ++axis) {
      source_offset += index[axis] * source.stride(axis);
      destination_offset += index[axis] * destination.stride(axis);
    }
    std::memcpy(static_cast<std::byte*>(destination.data()) + destination_offset * element,
                static_cast<const std::byte*>(source.data()) + source_offset * element, element);
    for (int axis = rank - 1; axis >= 0; --axis) {
      if (++index[axis] < source.size(axis)) break;
      index[axis] = 0;
    }
  }
}

inline Tensor Tensor::clone() const {
  Tensor copy_of = empty(shape(), dtype());
  copy(copy_of, view_);
  return copy_of;
}

}  // namespace sdnq
