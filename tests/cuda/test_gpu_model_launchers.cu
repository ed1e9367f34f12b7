// The GPU model tests' host launchers, compiled as one unit: every model reaches every GEMM kernel
// through nn::gpu::Linear, so each separate unit would compile all of them again (minutes per unit on
// CI's two cores). The Catch test cases stay in test_gpu_<model>.cpp.
#include "cuda/model_launchers/clip_conv.cuh"
#include "cuda/model_launchers/flux.cuh"
#include "cuda/model_launchers/sd3.cuh"
#include "cuda/model_launchers/t5.cuh"
#include "cuda/model_launchers/unet.cuh"
#include "cuda/model_launchers/vae.cuh"
