//! The linear layer every model uses: a drop-in for `candle_nn::Linear` whose decode steps take
//! the threaded GEMV of `kernels::cpu_linear::linear`.
use candle_core::{Module, Tensor};

/// `y = x · Wᵀ + b` with `W [out, in]`.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Linear { weight, bias }
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
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
        Ok(Linear {
            weight: Tensor::cat(&weights, 0)?,
            bias: biases.map(|b| Tensor::cat(&b, 0)).transpose()?,
        })
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        kernels::cpu_linear::linear(x, &self.weight, self.bias.as_ref())
    }
}

impl From<candle_nn::Linear> for Linear {
    fn from(l: candle_nn::Linear) -> Self {
        Linear {
            weight: l.weight().clone(),
            bias: l.bias().cloned(),
        }
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
}
