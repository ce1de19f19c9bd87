// cuda_emu.h: run CUDA kernel sources on the CPU, for tests on machines without a GPU.
//
// Included before a .cu file and compiled by the host C++ compiler (FRUGAL_EMULATION is defined).
// Each block's threads run as cooperative fibers (ucontext) on the calling OS thread; blocks run
// one after another. A fiber runs until it reaches a barrier (__syncthreads, __syncwarp, a warp
// shuffle or vote) or returns; the scheduler then releases a barrier once every live thread it
// covers is waiting there. A barrier that can never be released (some threads returned, or wait
// at another barrier) is a launch failure with a message, never a hang.
//
// Emulated: thread/block indices and dimensions, static and dynamic shared memory, __syncthreads,
// __syncwarp, __shfl{,_up,_down,_xor}_sync, __ballot/__any/__all_sync, atomics, __dp4a, __half and
// __nv_bfloat16 with their conversions, the usual intrinsics. Not emulated: inline PTX (it cannot
// run here; kernels keep it rare and cover it with GPU tests), memory-ordering subtleties (fibers
// are sequentially consistent), and block-level parallelism (blocks are serial).
#pragma once

#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#define FRUGAL_EMULATION 1

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __align__(n) alignas(n)
// Static shared memory: one instance per OS thread, shared by the fibers of the running block.
#define __shared__ static thread_local

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

constexpr int warpSize = 32;

namespace frugal_emu {

enum class Wait { Ready, Block, Warp, Done };

struct Fiber {
    ucontext_t ctx;
    Wait wait = Wait::Ready;
    dim3 tid;
    unsigned linear = 0;  // linear thread index within the block
};

struct BlockRun {
    std::vector<Fiber> fibers;
    std::vector<std::unique_ptr<char[]>> stacks;
    size_t stack_bytes = 0;
    ucontext_t scheduler;
    unsigned current = 0;
    dim3 block_idx, block_dim, grid_dim;
    std::vector<unsigned char> dynamic_shared;
    std::vector<uint64_t> exchange;  // one slot per thread for warp shuffles and votes
    const std::function<void()> *body = nullptr;
    std::string error;
};

inline thread_local BlockRun *g_run = nullptr;
inline thread_local std::string g_last_error;

inline Fiber &current_fiber() { return g_run->fibers[g_run->current]; }

// Leave the fiber until the scheduler releases it.
inline void wait_at(Wait w) {
    Fiber &f = current_fiber();
    f.wait = w;
    swapcontext(&f.ctx, &g_run->scheduler);
}

// A failure inside a kernel: recorded, and the fiber never resumes.
[[noreturn]] inline void fail(const std::string &msg) {
    if (g_run->error.empty()) g_run->error = msg;
    wait_at(Wait::Done);
    std::abort();  // unreachable: a Done fiber is never resumed
}

inline void trampoline() {
    (*g_run->body)();
    wait_at(Wait::Done);
    // A finished fiber is never resumed. If one were, returning from here would end the whole
    // process with status 0 (uc_link is null): a silent pass. Fail loudly instead.
    std::fputs("cuda_emu: internal error: a finished thread was resumed\n", stderr);
    std::abort();
}

inline std::string block_name(const BlockRun &r) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "block (%u,%u,%u)", r.block_idx.x, r.block_idx.y,
                  r.block_idx.z);
    return buf;
}

