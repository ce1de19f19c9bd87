// Device-side helpers shared by every kernel: element types and their conversion to f32, and the
// dynamic shared memory declaration. On the host emulator (FRUGAL_EMULATION, see
// kernels/emu/include/cuda_emu.h) the same names come from the emulation header instead.
#pragma once

#ifndef FRUGAL_EMULATION
#include <cuda_bf16.h>
#define FRUGAL_DYNAMIC_SHARED(type, name)                                                        \
    extern __shared__ __align__(16) unsigned char frugal_dynamic_shared_[];                      \
    type *name = reinterpret_cast<type *>(frugal_dynamic_shared_)
#endif

namespace frugal {

// Activations are stored as f32 or bf16; all arithmetic is f32.
template <typename T> __device__ __forceinline__ float to_f32(T v);
template <> __device__ __forceinline__ float to_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_f32<__nv_bfloat16>(__nv_bfloat16 v) {
    return __bfloat162float(v);
}

template <typename T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) {
    return __float2bfloat16(v);  // round to nearest even, as torch's .to(bfloat16)
}

// Butterfly reductions over a full warp: every lane gets the result.
template <typename T> __device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
    for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int m = 16; m > 0; m >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, m));
    return v;
}

// -inf (NVRTC has no INFINITY macro).
__device__ __forceinline__ float neg_infinity() { return __int_as_float((int)0xff800000u); }

}  // namespace frugal
