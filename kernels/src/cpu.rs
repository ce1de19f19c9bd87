//! What the CPU offers the fast paths, detected at run time.

/// SIMD features the fast CPU paths can use on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuFeatures {
    pub avx2: bool,
    pub fma: bool,
    pub f16c: bool,
    pub avx512f: bool,
    pub neon: bool,
}

impl CpuFeatures {
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            CpuFeatures {
                avx2: std::arch::is_x86_feature_detected!("avx2"),
                fma: std::arch::is_x86_feature_detected!("fma"),
                f16c: std::arch::is_x86_feature_detected!("f16c"),
                avx512f: std::arch::is_x86_feature_detected!("avx512f"),
                neon: false,
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            CpuFeatures {
                avx2: false,
                fma: false,
                f16c: false,
                avx512f: false,
                neon: std::arch::is_aarch64_feature_detected!("neon"),
            }
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            CpuFeatures {
                avx2: false,
                fma: false,
                f16c: false,
                avx512f: false,
                neon: false,
            }
        }
    }

    /// Feature names present, e.g. `["avx2", "fma"]`.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.avx2, "avx2"),
            (self.fma, "fma"),
            (self.f16c, "f16c"),
            (self.avx512f, "avx512f"),
            (self.neon, "neon"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

/// Whether the kernels may take their AVX-512 forms: true unless the environment variable
/// `FRUGAL_NO_AVX512` is set (to anything) when the first kernel asks. With it set, every kernel
/// that has an AVX-512 and an AVX2 form (frugal's prompt product, the elementwise passes, prefill
/// attention, the ternary GEMM, Smart Bird's selection, the 12-bit head) takes the AVX2 one, as on
/// a CPU without AVX-512: for a CPU that slows its clock under AVX-512, and for the tests, which
/// CI runs both ways on its AVX-512 machine so that both forms are compared with the reference.
pub fn avx512_allowed() -> bool {
    static ALLOWED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ALLOWED.get_or_init(|| std::env::var_os("FRUGAL_NO_AVX512").is_none())
}

/// AVX2 and FMA, detected at run time (the [`dot`] fast path).
pub(crate) fn fma_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// How far ahead of the bytes being multiplied the GEMVs' SIMD loops prefetch their weights into
/// L1 (a task's rows follow each other in memory, so the prefetch runs on from one row into the
/// next). A decode GEMV reads every weight once, from memory: on the Intel Xeon VM of the
/// README the hardware prefetchers alone kept a 2-thread ternary GEMV at 10–12 GB/s, about one
/// core's plain read rate; prefetching 2 KB ahead it read at 16–18 GB/s, a 2-thread plain
/// read's rate over the same bytes (1–4 KB ahead measured alike, 512 B and 8 KB less).
pub(crate) const PREFETCH_AHEAD: usize = 2048;

/// How far ahead the same loops also ask for lines into L2 only ([`prefetch_l2`]). A core has few
/// L1 fill buffers (a prefetch into L1 holds one until its line arrives), so the L1 prefetches
/// alone keep only 2 KB in flight, about one memory latency of one core's reading; requests into L2
/// queue apart from them, and these keep 16 KB more on the way. On the 2-core AVX-512 Xeon of the
/// latest stops (2 threads), the 12-bit head's GEMV over 128256 × 2560 cold weights went from 21.8
/// to 16.9 ms with them (8–64 KB ahead measured within 2% of 16), BitNet's 4-layer decode at 2B4T
/// widths 1.14× faster, Griffin small's decode 1.30×; the ternary GEMV alone, cold, 1.05–1.07× at
/// 6912 × 2560 and 2560 × 6912, 1.2–1.5× at 2560 × 2560. Where the weights are in cache the extra
/// instruction costs a little: Griffin at hidden 256 (12 MB of weights) decoded 0.95–0.98× as fast,
/// the dense baseline at that size alike within its noise.
pub(crate) const PREFETCH_L2_AHEAD: usize = 16384;

/// Asks for the cache line [`PREFETCH_AHEAD`] bytes past `at` into L1 ([`prefetch`]) and the
/// one [`PREFETCH_L2_AHEAD`] past it into L2 ([`prefetch_l2`]).
#[inline(always)]
pub(crate) fn prefetch_ahead(at: *const u8) {
    prefetch(at.wrapping_add(PREFETCH_AHEAD));
    prefetch_l2(at.wrapping_add(PREFETCH_L2_AHEAD));
}

/// The mask of the first `n` of 16 lanes (all 16 from `n` = 16 up; none at 0): an AVX-512 mask
/// for a row's last, partial vector.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn lane_mask(n: usize) -> u16 {
    (u32::MAX.checked_shr(32 - n.min(16) as u32).unwrap_or(0)) as u16
}