// Runs one block to completion. Returns false (with r.error set) on a failure.
inline bool run_block(BlockRun &r) {
    const unsigned n = (unsigned)r.fibers.size();
    for (unsigned i = 0; i < n; ++i) {
        Fiber &f = r.fibers[i];
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = r.stacks[i].get();
        f.ctx.uc_stack.ss_size = r.stack_bytes;
        f.ctx.uc_link = nullptr;
        makecontext(&f.ctx, trampoline, 0);
        f.wait = Wait::Ready;
    }
    const unsigned warps = (n + warpSize - 1) / warpSize;
    for (;;) {
        for (unsigned i = 0; i < n; ++i) {
            if (r.fibers[i].wait != Wait::Ready) continue;
            r.current = i;
            swapcontext(&r.scheduler, &r.fibers[i].ctx);
            if (!r.error.empty()) return false;
        }
        // Everyone is waiting or done: release what can be released.
        bool released = false;
        for (unsigned w = 0; w < warps; ++w) {
            unsigned live = 0, at_warp = 0;
            for (unsigned i = w * warpSize; i < n && i < (w + 1) * warpSize; ++i) {
                if (r.fibers[i].wait != Wait::Done) ++live;
                if (r.fibers[i].wait == Wait::Warp) ++at_warp;
            }
            if (at_warp > 0 && at_warp == live) {
                for (unsigned i = w * warpSize; i < n && i < (w + 1) * warpSize; ++i)
                    if (r.fibers[i].wait == Wait::Warp) r.fibers[i].wait = Wait::Ready;
                released = true;
            }
        }
        if (released) continue;
        unsigned live = 0, at_block = 0, at_warp = 0;
        for (const Fiber &f : r.fibers) {
            if (f.wait != Wait::Done) ++live;
            if (f.wait == Wait::Block) ++at_block;
            if (f.wait == Wait::Warp) ++at_warp;
        }
        if (live == 0) return true;
        // __syncthreads must be reached by every thread of the block: one that returned early
        // makes it undefined behaviour on a GPU, reported here as a failure.
        if (at_block == n) {
            for (Fiber &f : r.fibers)
                if (f.wait == Wait::Block) f.wait = Wait::Ready;
            continue;
        }
        char buf[256];
        std::snprintf(buf, sizeof buf,
                      "%s: barrier never released (deadlock): %u thread(s) at __syncthreads, %u at "
                      "a warp-level sync, %u returned; a barrier must be reached by every thread "
                      "it covers",
                      block_name(r).c_str(), at_block, at_warp, n - live);
        r.error = buf;
        return false;
    }
}

// Launches `body` (the kernel call) on a grid. Returns 0, or -1 with g_last_error set.
inline int launch(dim3 grid, dim3 block, size_t dynamic_shared_bytes,
                  const std::function<void()> &body) {
    g_last_error.clear();
    const unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
    if (threads == 0 || threads > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 ||
        grid.z == 0 || grid.y > 65535 || grid.z > 65535) {
        char buf[160];
        std::snprintf(buf, sizeof buf, "invalid launch configuration: grid (%u,%u,%u) block (%u,%u,%u)",
                      grid.x, grid.y, grid.z, block.x, block.y, block.z);
        g_last_error = buf;
        return -1;
    }
    BlockRun r;
    const char *kb = std::getenv("FRUGAL_EMU_STACK_KB");
    r.stack_bytes = (size_t)(kb != nullptr ? std::atoi(kb) : 64) * 1024;
    r.fibers.resize(threads);
    r.exchange.assign(threads, 0);
    r.dynamic_shared.assign(dynamic_shared_bytes, 0);
    for (unsigned long long i = 0; i < threads; ++i) {
        r.stacks.emplace_back(new char[r.stack_bytes]);
        Fiber &f = r.fibers[i];
        f.linear = (unsigned)i;
        f.tid = dim3((unsigned)(i % block.x), (unsigned)((i / block.x) % block.y),
                     (unsigned)(i / ((unsigned long long)block.x * block.y)));
    }
    r.block_dim = block;
    r.grid_dim = grid;
    r.body = &body;
    BlockRun *outer = g_run;
    g_run = &r;
    int rc = 0;
    for (unsigned z = 0; z < grid.z && rc == 0; ++z)
        for (unsigned y = 0; y < grid.y && rc == 0; ++y)
            for (unsigned x = 0; x < grid.x && rc == 0; ++x) {
                r.block_idx = dim3(x, y, z);
                if (!run_block(r)) {
                    g_last_error = r.error;
                    rc = -1;
                }
            }
    g_run = outer;
    return rc;
}

