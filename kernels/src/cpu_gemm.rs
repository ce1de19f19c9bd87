//! The prefill's linear layers on AVX-512: `y [m, n] = x [m, k] · w [n, k]ᵀ (+ bias)`, f32 or
//! bf16 weights, f32 products and sums.
//!
//! The blocking of Goto and van de Geijn ("Anatomy of high-performance matrix multiplication",
//! 2008), cut to what these layers need. A micro-tile of 12 rows × 32 columns keeps its 24 sums in
//! registers: per step along `k` it loads 32 weights (two vectors) and multiplies them by each of
//! the 12 rows' value, broadcast from memory: 24 FMAs for 14 loads, so the two FMA ports set the
//! pace. Each task copies, `KC` steps of `k` at a time, its rows of `x` into tiles `[KC][12]` (the
//! order the micro-tile reads them: one pointer, fixed offsets) and the weights of 32 output
//! columns into panels `[KC][32]`, transposed from `w`'s rows (and widened from bf16 on the way,
//! exactly), both in the thread's own buffer. A group of panels (`GROUP` × 32 KiB) stays in L2
//! while `MC` rows pass over them; every row of the task (up to `CHUNK`) meets every panel.
//!
//! Why not the `gemm` crate, which `matmul` uses from [`MAX_ROWS`] rows up: at the row counts of
//! prompts it is slower. On the 2-core AVX-512 Xeon the project measures on, against `gemm` called
//! directly on the same 2-thread pool, with f32 weights this ran 1.9–4.8× its rate at 16 rows,
//! 1.1–2.6× at 64–384 and 1.07–1.25× at 512 (shapes of this project's models: `n`, `k` of 512 to
//! 3072); with bf16 weights, against `gemm` on the f32 matrix, the same or better. In the models,
//! with the product switched between the two (prefill, same build): Griffin small at 512 tokens
//! 1.08–1.13×, its 2B-wide layers 1.19–1.23×, the dense baseline at 256 tokens 1.16–1.21×. At
//! 1024 rows this one alone was 1.0–1.25× `gemm`, yet the dense baseline's 1024-token prefill ran
//! 0.93–0.96× with it; from 2048 rows `gemm` is as fast or faster alone too. Hence the bound.
//! `cargo bench -p frugal-benches --bench matmul` prints the rates against candle's matmul (which
//! calls `gemm`).
//!
//! A product can also finish its values as the micro-tiles store them ([`Epilogue`]): a residual
//! added (a layer's last product and the connection around it), or a gated linear unit taken (a
//! stacked gate and up projection: each panel then holds 16 columns of `g` beside the same 16 of
//! `u`, so a tile holds both halves of its outputs). Either way the output is written once and
//! not read back by a second pass; Griffin small's 512-token prefill ran 1.05–1.11× faster with
//! the two (the GLU alone skips writing and re-reading its `[m, 2·width]` product).
//! A GLU needs its sums complete in one step along `k`, so it takes all of `k` (up to
//! [`GLU_MAX_K`]) at once.
//!
//! [`block_diagonal_pair`] runs Griffin's RG-LRU gates (one small matrix per head) on the same
//! tiles and panels.
//!
//! Threads split the output's rows when it has at least as many rows as columns (each task then
//! packs less), else its columns (whole panels) when there are enough panels for every thread, and
//! rows as well when not; each writes its own part of `y`, each once per `KC` step.
use rayon::prelude::*;

use crate::cpu::lane_mask;
use crate::cpu_linear::{Epilogue, Weights};
use crate::cpu_math::Glu;
use crate::error::{check_len, KernelError, Result};

/// Output columns per panel and micro-tile: two 16-lane vectors.
const NR: usize = 32;
/// Rows per micro-tile: 24 accumulators, two weight vectors and a broadcast take 27 of the 32
/// vector registers.
const MR: usize = 12;
/// Steps along `k` per packed panel (32 KiB of f32: most of L1).
const KC: usize = 256;
/// Rows of `x` per pass over a group of panels (192 KiB of `x` at `KC`).
const MC: usize = 192;
/// Rows of `x` packed at once per task (768 KiB at `KC`, in L2 beside a group of panels); more
/// rows are taken a chunk at a time, the panels packed again for each.
const CHUNK: usize = 768;
/// Panels packed at once: 256 KiB, in L2 with the rows passing over them.
const GROUP: usize = 8;
/// From this many rows up `gemm` is as fast or faster (see the module's note) and takes the
/// product.
pub const MAX_ROWS: usize = 1024;
/// The longest `k` a GLU is taken inside the product for: its sums must be complete in one step
/// (a panel of `k · 32` values, 64 KiB here, read from L2 rather than L1). Longer ones take a
/// second pass after the product.
pub const GLU_MAX_K: usize = 2 * KC;

