//! An exact output head in 12 bits per weight: a decoder's vocabulary-sized last GEMV over bf16
//! weights (BitNet 2B4T's tied embedding, 128256 × 2560, is most of a decode step's bytes),
//! stored losslessly in three quarters of bf16's bytes.
//!
//! A bf16 value is a high byte (sign and the top seven exponent bits) and a low byte (the last
//! exponent bit and seven mantissa bits). The low bytes look random and are kept as they are; the
//! high bytes take few values, because the weights of a row span a few binades. So per row:
//! - a table of up to 16 high bytes (the row's commonest), and per weight a 4-bit code into it;
//! - when a row has more than 16 distinct high bytes, its table holds the 15 commonest and code
//!   15 marks an *exception*: the weight is stored as (column, bf16) in a per-row list and its
//!   slot decodes to +0, so the vector loop adds nothing for it and the list adds it back.
//!
//! Every weight decodes to exactly its bf16 bits ([`CompactBf16Matrix::value`]), and the GEMV is
//! f32 arithmetic on those values: the logits are the bf16 head's up to the order of the f32
//! sums. Bytes per weight: 1.5, plus 24 bytes per row (its table and where its exceptions start)
//! and 8 per exception (on random N(0, 0.02) rows of 2560, about 0.001% of weights; none on rows
//! spanning fewer binades).
//!
//! Layout: per row, per chunk of [`CHUNK`] = 32 weights, [`CHUNK_BYTES`] = 48 bytes: the 32 low
//! bytes, then 16 code bytes, byte `j` holding weight `j`'s code in its low nibble and weight
//! `16 + j`'s in its high nibble. One stream per row: a first layout with the low bytes and the
//! codes in two arrays made the GEMV 25% slower than bf16's inside the model, where its loads of
//! the second stream stalled. On AVX2, one 16-byte load, a shift and a mask give the chunk's 32
//! codes, one `pshufb` against the row's table their high bytes, and two byte and four word
//! interleaves the 32 f32 values (a bf16 widens to f32 by a 16-bit shift), in an order the
//! activations are permuted to once per call. With AVX-512 VBMI, two masked byte permutes
//! (`vpermb`) build the 32 f32 values from the low and high bytes side by side, in the weights'
//! own order. Whole rows also decode to f32
//! ([`CompactBf16Matrix::decode_rows`]): a tied embedding's lookups read them, and a product of
//! many inputs ([`CompactBf16Matrix::matmul`], a prompt's logits) decodes blocks of rows for gemm.
use rayon::prelude::*;

use crate::error::{check_len, KernelError, Result};

/// Weights per chunk.
pub const CHUNK: usize = 32;
/// Bytes per chunk: 32 low bytes and 16 of codes.
pub const CHUNK_BYTES: usize = 48;
const KERNEL: &str = "compact_head";
/// The code of an exception in a row that has them.
const ESCAPE: u8 = 15;

/// A `[rows, cols]` bf16 matrix in the lossless 12-bit format above.
#[derive(Debug, Clone)]
pub struct CompactBf16Matrix {
    rows: usize,
    cols: usize,
    /// `[rows, cols / 32, 48]`: per chunk, the low bytes (0 for an exception), then the 4-bit
    /// codes two per byte in the order above.
    chunks: crate::huge_bytes::HugeBytes,
    /// `[rows]` high-byte tables.
    tables: Vec<[u8; 16]>,
    /// `[rows + 1]`: row `r`'s exceptions are `exceptions[starts[r]..starts[r + 1]]`.
    starts: Vec<usize>,
    /// `(column, value)` of each exception, by row, then column.
    exceptions: Vec<(u32, half::bf16)>,
}

/// One row of activations, permuted to the order the AVX2 loop decodes weights in.
#[derive(Debug, Clone)]
pub struct PermutedInput {
    /// `x` as given (the exceptions and the portable path read it).
    x: Vec<f32>,
    /// Per chunk, four vectors of eight: vector `i` holds `x[4i..4i + 4]` then
    /// `x[16 + 4i..16 + 4i + 4]` (of the chunk).
    permuted: Vec<f32>,
}