// ---- warp-level collectives: every live lane of the warp publishes a value, then reads ----------

inline unsigned lane_id() { return current_fiber().linear % warpSize; }
inline unsigned warp_base() { return current_fiber().linear - lane_id(); }
inline unsigned warp_size_here() {
    const unsigned n = (unsigned)g_run->fibers.size();
    return std::min<unsigned>(warpSize, n - warp_base());
}

inline uint64_t exchange(uint64_t mine, unsigned src_lane) {
    const unsigned base = warp_base();
    g_run->exchange[base + lane_id()] = mine;
    wait_at(Wait::Warp);  // all live lanes have published
    if (src_lane >= warp_size_here() || g_run->fibers[base + src_lane].wait == Wait::Done)
        fail(block_name(*g_run) + ": warp shuffle reads a lane that has returned or does not exist");
    const uint64_t v = g_run->exchange[base + src_lane];
    wait_at(Wait::Warp);  // all lanes have read before anyone publishes again
    return v;
}

template <typename T> inline uint64_t to_bits(T v) {
    static_assert(sizeof(T) <= 8, "shuffles move at most 8 bytes");
    uint64_t u = 0;
    std::memcpy(&u, &v, sizeof(T));
    return u;
}
template <typename T> inline T from_bits(uint64_t u) {
    T v;
    std::memcpy(&v, &u, sizeof(T));
    return v;
}

// Lanes form groups of `width`; shuffles stay inside a lane's group.
inline unsigned group_base(int width) { return lane_id() / (unsigned)width * (unsigned)width; }

inline unsigned vote(bool pred, unsigned mask) {
    const unsigned base = warp_base();
    g_run->exchange[base + lane_id()] = pred ? 1 : 0;
    wait_at(Wait::Warp);
    unsigned bits = 0;
    for (unsigned l = 0; l < warp_size_here(); ++l)
        if (g_run->fibers[base + l].wait != Wait::Done && g_run->exchange[base + l] != 0)
            bits |= 1u << l;
    wait_at(Wait::Warp);
    return bits & mask;
}

inline unsigned char *dynamic_shared() { return g_run->dynamic_shared.data(); }

}  // namespace frugal_emu

// ---- the CUDA names -------------------------------------------------------------------------

#define threadIdx (::frugal_emu::current_fiber().tid)
#define blockIdx (::frugal_emu::g_run->block_idx)
#define blockDim (::frugal_emu::g_run->block_dim)
#define gridDim (::frugal_emu::g_run->grid_dim)

#define FRUGAL_DYNAMIC_SHARED(type, name)                                                         \
    type *name = reinterpret_cast<type *>(::frugal_emu::dynamic_shared())

inline void __syncthreads() { frugal_emu::wait_at(frugal_emu::Wait::Block); }
inline void __syncwarp(unsigned = 0xffffffffu) { frugal_emu::wait_at(frugal_emu::Wait::Warp); }
inline void __threadfence() {}
inline void __threadfence_block() {}

