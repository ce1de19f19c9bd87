// Ternary matmul (BitNet b1.58, docs/bitnet.md §1): per-token int8 quantisation of the activations,
// then y = (x_q . code^T - sum(x_q)) / s_x * scale on weights packed at 2 bits (layout:
// frugal_params.h and kernels/src/ternary_matmul/mod.rs). A shift and a mask of one 32-bit word of
// a packed row give the codes of 4 consecutive weights, which __dp4a multiplies with 4 consecutive
// int8 activations; the codes are w + 1, hence the subtraction of the activation sum.
#include "frugal_params.h"
#include "frugal_device.cuh"

// Named (not anonymous): the emulator compiles every .cu into one translation unit.
namespace ternary_detail {

// The output as the CPU computes it: integer dot product, then the same two float operations.
__device__ __forceinline__ float dequantize(int acc, int sum, float x_scale, float scale) {
    return (float)(acc - sum) / x_scale * scale;
}

}  // namespace ternary_detail

// One block per token: s_x = 127 / max(max|x|, 1e-5), x_q = clamp(rint(x * s_x), -128, 127).
extern "C" __global__ void __launch_bounds__(FRUGAL_TERNARY_QUANT_THREADS)
    ternary_quantize_f32(const FrugalTernaryQuantizeParams p) {
    __shared__ float warp_amax[FRUGAL_TERNARY_QUANT_THREADS / 32];
    __shared__ int warp_total[FRUGAL_TERNARY_QUANT_THREADS / 32];
    const int t = blockIdx.x, lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int warps = blockDim.x / 32;
    const float *x = p.x + (size_t)t * p.k;

    float amax = 0.0f;
    for (int i = threadIdx.x; i < p.k; i += blockDim.x) amax = fmaxf(amax, fabsf(x[i]));
    amax = frugal::warp_max(amax);
    if (lane == 0) warp_amax[warp] = amax;
    __syncthreads();
    amax = 0.0f;
    for (int w = 0; w < warps; ++w) amax = fmaxf(amax, warp_amax[w]);
    const float s = 127.0f / fmaxf(amax, 1e-5f);

    int sum = 0;
    int8_t *q = p.x_q + (size_t)t * p.k_padded;
    for (int i = threadIdx.x; i < p.k_padded; i += blockDim.x) {
        int v = 0;
        if (i < p.k) v = min(max(__float2int_rn(x[i] * s), -128), 127);
        q[i] = (int8_t)v;
        sum += v;
    }
    sum = frugal::warp_sum(sum);
    if (lane == 0) warp_total[warp] = sum;
    __syncthreads();
    if (threadIdx.x == 0) {
        int total = 0;
        for (int w = 0; w < warps; ++w) total += warp_total[w];
        p.x_scale[t] = s;
        p.x_sum[t] = total;
    }
}

// GEMV (decode): a warp per output row, grid (rows / FRUGAL_TERNARY_GEMV_WARPS, tokens). Lanes read
// consecutive 32-bit words of the row (coalesced); word w covers bytes 4(w % 8).. of block w / 8.
extern "C" __global__ void __launch_bounds__(FRUGAL_TERNARY_GEMV_WARPS * 32)
    ternary_gemv(const FrugalTernaryMatmulParams p) {
    const int lane = threadIdx.x % 32;
    const int row = blockIdx.x * FRUGAL_TERNARY_GEMV_WARPS + threadIdx.x / 32;
    const int t = blockIdx.y;
    if (row >= p.n) return;  // the whole warp: no barrier follows but the warp's own shuffles
    const int words = p.k_padded / 16;
    const unsigned *w = reinterpret_cast<const unsigned *>(p.w + (size_t)row * (p.k_padded / 4));
    const int8_t *xq = p.x_q + (size_t)t * p.k_padded;
    int acc = 0;
    for (int wi = lane; wi < words; wi += 32) {
        const unsigned packed = w[wi];
        const int8_t *xb = xq + (wi / 8) * FRUGAL_TERNARY_BLOCK + (wi % 8) * 4;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int codes = (int)((packed >> (2 * i)) & 0x03030303u);
            acc = __dp4a(codes, *reinterpret_cast<const int *>(xb + 32 * i), acc);
        }
    }
    acc = frugal::warp_sum(acc);
    if (lane == 0) p.y[(size_t)t * p.n + row] = ternary_detail::dequantize(acc, p.x_sum[t], p.x_scale[t], p.scale);
}

// GEMM (prefill): a block computes 64 tokens x 64 rows, stepping k by one packed block (128).
// Both operands are staged in shared memory as 32-bit words of 4 int8 (rows padded to 33 words
// so that the 16 rows a warp reads fall in distinct banks); thread (tx, ty) owns tokens
// ty + 16a and rows tx + 16b, a, b in 0..4.
extern "C" __global__ void __launch_bounds__(FRUGAL_TERNARY_GEMM_THREADS)
    ternary_gemm(const FrugalTernaryMatmulParams p) {
    constexpr int TILE = FRUGAL_TERNARY_GEMM_TILE;
    constexpr int WORDS = FRUGAL_TERNARY_BLOCK / 4;  // int8 words per block row
    __shared__ int xs[TILE][WORDS + 1];
    __shared__ int ws[TILE][WORDS + 1];
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    const int t0 = blockIdx.y * TILE, r0 = blockIdx.x * TILE;
    const int row_bytes = p.k_padded / 4;
    int acc[4][4] = {};

    for (int kb = 0; kb < p.k_padded / FRUGAL_TERNARY_BLOCK; ++kb) {
        // Activations: TILE x 32 words.
        for (int e = threadIdx.x; e < TILE * WORDS; e += blockDim.x) {
            const int tt = e / WORDS, wd = e % WORDS, t = t0 + tt;
            xs[tt][wd] = t < p.m ? *reinterpret_cast<const int *>(
                                       p.x_q + (size_t)t * p.k_padded + kb * FRUGAL_TERNARY_BLOCK + 4 * wd)
                                 : 0;
        }
        // Weights: TILE rows x 8 packed words, each unpacked into 4 words of codes.
        for (int e = threadIdx.x; e < TILE * 8; e += blockDim.x) {
            const int rr = e / 8, pw = e % 8, r = r0 + rr;
            const unsigned packed =
                r < p.n ? *reinterpret_cast<const unsigned *>(p.w + (size_t)r * row_bytes + kb * 32 + 4 * pw)
                        : 0u;
#pragma unroll
            for (int i = 0; i < 4; ++i) ws[rr][8 * i + pw] = (int)((packed >> (2 * i)) & 0x03030303u);
        }
        __syncthreads();
#pragma unroll 4
        for (int wd = 0; wd < WORDS; ++wd) {
            int xa[4], wb[4];
#pragma unroll
            for (int a = 0; a < 4; ++a) xa[a] = xs[ty + 16 * a][wd];
#pragma unroll
            for (int b = 0; b < 4; ++b) wb[b] = ws[tx + 16 * b][wd];
#pragma unroll
            for (int a = 0; a < 4; ++a)
#pragma unroll
                for (int b = 0; b < 4; ++b) acc[a][b] = __dp4a(wb[b], xa[a], acc[a][b]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int a = 0; a < 4; ++a) {
        const int t = t0 + ty + 16 * a;
        if (t >= p.m) continue;
#pragma unroll
        for (int b = 0; b < 4; ++b) {
            const int r = r0 + tx + 16 * b;
            if (r < p.n) p.y[(size_t)t * p.n + r] = ternary_detail::dequantize(acc[a][b], p.x_sum[t], p.x_scale[t], p.scale);
        }
    }
}