impl CompactBf16Matrix {
    /// Encodes `w` (`[rows, cols]` bf16, row-major). `cols` must be a positive multiple of
    /// [`CHUNK`].
    pub fn encode(w: &[half::bf16], rows: usize, cols: usize) -> Result<Self> {
        let shape = format!("[{rows}, {cols}]");
        check_len(KERNEL, "w", w.len(), rows * cols, &shape)?;
        if cols == 0 || !cols.is_multiple_of(CHUNK) {
            return Err(KernelError::Invalid {
                kernel: KERNEL,
                arg: "w",
                message: format!(
                    "{cols} columns: the compact head needs a positive multiple of {CHUNK}"
                ),
            });
        }
        let row_bytes = cols / CHUNK * CHUNK_BYTES;
        let mut chunks = crate::huge_bytes::HugeBytes::zeroed(rows * row_bytes);
        let mut tables = vec![[0u8; 16]; rows];
        let mut row_exceptions: Vec<Vec<(u32, half::bf16)>> = vec![Vec::new(); rows];
        chunks
            .par_chunks_mut(row_bytes)
            .zip(tables.par_iter_mut())
            .zip(row_exceptions.par_iter_mut())
            .zip(w.par_chunks(cols))
            .for_each(|(((out, table), exceptions), row)| {
                encode_row(row, out, table, exceptions);
            });
        let mut starts = Vec::with_capacity(rows + 1);
        starts.push(0);
        let mut exceptions = Vec::new();
        for e in row_exceptions {
            exceptions.extend(e);
            starts.push(exceptions.len());
        }
        Ok(CompactBf16Matrix {
            rows,
            cols,
            chunks,
            tables,
            starts,
            exceptions,
        })
    }

    /// [`CompactBf16Matrix::encode`] of a `[rows, cols]` tensor on the CPU holding bf16 values:
    /// a bf16 tensor, or an f32 one whose every value is a bf16 (else an error: the format is
    /// lossless only for those). Other devices are an error naming theirs.
    pub fn from_tensor(w: &candle_core::Tensor) -> candle_core::Result<Self> {
        use candle_core::DType;
        if !w.device().is_cpu() {
            return Err(crate::op::unsupported(KERNEL, w.device(), w.dtype()));
        }
        let (rows, cols) = w.dims2()?;
        let values: Vec<half::bf16> = match w.dtype() {
            DType::BF16 => w.flatten_all()?.to_vec1()?,
            DType::F32 => {
                let f: Vec<f32> = w.flatten_all()?.to_vec1()?;
                if let Some(i) = f.iter().position(|v| v.to_bits() & 0xffff != 0) {
                    return Err(crate::op::wrap(KernelError::Invalid {
                        kernel: KERNEL,
                        arg: "w",
                        message: format!(
                            "value {} at index {i} is not a bf16: the compact head stores bf16 \
                             weights losslessly, and only those",
                            f[i]
                        ),
                    }));
                }
                f.into_iter().map(half::bf16::from_f32).collect()
            }
            other => return Err(crate::op::unsupported(KERNEL, w.device(), other)),
        };
        Self::encode(&values, rows, cols).map_err(crate::op::wrap)
    }

