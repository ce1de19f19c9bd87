//! The linear layer every model uses: a drop-in for `candle_nn::Linear` whose decode steps take
//! the threaded GEMV of `kernels::cpu_linear::linear`.
use candle_core::{Module, Tensor};

/// `y = x · Wᵀ + b` with `W [out, in]`.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

/// A weight as the checkpoint shipped it: an f32 matrix on the CPU whose values are all bf16 (a
/// bf16 checkpoint loaded in f32) is kept in bf16, half the memory and half the bytes per decoded
/// token, and [`kernels::cpu_linear::linear`] widens it exactly inside its kernels. Anything else
/// stays as it is.
pub fn as_shipped(weight: Tensor) -> Tensor {
    kernels::cpu_linear::bf16_if_exact(weight.clone()).unwrap_or(weight)
}

/// `name` from `vb` as the checkpoint ships it: from frugal's loader a bf16 tensor asked for in
/// f32 comes in bf16 straight from the file (`crate::weights::as_shipped_name`); from any other
/// backend it is loaded as asked, then [`as_shipped`].
pub fn get_as_shipped(
    vb: &candle_nn::VarBuilder,
    shape: impl Into<candle_core::Shape>,
    name: &str,
) -> candle_core::Result<Tensor> {
    let marked = crate::weights::as_shipped_name(name);
    let t = if vb.contains_tensor(&marked) {
        vb.get(shape, &marked)?
    } else {
        vb.get(shape, name)?
    };
    Ok(as_shipped(t))
}

impl Linear {
    /// The layer `weight` `[out_dim, in_dim]` (and `bias` `[out_dim]` when asked for) under
    /// `vb`'s prefix, as candle_nn::linear loads it, with the weight as shipped
    /// ([`get_as_shipped`]).
    pub fn load(
        in_dim: usize,
        out_dim: usize,
        bias: bool,
        vb: &candle_nn::VarBuilder,
    ) -> candle_core::Result<Self> {
        Ok(Linear::new(
            get_as_shipped(vb, (out_dim, in_dim), "weight")?,
            bias.then(|| vb.get(out_dim, "bias")).transpose()?,
        ))
    }

    /// The layer over `weight` (kept in bf16 when its f32 values all are: [`as_shipped`]).
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Linear {
            weight: as_shipped(weight),
            bias,
        }
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// `forward(x) + residual` (a residual connection after the layer): for a prompt on an
    /// AVX-512 CPU the residual is added as the product's tiles are stored, otherwise by a second
    /// pass ([`kernels::cpu_linear::linear_add`]).
    pub fn forward_add(&self, x: &Tensor, residual: &Tensor) -> candle_core::Result<Tensor> {
        kernels::cpu_linear::linear_add(x, &self.weight, self.bias.as_ref(), residual)
    }

    /// `act(g) ⊙ u` for this layer's output `[g | u]` (a stacked gate and up projection), `[..,
    /// out / 2]`: for a prompt on an AVX-512 CPU taken as the product's tiles are stored, the
    /// stacked output never written ([`kernels::cpu_linear::linear_glu`]).
    pub fn forward_glu(
        &self,
        x: &Tensor,
        act: kernels::cpu_math::Glu,
    ) -> candle_core::Result<Tensor> {
        kernels::cpu_linear::linear_glu(x, &self.weight, self.bias.as_ref(), act)
    }

    /// One layer computing several that read the same input: their weights stacked along the
    /// output dimension (outputs in the order given), so one product (one pass over the input,
    /// one threaded GEMV when decoding) replaces several. All or none must have a bias.
    pub fn stacked(layers: &[candle_nn::Linear]) -> candle_core::Result<Self> {
        let weights: Vec<&Tensor> = layers.iter().map(|l| l.weight()).collect();
        let biases: Option<Vec<&Tensor>> = layers.iter().map(|l| l.bias()).collect();
        if biases.is_none() && layers.iter().any(|l| l.bias().is_some()) {
            candle_core::bail!("Linear::stacked: some layers have a bias and some do not");
        }
        Ok(Linear::new(
            Tensor::cat(&weights, 0)?,
            biases.map(|b| Tensor::cat(&b, 0)).transpose()?,
        ))
    }
}