/// Whether [`gemm`] takes a product of `m` rows and length `k` with `epilogue`: [`available`],
/// fewer than [`MAX_ROWS`] rows, and for a GLU `k` up to [`GLU_MAX_K`].
pub(crate) fn takes(m: usize, k: usize, epilogue: Epilogue<'_>) -> bool {
    available()
        && m < MAX_ROWS
        && match epilogue {
            Epilogue::Glu(_) => k <= GLU_MAX_K,
            _ => true,
        }
}

/// Whether this machine runs [`gemm`] (AVX-512 F, BW and VL, detected once: every AVX-512 x86
/// core since 2017 has the three), and [`crate::cpu::avx512_allowed`] lets it.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static AVX512: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVX512.get_or_init(|| {
            crate::cpu::avx512_allowed()
                && std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vl")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The output pointer shared by the tasks, each writing its own rows and columns.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: the tasks write disjoint parts of the buffer (see `gemm`).
unsafe impl Send for Out {}
// SAFETY: as for `Send`: no two tasks touch the same value.
unsafe impl Sync for Out {}

impl Out {
    /// The pointer (a method: a closure naming `out.0` would capture the bare pointer).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `y [m, n] = x [m, k] · wᵀ (+ bias)`, then `epilogue` on the way out (for a GLU `y` is
/// `[m, n / 2]`), on the rayon pool it is called from. The caller checks the lengths (a residual
/// `[m, n]`, an even `n` for a GLU) and that [`available`] holds; `m`, `n` and `k` are at least 1.
pub(crate) fn gemm(
    x: &[f32],
    m: usize,
    w: Weights<'_>,
    n: usize,
    k: usize,
    bias: Option<&[f32]>,
    epilogue: Epilogue<'_>,
) -> Vec<f32> {
    let w_len = w.len();
    assert!(
        available()
            && m > 0
            && n > 0
            && k > 0
            && x.len() == m * k
            && w_len == n * k
            && bias.is_none_or(|b| b.len() == n)
            && match epilogue {
                Epilogue::Store => true,
                Epilogue::Add(r) => r.len() == m * n,
                Epilogue::Glu(_) => n.is_multiple_of(2) && k <= GLU_MAX_K,
            },
        "cpu_gemm::gemm: [m {m}, n {n}, k {k}] with x {}, w {w_len}",
        x.len(),
    );
    let shape = Shape::new(n, k, epilogue);
    let out_len = m * shape.out_cols;
    // Not zeroed first (a pass over the output, 5% of a 512 × 3072 product): the first KC step
    // writes every value, before anything reads one (the tasks' rows and panels cover all of y).
    let mut y: Vec<f32> = Vec::with_capacity(out_len);
    let threads = rayon::current_num_threads().max(1);
    // Each task packs the rows of `x` it multiplies and the weights of its columns: split the
    // columns (whole panels), each task packing all of `x` and its share of `w`, or the rows,
    // each packing its share of `x` and all of `w`, whichever packs less: the rows when the output
    // has at least as many rows as columns (then also each task reads the rows of `x` that a
    // row-split step before it left in its own core's cache: Griffin small's 512-token prefill ran
    // 1.01–1.15× faster splitting its square products so). Rows split too when there are fewer
    // panels than threads.
    let by_rows = m >= shape.out_cols && m >= 2 * MR * threads;
    let col_tasks = if by_rows {
        1
    } else {
        shape.panels.min(threads)
    };
    let row_tasks = if col_tasks < threads && m >= 2 * MR {
        (threads / col_tasks).min(m / MR)
    } else {
        1
    };
    let panels_per_task = shape.panels.div_ceil(col_tasks);
    let rows_per_task = m.div_ceil(row_tasks).next_multiple_of(MR);
    let out = Out(y.as_mut_ptr());
    let residual = match epilogue {
        Epilogue::Add(r) => Some(r),
        _ => None,
    };
    (0..col_tasks * row_tasks).into_par_iter().for_each(|task| {
        let (c, r) = (task % col_tasks, task / col_tasks);
        let panels = c * panels_per_task..((c + 1) * panels_per_task).min(shape.panels);
        let rows = r * rows_per_task..((r + 1) * rows_per_task).min(m);
        if panels.is_empty() || rows.is_empty() {
            return;
        }
        let len = shape.group * shape.kc * NR + rows.len().min(CHUNK).div_ceil(MR) * MR * shape.kc;
        with_thread_buffer(len, |buffer| {
            let to = Dest {
                y: out.get(),
                bias,
                residual,
            };
            // SAFETY: this task writes y's rows `rows` in the columns of `panels` (clipped to the
            // output's), a part no other task writes; `y` has the capacity reserved above, `x`,
            // `w`, the bias and the residual the lengths asserted.
            unsafe { task_product(to, x, rows, w, k, &shape, panels, buffer) }
        });
    });
    // SAFETY: every one of the output's values has been written (see above).
    unsafe { y.set_len(out_len) };
    y
}

/// How a product is cut up: its panels (32 output columns each, or for a GLU 16 columns of `g`
/// beside the same 16 of `u`), steps along `k` and panels per group.
struct Shape {
    /// Rows of `w`.
    n: usize,
    /// Columns of the output: `n`, or `n / 2` for a GLU.
    out_cols: usize,
    panels: usize,
    /// Steps along `k` per panel: `KC`, or all of `k` for a GLU (at most [`GLU_MAX_K`]), whose
    /// epilogue needs every sum complete before it stores anything (its `[g | u]` is not kept).
    kc: usize,
    /// Panels packed at once (`GROUP` at `KC` steps, as many bytes at other lengths).
    group: usize,
    glu: Option<Glu>,
}

impl Shape {
    fn new(n: usize, k: usize, epilogue: Epilogue<'_>) -> Shape {
        let glu = match epilogue {
            Epilogue::Glu(act) => Some(act),
            _ => None,
        };
        let (out_cols, panel_cols) = if glu.is_some() {
            (n / 2, NR / 2)
        } else {
            (n, NR)
        };
        let kc = if glu.is_some() { k } else { KC };
        Shape {
            n,
            out_cols,
            panels: out_cols.div_ceil(panel_cols),
            kc,
            group: (GROUP * KC / kc).max(1),
            glu,
        }
    }