    /// Whether a model holds `w` in this form by default: a bf16 `[rows, cols]` matrix on the CPU
    /// (the form's only device) with `cols` a positive multiple of [`CHUNK`]. An f32 tensor of
    /// bf16 values qualifies only when asked for ([`CompactBf16Matrix::from_tensor`] takes it):
    /// finding out reads every value.
    pub fn suits(w: &candle_core::Tensor) -> bool {
        w.device().is_cpu()
            && w.dtype() == candle_core::DType::BF16
            && w.dims2()
                .is_ok_and(|(_, cols)| cols > 0 && cols.is_multiple_of(CHUNK))
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes held: low bytes, codes, tables and exceptions with their row starts.
    pub fn bytes(&self) -> usize {
        self.chunks.len()
            + 16 * self.tables.len()
            + std::mem::size_of::<usize>() * self.starts.len()
            + std::mem::size_of::<(u32, half::bf16)>() * self.exceptions.len()
    }

    /// Weights stored as exceptions.
    pub fn exception_count(&self) -> usize {
        self.exceptions.len()
    }

    /// The bf16 stored for (row, col): exactly the value encoded. Callers keep `row < rows` and
    /// `col < cols`.
    pub fn value(&self, row: usize, col: usize) -> half::bf16 {
        let code = self.code(row, col);
        let exceptions = self.row_exceptions(row);
        if code == ESCAPE && !exceptions.is_empty() {
            if let Ok(i) = exceptions.binary_search_by_key(&(col as u32), |e| e.0) {
                return exceptions[i].1;
            }
        }
        let high = self.tables[row][usize::from(code)];
        let (low, _) = chunk_parts(self.row(row), col);
        half::bf16::from_bits(u16::from(high) << 8 | u16::from(low))
    }

    fn code(&self, row: usize, col: usize) -> u8 {
        chunk_parts(self.row(row), col).1
    }

    /// Row `row`'s chunks.
    fn row(&self, row: usize) -> &[u8] {
        let row_bytes = self.cols / CHUNK * CHUNK_BYTES;
        &self.chunks[row * row_bytes..][..row_bytes]
    }

    fn row_exceptions(&self, row: usize) -> &[(u32, half::bf16)] {
        &self.exceptions[self.starts[row]..self.starts[row + 1]]
    }

    /// One row of activations (`cols` values) for [`CompactBf16Matrix::gemv`].
    pub fn permute_input(&self, x: &[f32]) -> Result<PermutedInput> {
        check_len(KERNEL, "x", x.len(), self.cols, &format!("[{}]", self.cols))?;
        let mut permuted = Vec::with_capacity(self.cols);
        for chunk in x.chunks_exact(CHUNK) {
            for i in 0..4 {
                permuted.extend_from_slice(&chunk[4 * i..4 * i + 4]);
                permuted.extend_from_slice(&chunk[16 + 4 * i..16 + 4 * i + 4]);
            }
        }
        Ok(PermutedInput {
            x: x.to_vec(),
            permuted,
        })
    }

    /// `y [m, rows] = x [m, cols] · selfᵀ`: threaded over output rows, AVX2 where the CPU has it.
    pub fn gemv(&self, x: &[f32], m: usize) -> Result<Vec<f32>> {
        let shape = format!("[m {m}, rows {}, cols {}]", self.rows, self.cols);
        check_len(KERNEL, "x", x.len(), m * self.cols, &shape)?;
        let inputs = (0..m)
            .map(|t| self.permute_input(&x[t * self.cols..(t + 1) * self.cols]))
            .collect::<Result<Vec<_>>>()?;
        let form = Form::best();
        Ok(crate::cpu_linear::rows_times_inputs(
            self.rows,
            &inputs,
            true,
            |row, input| self.row_dot(form, row, input),
        ))
    }

    /// Rows `first..first + out.len() / cols` decoded exactly to f32 (a bf16 widens to the f32
    /// whose top half it is), row after row into `out`: the embedding lookups, and the blocks of
    /// [`CompactBf16Matrix::matmul`].
    pub fn decode_rows(&self, first: usize, out: &mut [f32]) -> Result<()> {
        let count = out.len() / self.cols;
        let shape = format!("[{}, {}]", self.rows, self.cols);
        if out.len() != count * self.cols || first + count > self.rows {
            return Err(KernelError::Invalid {
                kernel: KERNEL,
                arg: "out",
                message: format!(
                    "{} values are not whole rows of {shape} from row {first}",
                    out.len()
                ),
            });
        }
        let decode = |(i, row): (usize, &mut [f32])| {
            let r = first + i;
            decode_row(self.row(r), &self.tables[r], row);
            for &(col, v) in self.row_exceptions(r) {
                row[col as usize] = v.to_f32();
            }
        };
        if out.len() >= crate::cpu_linear::PARALLEL_MIN_WEIGHTS {
            out.par_chunks_mut(self.cols).enumerate().for_each(decode);
        } else {
            out.chunks_mut(self.cols).enumerate().for_each(decode);
        }
        Ok(())
    }

    /// `y [m, rows] = x [m, cols] · selfᵀ` for any `m`: [`CompactBf16Matrix::gemv`] up to
    /// [`crate::cpu_linear::GEMV_MAX_ROWS`] inputs (decoding), else blocks of rows decoded to f32
    /// and multiplied by gemm (prefill logits: the decode is paid once per block, not per input).
    pub fn matmul(&self, x: &[f32], m: usize) -> Result<Vec<f32>> {
        if m <= crate::cpu_linear::GEMV_MAX_ROWS {
            return self.gemv(x, m);
        }
        let shape = format!("[m {m}, rows {}, cols {}]", self.rows, self.cols);
        check_len(KERNEL, "x", x.len(), m * self.cols, &shape)?;
        let mut y = vec![0.0f32; m * self.rows];
        let block_rows =
            (crate::cpu_linear::WIDEN_BLOCK_VALUES / self.cols).clamp(1, self.rows.max(1));
        let mut block = Vec::new();
        for first in (0..self.rows).step_by(block_rows) {
            let rows = block_rows.min(self.rows - first);
            block.resize(rows * self.cols, 0.0);
            self.decode_rows(first, &mut block)?;
            crate::cpu_linear::gemm_into(&mut y, first, x, m, &block, rows, self.cols, false);
        }
        Ok(y)
    }

    /// `x [.., cols]` (any float dtype, on the CPU) times the matrix: `[.., rows]` in f32.
    pub fn forward(&self, x: &candle_core::Tensor) -> candle_core::Result<candle_core::Tensor> {
        crate::op::host_gemv_forward(KERNEL, x, (self.rows, self.cols), |v, m| self.matmul(v, m))
    }

    fn row_dot(&self, form: Form, row: usize, input: &PermutedInput) -> f32 {
        let chunks = self.row(row);
        let table = &self.tables[row];
        let body = match form {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX-512 F/BW/VBMI are present (`Form::best` or the tests checked);
            // `chunks` holds whole chunks and `x` has `cols` values.
            Form::Avx512Vbmi => unsafe { row_dot_vbmi(chunks, table, &input.x) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX2 and FMA are present (`Form::best` or the tests checked); `chunks`
            // holds whole chunks and `permuted` has `cols` values.
            Form::Avx2 => unsafe { row_dot_avx2(chunks, table, &input.permuted) },
            _ => row_dot_portable(chunks, table, &input.x),
        };
        body + exceptions_dot(self.row_exceptions(row), &input.x)
    }
}

/// The forms of the GEMV's row loop, best last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Portable,
    /// The module docs' loop: eight byte and word interleaves a chunk, on permuted activations.
    Avx2,
    /// AVX-512 with VBMI: a chunk's low bytes and high bytes (from the table, as on AVX2) side
    /// by side in one vector, and two byte permutes (`vpermb`, zeroing the two low bytes of each
    /// dword) make its 32 f32 values in the weights' own order: four shuffles a chunk where AVX2
    /// takes eight, which bounded the AVX2 loop below the memory's pace on the Intel Xeon VM of
    /// the README.
    Avx512Vbmi,
}

impl Form {
    /// What this CPU runs (the feature checks are cached by the standard library).
    fn best() -> Form {
        #[cfg(target_arch = "x86_64")]
        {
            if crate::cpu::avx512_allowed()
                && std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vbmi")
            {
                return Form::Avx512Vbmi;
            }
            if crate::cpu::fma_available() {
                return Form::Avx2;
            }
        }
        Form::Portable
    }

