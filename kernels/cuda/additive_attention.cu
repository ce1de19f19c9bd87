// Fastformer's additive attention (Wu et al. 2021, §3; docs/fastformer.md), fused: per sequence and
// head,
//
//   α_t = softmax_t( (w_q · q_t + b_q) / sqrt(d) + mask_t )      q̄ = Σ_t α_t q_t
//   p_t = k_t ⊙ q̄
//   β_t = softmax_t( (w_k · p_t + b_k) / sqrt(d) + mask_t )      k̄ = Σ_t β_t p_t
//   u_t = k̄ ⊙ v_t
//
// mask_t = (1 − m_t)·(−10000), as the official code. The score layers read all hidden dims
// (full_scores, the official code's nn.Linear(D, H)) or each head's own dims (the paper).
//
// One block per sequence; every step is linear in T:
//   scores  — a warp per row t, lanes striding over the hidden dims, warp-shuffle reductions;
//   softmax — block reductions (max, then sum of exp) per head over the scores;
//   pooling — a thread per hidden dim j, summing over t (rows read coalesced across j).
// The scores live in a global workspace [B, H, T] (T is unbounded); q̄, k̄ and the softmax
// statistics in dynamic shared memory.

#include "frugal_params.h"
#include "frugal_device.cuh"

namespace {

constexpr int kThreads = FRUGAL_ADDITIVE_THREADS;
constexpr int kWarps = kThreads / 32;

using frugal::warp_max;
using frugal::warp_sum;

// Block-wide reduction; every thread gets the result. `scratch` holds kWarps floats.
template <bool kMax>
__device__ float block_reduce(float v, float *scratch) {
    v = kMax ? warp_max(v) : warp_sum(v);
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    __syncthreads();  // scratch may still be read by a previous reduction
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float r = scratch[0];
    for (int w = 1; w < kWarps; ++w) r = kMax ? fmaxf(r, scratch[w]) : r + scratch[w];
    return r;
}

// scores[h, t] = (Σ_j x[t, j]·g[j]·w[h, j] + b[h]) / sqrt(d) + mask term; g = 1 when null.
__device__ void score_rows(const FrugalAdditiveAttentionParams &p, const float *x, const float *g,
                           const float *w, const float *bias, const float *mask, float *scores) {
    const int hidden = p.heads * p.head_dim;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const float scale = rsqrtf((float)p.head_dim);
    for (int t = warp; t < p.seq_len; t += kWarps) {
        const float *row = x + (long long)t * hidden;
        for (int h = 0; h < p.heads; ++h) {
            const int j0 = p.full_scores ? 0 : h * p.head_dim;
            const int j1 = p.full_scores ? hidden : j0 + p.head_dim;
            const float *wh = p.full_scores ? w + (long long)h * hidden : w + (long long)h * p.head_dim - j0;
            float acc = 0.0f;
            for (int j = j0 + lane; j < j1; j += 32) acc += row[j] * (g ? g[j] : 1.0f) * wh[j];
            acc = warp_sum(acc);
            if (lane == 0) {
                float s = (acc + (bias ? bias[h] : 0.0f)) * scale;
                if (mask) s += (1.0f - mask[t]) * -10000.0f;
                scores[(long long)h * p.seq_len + t] = s;
            }
        }
    }
}

// Per head: max and Σ exp(score − max) over t, into stats[h] and stats[H + h].
__device__ void softmax_stats(const FrugalAdditiveAttentionParams &p, const float *scores, float *stats,
                              float *scratch) {
    for (int h = 0; h < p.heads; ++h) {
        const float *s = scores + (long long)h * p.seq_len;
        float m = -3.402823466e38f;  // -FLT_MAX: scores are finite (masking adds -10000)
        for (int t = threadIdx.x; t < p.seq_len; t += kThreads) m = fmaxf(m, s[t]);
        m = block_reduce<true>(m, scratch);
        float z = 0.0f;
        for (int t = threadIdx.x; t < p.seq_len; t += kThreads) z += expf(s[t] - m);
        z = block_reduce<false>(z, scratch);
        if (threadIdx.x == 0) {
            stats[h] = m;
            stats[p.heads + h] = z;
        }
    }
    __syncthreads();
}

// out[j] = pre[j] · Σ_t softmax_t(scores[h(j)])·x[t, j]  (pre = 1 when null).
__device__ void pool(const FrugalAdditiveAttentionParams &p, const float *x, const float *scores,
                     const float *stats, const float *pre, float *out) {
    const int hidden = p.heads * p.head_dim;
    for (int j = threadIdx.x; j < hidden; j += kThreads) {
        const int h = j / p.head_dim;
        const float *s = scores + (long long)h * p.seq_len;
        const float m = stats[h];
        float acc = 0.0f;
        for (int t = 0; t < p.seq_len; ++t) acc += expf(s[t] - m) * x[(long long)t * hidden + j];
        out[j] = (pre ? pre[j] : 1.0f) * acc / stats[p.heads + h];
    }
    __syncthreads();
}

}  // namespace

extern "C" __global__ void __launch_bounds__(kThreads)
    additive_attention_f32(FrugalAdditiveAttentionParams p) {
    FRUGAL_DYNAMIC_SHARED(float, shared);
    const int hidden = p.heads * p.head_dim;
    float *pooled_q = shared;               // [hidden]
    float *pooled_k = shared + hidden;      // [hidden]
    float *stats = shared + 2 * hidden;     // [2 * heads]
    float *scratch = stats + 2 * p.heads;   // [kWarps]
    const int b = blockIdx.x;
    const long long row0 = (long long)b * p.seq_len * hidden;
    const float *q = p.q + row0;
    const float *k = p.k + row0;
    const float *v = p.v + row0;
    const float *mask = p.mask ? p.mask + (long long)b * p.seq_len : nullptr;
    float *scores = p.scores + (long long)b * p.heads * p.seq_len;

    score_rows(p, q, nullptr, p.wq, p.bq, mask, scores);
    __syncthreads();
    softmax_stats(p, scores, stats, scratch);
    pool(p, q, scores, stats, nullptr, pooled_q);  // q̄

    score_rows(p, k, pooled_q, p.wk, p.bk, mask, scores);  // p_t = k_t ⊙ q̄
    __syncthreads();
    softmax_stats(p, scores, stats, scratch);
    // k̄_j = Σ_t β_t k_tj q̄_j = q̄_j Σ_t β_t k_tj
    pool(p, k, scores, stats, pooled_q, pooled_k);

    for (long long i = threadIdx.x; i < (long long)p.seq_len * hidden; i += kThreads)
        p.u[row0 + i] = pooled_k[i % hidden] * v[i];
    for (int j = threadIdx.x; j < hidden; j += kThreads) {
        p.pooled_q[(long long)b * hidden + j] = pooled_q[j];
        p.pooled_k[(long long)b * hidden + j] = pooled_k[j];
    }
}
