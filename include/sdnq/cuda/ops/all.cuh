#pragma once
// Every CUDA op of the nn layer: fused attention, Conv2d, element-wise ops, normalizations and softmax,
// position encodings, resampling and patch packing (namespace sdnq::cuda::ops).
#include "sdnq/cuda/ops/attention.cuh"
#include "sdnq/cuda/ops/conv.cuh"
#include "sdnq/cuda/ops/elementwise.cuh"
#include "sdnq/cuda/ops/normalization.cuh"
#include "sdnq/cuda/ops/positional.cuh"
#include "sdnq/cuda/ops/resample.cuh"