    /// Every form this CPU runs, the portable one first (the tests run each).
    #[cfg(test)]
    fn available() -> Vec<Form> {
        let mut out = vec![Form::Portable];
        if crate::cpu::fma_available() {
            out.push(Form::Avx2);
        }
        if Form::best() == Form::Avx512Vbmi {
            out.push(Form::Avx512Vbmi);
        }
        out
    }
}

/// The low byte and the code of weight `col` in a row's chunks.
fn chunk_parts(chunks: &[u8], col: usize) -> (u8, u8) {
    let (chunk, j) = (col / CHUNK, col % CHUNK);
    let bytes = &chunks[chunk * CHUNK_BYTES..][..CHUNK_BYTES];
    (bytes[j], (bytes[CHUNK + j % 16] >> (4 * (j / 16))) & 0x0f)
}

/// Chooses the row's table, writes its chunks (low bytes and codes), and lists its exceptions.
fn encode_row(
    row: &[half::bf16],
    out: &mut [u8],
    table: &mut [u8; 16],
    exceptions: &mut Vec<(u32, half::bf16)>,
) {
    let mut counts = [0usize; 256];
    for v in row {
        counts[usize::from(v.to_bits() >> 8)] += 1;
    }
    let mut used: Vec<u8> = (0..=255u8)
        .filter(|&h| counts[usize::from(h)] > 0)
        .collect();
    // Commonest first (ties by value, so the encoding is deterministic).
    used.sort_by_key(|&h| (std::cmp::Reverse(counts[usize::from(h)]), h));
    let slots = if used.len() > 16 { 15 } else { 16 };
    let mut code_of = [ESCAPE; 256];
    *table = [0; 16];
    for (code, &h) in used.iter().take(slots).enumerate() {
        table[code] = h;
        code_of[usize::from(h)] = code as u8;
    }
    let has_exceptions = used.len() > 16;
    for (col, v) in row.iter().enumerate() {
        let bits = v.to_bits();
        let mut code = code_of[usize::from(bits >> 8)];
        let mut byte = bits as u8;
        if has_exceptions && code == ESCAPE {
            // Decodes to +0 (table[15] = 0, low byte 0); the list carries the value.
            code = ESCAPE;
            byte = 0;
            exceptions.push((col as u32, *v));
        }
        let (chunk, j) = (col / CHUNK, col % CHUNK);
        let bytes = &mut out[chunk * CHUNK_BYTES..][..CHUNK_BYTES];
        bytes[j] = byte;
        let slot = &mut bytes[CHUNK + j % 16];
        let shift = 4 * (j / 16);
        *slot = (*slot & !(0x0f << shift)) | (code << shift);
    }
}

/// A row's chunks decoded in column order (exceptions as +0: the caller writes them after).
fn decode_row(chunks: &[u8], table: &[u8; 16], out: &mut [f32]) {
    for (bytes, out) in chunks
        .chunks_exact(CHUNK_BYTES)
        .zip(out.chunks_exact_mut(CHUNK))
    {
        let (lows, codes) = bytes.split_at(CHUNK);
        for (j, o) in out.iter_mut().enumerate() {
            let code = (codes[j % 16] >> (4 * (j / 16))) & 0x0f;
            let high = table[usize::from(code)];
            *o = f32::from_bits((u32::from(high) << 24) | (u32::from(lows[j]) << 16));
        }
    }
}

/// `Σ w·x` over a row's exceptions.
fn exceptions_dot(exceptions: &[(u32, half::bf16)], x: &[f32]) -> f32 {
    exceptions
        .iter()
        .map(|&(col, v)| v.to_f32() * x[col as usize])
        .sum()
}

/// The plain form: every weight decoded (exceptions as +0), in column order.
fn row_dot_portable(chunks: &[u8], table: &[u8; 16], x: &[f32]) -> f32 {
    let mut total = 0.0f32;
    for (col, &xv) in x.iter().enumerate() {
        let (l, code) = chunk_parts(chunks, col);
        let bits = u32::from(table[usize::from(code)]) << 24 | u32::from(l) << 16;
        total += f32::from_bits(bits) * xv;
    }
    total
}

/// The AVX2 loop of the module docs: 32 weights a step, four f32 accumulators.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn row_dot_avx2(bytes: &[u8], table: &[u8; 16], permuted: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let chunks = bytes.len() / CHUNK_BYTES;
    assert!(permuted.len() >= chunks * CHUNK);
    // SAFETY: every load below is inside the slices (asserted above), unaligned; the rest is
    // register arithmetic.
    unsafe {
        let lut = _mm256_broadcastsi128_si256(_mm_loadu_si128(table.as_ptr() as *const __m128i));
        let nibble = _mm256_set1_epi8(0x0f);
        // Lane 0 keeps the low nibbles, lane 1 takes the high ones.
        let shifts = _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4);
        let zero = _mm256_setzero_si256();
        let mut acc = [_mm256_setzero_ps(); 4];
        for c in 0..chunks {
            let chunk = bytes.as_ptr().add(c * CHUNK_BYTES);
            crate::cpu::prefetch_ahead(chunk);
            let lows = _mm256_loadu_si256(chunk as *const __m256i);
            // The chunk's 16 code bytes in both lanes; lane 0 then holds the codes of weights
            // 0..16, lane 1 of 16..32 (as the low bytes).
            let packed =
                _mm256_broadcastsi128_si256(_mm_loadu_si128(chunk.add(CHUNK) as *const __m128i));
            let code = _mm256_and_si256(_mm256_srlv_epi32(packed, shifts), nibble);
            let highs = _mm256_shuffle_epi8(lut, code);
            // bf16 words (low byte, high byte): weights 0..8 | 16..24, and 8..16 | 24..32.
            let words = [
                _mm256_unpacklo_epi8(lows, highs),
                _mm256_unpackhi_epi8(lows, highs),
            ];
            let x = permuted.as_ptr().add(c * CHUNK);
            for (h, w) in words.into_iter().enumerate() {
                // A word in the top half of a zero dword is that bf16 as an f32.
                let a = _mm256_castsi256_ps(_mm256_unpacklo_epi16(zero, w));
                let b = _mm256_castsi256_ps(_mm256_unpackhi_epi16(zero, w));
                acc[2 * h] = _mm256_fmadd_ps(a, _mm256_loadu_ps(x.add(16 * h)), acc[2 * h]);
                acc[2 * h + 1] =
                    _mm256_fmadd_ps(b, _mm256_loadu_ps(x.add(16 * h + 8)), acc[2 * h + 1]);
            }
        }
        let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let lanes: [f32; 8] = std::mem::transmute(sum);
        lanes.iter().sum()
    }
}