    /// Panel `p`'s two halves: the first row of `w` and how many rows each takes (16 at most).
    fn halves(&self, p: usize) -> [(usize, usize); 2] {
        if self.glu.is_some() {
            let (row, half) = (p * 16, self.out_cols);
            let count = 16.min(half - row);
            [(row, count), (half + row, count)]
        } else {
            let row = p * NR;
            let count = NR.min(self.n - row);
            [(row, count.min(16)), (row + 16, count.saturating_sub(16))]
        }
    }
}

/// Where a task's sums go and what is added to them.
#[derive(Clone, Copy)]
struct Dest<'a> {
    /// The output, `[m, out_cols]`.
    y: *mut f32,
    bias: Option<&'a [f32]>,
    /// Added on the last step (`[m, n]`).
    residual: Option<&'a [f32]>,
}

/// Griffin's two RG-LRU gates' block-diagonal products (docs/griffin.md §3): for `x`
/// `[rows, width]` and per-head weights `w_x`, `w_a` `[heads, block, block]` laid out `[in, out]`
/// (`block = width / heads`), `gate[t, h·block + j] = Σ_i x[t, h·block + i] · w[h, i, j]` for
/// both, each `[rows, width]`. One task per head packs that head's columns of `x` once and
/// multiplies them by both gates' weights (the weights, already `[in][out]`, copied into
/// 32-column panels without a transpose). An error if the lengths disagree or `heads` does not
/// divide `width`, and `Unsupported` where [`available`] does not hold.
pub fn block_diagonal_pair(
    x: &[f32],
    rows: usize,
    width: usize,
    heads: usize,
    w_x: &[f32],
    w_a: &[f32],
) -> Result<(Vec<f32>, Vec<f32>)> {
    let shape = format!("[rows {rows}, width {width}, heads {heads}]");
    if heads == 0 || !width.is_multiple_of(heads) {
        return Err(KernelError::Shape {
            kernel: "block_diagonal_pair",
            arg: "heads",
            expected: format!("a divisor of width {width}"),
            found: vec![heads],
        });
    }
    let block = width / heads;
    check_len("block_diagonal_pair", "x", x.len(), rows * width, &shape)?;
    check_len(
        "block_diagonal_pair",
        "w_x",
        w_x.len(),
        heads * block * block,
        &shape,
    )?;
    check_len(
        "block_diagonal_pair",
        "w_a",
        w_a.len(),
        heads * block * block,
        &shape,
    )?;
    if !available() {
        return Err(KernelError::Unsupported {
            kernel: "block_diagonal_pair",
            dtype: "f32".into(),
            device: "a CPU without AVX-512 (F, BW, VL)".into(),
        });
    }
    if rows == 0 || width == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    let mut gates = [
        Vec::<f32>::with_capacity(rows * width),
        Vec::<f32>::with_capacity(rows * width),
    ];
    let outs = [Out(gates[0].as_mut_ptr()), Out(gates[1].as_mut_ptr())];
    let head_product = |h: usize| {
        with_thread_buffer(KC * NR + rows.div_ceil(MR) * MR * KC, |buffer| {
            // SAFETY: this task writes columns h·block.. h·block + block of every row of both
            // gates, which no other task writes; the lengths were checked above.
            unsafe {
                head_gates(
                    x,
                    rows,
                    width,
                    h * block,
                    block,
                    [&w_x[h * block * block..], &w_a[h * block * block..]],
                    [outs[0].get(), outs[1].get()],
                    buffer,
                )
            }
        });
    };
    // One decode step (a few rows) is too small to share out.
    if rows * width * block >= 1 << 16 {
        (0..heads).into_par_iter().for_each(head_product);
    } else {
        (0..heads).for_each(head_product);
    }
    // SAFETY: every head's columns of every row of both gates have been written.
    unsafe {
        gates[0].set_len(rows * width);
        gates[1].set_len(rows * width);
    }
    let [gate_x, gate_a] = gates;
    Ok((gate_x, gate_a))
}

