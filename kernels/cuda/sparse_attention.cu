// Smart Bird's sparse attention and the selection of its index sets (docs/smartbird.md; crate
// smartbird).
//
// sparse_attention_f32: a warp per (batch, head, query) gathers the query's K keys by index
// (-1: an empty slot, skipped), scores them, softmaxes across the warp and sums the gathered
// values: O(N·K·d), no N×N matrix.
//
// sketch_topk: a block per (batch, head, query) row puts the row's N scores (the sketch's log
// probability, plus Gumbel noise unless deterministic; -inf for padding) in shared memory and takes
// K block-wide arg-maxes (ties: the smaller index). Gumbel-top-K samples K keys without
// replacement with probability proportional to the sketch's. The noise of (b, h, i, j) is a hash of
// the seed and the position, so every implementation draws the same noise.
#include "frugal_params.h"
#include "frugal_device.cuh"

namespace sparse_detail {

__device__ __forceinline__ unsigned long long splitmix64(unsigned long long x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

// Gumbel(0, 1) noise for one (row, key) counter: u in (0, 1) from 24 hash bits, -log(-log u).
__device__ __forceinline__ float gumbel(unsigned long long seed, unsigned long long counter) {
    const unsigned long long h = splitmix64(seed ^ splitmix64(counter));
    const float u = ((float)(h >> 40) + 0.5f) / 16777216.0f;
    return -logf(-logf(u));
}

// (value, index) order: larger value first, then smaller index.
__device__ __forceinline__ bool better(float v1, int i1, float v2, int i2) {
    return v1 > v2 || (v1 == v2 && i1 < i2);
}

}  // namespace sparse_detail

extern "C" __global__ void __launch_bounds__(FRUGAL_SPARSE_WARPS * 32)
    sparse_attention_f32(const FrugalSparseAttentionParams p) {
    __shared__ float qs[FRUGAL_SPARSE_WARPS][FRUGAL_SPARSE_MAX_HEAD_DIM];
    __shared__ float ps[FRUGAL_SPARSE_WARPS][FRUGAL_SPARSE_MAX_KEYS];
    __shared__ int js[FRUGAL_SPARSE_WARPS][FRUGAL_SPARSE_MAX_KEYS];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const long long row = (long long)blockIdx.x * FRUGAL_SPARSE_WARPS + warp;  // (b, h, i)
    if (row >= (long long)p.batch * p.heads * p.seq_len) return;  // whole warp; no block barrier
    const int i = (int)(row % p.seq_len);
    const int h = (int)((row / p.seq_len) % p.heads);
    const int b = (int)(row / ((long long)p.seq_len * p.heads));
    const int d = p.head_dim;
    const size_t qrow = (((size_t)b * p.seq_len + i) * p.heads + h) * d;
    for (int c = lane; c < d; c += 32) qs[warp][c] = p.q[qrow + c] * p.scale;
    const int32_t *idx = p.indices + (size_t)row * p.keys;
    // An index outside 0..seq_len is an empty slot (the CPU paths reject it): never read out of
    // bounds, whatever the caller passes.
    for (int s = lane; s < p.keys; s += 32) js[warp][s] = (idx[s] >= 0 && idx[s] < p.seq_len) ? idx[s] : -1;
    __syncwarp();

    float m = frugal::neg_infinity();
    for (int s = lane; s < p.keys; s += 32) {
        const int j = js[warp][s];
        float score = frugal::neg_infinity();
        if (j >= 0) {
            const float *k = p.k + (((size_t)b * p.seq_len + j) * p.heads + h) * d;
            score = 0.0f;
            for (int c = 0; c < d; ++c) score += qs[warp][c] * k[c];
        }
        ps[warp][s] = score;
        m = fmaxf(m, score);
    }
    m = frugal::warp_max(m);
    float l = 0.0f;
    for (int s = lane; s < p.keys; s += 32) {
        const float e = ps[warp][s] == frugal::neg_infinity() ? 0.0f : expf(ps[warp][s] - m);
        ps[warp][s] = e;
        l += e;
    }
    l = frugal::warp_sum(l);
    __syncwarp();
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;  // no keys at all: zeros, not NaN
    for (int c = lane; c < d; c += 32) {
        float acc = 0.0f;
        for (int s = 0; s < p.keys; ++s) {
            const int j = js[warp][s];
            if (j >= 0) acc += ps[warp][s] * p.v[(((size_t)b * p.seq_len + j) * p.heads + h) * d + c];
        }
        p.o[qrow + c] = acc * inv;
    }
}

extern "C" __global__ void __launch_bounds__(FRUGAL_TOPK_THREADS) sketch_topk(const FrugalSketchTopkParams p) {
    FRUGAL_DYNAMIC_SHARED(float, scores);  // [seq_len]
    __shared__ float warp_val[FRUGAL_TOPK_THREADS / 32];
    __shared__ int warp_idx[FRUGAL_TOPK_THREADS / 32];
    __shared__ int chosen;
    const int n = p.seq_len;
    const long long row = blockIdx.x;  // (b, h, i)
    const int i = (int)(row % n);
    const int h = (int)((row / n) % p.heads);
    const int b = (int)(row / ((long long)n * p.heads));
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    const float *lp = p.log_probs + ((size_t)b * n + i) * n;
    const bool self_token = p.mask == nullptr || p.mask[(size_t)b * n + i] != 0;
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        const bool token = p.mask == nullptr || p.mask[(size_t)b * n + j] != 0;
        float s = frugal::neg_infinity();
        if (token) {
            s = lp[j];
            if (p.gumbel)
                s += sparse_detail::gumbel(p.seed, (((unsigned long long)b * p.heads + h) * n + i) * n + j);
            if (p.include_self && j == i && self_token) s = -frugal::neg_infinity();
        }
        scores[j] = s;
    }
    __syncthreads();
    int32_t *out = p.indices + (size_t)row * p.keys;
    for (int slot = 0; slot < p.keys; ++slot) {
        float best = frugal::neg_infinity();
        int best_j = 0x7fffffff;
        for (int j = threadIdx.x; j < n; j += blockDim.x)
            if (sparse_detail::better(scores[j], j, best, best_j)) {
                best = scores[j];
                best_j = j;
            }
        for (int o = 16; o > 0; o >>= 1) {
            const float v = __shfl_xor_sync(0xffffffffu, best, o);
            const int j = __shfl_xor_sync(0xffffffffu, best_j, o);
            if (sparse_detail::better(v, j, best, best_j)) {
                best = v;
                best_j = j;
            }
        }
        if (lane == 0) {
            warp_val[warp] = best;
            warp_idx[warp] = best_j;
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            float v = warp_val[0];
            int j = warp_idx[0];
            for (int w = 1; w < warps; ++w)
                if (sparse_detail::better(warp_val[w], warp_idx[w], v, j)) {
                    v = warp_val[w];
                    j = warp_idx[w];
                }
            chosen = v == frugal::neg_infinity() ? -1 : j;
            out[slot] = chosen;
            if (chosen >= 0) scores[chosen] = frugal::neg_infinity();
        }
        __syncthreads();
        if (chosen < 0) {
            for (int s = slot + 1 + (int)threadIdx.x; s < p.keys; s += blockDim.x) out[s] = -1;
            return;  // every thread: `chosen` is block-uniform
        }
    }
}
