// The emulated kernels: every CUDA source, compiled for the host, and a C entry point that launches
// a kernel by name with a pointer to its parameter struct (the struct from frugal_params.h).
#include "cuda_emu.h"

#include "linear_scan.cu"
#include "additive_attention.cu"
#include "ternary_matmul.cu"
#include "window_attention.cu"
#include "gated_retention.cu"
#include "sparse_attention.cu"
#include "../selftest.cu"

#include <cstring>

namespace {

using Runner = int (*)(dim3, dim3, unsigned, const void *);

struct Entry {
    const char *name;
    Runner run;
};

// FRUGAL_EMU_KERNEL(kernel, ParamStruct): a kernel taking one parameter struct by value.
#define FRUGAL_EMU_KERNEL(kernel, P)                                                              \
    Entry{#kernel, [](dim3 g, dim3 b, unsigned smem, const void *p) {                            \
              const P params = *static_cast<const P *>(p);                                       \
              return frugal_emu::launch(g, b, smem, [&] { kernel(params); });                    \
          }}

const Entry kEntries[] = {
    FRUGAL_EMU_KERNEL(linear_scan_chunk_summary_f32, FrugalLinearScanParams),
    FRUGAL_EMU_KERNEL(linear_scan_chunk_summary_bf16, FrugalLinearScanParams),
    FRUGAL_EMU_KERNEL(linear_scan_chunk_carry, FrugalLinearScanParams),
    FRUGAL_EMU_KERNEL(linear_scan_chunk_apply_f32, FrugalLinearScanParams),
    FRUGAL_EMU_KERNEL(linear_scan_chunk_apply_bf16, FrugalLinearScanParams),
    FRUGAL_EMU_KERNEL(rg_lru_chunk_summary_f32, FrugalRgLruParams),
    FRUGAL_EMU_KERNEL(rg_lru_chunk_apply_f32, FrugalRgLruParams),
    FRUGAL_EMU_KERNEL(additive_attention_f32, FrugalAdditiveAttentionParams),
    FRUGAL_EMU_KERNEL(ternary_quantize_f32, FrugalTernaryQuantizeParams),
    FRUGAL_EMU_KERNEL(ternary_gemv, FrugalTernaryMatmulParams),
    FRUGAL_EMU_KERNEL(ternary_gemm, FrugalTernaryMatmulParams),
    FRUGAL_EMU_KERNEL(window_attention_f32, FrugalWindowAttentionParams),
    FRUGAL_EMU_KERNEL(gated_retention_f32, FrugalGatedRetentionParams),
    FRUGAL_EMU_KERNEL(sparse_attention_f32, FrugalSparseAttentionParams),
    FRUGAL_EMU_KERNEL(sketch_topk, FrugalSketchTopkParams),
    // The emulator's self-tests.
    FRUGAL_EMU_KERNEL(selftest_block_sum, SelftestParams),
    FRUGAL_EMU_KERNEL(selftest_warp_ops, SelftestParams),
    FRUGAL_EMU_KERNEL(selftest_dynamic_shared, SelftestParams),
    FRUGAL_EMU_KERNEL(selftest_numeric, SelftestParams),
    FRUGAL_EMU_KERNEL(selftest_divergent_barrier, SelftestParams),
    FRUGAL_EMU_KERNEL(selftest_shuffle_from_exited_lane, SelftestParams),
};

}  // namespace

extern "C" int frugal_emu_launch(const char *name, dim3 grid, dim3 block, unsigned shared_bytes,
                                 const void *params) {
    for (const Entry &e : kEntries)
        if (std::strcmp(e.name, name) == 0) return e.run(grid, block, shared_bytes, params);
    frugal_emu::g_last_error = std::string("no emulated kernel named ") + name;
    return -1;
}

extern "C" const char *frugal_emu_last_error() { return frugal_emu::g_last_error.c_str(); }