/// One head's columns `col0..col0 + block` of both gates, for every row.
///
/// # Safety
/// `x` holds `rows × width`, each weight `block × block` from its start, each output
/// `rows × width`; `col0 + block ≤ width`; `buffer` holds `KC · NR` plus `MR · KC` per 12 rows.
#[allow(clippy::too_many_arguments)]
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn head_gates(
    x: &[f32],
    rows: usize,
    width: usize,
    col0: usize,
    block: usize,
    weights: [&[f32]; 2],
    outs: [*mut f32; 2],
    buffer: &mut [f32],
) {
    let (panel, rows_packed) = buffer.split_at_mut(KC * NR);
    let tiles = rows.div_ceil(MR);
    for k0 in (0..block).step_by(KC) {
        let kc = KC.min(block - k0);
        for t in 0..tiles {
            // SAFETY: rows t·MR.. of x have `width` values, columns col0 + k0 .. + kc among them.
            unsafe {
                pack_rows(
                    x,
                    width,
                    t * MR,
                    MR.min(rows - t * MR),
                    col0 + k0,
                    kc,
                    &mut rows_packed[t * MR * KC..][..kc * MR],
                )
            };
        }
        for (w, out) in weights.iter().zip(outs) {
            for j0 in (0..block).step_by(NR) {
                let cols = NR.min(block - j0);
                // The weights are [in][out]: step c's 32 outputs are a run of one row.
                for c in 0..kc {
                    let from = &w[(k0 + c) * block + j0..][..cols];
                    let to = &mut panel[c * NR..][..NR];
                    to[..cols].copy_from_slice(from);
                    to[cols..].fill(0.0);
                }
                let masks = [lane_mask(cols), lane_mask(cols.saturating_sub(16))];
                for t in 0..tiles {
                    let end = TileEnd {
                        sums: out.wrapping_add(t * MR * width + col0 + j0),
                        ld_sums: width,
                        first: k0 == 0,
                        bias: None,
                        last: false,
                        residual: None,
                        glu: None,
                    };
                    // SAFETY: the tile's packed rows hold kc · MR values, the panel kc · NR; rows
                    // t·MR.. of the output (columns col0 + j0.., cols of them) lie inside it.
                    unsafe {
                        tile(
                            MR.min(rows - t * MR),
                            rows_packed[t * MR * KC..].as_ptr(),
                            panel.as_ptr(),
                            kc,
                            &end,
                            masks,
                        )
                    };
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
#[cfg(not(target_arch = "x86_64"))]
unsafe fn head_gates(
    _: &[f32],
    _: usize,
    _: usize,
    _: usize,
    _: usize,
    _: [&[f32]; 2],
    _: [*mut f32; 2],
    _: &mut [f32],
) {
    unreachable!("cpu_gemm runs only where `available` holds (x86-64 with AVX-512)")
}

thread_local! {
    /// Each thread's packed weight panels and rows of `x`, kept between calls.
    static PANELS: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// `f` on this thread's buffer for packed panels and rows, grown to at least `len` values. Taken
/// out while in use (nothing inside `f` runs other rayon tasks, but a task that did would find
/// the slot empty and use a fresh buffer instead of this one).
fn with_thread_buffer<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buffer = PANELS.take();
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    let r = f(&mut buffer);
    PANELS.set(buffer);
    r
}

/// One task's part: rows `rows` of the output in the columns of `panels`.
///
/// # Safety
/// `to.y` holds `m × shape.out_cols` values with `rows` inside `0..m`, `x` `m × k`, `w` `n × k`, the bias
/// `n` and the residual `m × n` when present; `panels` lie within `0..shape.panels`, and `buffer`
/// holds `shape.group · shape.kc · NR` plus `shape.kc · MR` per tile of rows.
#[allow(clippy::too_many_arguments)]
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn task_product(
    to: Dest<'_>,
    x: &[f32],
    rows: std::ops::Range<usize>,
    w: Weights<'_>,
    k: usize,
    shape: &Shape,
    panels: std::ops::Range<usize>,
    buffer: &mut [f32],
) {
    let (kc_step, group_len) = (shape.kc, shape.group);
    let (buffer, rows_packed) = buffer.split_at_mut(group_len * kc_step * NR);
    for chunk in rows.clone().step_by(CHUNK) {
        let rows = chunk..(chunk + CHUNK).min(rows.end);
        let tiles = rows.len().div_ceil(MR);
        for k0 in (0..k).step_by(kc_step) {
            let kc = kc_step.min(k - k0);
            for t in 0..tiles {
                let first = rows.start + t * MR;
                // SAFETY: rows first..first + MR (clipped to `rows`) of x have k values from k0;
                // the tile's slot holds kc · MR.
                unsafe {
                    pack_rows(
                        x,
                        k,
                        first,
                        MR.min(rows.end - first),
                        k0,
                        kc,
                        &mut rows_packed[t * MR * kc_step..][..kc * MR],
                    )
                };
            }
            for g0 in panels.clone().step_by(group_len) {
                let group = g0..(g0 + group_len).min(panels.end);
                for (slot, p) in group.clone().enumerate() {
                    let panel = &mut buffer[slot * kc_step * NR..][..kc * NR];
                    // SAFETY: the panel's rows of w exist (p < shape.panels), each with k values,
                    // k0 + kc ≤ k; the panel holds kc · NR.
                    unsafe { pack_panel(w, k, shape.halves(p), k0, kc, panel) };
                }
                for t0 in (0..tiles).step_by(MC / MR) {
                    let t1 = (t0 + MC / MR).min(tiles);
                    for (slot, p) in group.clone().enumerate() {
                        let panel = buffer[slot * kc_step * NR..].as_ptr();
                        let halves = shape.halves(p);
                        let masks = [lane_mask(halves[0].1), lane_mask(halves[1].1)];
                        for t in t0..t1 {
                            let first = rows.start + t * MR;
                            let end =
                                TileEnd::at(to, shape, first, p, halves, k0 == 0, k0 + kc == k);
                            // SAFETY: the tile's packed rows hold kc · MR values, the panel kc · NR;
                            // the tile's rows and the panel's columns lie inside the output (and
                            // the bias and the residual: see `TileEnd::at`).
                            unsafe {
                                tile(
                                    MR.min(rows.end - first),
                                    rows_packed[t * MR * kc_step..].as_ptr(),
                                    panel,
                                    kc,
                                    &end,
                                    masks,
                                )
                            };
                        }
                    }
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
#[cfg(not(target_arch = "x86_64"))]
unsafe fn task_product(
    _: Dest<'_>,
    _: &[f32],
    _: std::ops::Range<usize>,
    _: Weights<'_>,
    _: usize,
    _: &Shape,
    _: std::ops::Range<usize>,
    _: &mut [f32],
) {
    unreachable!("cpu_gemm runs only where `available` holds (x86-64 with AVX-512)")
}

/// `panel[c][16·h + j] = w[start_h + j][k0 + c]` for `c < kc` and each half `h` of the panel,
/// `(start_h, count_h)` in `halves`, `j < count_h` (f32, bf16 widened exactly), and 0 for the
/// columns past `count_h`. 16 rows by 16 values at a time, read as rows and transposed in
/// registers.
///
/// # Safety
/// `w` has rows `start_h..start_h + count_h` (count_h ≤ 16) of `k` values, `k0 + kc ≤ k`, `panel`
/// holds `kc · NR`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn pack_panel(
    w: Weights<'_>,
    k: usize,
    halves: [(usize, usize); 2],
    k0: usize,
    kc: usize,
    panel: &mut [f32],
) {
    use std::arch::x86_64::*;
    debug_assert!(panel.len() >= kc * NR && k0 + kc <= k);
    for (half, (start, count)) in halves.into_iter().enumerate() {
        debug_assert!(count <= 16);
        for c0 in (0..kc).step_by(16) {
            let width = 16.min(kc - c0);
            let mask = lane_mask(width);
            // All 16 rows at fixed places, so that the vectors stay in registers (as in
            // `pack_rows`; Griffin small's prefill 1.02–1.10× faster than loading only `count`).
            let mut r = [_mm512_setzero_ps(); 16];
            for (j, r) in r.iter_mut().enumerate() {
                let lanes = if j < count { mask } else { 0 };
                let at = (start + j) * k + k0 + c0;
                // SAFETY: the lanes read, `width` values from `at`, lie in row `start + j`
                // (k0 + c0 + width ≤ k); a row past `count` reads none.
                *r = unsafe {
                    match w {
                        Weights::F32(w) => {
                            _mm512_maskz_loadu_ps(lanes, w.as_ptr().wrapping_add(at))
                        }
                        Weights::Bf16(w) => {
                            let bits =
                                _mm256_maskz_loadu_epi16(lanes, w.as_ptr().wrapping_add(at).cast());
                            _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16))
                        }
                    }
                };
            }
            let t = transpose16(r);
            for (c, v) in t.iter().take(width).enumerate() {
                // SAFETY: (c0 + c) · NR + half · 16 + 16 ≤ kc · NR.
                unsafe { _mm512_storeu_ps(panel.as_mut_ptr().add((c0 + c) * NR + half * 16), *v) };
            }
        }
    }
}

/// `packed[c][i] = x[first + i][k0 + c]` for `c < kc`, `i < rows` (≤ MR), 0 for the tile's rows
/// past `rows`: a micro-tile's rows of `x` in the order its loop reads them, `MR` values per step
/// from one pointer (each a broadcast the FMA takes straight from memory). 16 values of each row
/// at a time, transposed in registers.
///
/// # Safety
/// `x` has rows `first..first + rows` of `k` values, `k0 + kc ≤ k`, `packed` holds `kc · MR`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn pack_rows(
    x: &[f32],
    k: usize,
    first: usize,
    rows: usize,
    k0: usize,
    kc: usize,
    packed: &mut [f32],
) {
    use std::arch::x86_64::*;
    debug_assert!(packed.len() >= kc * MR && rows <= MR && k0 + kc <= k);
    let tile_lanes: __mmask16 = (1 << MR) - 1;
    let start = x.as_ptr().wrapping_add(first * k + k0);
    for c0 in (0..kc).step_by(16) {
        let width = 16.min(kc - c0);
        let mask = lane_mask(width);
        // All MR rows at fixed places, so that the 16 vectors stay in registers: a row past
        // `rows` loads nothing (its mask is empty: no lane is read, so no address is touched).
        let mut r = [_mm512_setzero_ps(); 16];
        for (i, r) in r.iter_mut().enumerate().take(MR) {
            let lanes = if i < rows { mask } else { 0 };
            // SAFETY: the lanes read, `width` values of row first + i from column k0 + c0, lie
            // inside x; a row past `rows` reads none.
            *r = unsafe { _mm512_maskz_loadu_ps(lanes, start.wrapping_add(i * k + c0)) };
        }
        let t = transpose16(r);
        let to = packed.as_mut_ptr().wrapping_add(c0 * MR);
        if width == 16 {
            for (c, v) in t.iter().enumerate() {
                // SAFETY: (c0 + c) · MR + MR ≤ kc · MR.
                unsafe { _mm512_mask_storeu_ps(to.add(c * MR), tile_lanes, *v) };
            }
        } else {
            for (c, v) in t.iter().take(width).enumerate() {
                // SAFETY: as above.
                unsafe { _mm512_mask_storeu_ps(to.add(c * MR), tile_lanes, *v) };
            }
        }
    }
}

/// The 16 × 16 transpose: `out[c]` lane `j` is `r[j]` lane `c`. Three stages of in-lane shuffles
/// bring four rows' values for one column into each 128-bit lane, two of lane moves place them.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn transpose16(r: [std::arch::x86_64::__m512; 16]) -> [std::arch::x86_64::__m512; 16] {
    use std::arch::x86_64::*;
    // t[2i], t[2i+1]: rows 2i and 2i+1 interleaved (columns 4L, 4L+1 | 4L+2, 4L+3 in lane L).
    let mut t = [_mm512_setzero_ps(); 16];
    for i in (0..16).step_by(2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    // u[4g + q]: rows 4g..4g + 4 at column 4L + q in lane L.
    let mut u = [_mm512_setzero_ps(); 16];
    for g in 0..4 {
        for h in 0..2 {
            let (a, b) = (t[4 * g + h], t[4 * g + 2 + h]);
            u[4 * g + 2 * h] = _mm512_shuffle_ps::<0x44>(a, b);
            u[4 * g + 2 * h + 1] = _mm512_shuffle_ps::<0xEE>(a, b);
        }
    }
    // out[4L + q]: lane L of u[q], u[4 + q], u[8 + q], u[12 + q].
    let mut out = [_mm512_setzero_ps(); 16];
    for q in 0..4 {
        let v0 = _mm512_shuffle_f32x4::<0x88>(u[q], u[4 + q]);
        let v1 = _mm512_shuffle_f32x4::<0xDD>(u[q], u[4 + q]);
        let w0 = _mm512_shuffle_f32x4::<0x88>(u[8 + q], u[12 + q]);
        let w1 = _mm512_shuffle_f32x4::<0xDD>(u[8 + q], u[12 + q]);
        out[q] = _mm512_shuffle_f32x4::<0x88>(v0, w0);
        out[8 + q] = _mm512_shuffle_f32x4::<0xDD>(v0, w0);
        out[4 + q] = _mm512_shuffle_f32x4::<0x88>(v1, w1);
        out[12 + q] = _mm512_shuffle_f32x4::<0xDD>(v1, w1);
    }
    out
}

/// What a micro-tile starts from and does with its sums: the row-0, column-0 pointers of its part
/// of each matrix involved.
#[derive(Clone, Copy)]
struct TileEnd {
    /// Where the sums go (the output; a GLU, whose one step is the first and the last, never
    /// uses it); its row stride.
    sums: *mut f32,
    ld_sums: usize,
    /// The first step starts from the bias (its two halves, as the panel's) or from zero; later
    /// ones from the sums so far.
    first: bool,
    bias: Option<[*const f32; 2]>,
    /// Steps to the end of `k`: the residual added (its two halves' pointers, its stride), or the
    /// GLU taken (its output, stride).
    last: bool,
    residual: Option<([*const f32; 2], usize)>,
    glu: Option<(Glu, *mut f32, usize)>,
}

impl TileEnd {
    /// The tile at rows `first..` and panel `p` of a task's product, on step `first_step` and/or
    /// `last_step` along `k`.
    fn at(
        to: Dest<'_>,
        shape: &Shape,
        first: usize,
        p: usize,
        halves: [(usize, usize); 2],
        first_step: bool,
        last_step: bool,
    ) -> TileEnd {
        let (sums, ld_sums) = match shape.glu {
            Some(_) => (std::ptr::null_mut(), 0),
            None => (to.y.wrapping_add(first * shape.n + p * NR), shape.n),
        };
        let at = |v: &[f32]| {
            [
                v.as_ptr().wrapping_add(halves[0].0),
                v.as_ptr().wrapping_add(halves[1].0),
            ]
        };
        TileEnd {
            sums,
            ld_sums,
            first: first_step,
            bias: to.bias.map(at),
            last: last_step,
            residual: to.residual.map(|r| {
                let row = &r[first * shape.n..];
                (at(row), shape.n)
            }),
            glu: shape.glu.map(|act| {
                (
                    act,
                    to.y.wrapping_add(first * shape.out_cols + p * 16),
                    shape.out_cols,
                )
            }),
        }
    }
}

/// A micro-tile of `rows` (1..=MR) rows: the const-sized kernel for that many.
///
/// # Safety
/// As [`micro_tile`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile(
    rows: usize,
    x: *const f32,
    panel: *const f32,
    kc: usize,
    end: &TileEnd,
    masks: [u16; 2],
) {
    // SAFETY: as the caller's.
    unsafe {
        if end.last && (end.residual.is_some() || end.glu.is_some()) {
            tile_rows::<true>(rows, x, panel, kc, end, masks)
        } else {
            tile_rows::<false>(rows, x, panel, kc, end, masks)
        }
    }
}

/// [`tile`] for an ending that stores the sums (`FUSED` false: the plain kernel, its epilogue
/// no more than a store) or finishes them.
///
/// # Safety
/// As [`micro_tile`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn tile_rows<const FUSED: bool>(
    rows: usize,
    x: *const f32,
    panel: *const f32,
    kc: usize,
    end: &TileEnd,
    masks: [u16; 2],
) {
    // SAFETY: as the caller's.
    unsafe {
        match rows {
            12 => micro_tile::<12, FUSED>(x, panel, kc, end, masks),
            11 => micro_tile::<11, FUSED>(x, panel, kc, end, masks),
            10 => micro_tile::<10, FUSED>(x, panel, kc, end, masks),
            9 => micro_tile::<9, FUSED>(x, panel, kc, end, masks),
            8 => micro_tile::<8, FUSED>(x, panel, kc, end, masks),
            7 => micro_tile::<7, FUSED>(x, panel, kc, end, masks),
            6 => micro_tile::<6, FUSED>(x, panel, kc, end, masks),
            5 => micro_tile::<5, FUSED>(x, panel, kc, end, masks),
            4 => micro_tile::<4, FUSED>(x, panel, kc, end, masks),
            3 => micro_tile::<3, FUSED>(x, panel, kc, end, masks),
            2 => micro_tile::<2, FUSED>(x, panel, kc, end, masks),
            _ => micro_tile::<1, FUSED>(x, panel, kc, end, masks),
        }
    }
}

/// `s[i][j] = start[j] + Σ_c x[c][i] · panel[c][j]` for `R` rows and the panel's 32 columns (two
/// halves of 16, `masks` saying which lanes are real), where `start` is the bias or zero on the
/// first step along `k` and the sums so far on later ones; then, on the last step, the residual
/// added or the GLU `act(s[i][..16]) ⊙ s[i][16..]` taken, and the result stored (`end`).
///
/// # Safety
/// `x` holds `kc · MR` values (a tile's rows packed by [`pack_rows`]), `panel` `kc · NR`; each of
/// `end`'s pointers has `R` rows (at its stride) with the masks' lanes of each half inside it.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn micro_tile<const R: usize, const FUSED: bool>(
    x: *const f32,
    panel: *const f32,
    kc: usize,
    end: &TileEnd,
    masks: [u16; 2],
) {
    use std::arch::x86_64::*;
    // SAFETY: every pointer below stays inside the ranges the caller vouches for; the masks
    // keep loads and stores within each half's real columns.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        let (mut a, mut b) = (x, panel);
        for _ in 0..kc {
            let b0 = _mm512_loadu_ps(b);
            let b1 = _mm512_loadu_ps(b.add(16));
            for (i, acc) in acc.iter_mut().enumerate() {
                let a = _mm512_set1_ps(*a.add(i));
                acc[0] = _mm512_fmadd_ps(a, b0, acc[0]);
                acc[1] = _mm512_fmadd_ps(a, b1, acc[1]);
            }
            a = a.add(MR);
            b = b.add(NR);
        }
        let [m0, m1] = masks;
        // Row i's starting values: the bias or zero on the first step, the sums so far after it.
        let start = |i: usize| match (end.first, end.bias) {
            (true, Some([b0, b1])) => {
                (_mm512_maskz_loadu_ps(m0, b0), _mm512_maskz_loadu_ps(m1, b1))
            }
            (true, None) => (_mm512_setzero_ps(), _mm512_setzero_ps()),
            (false, _) => {
                let row = end.sums.wrapping_add(i * end.ld_sums);
                (
                    _mm512_maskz_loadu_ps(m0, row),
                    _mm512_maskz_loadu_ps(m1, row.wrapping_add(16)),
                )
            }
        };
        // One loop per kind of ending, each over the const number of rows (unrolled, the sums
        // staying in their registers).
        match (FUSED, end.residual, end.glu) {
            (true, Some(([r0, r1], ld)), _) => {
                // After the bias and every step's sums: the order of a product stored, then
                // added to.
                for (i, acc) in acc.iter().enumerate() {
                    let (s0, s1) = start(i);
                    let row = end.sums.wrapping_add(i * end.ld_sums);
                    let r0 = _mm512_maskz_loadu_ps(m0, r0.wrapping_add(i * ld));
                    let r1 = _mm512_maskz_loadu_ps(m1, r1.wrapping_add(i * ld));
                    let v0 = _mm512_add_ps(_mm512_add_ps(s0, acc[0]), r0);
                    let v1 = _mm512_add_ps(_mm512_add_ps(s1, acc[1]), r1);
                    _mm512_mask_storeu_ps(row, m0, v0);
                    _mm512_mask_storeu_ps(row.wrapping_add(16), m1, v1);
                }
            }
            (true, None, Some((act, out, ld))) => {
                for (i, acc) in acc.iter().enumerate() {
                    let (s0, s1) = start(i);
                    let (g, u) = (_mm512_add_ps(s0, acc[0]), _mm512_add_ps(s1, acc[1]));
                    _mm512_mask_storeu_ps(out.wrapping_add(i * ld), m0, glu16(act, g, u));
                }
            }
            _ => {
                for (i, acc) in acc.iter().enumerate() {
                    let (s0, s1) = start(i);
                    let row = end.sums.wrapping_add(i * end.ld_sums);
                    _mm512_mask_storeu_ps(row, m0, _mm512_add_ps(s0, acc[0]));
                    _mm512_mask_storeu_ps(row.wrapping_add(16), m1, _mm512_add_ps(s1, acc[1]));
                }
            }
        }
    }
}

/// `act(g) ⊙ u` lane by lane, with the very functions of the unfused pass
/// ([`crate::cpu_math::gelu_tanh_mul_halves`], [`crate::cpu_math::silu_mul_halves`]): the same
/// value to the bit.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn glu16(
    act: Glu,
    g: std::arch::x86_64::__m512,
    u: std::arch::x86_64::__m512,
) -> std::arch::x86_64::__m512 {
    // SAFETY: plain moves between registers and arrays of 16 f32s (AVX-512F: the caller's).
    unsafe {
        use std::arch::x86_64::*;
        let (mut gs, mut us) = ([0.0f32; 16], [0.0f32; 16]);
        _mm512_storeu_ps(gs.as_mut_ptr(), g);
        _mm512_storeu_ps(us.as_mut_ptr(), u);
        let mut out = [0.0f32; 16];
        match act {
            Glu::GeluTanh => {
                for ((o, &g), &u) in out.iter_mut().zip(&gs).zip(&us) {
                    *o = crate::cpu_math::gelu_tanh(g) * u;
                }
            }
            Glu::Silu => {
                for ((o, &g), &u) in out.iter_mut().zip(&gs).zip(&us) {
                    *o = g * crate::cpu_math::sigmoid(g) * u;
                }
            }
        }
        _mm512_loadu_ps(out.as_ptr())
    }
}
