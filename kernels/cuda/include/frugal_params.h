/*
 * Kernel parameter structs: the one definition of every kernel's launch layout.
 *
 * CUDA kernels take one of these by value. The Rust side (kernels/src/params.rs) is generated
 * from this file by `cargo xtask bindings` (bindgen) and checked fresh in CI, so the two cannot
 * drift. Plain C: fixed-width integers and pointers only, no CUDA types.
 */
#ifndef FRUGAL_PARAMS_H
#define FRUGAL_PARAMS_H

/* NVRTC has no system headers: give it the two fixed-width types this file uses. */
#if defined(__CUDACC_RTC__)
typedef int int32_t;
typedef unsigned char uint8_t;
typedef signed char int8_t;
#else
#include <stdint.h>
#endif

/* ---- linear-recurrence scan: h_t = a_t * h_{t-1} + x_t -------------------------------------
 * Tiling (see kernels/cuda/linear_scan.cu): a block covers FRUGAL_SCAN_CHANNELS_PER_BLOCK
 * channels (one warp's lanes, so loads are coalesced) times one chunk of time, split into
 * FRUGAL_SCAN_SEGMENTS segments (one warp each) of FRUGAL_SCAN_SEGMENT_LEN steps. */
#define FRUGAL_SCAN_CHANNELS_PER_BLOCK 32
#define FRUGAL_SCAN_SEGMENTS 8
#define FRUGAL_SCAN_SEGMENT_LEN 16
#define FRUGAL_SCAN_CHUNK_LEN (FRUGAL_SCAN_SEGMENTS * FRUGAL_SCAN_SEGMENT_LEN)
/* Threads per block of the carry pass (one thread per batch x channel). */
#define FRUGAL_SCAN_CARRY_THREADS 256

typedef struct FrugalLinearScanParams {
    /* [batch, seq_len, channels], f32 or bf16 (the kernel's suffix says which). */
    const void *a;
    const void *x;
    /* [batch, channels] initial state, or NULL for zeros. */
    const float *h0;
    /* [batch, seq_len]: nonzero where the state restarts (h_t = x_t), or NULL. */
    const uint8_t *reset;
    /* [batch, seq_len, channels] output, same dtype as x. */
    void *h;
    /* [batch, channels] final state, always f32. */
    float *h_last;
    /* Workspace [batch, num_chunks, channels] (unused when num_chunks == 1): the product of the
     * chunk's a, and the chunk-local scan's end value, replaced by the chunk's carry-in. */
    float *chunk_a;
    float *chunk_h;
    int32_t batch;
    int32_t seq_len;
    int32_t channels;
    int32_t num_chunks;
} FrugalLinearScanParams;

/* ---- RG-LRU (Griffin): the scan with its gates computed as it loads -------------------------
 * The scan's tiling and passes (rg_lru_chunk_summary_f32 -> linear_scan_chunk_carry ->
 * rg_lru_chunk_apply_f32, see kernels/cuda/linear_scan.cu). `scan` holds the geometry, h0, reset,
 * the workspace and h_last; its `x` is the recurrence's input, its `h` the output y, its `a`
 * unused. All f32. */
typedef struct FrugalRgLruParams {
    FrugalLinearScanParams scan;
    /* [batch, seq_len, channels]: the gates' pre-activations, without their biases. */
    const float *gate_x;
    const float *gate_a;
    /* [batch, seq_len, channels]: the GeLU branch that multiplies the output, or NULL (y = h). */
    const float *branch;
    /* [channels] each: the gates' biases and softplus(Lambda). */
    const float *gate_x_bias;
    const float *gate_a_bias;
    const float *softplus_a;
    /* [batch, seq_len]: 0 at padding (the state passes through), or NULL when all are tokens. */
    const uint8_t *real;
} FrugalRgLruParams;

/* ---- additive attention (Fastformer): two pooled vectors per head ----------------------------
 * One block per sequence (see kernels/cuda/additive_attention.cu). */