/// Asks for the cache line holding `at` into L1: a hint, so an address past the end of the
/// weights is not read and cannot fault. Nothing off x86-64.
#[inline(always)]
pub(crate) fn prefetch(at: *const u8) {
    prefetch_into::<1>(at);
}

/// Asks for the cache line holding `at` into L2 (not L1): as [`prefetch`], a hint that cannot
/// fault.
#[inline(always)]
pub(crate) fn prefetch_l2(at: *const u8) {
    prefetch_into::<2>(at);
}

/// `prefetcht0` (`LEVEL` 1) or `prefetcht1` (2) of `at`.
#[inline(always)]
fn prefetch_into<const LEVEL: u8>(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0, _MM_HINT_T1};
        // SAFETY: prefetching is a hint that never faults, whatever the address (SSE, which
        // x86-64 always has).
        unsafe {
            if LEVEL == 1 {
                _mm_prefetch::<_MM_HINT_T0>(at as *const i8)
            } else {
                _mm_prefetch::<_MM_HINT_T1>(at as *const i8)
            }
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// `Σ a_i b_i`: AVX2+FMA when `fma` (from [`fma_available`]), else eight independent sums the
/// compiler vectorises.
pub(crate) fn dot(fma: bool, a: &[f32], b: &[f32]) -> f32 {
    dot_row(fma, a, b)
}

/// `Σ w_i x_i` for f32 or bf16 `w` (bf16 widened to f32 exactly: a bf16 is the top half of an
/// f32), with one accumulation for both, so a bf16 matrix gives the products its f32 widening
/// would. Over the shorter of the two.
pub(crate) fn dot_row<W: WeightElem>(fma: bool, w: &[W], x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if fma {
        // SAFETY: AVX2 and FMA are present (checked at run time by the caller's flag).
        return unsafe { dot_fma(w, x) };
    }
    let _ = fma;
    let mut acc = [0.0f32; 8];
    let (cw, cx) = (w.chunks_exact(8), x.chunks_exact(8));
    let tail: f32 = cw
        .remainder()
        .iter()
        .zip(cx.remainder())
        .map(|(a, b)| a.widen() * b)
        .sum();
    for (a, b) in cw.zip(cx) {
        for l in 0..8 {
            acc[l] += a[l].widen() * b[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_fma<W: WeightElem>(w: &[W], x: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = w.len().min(x.len());
    let mut acc = [_mm256_setzero_ps(); 4];
    // SAFETY: both slices hold `n` elements; AVX2 and FMA (this function's features).
    let mut i = unsafe { accumulate32(w.as_ptr(), x.as_ptr(), n, &mut acc) };
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    // SAFETY: `__m256` and `[f32; 8]` have the same size, and every bit pattern is a valid f32.
    let lanes: [f32; 8] = unsafe { std::mem::transmute(sum) };
    let mut total: f32 = lanes.iter().sum();
    while i < n {
        total += w[i].widen() * x[i];
        i += 1;
    }
    total
}

/// `acc[j] += w[i + 8j..][..8] · x[i + 8j..][..8]` lane-wise for i over the whole steps of 32
/// elements in `n`: four independent FMA chains, enough to cover their latency. Returns where
/// the steps stopped (`n / 32 · 32`).
///
/// # Safety
/// AVX2 and FMA present; `n` elements readable at `w` and at `x`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn accumulate32<W: WeightElem>(
    w: *const W,
    x: *const f32,
    n: usize,
    acc: &mut [std::arch::x86_64::__m256; 4],
) -> usize {
    use std::arch::x86_64::*;
    let mut i = 0;
    while i + 32 <= n {
        // The step's 32 weights are one line of bf16, two of f32.
        for line in (0..32 * std::mem::size_of::<W>()).step_by(64) {
            prefetch_ahead((w as *const u8).wrapping_add(i * std::mem::size_of::<W>() + line));
        }
        for (j, s) in acc.iter_mut().enumerate() {
            // SAFETY: i + 8j + 8 <= n, inside both (the caller's contract).
            unsafe {
                let (a, b) = (
                    W::load8(w.add(i + 8 * j)),
                    _mm256_loadu_ps(x.add(i + 8 * j)),
                );
                *s = _mm256_fmadd_ps(a, b, *s);
            }
        }
        i += 32;
    }
    i
}

/// A weight element the GEMVs read: f32, or bf16 widened to f32 exactly (a bf16 is the top
/// half of an f32).
pub(crate) trait WeightElem: Copy + Sync {
    fn widen(self) -> f32;
    /// Eight elements from `p`, widened.
    ///
    /// # Safety
    /// AVX2 present; eight elements readable at `p`.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256;
}

impl WeightElem for f32 {
    #[inline(always)]
    fn widen(self) -> f32 {
        self
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const f32) -> std::arch::x86_64::__m256 {
        // SAFETY: the caller's contract.
        unsafe { std::arch::x86_64::_mm256_loadu_ps(p) }
    }
}

impl WeightElem for half::bf16 {
    #[inline(always)]
    fn widen(self) -> f32 {
        self.to_f32()
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const half::bf16) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        // SAFETY: the caller's contract; eight bf16 are 128 bits. Zero-extend each to 32 bits
        // and shift it into the top half.
        unsafe {
            let raw = _mm_loadu_si128(p as *const __m128i);
            _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16))
        }
    }
}

/// An element of a cached key or value the attention kernels read: f32, or f16 / bf16 (a KV
/// cache kept in half precision, llama.cpp's default, half the bytes a decoded token reads),
/// widened to f32 as it is read.
pub trait KvElem: Copy + Send + Sync + 'static {
    /// Whether [`KvElem::load8`] needs F16C (besides AVX2).
    const NEEDS_F16C: bool = false;

    /// `src` as f32: `src` itself, or its values widened into `scratch` (exactly: every f16 and
    /// bf16 is an f32).
    fn as_f32<'s>(src: &'s [Self], scratch: &'s mut Vec<f32>) -> &'s [f32];

    /// Eight elements at `p`, widened in registers (the AVX2 decode attention).
    ///
    /// # Safety
    /// AVX2, and F16C where [`KvElem::NEEDS_F16C`], present; eight elements readable at `p`.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256;
}

