#pragma once

// Per-element math is written once and compiled for both the host (CPU kernels,
// and so the CPU tests) and the device (CUDA kernels).
#if defined(__CUDACC__) || defined(__HIPCC__)
#define EMBODIED_HD __host__ __device__ __forceinline__
#else
#define EMBODIED_HD inline
#endif
