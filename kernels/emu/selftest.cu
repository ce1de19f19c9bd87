// Self-test kernels for the emulator itself (never compiled to PTX): each exercises one CUDA
// feature, and tests compare its output with a value computed on the host.
#pragma once
#include "frugal_device.cuh"

struct SelftestParams {
    const float *in;
    float *out;
    int *counter;
    const int *ints;
    int *ints_out;
    int n;
};

// Tree reduction in static shared memory: out[block] = sum of the block's slice of `in`.
extern "C" __global__ void selftest_block_sum(SelftestParams p) {
    __shared__ float buf[1024];
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    buf[threadIdx.x] = i < p.n ? p.in[i] : 0.0f;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        p.out[blockIdx.x] = buf[0];
        atomicAdd(p.counter, 1);
    }
}

// Per warp: inclusive prefix sum with __shfl_up_sync, total with __shfl_xor_sync, broadcast
// of lane 3 with __shfl_sync, rotation with __shfl_down_sync, and a ballot of odd values.
// out has 4 floats per thread; ints_out one ballot per warp.
extern "C" __global__ void selftest_warp_ops(SelftestParams p) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const int lane = threadIdx.x % warpSize;
    const float v = p.in[i];
    float prefix = v;
    for (int d = 1; d < warpSize; d <<= 1) {
        const float u = __shfl_up_sync(0xffffffffu, prefix, d);
        if (lane >= d) prefix += u;
    }
    float total = v;
    for (int m = warpSize / 2; m > 0; m >>= 1) total += __shfl_xor_sync(0xffffffffu, total, m);
    const float third = __shfl_sync(0xffffffffu, v, 3);
    const float next = __shfl_down_sync(0xffffffffu, v, 1);
    const unsigned odd = __ballot_sync(0xffffffffu, p.ints[i] & 1);
    __syncwarp();
    p.out[4 * i + 0] = prefix;
    p.out[4 * i + 1] = total;
    p.out[4 * i + 2] = third;
    p.out[4 * i + 3] = next;
    if (lane == 0) p.ints_out[i / warpSize] = (int)odd;
}

// Reverses each block's slice through dynamic shared memory.
extern "C" __global__ void selftest_dynamic_shared(SelftestParams p) {
    FRUGAL_DYNAMIC_SHARED(float, tile);
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    tile[threadIdx.x] = p.in[i];
    __syncthreads();
    p.out[i] = tile[blockDim.x - 1 - threadIdx.x];
}

// __dp4a on ints[2i], ints[2i+1] (plus i), and bf16 / half round trips of in[i].
extern "C" __global__ void selftest_numeric(SelftestParams p) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= p.n) return;
    p.ints_out[i] = __dp4a(p.ints[2 * i], p.ints[2 * i + 1], i);
    p.out[2 * i] = __bfloat162float(__float2bfloat16(p.in[i]));
    p.out[2 * i + 1] = __half2float(__float2half(p.in[i]));
}

// Wrong on purpose: threads with an odd index return before a __syncthreads the others reach.
extern "C" __global__ void selftest_divergent_barrier(SelftestParams p) {
    if (threadIdx.x % 2 == 1) return;
    __syncthreads();
    p.out[threadIdx.x] = 1.0f;
}

// Wrong on purpose: lane 0 has returned when the others read it through a shuffle.
extern "C" __global__ void selftest_shuffle_from_exited_lane(SelftestParams p) {
    if (threadIdx.x == 0) return;
    p.out[threadIdx.x] = __shfl_sync(0xfffffffeu, 1.0f, 0);
}
