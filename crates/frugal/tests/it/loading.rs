//! Loading a checkpoint of real width: RecurrentGemma-2B's layer widths (hidden 2560, 10 heads of
//! 256, MLP 7680 per branch, LRU 2560) for three layers (recurrent, recurrent, attention) in bf16,
//! written at test time (vocabulary cut to 32000 to keep the file near 0.6 GB). `frugal logits
//! --timings` loads it in f32 and in bf16; the load must stay within 2x one pass that reads the
//! file's bytes and writes the final weights' bytes, and the peak memory within 1.2x the final
//! weights plus the mapped file (a regression to an extra copy of the weights fails).
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

/// `FRUGAL_LOADING_FULL=1`: the whole RecurrentGemma-2B shape (26 layers, vocabulary 256000,
/// 2.68 B parameters, 5.4 GB of bf16), to measure by hand (about 16 GB of memory).
fn full() -> bool {
    std::env::var_os("FRUGAL_LOADING_FULL").is_some()
}

fn config_json() -> serde_json::Value {
    let (vocab, layers) = if full() { (256_000, 26) } else { (32_000, 3) };
    serde_json::json!({
        "model_type": "recurrent_gemma",
        "vocab_size": vocab,
        "hidden_size": 2560,
        "intermediate_size": 15360,
        "num_hidden_layers": layers,
        "num_attention_heads": 10,
        "num_key_value_heads": 1,
        "head_dim": 256,
        "lru_width": 2560,
        "attention_window_size": 2048,
        "conv1d_width": 4,
        "logits_soft_cap": 30.0,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "partial_rotary_factor": 0.5,
        "block_types": ["recurrent", "recurrent", "attention"],
        "hidden_activation": "gelu_pytorch_tanh"
    })
}

/// Records the name and shape of every tensor a model asks for, handing it zeros (lazily
/// allocated by the OS), so a checkpoint's layout is known without holding its weights.
struct Recorder(Arc<Mutex<Layout>>);

/// Tensor names and shapes.
type Layout = Vec<(String, Vec<usize>)>;

impl SimpleBackend for Recorder {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.0
            .lock()
            .unwrap()
            .push((name.to_string(), s.dims().to_vec()));
        Tensor::zeros(s, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("{name}: the recorder needs a shape")
    }

    /// Every tensor but the names only a checkpoint's backend knows (`layers::weights`'s
    /// `stacked_name` and `as_shipped_name`): the model then asks for the plain names.
    fn contains_tensor(&self, name: &str) -> bool {
        !name.ends_with(']') && !name.contains('@')
    }
}

