// Linear-recurrence scan  h_t = a_t * h_{t-1} + x_t,  independently per (batch, channel).
//
// The recurrence is an associative composition of affine maps h -> a*h + x (Griffin §2.4, the
// RG-LRU; the same operator as jax.lax.associative_scan in recurrentgemma's ASSOCIATIVE_NATIVE).
// A long prompt with few channels must still fill the GPU, so time is split three ways:
//
//   block   = 32 channels (a warp's lanes: every load and store is one coalesced 128-byte line)
//             x one chunk of FRUGAL_SCAN_CHUNK_LEN steps, split into FRUGAL_SCAN_SEGMENTS
//             segments, one warp each;
//   thread  = one channel x one segment: a sequential scan over FRUGAL_SCAN_SEGMENT_LEN steps held
//             in registers;
//   segments of a chunk are combined by a block-level (Hillis-Steele) scan in shared memory;
//   chunks  are combined by a carry pass, one thread per (batch, channel) over the chunk summaries.
//
// Launch plan (kernels/src/linear_scan/plan.rs): with one chunk, only `apply` runs, its carry-in
// being h0. Otherwise `summary` -> `carry` -> `apply`. a and x are read twice (summary and apply):
// 2 reads + 1 write instead of 1 + 1, paid only when T > FRUGAL_SCAN_CHUNK_LEN.
//
// A reset at t means h_{t-1} is ignored (h_t = x_t): the state restarts at a segment start, which
// is RG-LRU's `a = a * (1 - reset)` (docs/griffin.md §3). Accumulation is f32 for every input
// dtype; the final state is returned in f32.

#include "frugal_params.h"
#include "frugal_device.cuh"