/// The `vpermb` indices of [`row_dot_vbmi`], for weights `16h..16h + 16` of a chunk: byte
/// `4j + 2` of f32 lane `j` takes low byte `16h + j` (bytes 0..32 of the vector), byte `4j + 3`
/// high byte `16h + j` (bytes 32..64); bytes `4j` and `4j + 1` are zeroed by the mask.
#[cfg(target_arch = "x86_64")]
const VBMI_INDEX: [[u8; 64]; 2] = {
    let mut ix = [[0u8; 64]; 2];
    let mut h = 0;
    while h < 2 {
        let mut j = 0;
        while j < 16 {
            ix[h][4 * j + 2] = (16 * h + j) as u8;
            ix[h][4 * j + 3] = (32 + 16 * h + j) as u8;
            j += 1;
        }
        h += 1;
    }
    ix
};

/// The [`Form::Avx512Vbmi`] loop: two chunks a step into four accumulators, `x` in its own
/// order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx2,fma")]
unsafe fn row_dot_vbmi(bytes: &[u8], table: &[u8; 16], x: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let chunks = bytes.len() / CHUNK_BYTES;
    assert!(x.len() >= chunks * CHUNK);
    const TOP_HALVES: u64 = 0xcccc_cccc_cccc_cccc;
    let (ix0, ix1) = (&VBMI_INDEX[0], &VBMI_INDEX[1]);
    // SAFETY: every load below is inside the slices (asserted above) or the index arrays,
    // unaligned; the rest is register arithmetic.
    unsafe {
        let ix0 = _mm512_loadu_si512(ix0.as_ptr() as *const _);
        let ix1 = _mm512_loadu_si512(ix1.as_ptr() as *const _);
        let lut = _mm256_broadcastsi128_si256(_mm_loadu_si128(table.as_ptr() as *const __m128i));
        let nibble = _mm256_set1_epi8(0x0f);
        // Lane 0 keeps the low nibbles (weights 0..16), lane 1 takes the high ones (16..32).
        let shifts = _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4);
        let mut acc = [_mm512_setzero_ps(); 4];
        // The 32 weights of chunk `c`, as two vectors of 16 f32 in order.
        let values = |c: usize| {
            let chunk = bytes.as_ptr().add(c * CHUNK_BYTES);
            crate::cpu::prefetch_ahead(chunk);
            let lows = _mm256_loadu_si256(chunk as *const __m256i);
            let packed =
                _mm256_broadcastsi128_si256(_mm_loadu_si128(chunk.add(CHUNK) as *const __m128i));
            let highs = _mm256_shuffle_epi8(
                lut,
                _mm256_and_si256(_mm256_srlv_epi32(packed, shifts), nibble),
            );
            let both = _mm512_inserti64x4(_mm512_castsi256_si512(lows), highs, 1);
            (
                _mm512_castsi512_ps(_mm512_maskz_permutexvar_epi8(TOP_HALVES, ix0, both)),
                _mm512_castsi512_ps(_mm512_maskz_permutexvar_epi8(TOP_HALVES, ix1, both)),
            )
        };
        let xp = x.as_ptr();
        for pair in 0..chunks / 2 {
            let c = 2 * pair;
            let (a, b) = values(c);
            let (d, e) = values(c + 1);
            acc[0] = _mm512_fmadd_ps(a, _mm512_loadu_ps(xp.add(c * CHUNK)), acc[0]);
            acc[1] = _mm512_fmadd_ps(b, _mm512_loadu_ps(xp.add(c * CHUNK + 16)), acc[1]);
            acc[2] = _mm512_fmadd_ps(d, _mm512_loadu_ps(xp.add(c * CHUNK + 32)), acc[2]);
            acc[3] = _mm512_fmadd_ps(e, _mm512_loadu_ps(xp.add(c * CHUNK + 48)), acc[3]);
        }
        if chunks % 2 == 1 {
            let c = chunks - 1;
            let (a, b) = values(c);
            acc[0] = _mm512_fmadd_ps(a, _mm512_loadu_ps(xp.add(c * CHUNK)), acc[0]);
            acc[1] = _mm512_fmadd_ps(b, _mm512_loadu_ps(xp.add(c * CHUNK + 16)), acc[1]);
        }
        _mm512_reduce_add_ps(_mm512_add_ps(
            _mm512_add_ps(acc[0], acc[1]),
            _mm512_add_ps(acc[2], acc[3]),
        ))
    }
}