/// Writes the checkpoint into `dir`, streaming small pseudo-random bf16 values tensor by tensor
/// (never the whole model in memory); returns the parameter count.
fn write_checkpoint(dir: &Path) -> usize {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), config_json().to_string()).unwrap();
    let cfg = griffin::Config::from_json(&config_json().to_string()).unwrap();
    let names = Arc::new(Mutex::new(Vec::new()));
    let backend: Box<dyn SimpleBackend> = Box::new(Recorder(names.clone()));
    drop(
        griffin::Model::new(
            &cfg,
            VarBuilder::from_backend(backend, DType::BF16, Device::Cpu),
        )
        .unwrap(),
    );
    let mut tensors = names.lock().unwrap().clone();
    tensors.sort();
    tensors.dedup();
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, shape) in &tensors {
        let bytes = 2 * shape.iter().product::<usize>();
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut text = serde_json::Value::Object(header).to_string();
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut out =
        std::io::BufWriter::new(std::fs::File::create(dir.join("model.safetensors")).unwrap());
    out.write_all(&(text.len() as u64).to_le_bytes()).unwrap();
    out.write_all(text.as_bytes()).unwrap();
    let mut params = 0;
    for (k, (_, shape)) in tensors.iter().enumerate() {
        let n: usize = shape.iter().product();
        params += n;
        let mut chunk = Vec::with_capacity(2 << 20);
        for i in 0..n {
            // A hash of (tensor, index) to a value in about ±0.02: finite through the layers.
            let h = ((k as u64) << 40 ^ i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
            let v = (h as f32 / (1u64 << 24) as f32 - 0.5) * 0.04;
            chunk.extend_from_slice(&half::bf16::from_f32(v).to_le_bytes());
            if chunk.len() >= 2 << 20 {
                out.write_all(&chunk).unwrap();
                chunk.clear();
            }
        }
        out.write_all(&chunk).unwrap();
    }
    out.flush().unwrap();
    params
}

/// Seconds of one pass over the mapped file that writes every tensor's values in `final_dtype`.
fn one_pass_secs(file: &Path, final_dtype: DType) -> f64 {
    // SAFETY: a file this test wrote, read-only, not modified while mapped.
    let st = unsafe { MmapedSafetensors::new(file) }.unwrap();
    let tensors = st.tensors();
    let best = (0..3)
        .map(|_| {
            let start = Instant::now();
            for (_, view) in &tensors {
                match final_dtype {
                    DType::F32 => {
                        std::hint::black_box(
                            layers::weights::to_f32(view.data(), DType::BF16).unwrap(),
                        );
                    }
                    _ => {
                        std::hint::black_box(view.data().to_vec());
                    }
                }
            }
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    best
}

/// `(load seconds, peak memory bytes)` from `frugal logits --timings`.
fn load(dir: &Path, dtype: &str) -> (f64, u64) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_frugal"))
        .args([
            "logits",
            "--model",
            dir.to_str().unwrap(),
            "--input-ids",
            "1,2,3",
        ])
        .args(["--dtype", dtype, "--timings"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let field = |key: &str| -> String {
        let rest = &err[err.find(key).unwrap_or_else(|| panic!("{key} in {err}")) + key.len()..];
        rest.split([' ', ';']).next().unwrap().to_string()
    };
    (
        field("load: ").parse().unwrap(),
        field("peak memory: ").parse().unwrap(),
    )
}

#[test]
fn a_2b_wide_checkpoint_loads_within_a_few_passes_over_its_bytes() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("loading-2b-wide");
    let params = write_checkpoint(&dir);
    let file = dir.join("model.safetensors");
    let file_bytes = std::fs::metadata(&file).unwrap().len() as f64;
    for (dtype, final_dtype, width) in [("f32", DType::F32, 4.0), ("bf16", DType::BF16, 2.0)] {
        let pass = one_pass_secs(&file, final_dtype);
        let limit = 2.0 * pass + 0.1;
        // The best of two loads, or of up to four while none is inside the limit: the other
        // tests running beside this one slowed a single load past it (0.68 s against 0.66 on a
        // 2-core VM, where the same load alone took 0.22 s). A load that makes an extra copy of
        // the weights costs about one more pass every time, so more tries do not hide it.
        let mut runs: Vec<(f64, u64)> = Vec::new();
        while runs.len() < 2 || (runs.len() < 4 && runs.iter().all(|r| r.0 > limit)) {
            runs.push(load(&dir, dtype));
        }
        let load_secs = runs.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
        let peak = runs.iter().map(|r| r.1).min().unwrap() as f64;
        let weights = params as f64 * width;
        println!(
            "{dtype}: {params} parameters, file {:.0} MB, weights {:.0} MB; load {load_secs:.3} s = {:.2}x one pass ({pass:.3} s); peak memory {:.0} MB = {:.2}x (weights + file)",
            file_bytes / 1e6,
            weights / 1e6,
            load_secs / pass,
            peak / 1e6,
            peak / (weights + file_bytes)
        );
        // The goals (2x one pass, 1.2x the weights plus the file) with room for this machine's
        // timing noise, the process's own startup and the run's activations. Loads measure about
        // 1x and 1.0x: an extra copy of the weights (about one more pass) fails.
        assert!(
            load_secs <= limit,
            "{dtype}: load {load_secs} s, one pass {pass} s ({} tries)",
            runs.len()
        );
        assert!(
            peak <= 1.2 * weights + file_bytes + 150e6,
            "{dtype}: peak {peak} bytes"
        );
    }
    // FRUGAL_KEEP_CHECKPOINT=1 keeps it, to profile a load by hand.
    if std::env::var_os("FRUGAL_KEEP_CHECKPOINT").is_none() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