impl KvElem for f32 {
    #[inline(always)]
    fn as_f32<'s>(src: &'s [f32], _: &'s mut Vec<f32>) -> &'s [f32] {
        src
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const f32) -> std::arch::x86_64::__m256 {
        // SAFETY: the caller's contract.
        unsafe { std::arch::x86_64::_mm256_loadu_ps(p) }
    }
}

impl KvElem for half::bf16 {
    fn as_f32<'s>(src: &'s [half::bf16], scratch: &'s mut Vec<f32>) -> &'s [f32] {
        scratch.clear();
        // A bf16 is the top half of an f32: a shift the compiler vectorises.
        scratch.extend(
            src.iter()
                .map(|x| f32::from_bits((x.to_bits() as u32) << 16)),
        );
        scratch
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const half::bf16) -> std::arch::x86_64::__m256 {
        // SAFETY: the caller's contract (the bf16 GEMV's widening load).
        unsafe { <half::bf16 as WeightElem>::load8(p) }
    }
}

impl KvElem for half::f16 {
    const NEEDS_F16C: bool = true;

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const half::f16) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        // SAFETY: the caller's contract; eight f16 are 128 bits.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
    }

    fn as_f32<'s>(src: &'s [half::f16], scratch: &'s mut Vec<f32>) -> &'s [f32] {
        scratch.clear();
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("f16c") {
            scratch.reserve(src.len());
            // SAFETY: F16C is present; `scratch` has room for `src.len()` values, all written
            // before the length is set.
            unsafe {
                widen_f16_f16c(src, scratch.spare_capacity_mut());
                scratch.set_len(src.len());
            }
            return scratch;
        }
        scratch.extend(src.iter().map(|x| x.to_f32()));
        scratch
    }
}

