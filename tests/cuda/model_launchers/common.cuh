#pragma once
// Helpers shared by the GPU model launchers.
#include "sdnq/core/tensor.hpp"

namespace sdnq::test {

// An owning host copy of a fixture tensor (the case's mapping is released when the case goes away).
inline Tensor host_copy(const TensorView& view) {
  Tensor out = Tensor::empty(view.shape(), view.dtype());
  copy(out, view);
  return out;
}

}  // namespace sdnq::test
