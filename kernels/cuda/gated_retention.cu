// Gated retention (YOCO's gRetNet self-decoder; docs/yoco.md §2), chunkwise:
//   S_t = exp(g_t) S_{t-1} + k_t^T v_t,   o_t = q_t S_t      (k already scaled by dk^-0.5)
// Within a chunk, with G the chunk-local cumulative sum of g:
//   o_i = sum_{j<=i} (q_i . k_j) exp(G_i - G_j) v_j  +  exp(G_i) q_i S      (intra + carried state)
//   S  <- exp(G_last) S + sum_j k_j^T exp(G_last - G_j) v_j
// Every exponent is <= 0 (decays are <= 1), so nothing overflows. The value columns are
// independent in both formulas, so a block owns FRUGAL_RETENTION_DV_TILE of them (its slice of S
// stays in shared memory for the whole sequence) and recomputes the chunk's q.k products.
#include "frugal_params.h"
#include "frugal_device.cuh"

extern "C" __global__ void __launch_bounds__(FRUGAL_RETENTION_THREADS)
    gated_retention_f32(const FrugalGatedRetentionParams p) {
    constexpr int C = FRUGAL_RETENTION_CHUNK;
    constexpr int DV = FRUGAL_RETENTION_DV_TILE;
    constexpr int MAXDK = FRUGAL_RETENTION_MAX_DK;
    __shared__ float qs[C][MAXDK + 1];
    __shared__ float ks[C][MAXDK + 1];
    __shared__ float vs[C][DV];
    __shared__ float a[C][C + 1];
    __shared__ float g[C];
    __shared__ float s[MAXDK][DV];

    const int tid = threadIdx.x;
    const int c0 = blockIdx.x * DV, h = blockIdx.y, b = blockIdx.z;
    const int dk = p.dk, dv = p.dv;
    const int cols = min(DV, dv - c0);
    const size_t state_base = ((size_t)b * p.heads + h) * dk * dv;

    for (int e = tid; e < dk * DV; e += blockDim.x) {
        const int r = e / DV, c = e % DV;
        s[r][c] = (p.state_in != nullptr && c < cols) ? p.state_in[state_base + (size_t)r * dv + c0 + c] : 0.0f;
    }

    for (int t0 = 0; t0 < p.seq_len; t0 += C) {
        const int len = min(C, p.seq_len - t0);
        __syncthreads();  // the previous chunk is consumed
        for (int e = tid; e < C * dk; e += blockDim.x) {
            const int i = e / dk, c = e % dk;
            float qv = 0.0f, kv = 0.0f;
            if (i < len) {
                const size_t idx = (((size_t)b * p.seq_len + t0 + i) * p.heads + h) * dk + c;
                qv = p.q[idx];
                kv = p.k[idx];
            }
            qs[i][c] = qv;
            ks[i][c] = kv;
        }
        for (int e = tid; e < C * DV; e += blockDim.x) {
            const int i = e / DV, c = e % DV;
            vs[i][c] = (i < len && c < cols) ? p.v[(((size_t)b * p.seq_len + t0 + i) * p.heads + h) * dv + c0 + c] : 0.0f;
        }
        if (tid == 0) {
            float run = 0.0f;
            for (int i = 0; i < C; ++i) {
                if (i < len) run += p.log_decay[((size_t)b * p.seq_len + t0 + i) * p.heads + h];
                g[i] = run;
            }
        }
        __syncthreads();
        // Intra-chunk scores, decayed and causally masked.
        for (int e = tid; e < C * C; e += blockDim.x) {
            const int i = e / C, j = e % C;
            float dot = 0.0f;
            if (j <= i && i < len) {
                for (int c = 0; c < dk; ++c) dot += qs[i][c] * ks[j][c];
                dot *= expf(g[i] - g[j]);
            }
            a[i][j] = dot;
        }
        __syncthreads();
        // Outputs: intra part plus the carried state (the state before this chunk).
        for (int e = tid; e < C * DV; e += blockDim.x) {
            const int i = e / DV, c = e % DV;
            if (i >= len || c >= cols) continue;
            float intra = 0.0f;
            for (int j = 0; j <= i; ++j) intra += a[i][j] * vs[j][c];
            float cross = 0.0f;
            for (int r = 0; r < dk; ++r) cross += qs[i][r] * s[r][c];
            p.o[(((size_t)b * p.seq_len + t0 + i) * p.heads + h) * dv + c0 + c] = intra + expf(g[i]) * cross;
        }
        __syncthreads();
        // Carry the state past the chunk.
        const float g_last = g[len - 1];
        for (int e = tid; e < dk * DV; e += blockDim.x) {
            const int r = e / DV, c = e % DV;
            float add = 0.0f;
            for (int j = 0; j < len; ++j) add += ks[j][r] * expf(g_last - g[j]) * vs[j][c];
            s[r][c] = expf(g_last) * s[r][c] + add;
        }
    }
    __syncthreads();
    for (int e = tid; e < dk * DV; e += blockDim.x) {
        const int r = e / DV, c = e % DV;
        if (c < cols) p.state_out[state_base + (size_t)r * dv + c0 + c] = s[r][c];
    }
}