impl Linear {
    /// [`Linear::stacked`] loaded from `vb`: the layers `parts` (`(name, output rows)`, each
    /// `name.weight` of shape `[rows, in_dim]`, with `name.bias` when `bias`), stacked in that
    /// order. From a checkpoint ([`crate::weights::CheckedSafetensors`]) each part's values are
    /// converted straight into their place in the stacked weight, so stacking copies nothing;
    /// any other backend loads the parts and concatenates them.
    pub fn load_stacked(
        in_dim: usize,
        parts: &[(&str, usize)],
        bias: bool,
        vb: &candle_nn::VarBuilder,
    ) -> candle_core::Result<Self> {
        let rows: usize = parts.iter().map(|p| p.1).sum();
        let names = |suffix: &str| -> Vec<(String, usize)> {
            parts
                .iter()
                .map(|&(name, rows)| (format!("{name}.{suffix}"), rows))
                .collect()
        };
        let stacked = |suffix: &str| {
            crate::weights::stacked_name(names(suffix).iter().map(|(n, r)| (n.as_str(), *r)))
        };
        let weight = stacked("weight");
        if vb.contains_tensor(&weight) && (!bias || vb.contains_tensor(&stacked("bias"))) {
            return Ok(Linear::new(
                vb.get((rows, in_dim), &crate::weights::as_shipped_name(&weight))?,
                bias.then(|| vb.get(rows, &stacked("bias"))).transpose()?,
            ));
        }
        let layers = parts
            .iter()
            .map(|&(name, rows)| {
                if bias {
                    candle_nn::linear(in_dim, rows, vb.pp(name))
                } else {
                    candle_nn::linear_no_bias(in_dim, rows, vb.pp(name))
                }
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Linear::stacked(&layers)
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        kernels::cpu_linear::linear(x, &self.weight, self.bias.as_ref())
    }
}

impl From<candle_nn::Linear> for Linear {
    fn from(l: candle_nn::Linear) -> Self {
        Linear::new(l.weight().clone(), l.bias().cloned())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::Linear;
    use candle_core::{Device, Module, Tensor};

    fn flat(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{x} vs {y}");
        }
    }

    #[test]
    fn forward_is_candles_linear_and_stacking_concatenates_outputs() {
        let dev = Device::Cpu;
        let lin = |out: usize, bias: bool| {
            let w = Tensor::randn(0f32, 1.0, (out, 33), &dev).unwrap();
            let b = bias.then(|| Tensor::randn(0f32, 1.0, out, &dev).unwrap());
            candle_nn::Linear::new(w, b)
        };
        let (a, b) = (lin(7, true), lin(70, true));
        for rows in [1, 3, 9] {
            let x = Tensor::randn(0f32, 1.0, (rows, 33), &dev).unwrap();
            close(
                &flat(&Linear::from(a.clone()).forward(&x).unwrap()),
                &flat(&a.forward(&x).unwrap()),
            );
            let both = Linear::stacked(&[a.clone(), b.clone()]).unwrap();
            let want = Tensor::cat(&[a.forward(&x).unwrap(), b.forward(&x).unwrap()], 1).unwrap();
            close(&flat(&both.forward(&x).unwrap()), &flat(&want));
        }
        assert!(Linear::stacked(&[a, lin(4, false)]).is_err());
    }

    /// f32 weights whose values are all bf16 are kept in bf16 (any other values stay f32), and
    /// the layer's products over them, GEMV (1 to 4 rows) and widened matmul (more rows, in one
    /// block or several), are candle's f32 products of the same values.
    #[test]
    fn bf16_valued_weights_are_kept_in_bf16_with_the_f32_products() {
        use candle_core::DType;
        let dev = Device::Cpu;
        for (out, inner) in [(7, 33), (300, 64), (1100, 600)] {
            let w = Tensor::randn(0f32, 1.0, (out, inner), &dev).unwrap();
            let w16 = w
                .to_dtype(DType::BF16)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap();
            let b = Tensor::randn(0f32, 1.0, out, &dev).unwrap();
            assert_eq!(Linear::new(w.clone(), None).weight().dtype(), DType::F32);
            let lin = Linear::new(w16.clone(), Some(b.clone()));
            assert_eq!(lin.weight().dtype(), DType::BF16);
            let want_layer = candle_nn::Linear::new(w16.clone(), Some(b.clone()));
            for dims in [
                vec![1, inner],
                vec![3, inner],
                vec![2, 9, inner],
                vec![40, inner],
            ] {
                let x = Tensor::randn(0f32, 1.0, dims.as_slice(), &dev).unwrap();
                let got = lin.forward(&x).unwrap();
                let want = want_layer.forward(&x).unwrap();
                assert_eq!(got.dims(), want.dims());
                let scale = (inner as f32).sqrt();
                for (g, w) in flat(&got).iter().zip(flat(&want)) {
                    assert!(
                        (g - w).abs() <= 1e-5 * scale * (1.0 + w.abs()),
                        "{g} vs {w}"
                    );
                }
            }
        }
    }

    /// `Linear::load` and `get_as_shipped`: from a checkpoint, a bf16 weight asked for in f32
    /// comes in bf16 with its exact values, f32 and f16 ones in f32; from another backend (a
    /// VarMap) the f32 weight is kept, narrowed only when its values are bf16.
    #[test]
    fn plain_loads_keep_the_shipped_dtype() {
        use candle_core::DType;
        use std::collections::HashMap;
        let dev = Device::Cpu;
        let dir = std::env::temp_dir().join(format!("layers-shipped-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (stored, kept) in [
            (DType::BF16, DType::BF16),
            (DType::F16, DType::F32),
            (DType::F32, DType::F32),
        ] {
            let w = Tensor::randn(0f32, 1.0, (6, 5), &dev)
                .unwrap()
                .to_dtype(stored)
                .unwrap();
            let b = Tensor::randn(0f32, 1.0, 6, &dev).unwrap();
            let tensors = HashMap::from([
                ("p.weight".to_string(), w.clone()),
                ("p.bias".to_string(), b.clone()),
            ]);
            let file = dir.join(format!("{stored:?}.safetensors"));
            candle_core::safetensors::save(&tensors, &file).unwrap();
            let vb =
                crate::weights::var_builder(std::slice::from_ref(&file), DType::F32, &dev).unwrap();
            let lin = Linear::load(5, 6, true, &vb.pp("p")).unwrap();
            assert_eq!(lin.weight().dtype(), kept, "{stored:?}");
            let as_f32 = |t: &Tensor| flat(&t.to_dtype(DType::F32).unwrap());
            assert_eq!(as_f32(lin.weight()), as_f32(&w), "{stored:?}");
            assert_eq!(flat(lin.bias().unwrap()), flat(&b));
            let err = Linear::load(4, 6, false, &vb.pp("p"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("p.weight"), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
        let map = candle_nn::VarMap::new();
        let vb = candle_nn::VarBuilder::from_varmap(&map, DType::F32, &dev);
        // A VarMap starts its variables at zero: values that are all bf16.
        let lin = Linear::load(5, 6, false, &vb.pp("q")).unwrap();
        assert_eq!(lin.weight().dtype(), DType::BF16);
        let noise = Tensor::randn(0f32, 1.0, (6, 5), &dev).unwrap();
        map.data().lock().unwrap()["q.weight"].set(&noise).unwrap();
        let lin = Linear::load(5, 6, false, &vb.pp("q")).unwrap();
        assert_eq!(lin.weight().dtype(), DType::F32);
    }

    /// A stacked layer loaded from a checkpoint (converted in place) is exactly the loaded
    /// parts concatenated, for each stored and final dtype; a misshapen or missing part is an
    /// error naming it.
    #[test]
    fn stacked_loading_equals_concatenating_the_loaded_parts() {
        use candle_core::DType;
        use std::collections::HashMap;
        let dev = Device::Cpu;
        let dir = std::env::temp_dir().join(format!("layers-stacked-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let t = |shape: &[usize]| Tensor::randn(0f32, 1.0, shape, &dev).unwrap();
        for stored in [DType::F32, DType::BF16, DType::F16] {
            let mut tensors = HashMap::new();
            for (name, rows) in [("a", 5usize), ("b", 70_001), ("c", 1)] {
                tensors.insert(
                    format!("m.{name}.weight"),
                    t(&[rows, 3]).to_dtype(stored).unwrap(),
                );
                tensors.insert(
                    format!("m.{name}.bias"),
                    t(&[rows]).to_dtype(stored).unwrap(),
                );
            }
            tensors.insert("m.bad.weight".into(), t(&[4, 2]).to_dtype(stored).unwrap());
            let file = dir.join(format!("{stored:?}.safetensors"));
            candle_core::safetensors::save(&tensors, &file).unwrap();
            for dtype in [DType::F32, DType::BF16, DType::F16] {
                let vb = crate::weights::var_builder(std::slice::from_ref(&file), dtype, &dev)
                    .unwrap()
                    .pp("m");
                let parts = [("a", 5), ("b", 70_001), ("c", 1)];
                for bias in [true, false] {
                    let got = Linear::load_stacked(3, &parts, bias, &vb).unwrap();
                    let want: Vec<candle_nn::Linear> = parts
                        .iter()
                        .map(|(n, _)| {
                            let w = tensors[&format!("m.{n}.weight")].to_dtype(dtype).unwrap();
                            let b = tensors[&format!("m.{n}.bias")].to_dtype(dtype).unwrap();
                            candle_nn::Linear::new(w, bias.then_some(b))
                        })
                        .collect();
                    let want = Linear::stacked(&want).unwrap();
                    // A bf16 checkpoint loaded in f32 keeps its bf16 (as_shipped), exactly.
                    let kept = if (stored, dtype) == (DType::BF16, DType::F32) {
                        DType::BF16
                    } else {
                        dtype
                    };
                    assert_eq!(got.weight().dtype(), kept, "{stored:?} -> {dtype:?}");
                    let bits = |t: &Tensor| flat(&t.to_dtype(DType::F32).unwrap());
                    assert_eq!(
                        bits(got.weight()),
                        bits(want.weight()),
                        "{stored:?} -> {dtype:?}"
                    );
                    assert_eq!(got.bias().is_some(), bias);
                    if let (Some(g), Some(w)) = (got.bias(), want.bias()) {
                        assert_eq!(bits(g), bits(w));
                    }
                }
                let err = Linear::load_stacked(3, &[("a", 5), ("bad", 4)], false, &vb)
                    .unwrap_err()
                    .to_string();
                assert!(
                    err.contains("m.bad.weight") && err.contains("[4, 3]"),
                    "{err}"
                );
                let err = Linear::load_stacked(3, &[("a", 5), ("missing", 4)], false, &vb)
                    .unwrap_err()
                    .to_string();
                assert!(err.contains("missing.weight"), "{err}");
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
