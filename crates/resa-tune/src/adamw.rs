//! AdamW, PyTorch's `torch.optim.AdamW`: decoupled weight decay and bias-corrected moments.
//! One set of options ([`AdamW`]) for both trainers: the adapter trainer
//! ([`crate::train_adapters`]) updates each adapter matrix with `AdamW::update`, which keeps
//! its moments as plain tensors (written to checkpoints by PEFT module name and fed by the
//! gradients the replicas and nodes summed); full-parameter training ([`crate::full::train_full`])
//! updates a whole module with burn's AdamW built from the same options
//! ([`AdamW::burn_config`]). The SAE trainer's Adam (resa-sae) is the weight-decay-free case,
//! kept there because resa-sae sits below this crate.

use burn::optim::AdamWConfig;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

/// AdamW's options (PyTorch's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamW {
    /// β₁, β₂ (PyTorch: 0.9, 0.999).
    pub betas: (f64, f64),
    /// ε (PyTorch: 1e-8).
    pub eps: f64,
    /// Decoupled weight decay (PyTorch and the reference: 0.01).
    pub weight_decay: f64,
}

impl Default for AdamW {
    fn default() -> Self {
        AdamW { betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.01 }
    }
}

/// First and second moments of one matrix.
pub(crate) struct Moments<B: Backend> {
    pub(crate) m: Tensor<B, 2>,
    pub(crate) v: Tensor<B, 2>,
}

impl AdamW {
    /// burn's AdamW with these options (for a whole module).
    pub fn burn_config(&self) -> AdamWConfig {
        AdamWConfig::new()
            .with_beta_1(self.betas.0 as f32)
            .with_beta_2(self.betas.1 as f32)
            .with_epsilon(self.eps as f32)
            .with_weight_decay(self.weight_decay as f32)
    }

    /// One update of `w` (f32) with gradient `g` at learning rate `lr` and step `t`
    /// (1-based); `moments` start at zero. `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
    /// `w ← w(1 − lr·λ) − (lr / bc₁) · m / (√v / √bc₂ + ε)`.
    pub(crate) fn update<B: Backend>(
        &self,
        w: Tensor<B, 2>,
        g: Tensor<B, 2>,
        moments: &mut Moments<B>,
        lr: f64,
        t: u64,
    ) -> Tensor<B, 2> {
        let (b1, b2) = self.betas;
        let bc1 = 1.0 - b1.powi(t as i32);
        let bc2 = 1.0 - b2.powi(t as i32);
        moments.m = moments.m.clone().mul_scalar(b1) + g.clone().mul_scalar(1.0 - b1);
        moments.v = moments.v.clone().mul_scalar(b2) + g.powi_scalar(2).mul_scalar(1.0 - b2);
        let w = w.mul_scalar(1.0 - lr * self.weight_decay);
        let denom = moments.v.clone().sqrt().div_scalar(bc2.sqrt()).add_scalar(self.eps);
        w - (moments.m.clone() / denom).mul_scalar(lr / bc1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    /// Two steps against PyTorch's AdamW formula, computed by hand in f64.
    #[test]
    fn two_steps_follow_pytorch() {
        let opt = AdamW { betas: (0.9, 0.99), eps: 1e-8, weight_decay: 0.1 };
        let dev = Default::default();
        let t = |v: f32| Tensor::<Flex, 2>::from_data(TensorData::new(vec![v], [1, 1]), &dev);
        let mut mo = Moments { m: t(0.0), v: t(0.0) };
        let (mut w, lr) = (1.0f64, 0.01);
        let (mut m, mut v) = (0.0f64, 0.0f64);
        let mut got = t(1.0);
        for (step, g) in [(1u64, 0.5f64), (2, -0.25)] {
            got = opt.update(got, t(g as f32), &mut mo, lr, step);
            m = 0.9 * m + 0.1 * g;
            v = 0.99 * v + 0.01 * g * g;
            let (bc1, bc2) = (1.0 - 0.9f64.powi(step as i32), 1.0 - 0.99f64.powi(step as i32));
            w = w * (1.0 - lr * 0.1) - lr * (m / bc1) / ((v / bc2).sqrt() + 1e-8);
        }
        let got: f32 = got.into_data().iter::<f32>().next().unwrap();
        assert!((f64::from(got) - w).abs() < 1e-6, "{got} vs {w}");
    }
}