template <typename T> inline T __shfl_sync(unsigned, T v, int src, int width = warpSize) {
    const unsigned l = frugal_emu::group_base(width) + ((unsigned)src % (unsigned)width);
    return frugal_emu::from_bits<T>(frugal_emu::exchange(frugal_emu::to_bits(v), l));
}
template <typename T> inline T __shfl_up_sync(unsigned, T v, unsigned delta, int width = warpSize) {
    const unsigned lane = frugal_emu::lane_id();
    const unsigned l = lane - frugal_emu::group_base(width) >= delta ? lane - delta : lane;
    return frugal_emu::from_bits<T>(frugal_emu::exchange(frugal_emu::to_bits(v), l));
}
template <typename T>
inline T __shfl_down_sync(unsigned, T v, unsigned delta, int width = warpSize) {
    const unsigned lane = frugal_emu::lane_id();
    const unsigned l = lane - frugal_emu::group_base(width) + delta < (unsigned)width ? lane + delta : lane;
    return frugal_emu::from_bits<T>(frugal_emu::exchange(frugal_emu::to_bits(v), l));
}
template <typename T>
inline T __shfl_xor_sync(unsigned, T v, int lane_mask, int width = warpSize) {
    const unsigned lane = frugal_emu::lane_id();
    const unsigned base = frugal_emu::group_base(width);
    const unsigned l = lane ^ (unsigned)lane_mask;
    return frugal_emu::from_bits<T>(
        frugal_emu::exchange(frugal_emu::to_bits(v), l >= base + (unsigned)width ? lane : l));
}
inline unsigned __ballot_sync(unsigned mask, int pred) { return frugal_emu::vote(pred != 0, mask); }
inline int __any_sync(unsigned mask, int pred) { return frugal_emu::vote(pred != 0, mask) != 0; }
inline int __all_sync(unsigned mask, int pred) {
    return frugal_emu::vote(pred == 0, mask) == 0;  // no live lane in mask has a false predicate
}

// Atomics: fibers of one launch never run at the same time, so plain read-modify-write is atomic.
template <typename T> inline T atomicAdd(T *p, T v) { T old = *p; *p = old + v; return old; }
template <typename T> inline T atomicSub(T *p, T v) { T old = *p; *p = old - v; return old; }
template <typename T> inline T atomicMax(T *p, T v) { T old = *p; *p = old > v ? old : v; return old; }
template <typename T> inline T atomicMin(T *p, T v) { T old = *p; *p = old < v ? old : v; return old; }
template <typename T> inline T atomicExch(T *p, T v) { T old = *p; *p = v; return old; }
template <typename T> inline T atomicCAS(T *p, T cmp, T v) {
    T old = *p;
    if (old == cmp) *p = v;
    return old;
}

// Four-way byte dot product with 32-bit accumulate.
inline int __dp4a(int a, int b, int c) {
    for (int i = 0; i < 4; ++i) c += (int)(int8_t)(a >> (8 * i)) * (int)(int8_t)(b >> (8 * i));
    return c;
}
inline unsigned __dp4a(unsigned a, unsigned b, unsigned c) {
    for (int i = 0; i < 4; ++i) c += ((a >> (8 * i)) & 0xffu) * ((b >> (8 * i)) & 0xffu);
    return c;
}

// Bit casts and fast-math intrinsics (host libm: at least as accurate as the device versions).
inline int __float_as_int(float f) { return frugal_emu::from_bits<int>(frugal_emu::to_bits(f)); }
inline unsigned __float_as_uint(float f) { return frugal_emu::from_bits<unsigned>(frugal_emu::to_bits(f)); }
inline float __int_as_float(int i) { return frugal_emu::from_bits<float>(frugal_emu::to_bits(i)); }
inline float __uint_as_float(unsigned i) { return frugal_emu::from_bits<float>(frugal_emu::to_bits(i)); }
// Round to nearest, ties to even (the default rounding mode of the host), as the CUDA intrinsic.
inline int __float2int_rn(float x) { return (int)std::nearbyint(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }

// ---- 16-bit floats: storage stand-ins with the device's round-to-nearest-even conversions -----

struct __nv_bfloat16 {
    uint16_t bits;
};
inline float __bfloat162float(__nv_bfloat16 v) {
    return frugal_emu::from_bits<float>((uint64_t)v.bits << 16);
}
inline __nv_bfloat16 __float2bfloat16(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return __nv_bfloat16{(uint16_t)((u >> 16) | 0x40)};  // NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return __nv_bfloat16{(uint16_t)(u >> 16)};
}

struct __half {
    uint16_t bits;
};
inline float __half2float(__half v) {
    _Float16 h;
    std::memcpy(&h, &v.bits, 2);
    return (float)h;
}
inline __half __float2half(float f) {
    const _Float16 h = (_Float16)f;  // IEEE round to nearest even
    __half r;
    std::memcpy(&r.bits, &h, 2);
    return r;
}