#define FRUGAL_ADDITIVE_THREADS 256

typedef struct FrugalAdditiveAttentionParams {
    /* [batch, seq_len, heads * head_dim], f32: the query, key and value projections (value may
     * alias query: the official code shares them). */
    const float *q;
    const float *k;
    const float *v;
    /* [batch, seq_len]: 1 for tokens, 0 for padding; NULL when every position is a token. */
    const float *mask;
    /* Score layers. full_scores != 0: [heads, hidden] (nn.Linear(hidden, heads), the official
     * code); else [heads, head_dim], each head reading its own dims (the paper). Biases [heads] or
     * NULL. */
    const float *wq;
    const float *bq;
    const float *wk;
    const float *bk;
    /* Outputs: u = pooled_k * v [batch, seq_len, hidden]; the pooled vectors [batch, hidden]. */
    float *u;
    float *pooled_q;
    float *pooled_k;
    /* Workspace [batch, heads, seq_len]: scores. */
    float *scores;
    int32_t batch;
    int32_t seq_len;
    int32_t heads;
    int32_t head_dim;
    int32_t full_scores;
} FrugalAdditiveAttentionParams;

/* ---- ternary matmul (BitNet): y = (x_q . W_t^T) / s_x * scale -----------------------------
 * Packed weights (see kernels/src/ternary_matmul/mod.rs): per row, k_padded / 4 bytes in blocks of
 * FRUGAL_TERNARY_BLOCK weights (32 bytes); byte j of a block holds the codes (w + 1) of weights
 * j + 32 i at bits 2i, 2i+1. */
#define FRUGAL_TERNARY_BLOCK 128
/* Threads of the activation quantisation (one block per token). */
#define FRUGAL_TERNARY_QUANT_THREADS 256
/* GEMV: one warp per output row, this many rows per block. */
#define FRUGAL_TERNARY_GEMV_WARPS 4
/* GEMM: a block computes a tile of FRUGAL_TERNARY_GEMM_TILE tokens x FRUGAL_TERNARY_GEMM_TILE rows,
 * each of its 256 threads 4 x 4 outputs. */
#define FRUGAL_TERNARY_GEMM_TILE 64
#define FRUGAL_TERNARY_GEMM_THREADS 256
/* Up to this many tokens the GEMV runs once per token; past it, the GEMM. */
#define FRUGAL_TERNARY_GEMV_MAX_TOKENS 4

typedef struct FrugalTernaryQuantizeParams {
    /* [m, k] f32 activations. */
    const float *x;
    /* Outputs: [m, k_padded] int8 (zero past k), per-token scale 127 / max|x| and sum of x_q. */
    int8_t *x_q;
    float *x_scale;
    int32_t *x_sum;
    int32_t m;
    int32_t k;
    int32_t k_padded;
} FrugalTernaryQuantizeParams;

typedef struct FrugalTernaryMatmulParams {
    /* The quantised activations (FrugalTernaryQuantizeParams' outputs). */
    const int8_t *x_q;
    const float *x_scale;
    const int32_t *x_sum;
    /* [n, k_padded / 4] packed weights. */
    const uint8_t *w;
    /* [m, n] f32 output. */
    float *y;
    /* The weight scale (beta). */
    float scale;
    int32_t m;
    int32_t n;
    int32_t k_padded;
} FrugalTernaryMatmulParams;

/* ---- sliding-window (or causal) attention, flash-style: online softmax over key tiles --------
 * Query i (absolute position q_offset + i) sees key j (absolute position k_offset + j) iff
 * pos_j <= pos_i and pos_j > pos_i - window (window 0: no limit, plain causal). A block holds
 * FRUGAL_SWA_WARPS queries (a warp each) of one head and walks key tiles of 32 in shared memory. */
#define FRUGAL_SWA_WARPS 8
#define FRUGAL_SWA_KEY_TILE 32
#define FRUGAL_SWA_MAX_HEAD_DIM 128

