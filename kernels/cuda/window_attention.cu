// Sliding-window (or plain causal) attention for prefill and decode, flash-style: each warp owns
// one query and keeps its running max, normaliser and output in registers while the block walks
// the keys its queries can see in tiles of FRUGAL_SWA_KEY_TILE, staged in shared memory. Per tile,
// lane j scores key j; the tile's probabilities rescale the running output (online softmax). No
// score matrix is stored: memory is O(tile), work O(queries x visible keys).
#include "frugal_params.h"
#include "frugal_device.cuh"

extern "C" __global__ void __launch_bounds__(FRUGAL_SWA_WARPS * 32)
    window_attention_f32(const FrugalWindowAttentionParams p) {
    constexpr int TILE = FRUGAL_SWA_KEY_TILE;
    constexpr int MAXD = FRUGAL_SWA_MAX_HEAD_DIM;
    constexpr int PER_LANE = MAXD / 32;
    __shared__ float ks[TILE][MAXD + 1];
    __shared__ float vs[TILE][MAXD + 1];
    __shared__ float qs[FRUGAL_SWA_WARPS][MAXD];

    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int h = blockIdx.y, b = blockIdx.z, kvh = h / (p.heads / p.kv_heads);
    const int d = p.head_dim;
    const int i0 = blockIdx.x * FRUGAL_SWA_WARPS;
    const int i = i0 + warp;
    const bool active = i < p.q_len;
    const int last_i = min(i0 + FRUGAL_SWA_WARPS, p.q_len) - 1;
    const long long pos = (long long)p.q_offset + i;

    // The block's key range (absolute positions): from the first query's window start to the
    // last query's position.
    const long long first_pos = (long long)p.q_offset + i0;
    long long lo = p.k_offset;
    if (p.window > 0 && first_pos - p.window + 1 > lo) lo = first_pos - p.window + 1;
    const long long hi = (long long)p.q_offset + last_i;

    if (active)
        for (int e = lane; e < d; e += 32)
            qs[warp][e] = p.q[(((size_t)b * p.q_len + i) * p.heads + h) * d + e] * p.scale;

    float m = frugal::neg_infinity(), l = 0.0f, acc[PER_LANE];
#pragma unroll
    for (int r = 0; r < PER_LANE; ++r) acc[r] = 0.0f;

    for (long long t0 = lo; t0 <= hi; t0 += TILE) {
        __syncthreads();  // the previous tile is consumed (and qs written, the first time)
        for (int e = threadIdx.x; e < TILE * d; e += blockDim.x) {
            const int j = e / d, c = e % d;
            const long long kp = t0 + j;
            float kv = 0.0f, vv = 0.0f;
            if (kp <= hi) {
                const size_t idx = (((size_t)b * p.k_len + (size_t)(kp - p.k_offset)) * p.kv_heads + kvh) * d + c;
                kv = p.k[idx];
                vv = p.v[idx];
            }
            ks[j][c] = kv;
            vs[j][c] = vv;
        }
        __syncthreads();
        if (!active) continue;
        const long long kp = t0 + lane;
        const bool visible = kp <= pos && (p.window <= 0 || kp > pos - p.window);
        float s = frugal::neg_infinity();
        if (visible) {
            s = 0.0f;
            for (int c = 0; c < d; ++c) s += qs[warp][c] * ks[lane][c];
        }
        const float tile_max = frugal::warp_max(s);
        if (tile_max == frugal::neg_infinity()) continue;  // uniform across the warp
        const float m_new = fmaxf(m, tile_max);
        const float correction = expf(m - m_new);  // exp(-inf) = 0 on the first visible tile
        const float prob = visible ? expf(s - m_new) : 0.0f;
        l = l * correction + frugal::warp_sum(prob);
        m = m_new;
#pragma unroll
        for (int r = 0; r < PER_LANE; ++r) acc[r] *= correction;
        for (int j = 0; j < TILE; ++j) {
            const float pj = __shfl_sync(0xffffffffu, prob, j);
            if (pj == 0.0f) continue;  // uniform: every lane holds the same pj
#pragma unroll
            for (int r = 0; r < PER_LANE; ++r) {
                const int c = lane + 32 * r;
                if (c < d) acc[r] += pj * vs[j][c];
            }
        }
    }
    if (!active) return;
#pragma unroll
    for (int r = 0; r < PER_LANE; ++r) {
        const int c = lane + 32 * r;
        if (c < d) p.o[(((size_t)b * p.q_len + i) * p.heads + h) * d + c] = acc[r] / l;
    }
}