namespace {

constexpr int kLanes = FRUGAL_SCAN_CHANNELS_PER_BLOCK;
constexpr int kSegments = FRUGAL_SCAN_SEGMENTS;
constexpr int kSegLen = FRUGAL_SCAN_SEGMENT_LEN;
constexpr int kChunkLen = FRUGAL_SCAN_CHUNK_LEN;

// The affine map h -> a*h + h_local.
struct Affine {
    float a;
    float h;
};

// `first` then `then`.
__device__ __forceinline__ Affine compose(Affine first, Affine then) {
    return Affine{first.a * then.a, fmaf(then.a, first.h, then.h)};
}

// This thread's coordinates and its segment of a and x, loaded once into registers. Steps past
// seq_len and channels past `channels` are the identity map (a = 1, x = 0), so every thread takes
// part in every barrier.
struct Segment {
    int b, c, t0;
    bool channel_ok;
    float a[kSegLen];
    float x[kSegLen];
};

// Loads this thread's segment; `step(off, bt, reset, a, x)` gives the map of one real step (the
// element at `off`, the (batch, step) index `bt`).
template <typename Step>
__device__ __forceinline__ void load_segment_with(const FrugalLinearScanParams &p, Segment &s,
                                                  Step step) {
    const int lane = threadIdx.x;
    const int seg = threadIdx.y;
    s.b = blockIdx.z;
    s.c = blockIdx.x * kLanes + lane;
    s.t0 = blockIdx.y * kChunkLen + seg * kSegLen;
    s.channel_ok = s.c < p.channels;
#pragma unroll
    for (int i = 0; i < kSegLen; ++i) {
        const int t = s.t0 + i;
        float av = 1.0f, xv = 0.0f;
        if (s.channel_ok && t < p.seq_len) {
            const long long bt = (long long)s.b * p.seq_len + t;
            const long long off = bt * p.channels + s.c;
            const bool reset = p.reset != nullptr && p.reset[bt] != 0;
            step(off, bt, reset, av, xv);
        }
        s.a[i] = av;
        s.x[i] = xv;
    }
}

template <typename T>
__device__ __forceinline__ void load_segment(const FrugalLinearScanParams &p, Segment &s) {
    const T *a = static_cast<const T *>(p.a);
    const T *x = static_cast<const T *>(p.x);
    load_segment_with(p, s, [&](long long off, long long, bool reset, float &av, float &xv) {
        av = reset ? 0.0f : frugal::to_f32(a[off]);
        xv = frugal::to_f32(x[off]);
    });
}

// One RG-LRU step's map: i = σ(gx + bx), r = σ(ga + ba), a = exp(−8 r softplus(Λ)),
// x = sqrt(1 − a²) · i · x_in (1 − a² as −expm1(2 log a), exact near a = 1), and at a sequence
// start a = 0, x = i · x_in. Padding is the identity (a = 1, x = 0), even where a reset falls.
__device__ __forceinline__ void rg_lru_load(const FrugalRgLruParams &q, Segment &s) {
    const float *x = static_cast<const float *>(q.scan.x);
    const int c = blockIdx.x * kLanes + threadIdx.x;
    load_segment_with(q.scan, s, [&](long long off, long long bt, bool reset, float &av, float &xv) {
        if (q.real != nullptr && q.real[bt] == 0) return;
        const float i = 1.0f / (1.0f + expf(-(q.gate_x[off] + q.gate_x_bias[c])));
        const float r = 1.0f / (1.0f + expf(-(q.gate_a[off] + q.gate_a_bias[c])));
        const float log_a = -8.0f * r * q.softplus_a[c];
        const float xn = i * x[off];
        if (reset) {
            av = 0.0f;
            xv = xn;
        } else {
            av = expf(log_a);
            xv = sqrtf(-expm1f(2.0f * log_a)) * xn;
        }
    });
}

// gelu with the tanh approximation, as x · σ(2u) (u = sqrt(2/π)(x + 0.044715 x³)).
__device__ __forceinline__ float gelu_tanh(float v) {
    const float u = 0.7978845608f * v * (1.0f + 0.044715f * v * v);
    return v / (1.0f + expf(-2.0f * u));
}

// Inclusive scan of every segment's map across the chunk's segments (per lane). Returns the
// exclusive prefix for this thread's segment; `total` receives the whole chunk's map.
__device__ __forceinline__ Affine block_scan_segments(Affine mine, Affine &total) {
    __shared__ Affine prefix[kSegments][kLanes];
    const int lane = threadIdx.x;
    const int seg = threadIdx.y;
    prefix[seg][lane] = mine;
    __syncthreads();
#pragma unroll
    for (int offset = 1; offset < kSegments; offset <<= 1) {
        Affine v = prefix[seg][lane];
        if (seg >= offset) v = compose(prefix[seg - offset][lane], v);
        __syncthreads();
        prefix[seg][lane] = v;
        __syncthreads();
    }
    total = prefix[kSegments - 1][lane];
    return seg > 0 ? prefix[seg - 1][lane] : Affine{1.0f, 0.0f};
}

__device__ __forceinline__ Affine segment_map(const Segment &s) {
    Affine m{1.0f, 0.0f};
#pragma unroll
    for (int i = 0; i < kSegLen; ++i) m = compose(m, Affine{s.a[i], s.x[i]});
    return m;
}

__device__ __forceinline__ long long chunk_index(const FrugalLinearScanParams &p, int b, int chunk,
                                                 int c) {
    return ((long long)b * p.num_chunks + chunk) * p.channels + c;
}

// Pass 1: each chunk's map, written to the workspace. `load(s)` fills the segment.
template <typename Load>
__device__ void chunk_summary_with(const FrugalLinearScanParams &p, Load load) {
    Segment s;
    load(s);
    Affine total;
    block_scan_segments(segment_map(s), total);
    if (threadIdx.y == kSegments - 1 && s.channel_ok) {
        const long long i = chunk_index(p, s.b, blockIdx.y, s.c);
        p.chunk_a[i] = total.a;
        p.chunk_h[i] = total.h;
    }
}

// Pass 3: the scan itself, from the chunk's carry-in; `store(off, h)` writes step `off`'s state.
template <typename Load, typename Store>
__device__ void chunk_apply_with(const FrugalLinearScanParams &p, Load load, Store store) {
    Segment s;
    load(s);
    Affine total;
    const Affine before = block_scan_segments(segment_map(s), total);
    if (!s.channel_ok) return;  // after the last barrier
    float carry = 0.0f;
    if (p.num_chunks > 1) {
        carry = p.chunk_h[chunk_index(p, s.b, blockIdx.y, s.c)];
    } else if (p.h0 != nullptr) {
        carry = p.h0[(long long)s.b * p.channels + s.c];
    }
    float h = fmaf(before.a, carry, before.h);
#pragma unroll
    for (int i = 0; i < kSegLen; ++i) {
        const int t = s.t0 + i;
        h = fmaf(s.a[i], h, s.x[i]);
        if (t < p.seq_len) {
            store(((long long)s.b * p.seq_len + t) * p.channels + s.c, h);
            if (t == p.seq_len - 1) p.h_last[(long long)s.b * p.channels + s.c] = h;
        }
    }
}

template <typename T> __device__ void chunk_summary(const FrugalLinearScanParams &p) {
    chunk_summary_with(p, [&](Segment &s) { load_segment<T>(p, s); });
}

template <typename T> __device__ void chunk_apply(const FrugalLinearScanParams &p) {
    T *out = static_cast<T *>(p.h);
    chunk_apply_with(
        p, [&](Segment &s) { load_segment<T>(p, s); },
        [&](long long off, float h) { out[off] = frugal::from_f32<T>(h); });
}

}  // namespace

