//! A minimal GGUF (version 3) writer for the side-by-side benchmark: a Llama-architecture model
//! with random weights and no tokenizer, at the shape of `frugal compare --size small`, so
//! llama.cpp's `llama-bench` runs the same work as our dense baseline.
//!
//! Layout (ggml's `docs/gguf.md`): magic `GGUF`, version, tensor and key counts; the key/value
//! metadata; one info record per tensor (name, dims innermost first, type, offset into the data);
//! padding to the alignment (32); the tensors' data, each padded to the alignment.
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};

/// The dense model's shape (`frugal compare --size small`'s baseline).
#[derive(Debug, Clone, Copy)]
pub struct Dense {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub ffn: usize,
    pub vocab: usize,
    pub context: usize,
    pub rms_eps: f32,
    pub rope_theta: f32,
}

pub const SMALL: Dense = Dense {
    hidden: 256,
    layers: 4,
    heads: 4,
    kv_heads: 2,
    ffn: 768,
    vocab: 4096,
    context: 4096,
    rms_eps: 1e-5,
    rope_theta: 10000.0,
};

/// The matrices' storage type (norms are always f32, as llama.cpp's converter writes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matrices {
    F32,
    F16,
}

const ALIGNMENT: usize = 32;

enum Value<'a> {
    U32(u32),
    F32(f32),
    Str(&'a str),
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn key_value(out: &mut Vec<u8>, key: &str, value: Value<'_>) {
    string(out, key);
    match value {
        Value::U32(v) => {
            out.extend_from_slice(&4u32.to_le_bytes());
            out.extend_from_slice(&v.to_le_bytes());
        }
        Value::F32(v) => {
            out.extend_from_slice(&6u32.to_le_bytes());
            out.extend_from_slice(&v.to_le_bytes());
        }
        Value::Str(v) => {
            out.extend_from_slice(&8u32.to_le_bytes());
            string(out, v);
        }
    }
}

/// Writes the dense model to `path` with pseudo-random weights (uniform, scaled by 1/sqrt(fan-in):
/// finite activations through the layers; the values do not matter to the speed).
pub fn write_dense(path: &Path, m: &Dense, matrices: Matrices) -> Result<()> {
    let head_dim = m.hidden / m.heads;
    let kv = head_dim * m.kv_heads;
    // (name, [rows, cols]) in the file's order; a 1-D tensor has rows = 1.
    let mut tensors: Vec<(String, [usize; 2])> =
        vec![("token_embd.weight".into(), [m.vocab, m.hidden])];
    for i in 0..m.layers {
        let p = format!("blk.{i}.");
        for (name, shape) in [
            ("attn_norm.weight", [1, m.hidden]),
            ("attn_q.weight", [m.hidden, m.hidden]),
            ("attn_k.weight", [kv, m.hidden]),
            ("attn_v.weight", [kv, m.hidden]),
            ("attn_output.weight", [m.hidden, m.hidden]),
            ("ffn_norm.weight", [1, m.hidden]),
            ("ffn_gate.weight", [m.ffn, m.hidden]),
            ("ffn_up.weight", [m.ffn, m.hidden]),
            ("ffn_down.weight", [m.hidden, m.ffn]),
        ] {
            tensors.push((format!("{p}{name}"), shape));
        }
    }
    tensors.push(("output_norm.weight".into(), [1, m.hidden]));
    tensors.push(("output.weight".into(), [m.vocab, m.hidden]));
    let is_norm = |shape: &[usize; 2]| shape[0] == 1;
    let element = |shape: &[usize; 2]| match (is_norm(shape), matrices) {
        (true, _) | (false, Matrices::F32) => (0u32, 4usize),
        (false, Matrices::F16) => (1u32, 2usize),
    };

    let mut head = Vec::new();
    head.extend_from_slice(b"GGUF");
    head.extend_from_slice(&3u32.to_le_bytes());
    head.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    let u = |v: usize| Value::U32(v as u32);
    let file_type = match matrices {
        Matrices::F32 => 0,
        Matrices::F16 => 1,
    };
    let kvs = [
        ("general.architecture", Value::Str("llama")),
        ("general.name", Value::Str("frugal-vs-llamacpp-dense")),
        ("general.file_type", Value::U32(file_type)),
        ("general.quantization_version", Value::U32(2)),
        ("llama.context_length", u(m.context)),
        ("llama.embedding_length", u(m.hidden)),
        ("llama.block_count", u(m.layers)),
        ("llama.feed_forward_length", u(m.ffn)),
        ("llama.attention.head_count", u(m.heads)),
        ("llama.attention.head_count_kv", u(m.kv_heads)),
        (
            "llama.attention.layer_norm_rms_epsilon",
            Value::F32(m.rms_eps),
        ),
        ("llama.rope.freq_base", Value::F32(m.rope_theta)),
        ("llama.rope.dimension_count", u(head_dim)),
        ("llama.vocab_size", u(m.vocab)),
        // No tokenizer: llama.cpp makes `vocab_size` placeholder tokens; llama-bench feeds ids.
        ("tokenizer.ggml.model", Value::Str("none")),
    ];
    head.extend_from_slice(&(kvs.len() as u64).to_le_bytes());
    for (key, value) in kvs {
        key_value(&mut head, key, value);
    }
    let mut offset = 0usize;
    for (name, shape) in &tensors {
        string(&mut head, name);
        let (ty, width) = element(shape);
        if is_norm(shape) {
            head.extend_from_slice(&1u32.to_le_bytes());
            head.extend_from_slice(&(shape[1] as u64).to_le_bytes());
        } else {
            // ggml lists dimensions innermost first: columns, then rows.
            head.extend_from_slice(&2u32.to_le_bytes());
            head.extend_from_slice(&(shape[1] as u64).to_le_bytes());
            head.extend_from_slice(&(shape[0] as u64).to_le_bytes());
        }
        head.extend_from_slice(&ty.to_le_bytes());
        head.extend_from_slice(&(offset as u64).to_le_bytes());
        offset = (offset + shape[0] * shape[1] * width).next_multiple_of(ALIGNMENT);
    }
    head.resize(head.len().next_multiple_of(ALIGNMENT), 0);

    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::new(file);
    out.write_all(&head)?;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for (_, shape) in &tensors {
        let n = shape[0] * shape[1];
        let (_, width) = element(shape);
        let bound = (3.0 / shape[1] as f32).sqrt();
        let mut bytes = Vec::with_capacity(n * width);
        for _ in 0..n {
            let v = if is_norm(shape) {
                1.0
            } else {
                // xorshift64*, top 24 bits to a uniform value in [-bound, bound).
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                let r =
                    (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32;
                (2.0 * r - 1.0) * bound
            };
            match width {
                4 => bytes.extend_from_slice(&v.to_le_bytes()),
                _ => bytes.extend_from_slice(&half::f16::from_f32(v).to_le_bytes()),
            }
        }
        bytes.resize(bytes.len().next_multiple_of(ALIGNMENT), 0);
        out.write_all(&bytes)?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The header reads back: magic, version, counts, the first key, and the file holds exactly
    /// the aligned header plus every tensor's aligned data.
    #[test]
    fn a_written_model_reads_back() {
        let m = Dense {
            hidden: 64,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            ffn: 96,
            vocab: 100,
            ..SMALL
        };
        for (matrices, width) in [(Matrices::F32, 4), (Matrices::F16, 2)] {
            let path =
                std::env::temp_dir().join(format!("gguf-{}-{width}.gguf", std::process::id()));
            write_dense(&path, &m, matrices).unwrap();
            let bytes = std::fs::read(&path).unwrap();
            std::fs::remove_file(&path).unwrap();
            let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap());
            assert_eq!(&bytes[..4], b"GGUF");
            assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), 3);
            let tensors = 1 + 9 * m.layers + 2;
            assert_eq!(u64_at(8) as usize, tensors);
            assert_eq!(u64_at(16), 15);
            assert_eq!(u64_at(24) as usize, "general.architecture".len());
            assert_eq!(&bytes[32..52], b"general.architecture");
            let kv = 16 * 2; // head_dim 16, two KV heads
            let matrices_len = m.vocab * m.hidden * 2
                + m.layers * (2 * m.hidden * m.hidden + 2 * kv * m.hidden + 3 * m.ffn * m.hidden);
            let norms = (2 * m.layers + 1) * m.hidden * 4;
            let data = matrices_len * width + norms;
            // Every tensor here is a multiple of 32 bytes, so the data has no padding.
            assert_eq!(bytes.len() % ALIGNMENT, 0);
            assert!(
                bytes.len() > data && bytes.len() - data < 8192,
                "{}",
                bytes.len()
            );
        }
    }
}