/// `dst[i] = src[i]` widened, eight at a time with F16C's `vcvtph2ps`.
///
/// # Safety
/// F16C present; `dst` at least as long as `src`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
unsafe fn widen_f16_f16c(src: &[half::f16], dst: &mut [std::mem::MaybeUninit<f32>]) {
    use std::arch::x86_64::*;
    let eight = src.len() / 8 * 8;
    for i in (0..eight).step_by(8) {
        // SAFETY: `i + 8 <= src.len() <= dst.len()`; unaligned loads and stores.
        unsafe {
            let h = _mm_loadu_si128(src.as_ptr().add(i) as *const __m128i);
            _mm256_storeu_ps(dst.as_mut_ptr().add(i) as *mut f32, _mm256_cvtph_ps(h));
        }
    }
    for (d, s) in dst[eight..src.len()].iter_mut().zip(&src[eight..]) {
        d.write(s.to_f32());
    }
}

/// `[Σ w_r,i x_i for r in 0..4]`: four consecutive rows of `w` (each `x.len()` long) against one
/// `x`, the four rows' lane sums reduced together at the end (one horizontal fold instead of
/// four): the decode GEMVs' inner loop, where rows are short (256 at hidden 256) and a fold per
/// row cost about as much as the row's products. Sums in the order of [`dot`]'s (four lane-wise
/// accumulators over 32-element steps) up to the last eight-element steps and the fold.
pub(crate) fn dot4<W: WeightElem>(fma: bool, w: &[W], x: &[f32]) -> [f32; 4] {
    let k = x.len();
    assert!(
        w.len() >= 4 * k,
        "dot4: four rows of {k} need {} weights",
        4 * k
    );
    #[cfg(target_arch = "x86_64")]
    if fma {
        // SAFETY: AVX2 and FMA are present (the caller's flag); `w` holds four rows of `k`.
        return unsafe { dot4_fma(w, x) };
    }
    let _ = fma;
    std::array::from_fn(|r| dot_row(false, &w[r * k..(r + 1) * k], x))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot4_fma<W: WeightElem>(w: &[W], x: &[f32]) -> [f32; 4] {
    use std::arch::x86_64::*;
    let k = x.len();
    let (xp, wp) = (x.as_ptr(), w.as_ptr());
    // The rows one after another (one sequential stream through memory, which the hardware
    // prefetchers follow; four rows side by side were four short streams and ran slower from
    // memory), each through `dot_fma`'s accumulation, then its eight-element steps.
    let mut s = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    for (r, sum) in s.iter_mut().enumerate() {
        // SAFETY: rows r < 4 of `k` elements are inside `w` (checked by `dot4`).
        let row = unsafe { wp.add(r * k) };
        let mut acc = [_mm256_setzero_ps(); 4];
        // SAFETY: the row and `x` hold `k` elements; AVX2 and FMA (this function's features).
        i = unsafe { accumulate32(row, xp, k, &mut acc) };
        while i + 8 <= k {
            // SAFETY: i + 8 <= k: inside the row and inside `x`.
            let (wv, xv) = unsafe { (W::load8(row.add(i)), _mm256_loadu_ps(xp.add(i))) };
            acc[0] = _mm256_fmadd_ps(wv, xv, acc[0]);
            i += 8;
        }
        *sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    }
    // hadd(hadd(s0, s1), hadd(s2, s3)) holds, per 128-bit half, one partial sum of each row in
    // order; adding the halves gives the four totals.
    let h = _mm256_hadd_ps(_mm256_hadd_ps(s[0], s[1]), _mm256_hadd_ps(s[2], s[3]));
    let sums = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    // SAFETY: `__m128` and `[f32; 4]` have the same size, and every bit pattern is a valid f32.
    let mut out: [f32; 4] = unsafe { std::mem::transmute(sums) };
    for (r, o) in out.iter_mut().enumerate() {
        let row = &w[r * k..(r + 1) * k];
        *o += row[i..]
            .iter()
            .zip(&x[i..])
            .map(|(a, b)| a.widen() * b)
            .sum::<f32>();
    }
    out
}

/// A raw pointer that worker threads may share, each writing a disjoint part of the buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SharedMut<T>(pub(crate) *mut T);
impl<T> SharedMut<T> {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper, not its field).
    pub(crate) fn ptr(&self) -> *mut T {
        self.0
    }
}