typedef struct FrugalWindowAttentionParams {
    /* [batch, q_len, heads, head_dim], [batch, k_len, kv_heads, head_dim] x 2, f32. */
    const float *q;
    const float *k;
    const float *v;
    /* [batch, q_len, heads, head_dim] output. */
    float *o;
    float scale;
    int32_t batch;
    int32_t q_len;
    int32_t k_len;
    int32_t heads;
    int32_t kv_heads;
    int32_t head_dim;
    int32_t q_offset;
    int32_t k_offset;
    int32_t window;
} FrugalWindowAttentionParams;

/* ---- gated retention (YOCO's self-decoder): S_t = exp(g_t) S_{t-1} + k_t^T v_t, o_t = q_t S_t ----
 * Chunkwise: a block per (batch, head, FRUGAL_RETENTION_DV_TILE value columns) walks the sequence
 * in chunks of FRUGAL_RETENTION_CHUNK, holding its columns of the state in shared memory. */
#define FRUGAL_RETENTION_CHUNK 16
#define FRUGAL_RETENTION_DV_TILE 32
#define FRUGAL_RETENTION_THREADS 256
#define FRUGAL_RETENTION_MAX_DK 128

typedef struct FrugalGatedRetentionParams {
    /* [batch, seq_len, heads, dk] x 2, [batch, seq_len, heads, dv], f32 (k already scaled). */
    const float *q;
    const float *k;
    const float *v;
    /* [batch, seq_len, heads]: log of the decay (<= 0). */
    const float *log_decay;
    /* [batch, heads, dk, dv] initial state, or NULL for zeros. */
    const float *state_in;
    /* Outputs: [batch, seq_len, heads, dv] and the final state [batch, heads, dk, dv]. */
    float *o;
    float *state_out;
    int32_t batch;
    int32_t seq_len;
    int32_t heads;
    int32_t dk;
    int32_t dv;
} FrugalGatedRetentionParams;

/* ---- Smart Bird: index-gathered sparse attention and the sketch's (Gumbel-)top-K ---------------
 * Sparse attention: a warp per (batch, head, query) attends over its K gathered keys (index -1:
 * an empty slot). Top-K: a block per (batch, head, query) row keeps the row's N scores in dynamic
 * shared memory and takes K block-wide arg-maxes. */
#define FRUGAL_SPARSE_MAX_KEYS 256
#define FRUGAL_SPARSE_MAX_HEAD_DIM 256
#define FRUGAL_SPARSE_WARPS 4
#define FRUGAL_TOPK_THREADS 256

typedef struct FrugalSparseAttentionParams {
    /* [batch, seq_len, heads, head_dim] x 3, f32. */
    const float *q;
    const float *k;
    const float *v;
    /* [batch, heads, seq_len, keys]: key positions, -1 for an empty slot. */
    const int32_t *indices;
    /* [batch, seq_len, heads, head_dim] output (zeros for a query with no keys). */
    float *o;
    float scale;
    int32_t batch;
    int32_t seq_len;
    int32_t heads;
    int32_t head_dim;
    int32_t keys;
} FrugalSparseAttentionParams;

typedef struct FrugalSketchTopkParams {
    /* [batch, seq_len, seq_len]: the sketch's log-probabilities, row i for query i. */
    const float *log_probs;
    /* [batch, seq_len]: nonzero for tokens, 0 for padding (never selected); NULL: all tokens. */
    const uint8_t *mask;
    /* [batch, heads, seq_len, keys] output, -1 where fewer than `keys` tokens exist. */
    int32_t *indices;
    /* Gumbel noise seed: the noise of (batch, head, query, key) is a hash of all five. */
    unsigned long long seed;
    int32_t batch;
    int32_t seq_len;
    int32_t heads;
    int32_t keys;
    /* Nonzero: add Gumbel noise (sampling without replacement); 0: deterministic top-K. */
    int32_t gumbel;
    /* Nonzero: each token query always keeps its own position. */
    int32_t include_self;
} FrugalSketchTopkParams;

#endif /* FRUGAL_PARAMS_H */
