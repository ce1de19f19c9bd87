use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use std::time::Instant;
fn main() {
    let cfg = {
        let mut c = transformer::Config::dense(256, 4, 4, 2, 768, 4096);
        c.rope_theta = 10_000.0; c.rms_norm_eps = 1e-5; c
    };
    let map = VarMap::new();
    transformer::Transformer::new(&cfg, VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu)).unwrap();
    for var in map.all_vars() { var.set(&Tensor::randn(0f32, 0.02, var.shape(), &Device::Cpu).unwrap()).unwrap(); }
    let m = transformer::Transformer::new(&cfg, VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu)).unwrap();
    let ctx: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(256);
    let mode = std::env::args().nth(2).unwrap_or_default();
    let prompt: Vec<u32> = (0..ctx as u32).map(|i| 1 + i * 7 % 4000).collect();
    if mode == "decode" {
        let steps = 2000;
        let mut c = m.new_cache(1, ctx + steps + 1).unwrap();
        m.forward_last(&[&prompt], &mut c).unwrap();
        let t = Instant::now();
        for i in 0..steps { m.forward_last(&[[1 + (i as u32 * 31) % 1000]], &mut c).unwrap(); }
        let e = t.elapsed().as_secs_f64();
        println!("decode from {ctx}: {:.1} us/step", e / steps as f64 * 1e6);
        return;
    }
    let reps = 40;
    let t = Instant::now();
    for _ in 0..reps { let mut c = m.new_cache(1, ctx + 20).unwrap(); m.forward_last(&[&prompt], &mut c).unwrap(); }
    let e = t.elapsed().as_secs_f64() / reps as f64;
    println!("prefill {ctx}: {:.2} ms, {:.0} tok/s", e * 1e3, ctx as f64 / e);
}