/// The reference: every weight decoded through [`CompactBf16Matrix::value`] and multiplied in
/// f64.
pub fn compact_gemv_reference(w: &CompactBf16Matrix, x: &[f32], m: usize) -> Result<Vec<f32>> {
    let shape = format!("[m {m}, rows {}, cols {}]", w.rows, w.cols);
    check_len(KERNEL, "x", x.len(), m * w.cols, &shape)?;
    let mut y = Vec::with_capacity(m * w.rows);
    for xr in x.chunks(w.cols).take(m) {
        for row in 0..w.rows {
            let total: f64 = xr
                .iter()
                .enumerate()
                .map(|(col, &v)| f64::from(w.value(row, col).to_f32()) * f64::from(v))
                .sum();
            y.push(total as f32);
        }
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{CompactBf16Matrix, Form};

    /// Every form this CPU runs gives the portable one's sums (CPUs without AVX2 run only that),
    /// up to the order of f32 additions: one chunk, an odd and an even number of them, 2B4T's
    /// width, rows with exceptions.
    #[test]
    fn every_cpu_form_agrees_with_the_portable_one() {
        let forms = Form::available();
        if forms.len() == 1 {
            eprintln!("SKIPPED: no AVX2/FMA on this CPU, only the portable path runs");
            return;
        }
        eprintln!("forms compared: {forms:?}");
        for (rows, cols) in [(3, 32), (5, 96), (2, 128), (4, 2560)] {
            let w: Vec<half::bf16> = (0..rows * cols)
                .map(|i| {
                    let e = (i * 7 % 23) as i32 - 14;
                    let v = ((i * 37 % 101) as f32 - 50.0) / 50.0;
                    half::bf16::from_f32(v * 2f32.powi(e))
                })
                .collect();
            let x: Vec<f32> = (0..cols)
                .map(|i| ((i * 13 % 29) as f32 - 14.0) / 9.0)
                .collect();
            let c = CompactBf16Matrix::encode(&w, rows, cols).unwrap();
            assert!(c.exception_count() > 0, "the rows span 23 binades");
            let input = c.permute_input(&x).unwrap();
            for row in 0..rows {
                let a = c.row_dot(Form::Portable, row, &input);
                let magnitude: f32 = (0..cols)
                    .map(|k| (w[row * cols + k].to_f32() * x[k]).abs())
                    .sum();
                for &form in &forms[1..] {
                    let b = c.row_dot(form, row, &input);
                    assert!(
                        (a - b).abs() <= 1e-6 * magnitude,
                        "{form:?} [{rows}, {cols}] row {row}: {a} vs {b}"
                    );
                }
            }
        }
    }
}