// SAFETY: users guarantee that threads write disjoint elements and that the buffer outlives them.
unsafe impl<T: Send> Send for SharedMut<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for SharedMut<T> {}

/// The elements a contiguous candle layout covers in its storage; an error naming the kernel and
/// argument otherwise.
pub(crate) fn contiguous<'a, T>(
    data: &'a [T],
    layout: &candle_core::Layout,
    kernel: &str,
    arg: &str,
) -> candle_core::Result<&'a [T]> {
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{kernel}: `{arg}` is not contiguous")))?;
    Ok(&data[start..end])
}

/// Calls `f` with the f32 elements of a contiguous CPU tensor, without copying; `None` for other
/// dtypes, devices or layouts.
pub fn with_cpu_f32<R>(t: &candle_core::Tensor, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    let (storage, layout) = t.storage_and_layout();
    let (start, end) = layout.contiguous_offsets()?;
    match &*storage {
        candle_core::Storage::Cpu(candle_core::CpuStorage::F32(data)) => Some(f(&data[start..end])),
        _ => None,
    }
}

/// As [`with_cpu_f32`] for several tensors at once: `f` gets their elements in order.
pub fn with_cpu_f32s<R>(
    tensors: &[&candle_core::Tensor],
    f: impl FnOnce(&[&[f32]]) -> R,
) -> Option<R> {
    let guards: Vec<_> = tensors.iter().map(|t| t.storage_and_layout()).collect();
    let mut slices = Vec::with_capacity(guards.len());
    for (storage, layout) in &guards {
        let (start, end) = layout.contiguous_offsets()?;
        match &**storage {
            candle_core::Storage::Cpu(candle_core::CpuStorage::F32(data)) => {
                slices.push(&data[start..end])
            }
            _ => return None,
        }
    }
    Some(f(&slices))
}

/// `v` with transparent huge pages asked for its (untouched, freshly mapped) memory: filling a
/// large buffer then takes one page fault per 2 MiB instead of per 4 KiB, and the matmuls that
/// stream it later miss the TLB less. Only a hint (Linux's `madvise` mode of THP); elsewhere, or
/// for buffers under a few huge pages, nothing is done.
pub fn huge_pages<T>(v: Vec<T>) -> Vec<T> {
    let bytes = std::mem::size_of_val(v.as_slice());
    if bytes >= 4 * crate::huge_bytes::HUGE_PAGE {
        // `v` is not touched concurrently, and the advice never changes its contents.
        crate::huge_bytes::advise_huge_pages(v.as_ptr() as usize, bytes);
    }
    v
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{dot4, fma_available};

    /// Four rows at once, with and without AVX2+FMA, against an f64 sum: row lengths with 32-,
    /// 8- and 1-element steps left over; f32 and bf16 weights.
    #[test]
    fn four_rows_match_f64_sums_on_both_paths() {
        let fmas = if fma_available() {
            vec![false, true]
        } else {
            vec![false]
        };
        for k in [1, 7, 8, 9, 31, 32, 33, 40, 255, 256, 263, 768] {
            let x: Vec<f32> = (0..k)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect();
            let w: Vec<f32> = (0..4 * k)
                .map(|i| ((i * 53 % 97) as f32 - 48.0) / 24.0)
                .collect();
            let wb: Vec<half::bf16> = w.iter().map(|&v| half::bf16::from_f32(v)).collect();
            let want = |wide: &[f32]| -> Vec<f64> {
                (0..4)
                    .map(|r| {
                        (0..k)
                            .map(|i| f64::from(wide[r * k + i]) * f64::from(x[i]))
                            .sum()
                    })
                    .collect()
            };
            let wide: Vec<f32> = wb.iter().map(|v| v.to_f32()).collect();
            for &fma in &fmas {
                for (got, want) in [
                    (dot4(fma, &w, &x), want(&w)),
                    (dot4(fma, &wb, &x), want(&wide)),
                ] {
                    for (g, w) in got.iter().zip(&want) {
                        assert!(
                            (f64::from(*g) - w).abs() <= 1e-5 * (1.0 + w.abs()),
                            "k {k}, fma {fma}: {g} vs {w}"
                        );
                    }
                }
            }
        }
    }
}