extern "C" __global__ void __launch_bounds__(kLanes *kSegments)
    linear_scan_chunk_summary_f32(FrugalLinearScanParams p) {
    chunk_summary<float>(p);
}

extern "C" __global__ void __launch_bounds__(kLanes *kSegments)
    linear_scan_chunk_summary_bf16(FrugalLinearScanParams p) {
    chunk_summary<__nv_bfloat16>(p);
}

// Pass 2: one thread per (batch, channel) walks the chunk maps in order, replacing each chunk's
// map in the workspace by its carry-in (the state just before the chunk).
extern "C" __global__ void __launch_bounds__(FRUGAL_SCAN_CARRY_THREADS)
    linear_scan_chunk_carry(FrugalLinearScanParams p) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)p.batch * p.channels) return;
    const int b = (int)(i / p.channels);
    const int c = (int)(i % p.channels);
    float h = p.h0 != nullptr ? p.h0[i] : 0.0f;
    for (int k = 0; k < p.num_chunks; ++k) {
        const long long j = chunk_index(p, b, k, c);
        const float a = p.chunk_a[j];
        const float local = p.chunk_h[j];
        p.chunk_h[j] = h;
        h = fmaf(a, h, local);
    }
}

extern "C" __global__ void __launch_bounds__(kLanes *kSegments)
    linear_scan_chunk_apply_f32(FrugalLinearScanParams p) {
    chunk_apply<float>(p);
}

extern "C" __global__ void __launch_bounds__(kLanes *kSegments)
    linear_scan_chunk_apply_bf16(FrugalLinearScanParams p) {
    chunk_apply<__nv_bfloat16>(p);
}

// The RG-LRU's passes 1 and 3 (pass 2 is linear_scan_chunk_carry on `q.scan`).
extern "C" __global__ void __launch_bounds__(kLanes *kSegments)
    rg_lru_chunk_summary_f32(FrugalRgLruParams q) {
    chunk_summary_with(q.scan, [&](Segment &s) { rg_lru_load(q, s); });
}

extern "C" __global__ void __launch_bounds__(kLanes *kSegments)
    rg_lru_chunk_apply_f32(FrugalRgLruParams q) {
    float *y = static_cast<float *>(q.scan.h);
    chunk_apply_with(
        q.scan, [&](Segment &s) { rg_lru_load(q, s); },
        [&](long long off, float h) { y[off] = q.branch != nullptr ? h * gelu_tanh(q.branch[off]) : h; });
}
