//! One SAE's training: sparsify's loss, decoder constraints, dead-latent bookkeeping and
//! optimizers (Signum in schedule-free averaging, or Adam), on any autodiff backend.
//!
//! The step reproduces sparsify's `Trainer` for `loss_fn = "fvu"`:
//!
//! 1. on the very first step of a scratch run, `b_dec` ← mean of the batch;
//! 2. decoder rows renormalised to unit norm;
//! 3. latents selected from the pre-activations *without* a gradient, their values then
//!    recomputed from the gathered encoder rows with one (sparsify's fused encoder: the
//!    gradient reaches only the k selected encoder rows, and passes the ReLU straight through);
//! 4. loss = FVU + `auxk_alpha` · AuxK + Multi-TopK FVU / 8, against the whole batch's variance;
//! 5. the gradient component parallel to each decoder row removed;
//! 6. optimizer step; latents that fired reset their tokens-since-fired counter.
//!
//! Micro-batching ([`TrainConfig::micro_batch_tokens`]) only bounds memory: every chunk is
//! scored against the whole batch's variance and the gradients are summed, so the step is
//! the same as without it.

use std::path::Path;

use burn::tensor::{
    Bool, DType, Int, Tensor, TensorData,
    activation::relu,
    backend::{AutodiffBackend, Backend},
};
use resa_publish::write_atomic;
use resa_qwen2::host_values;
use resa_qwen2::safetensors_io::{OwnedTensor, SafetensorsReader, write_safetensors};
use serde::{Deserialize, Serialize};

use crate::coder::{
    SparseCoder, bias_relu_topk_host, owned, select_latents, sparse_decode, topk_rows, topk_rows_host,
    topk_rows_host_among, total_variance,
};
use crate::config::Activation;
use crate::error::{Error, Result};

/// The optimizer of SAE training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// sign-SGD inside schedule-free averaging (sparsify's default).
    #[default]
    Signum,
    /// Adam (β 0.9/0.999, ε 1e-8) with linear warm-up then linear decay to 0.
    Adam,
}

/// Training options of one run (all SAEs of the run share them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Optimizer.
    pub optimizer: OptimizerKind,
    /// Learning rate; `None` picks sparsify's: 5e-3/√(L/2¹⁴) for Signum, 2e-4/√(L/2¹⁴) for Adam.
    pub lr: Option<f64>,
    /// Schedule-free momentum (Signum).
    pub momentum: f64,
    /// Adam warm-up steps.
    pub lr_warmup_steps: u64,
    /// Adam: steps over which the learning rate decays to 0 after warm-up (the run's length).
    pub total_steps: u64,
    /// Weight of the AuxK loss; 0 turns it (and dead-latent masks) off.
    pub auxk_alpha: f32,
    /// Tokens without firing after which a latent counts as dead.
    pub dead_feature_threshold: u64,
    /// Fine-tuning a loaded SAE: keep its `b_dec` instead of setting it to the first batch's mean.
    pub finetune: bool,
    /// Process at most this many tokens at a time inside a step (memory bound); `None`: all.
    pub micro_batch_tokens: Option<usize>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            optimizer: OptimizerKind::Signum,
            lr: None,
            momentum: 0.95,
            lr_warmup_steps: 1000,
            total_steps: 0,
            auxk_alpha: 0.0,
            dead_feature_threshold: 10_000_000,
            finetune: false,
            micro_batch_tokens: None,
        }
    }
}

impl TrainConfig {
    /// The learning rate used for an SAE with `num_latents` latents.
    pub fn effective_lr(&self, num_latents: usize) -> f64 {
        let scale = (num_latents as f64 / 16384.0).sqrt();
        self.lr.unwrap_or(match self.optimizer {
            OptimizerKind::Signum => 5e-3 / scale,
            OptimizerKind::Adam => 2e-4 / scale,
        })
    }

    fn validate(&self) -> Result<()> {
        if let Some(lr) = self.lr
            && !(lr > 0.0 && lr.is_finite())
        {
            return Err(Error::option("lr", format!("must be a positive number, got {lr}")));
        }
        if !(self.momentum > 0.0 && self.momentum < 1.0) {
            return Err(Error::option("momentum", format!("must be in (0, 1), got {}", self.momentum)));
        }
        if !(self.auxk_alpha >= 0.0 && self.auxk_alpha.is_finite()) {
            return Err(Error::option("auxk_alpha", format!("must be ≥ 0, got {}", self.auxk_alpha)));
        }
        if self.micro_batch_tokens == Some(0) {
            return Err(Error::option("micro_batch_tokens", "must be positive"));
        }
        Ok(())
    }
}

/// What one step measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StepMetrics {
    /// FVU of the batch (before the update).
    pub fvu: f32,
    /// AuxK loss (0 when off).
    pub auxk_loss: f32,
    /// Multi-TopK FVU (0 when off).
    pub multi_topk_fvu: f32,
    /// Fraction of latents dead after the step.
    pub dead_fraction: f32,
    /// Tokens in the batch.
    pub tokens: usize,
}

/// Parameters (or per-parameter optimizer buffers) of one sparse coder.
#[derive(Debug, Clone)]
struct Params<B: Backend> {
    enc_w: Tensor<B, 2>,
    enc_b: Tensor<B, 1>,
    w_dec: Tensor<B, 2>,
    b_dec: Tensor<B, 1>,
    w_skip: Option<Tensor<B, 2>>,
}

impl<B: Backend> Params<B> {
    fn of(sae: &SparseCoder<B>) -> Self {
        Params {
            enc_w: sae.encoder_weight.clone(),
            enc_b: sae.encoder_bias.clone(),
            w_dec: sae.w_dec.clone(),
            b_dec: sae.b_dec.clone(),
            w_skip: sae.w_skip.clone(),
        }
    }

    /// The parameters moved out of `sae` (empty tensors left in their place until
    /// [`Params::write_into`] puts the next ones back): held nowhere else, their buffers are
    /// taken over by the host update instead of copied.
    fn take(sae: &mut SparseCoder<B>) -> Self {
        let device = sae.b_dec.device();
        let empty2 = || Tensor::<B, 2>::zeros([0, 0], &device);
        let empty1 = || Tensor::<B, 1>::zeros([0], &device);
        Params {
            enc_w: std::mem::replace(&mut sae.encoder_weight, empty2()),
            enc_b: std::mem::replace(&mut sae.encoder_bias, empty1()),
            w_dec: std::mem::replace(&mut sae.w_dec, empty2()),
            b_dec: std::mem::replace(&mut sae.b_dec, empty1()),
            w_skip: sae.w_skip.take(),
        }
    }

    fn zeros_like(&self) -> Self {
        Params {
            enc_w: self.enc_w.zeros_like(),
            enc_b: self.enc_b.zeros_like(),
            w_dec: self.w_dec.zeros_like(),
            b_dec: self.b_dec.zeros_like(),
            w_skip: self.w_skip.as_ref().map(Tensor::zeros_like),
        }
    }

    fn write_into(self, sae: &mut SparseCoder<B>) {
        sae.encoder_weight = self.enc_w;
        sae.encoder_bias = self.enc_b;
        sae.w_dec = self.w_dec;
        sae.b_dec = self.b_dec;
        sae.w_skip = self.w_skip;
    }

    /// Applies `f2`/`f1` to corresponding tensors of `self` and `other`.
    fn zip_map(
        self,
        other: Self,
        f2: &mut impl FnMut(Tensor<B, 2>, Tensor<B, 2>) -> Tensor<B, 2>,
        f1: &mut impl FnMut(Tensor<B, 1>, Tensor<B, 1>) -> Tensor<B, 1>,
    ) -> Self {
        Params {
            enc_w: f2(self.enc_w, other.enc_w),
            enc_b: f1(self.enc_b, other.enc_b),
            w_dec: f2(self.w_dec, other.w_dec),
            b_dec: f1(self.b_dec, other.b_dec),
            w_skip: match (self.w_skip, other.w_skip) {
                (Some(a), Some(b)) => Some(f2(a, b)),
                (a, _) => a,
            },
        }
    }

    fn tensors(&self, prefix: &str) -> Result<Vec<OwnedTensor>> {
        let mut out = vec![
            owned(&format!("{prefix}encoder.weight"), self.enc_w.clone())?,
            owned(&format!("{prefix}encoder.bias"), self.enc_b.clone())?,
            owned(&format!("{prefix}W_dec"), self.w_dec.clone())?,
            owned(&format!("{prefix}b_dec"), self.b_dec.clone())?,
        ];
        if let Some(w) = &self.w_skip {
            out.push(owned(&format!("{prefix}W_skip"), w.clone())?);
        }
        Ok(out)
    }

    fn read(reader: &SafetensorsReader, prefix: &str, like: &Self, device: &B::Device) -> Result<Self> {
        fn get<B: Backend, const D: usize>(
            reader: &SafetensorsReader,
            key: &str,
            like: &Tensor<B, D>,
            device: &B::Device,
        ) -> Result<Tensor<B, D>> {
            let shape = like.dims();
            if !reader.contains(key) {
                return Err(resa_qwen2::Error::MissingTensor { key: key.into(), path: reader.origin().into() }.into());
            }
            Ok(Tensor::from_data(TensorData::new(reader.read_f32(key, &shape)?, shape), device))
        }
        Ok(Params {
            enc_w: get(reader, &format!("{prefix}encoder.weight"), &like.enc_w, device)?,
            enc_b: get(reader, &format!("{prefix}encoder.bias"), &like.enc_b, device)?,
            w_dec: get(reader, &format!("{prefix}W_dec"), &like.w_dec, device)?,
            b_dec: get(reader, &format!("{prefix}b_dec"), &like.b_dec, device)?,
            w_skip: match &like.w_skip {
                Some(w) => Some(get(reader, &format!("{prefix}W_skip"), w, device)?),
                None => None,
            },
        })
    }
}

fn lerp<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>, w: f64) -> Tensor<B, D> {
    a.clone() + (b - a).mul_scalar(w)
}

/// Optimizer state.
#[derive(Debug, Clone)]
enum OptState<B: Backend> {
    /// Schedule-free wrapper around sign-SGD: `z` and the running average weights.
    Signum { z: Option<Params<B>>, weight_sum: f64, lr_max: f64, k: u64 },
    /// Adam moments and step count.
    Adam { m: Option<Params<B>>, v: Option<Params<B>>, t: u64 },
}

/// Scalars of the saved training state (`train_state.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SavedScalars {
    step: u64,
    optimizer: OptimizerKind,
    weight_sum: f64,
    lr_max: f64,
    sf_k: u64,
    adam_t: u64,
    has_moments: bool,
}

/// Trains one sparse coder. Parameters live on the inner (non-autodiff) backend between
/// steps; each step lifts them onto the autodiff backend `B`.
#[derive(Debug, Clone)]
pub struct SaeTrainer<B: AutodiffBackend> {
    sae: SparseCoder<B::InnerBackend>,
    opt: OptState<B::InnerBackend>,
    tokens_since_fired: Tensor<B::InnerBackend, 1, Int>,
    /// Whether the sparse parts of a step run on the host (CPU backends; see [`crate::host`]).
    host: bool,
    cfg: TrainConfig,
    lr: f64,
    step: u64,
}

impl<B: AutodiffBackend> SaeTrainer<B> {
    /// Starts training `sae` (freshly initialised, or loaded when `cfg.finetune`).
    pub fn new(sae: SparseCoder<B::InnerBackend>, cfg: TrainConfig) -> Result<Self> {
        cfg.validate()?;
        let lr = cfg.effective_lr(sae.num_latents());
        let opt = match cfg.optimizer {
            OptimizerKind::Signum => OptState::Signum { z: None, weight_sum: 0.0, lr_max: 0.0, k: 0 },
            OptimizerKind::Adam => OptState::Adam { m: None, v: None, t: 0 },
        };
        let tokens_since_fired = Tensor::zeros([sae.num_latents()], &sae.device());
        let host = resa_qwen2::on_host::<B::InnerBackend>(&sae.device());
        Ok(SaeTrainer { sae, opt, tokens_since_fired, cfg, lr, step: 0, host })
    }

    /// Computes every step with tensor operations and autodiff, as on a GPU, also on the CPU
    /// backends (where the sparse parts otherwise run on the host, [`crate::host`]): for
    /// comparing the two paths. The same steps up to rounding.
    pub fn with_tensor_path(mut self) -> Self {
        self.host = false;
        self
    }

    /// Steps taken.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// The learning rate in use (before any schedule).
    pub fn lr(&self) -> f64 {
        self.lr
    }

    /// The options.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// The parameters being trained (for schedule-free Signum these are the gradient
    /// evaluation point `y`, not the average that [`SaeTrainer::to_sae`] gives).
    pub fn training_params(&self) -> &SparseCoder<B::InnerBackend> {
        &self.sae
    }

    /// Tokens since each latent last fired, `[L]`.
    pub fn tokens_since_fired(&self) -> Tensor<B::InnerBackend, 1, Int> {
        self.tokens_since_fired.clone()
    }

    /// Latents that have not fired for more than the dead-feature threshold, `[L]`.
    pub fn dead_mask(&self) -> Tensor<B::InnerBackend, 1, Bool> {
        self.tokens_since_fired.clone().greater_elem(self.cfg.dead_feature_threshold as i64)
    }

    /// The SAE to use or save: for schedule-free Signum the averaged point
    /// `x = y + (1 − 1/β)(z − y)` (what sparsify saves), otherwise the parameters.
    pub fn to_sae(&self) -> SparseCoder<B::InnerBackend> {
        let mut sae = self.sae.clone();
        if let OptState::Signum { z: Some(z), .. } = &self.opt {
            let w = 1.0 - 1.0 / self.cfg.momentum;
            Params::of(&self.sae)
                .zip_map(z.clone(), &mut |y, z| lerp(y, z, w), &mut |y, z| lerp(y, z, w))
                .write_into(&mut sae);
        }
        sae
    }

    /// One training step on activations `acts` `[n, d_in]` (any float dtype).
    pub fn step(&mut self, acts: Tensor<B::InnerBackend, 2>) -> Result<StepMetrics> {
        let [n, d] = acts.dims();
        self.sae.check_width(d)?;
        if n == 0 {
            return Err(Error::Input { field: "activations", message: "an empty batch (no rows)".into() });
        }
        let x = acts.cast(DType::F32);
        if self.step == 0 && !self.cfg.finetune {
            self.sae.b_dec = x.clone().mean_dim(0).reshape([d]);
        }
        if self.sae.config().normalize_decoder {
            self.sae.normalize_decoder();
        }
        let dead = (self.cfg.auxk_alpha > 0.0).then(|| self.dead_mask());
        let num_dead = match &dead {
            Some(mask) => scalar_i64(mask.clone().int().sum()),
            None => 0,
        };
        let tv = total_variance(x.clone());
        // When the step's sparse parts run on the host, the parameters go there once per step
        // (not once per micro-batch), taken over from the coder without a copy, and come back
        // before anything can fail past this point.
        let mut host =
            if self.host && self.sae.w_skip.is_none() { Some(HostParams::take(&mut self.sae)) } else { None };
        let summed = self.chunks(x, tv, dead, num_dead, host.as_mut());
        if let Some(host) = host {
            host.restore(&mut self.sae);
        }
        let Summed { mut grads, fired, fvu, auxk, multi } = summed?;
        let loss = fvu + self.cfg.auxk_alpha * auxk + multi / 8.0;
        if !loss.is_finite() {
            return Err(Error::NonFiniteLoss { step: self.step, hookpoint: String::new(), value: loss });
        }
        if self.sae.config().normalize_decoder {
            grads.w_dec = remove_parallel_component(grads.w_dec, self.sae.w_dec.clone());
        }
        self.apply(grads)?;
        self.tokens_since_fired = (self.tokens_since_fired.clone() + n as i64).mask_fill(fired.greater_elem(0), 0);
        self.step += 1;
        let dead_fraction = scalar_i64(self.dead_mask().int().sum()) as f32 / self.sae.num_latents() as f32;
        Ok(StepMetrics { fvu, auxk_loss: auxk, multi_topk_fvu: multi, dead_fraction, tokens: n })
    }

    /// Forward and backward of the rows of `x` in chunks of `micro_batch_tokens`: the summed
    /// gradients, losses and fired latents.
    fn chunks(
        &self,
        x: Tensor<B::InnerBackend, 2>,
        tv: Tensor<B::InnerBackend, 1>,
        dead: Option<Tensor<B::InnerBackend, 1, Bool>>,
        num_dead: i64,
        mut host: Option<&mut HostParams>,
    ) -> Result<Summed<B::InnerBackend>> {
        let [n, d] = x.dims();
        let chunk = self.cfg.micro_batch_tokens.unwrap_or(n).min(n);
        let mut grads: Option<Params<B::InnerBackend>> = None;
        let mut fired = Tensor::<B::InnerBackend, 1, Int>::zeros([self.sae.num_latents()], &x.device());
        let (mut fvu, mut auxk, mut multi) = (0.0f32, 0.0f32, 0.0f32);
        let mut start = 0;
        while start < n {
            let end = (start + chunk).min(n);
            let xs = x.clone().slice([start..end, 0..d]);
            let out = self.chunk_grads(xs, tv.clone(), dead.clone(), num_dead, host.as_deref_mut())?;
            let idx = out.indices.clone();
            let m = idx.dims()[0] * idx.dims()[1];
            fired =
                fired.scatter(0, idx.reshape([m]), Tensor::ones([m], &x.device()), burn::tensor::IndexingUpdateOp::Add);
            fvu += out.fvu;
            auxk += out.auxk;
            multi += out.multi;
            grads = Some(match grads {
                None => out.grads,
                Some(g) => g.zip_map(out.grads, &mut |a, b| a + b, &mut |a, b| a + b),
            });
            start = end;
        }
        let grads = grads.ok_or_else(|| Error::Internal("a step of rows computed no gradients".into()))?;
        Ok(Summed { grads, fired, fvu, auxk, multi })
    }

    /// Forward and backward of one chunk; returns the parameter gradients and losses.
    fn chunk_grads(
        &self,
        y: Tensor<B::InnerBackend, 2>,
        tv: Tensor<B::InnerBackend, 1>,
        dead: Option<Tensor<B::InnerBackend, 1, Bool>>,
        num_dead: i64,
        host: Option<&mut HostParams>,
    ) -> Result<ChunkResult<B::InnerBackend>> {
        if let Some(host) = host {
            return self.chunk_grads_host(y, tv, dead, num_dead, host);
        }
        let sae = &self.sae;
        let cfg = sae.config();
        let [_, d] = y.dims();
        let k = cfg.k;
        let p = Params::of(sae);
        let enc_w = Tensor::<B, 2>::from_inner(p.enc_w).require_grad();
        let enc_b = Tensor::<B, 1>::from_inner(p.enc_b).require_grad();
        let w_dec = Tensor::<B, 2>::from_inner(p.w_dec).require_grad();
        let b_dec = Tensor::<B, 1>::from_inner(p.b_dec).require_grad();
        let w_skip = p.w_skip.map(|w| Tensor::<B, 2>::from_inner(w).require_grad());

        // Selection without a gradient (the dense product, on the inner backend); then the
        // selected latents' values recomputed with one from the k gathered encoder rows of
        // each input, as batched [k, d] × [d, 1] products: the gradient reaches only those
        // rows (sparsify's fused encoder) and no dense [n, L] gradient is formed.
        let pre = sae.pre_acts(y.clone())?;
        let (_, idx) = select_latents(pre.clone(), k, cfg.activation);
        let [n, _] = idx.dims();
        let flat = Tensor::<B, 1, Int>::from_inner(idx.clone().reshape([n * k]));
        let y_ad = Tensor::<B, 2>::from_inner(y);
        let xc = y_ad.clone() - b_dec.clone().unsqueeze_dim(0);
        let rows = enc_w.clone().select(0, flat.clone()).reshape([n, k, d]);
        let v = rows.matmul(xc.reshape([n, d, 1])).reshape([n, k]) + enc_b.clone().select(0, flat).reshape([n, k]);
        // ReLU forward, identity backward (sparsify's fused encoder).
        let acts = v.clone() + (relu(v.clone()) - v).detach();
        let idx_ad = Tensor::<B, 2, Int>::from_inner(idx.clone());
        let mut sae_out = sparse_decode(w_dec.clone(), idx_ad, acts) + b_dec.clone().unsqueeze_dim(0);
        if let Some(w) = &w_skip {
            sae_out = sae_out + y_ad.clone().matmul(w.clone().transpose());
        }
        let tv_ad = Tensor::<B, 1>::from_inner(tv);
        let e = y_ad.clone() - sae_out;
        let fvu = e.clone().powi_scalar(2).sum() / tv_ad.clone();
        let mut loss = fvu.clone();
        let mut auxk_value = 0.0;
        if let Some(mask) = dead
            && num_dead > 0
        {
            let k_aux = d / 2;
            let scale = (num_dead as f64 / k_aux as f64).min(1.0);
            let k_aux = k_aux.min(num_dead as usize);
            let masked = pre.clone().mask_fill(mask.bool_not().unsqueeze_dim(0), f32::NEG_INFINITY);
            let (a, i) = topk_rows(masked, k_aux);
            let e_hat = sparse_decode(w_dec.clone(), Tensor::from_inner(i), Tensor::from_inner(a));
            let auxk = (e_hat - e.detach()).powi_scalar(2).sum().mul_scalar(scale) / tv_ad.clone();
            auxk_value = scalar_f32(auxk.clone().inner());
            loss = loss + auxk.mul_scalar(self.cfg.auxk_alpha);
        }
        let mut multi_value = 0.0;
        let mut fired_indices = idx;
        if cfg.multi_topk {
            let k4 = (4 * k).min(sae.num_latents());
            let (a, i) = topk_rows(pre, k4);
            // sparsify's forward returns the 4k indices in this mode, and its trainer marks
            // them all as fired; do the same so dead-latent counts agree.
            fired_indices = i.clone();
            let out = sparse_decode(w_dec.clone(), Tensor::from_inner(i), Tensor::from_inner(a))
                + b_dec.clone().unsqueeze_dim(0);
            let multi = (out - y_ad).powi_scalar(2).sum() / tv_ad;
            multi_value = scalar_f32(multi.clone().inner());
            loss = loss + multi.div_scalar(8.0);
        }
        let fvu_value = scalar_f32(fvu.inner());
        let g = loss.backward();
        let grad2 = |t: &Tensor<B, 2>| t.grad(&g).unwrap_or_else(|| t.clone().inner().zeros_like());
        let grad1 = |t: &Tensor<B, 1>| t.grad(&g).unwrap_or_else(|| t.clone().inner().zeros_like());
        let grads = Params {
            enc_w: grad2(&enc_w),
            enc_b: grad1(&enc_b),
            w_dec: grad2(&w_dec),
            b_dec: grad1(&b_dec),
            w_skip: w_skip.as_ref().map(grad2),
        };
        Ok(ChunkResult { grads, indices: fired_indices, fvu: fvu_value, auxk: auxk_value, multi: multi_value })
    }

    /// [`SaeTrainer::chunk_grads`] on the host (CPU backends, no skip connection): the dense
    /// encoder product on the backend, then the k-sparse decoder, the losses and every
    /// gradient by hand ([`crate::host`]) without `[n, k, d]` temporaries. The same values as
    /// the autodiff path up to rounding: the selected latents' values are the dense product's
    /// (as sparsify's fused encoder returns them), their gradient passes the ReLU unchanged
    /// and reaches the selected encoder rows and, through `x − b_dec`, the decoder bias.
    fn chunk_grads_host(
        &self,
        y: Tensor<B::InnerBackend, 2>,
        tv: Tensor<B::InnerBackend, 1>,
        dead: Option<Tensor<B::InnerBackend, 1, Bool>>,
        num_dead: i64,
        host: &mut HostParams,
    ) -> Result<ChunkResult<B::InnerBackend>> {
        use crate::host::{Scatter, rows_combine, rows_dot, scatter_rows, scatter_sum};
        let sae = &self.sae;
        let cfg = sae.config();
        let device = y.device();
        let [m, d] = y.dims();
        let (k, l) = (cfg.k, sae.num_latents());
        // The selection: the dense product on the backend, then (TopK) the bias, the ReLU and
        // each row's k largest in one pass over the product, taken over without a copy.
        let mut pre = host_values(host.encoder_product::<B::InnerBackend>(y.clone()));
        let (acts, idx) = match cfg.activation {
            Activation::TopK => bias_relu_topk_host(&mut pre, &host.enc_b, k),
            Activation::GroupMax => {
                bias_relu_host(&mut pre, &host.enc_b);
                let t = Tensor::<B::InnerBackend, 2>::from_data(TensorData::new(pre.clone(), [m, l]), &device);
                let (acts, idx) = select_latents(t, k, cfg.activation);
                (host_values(acts), host_ids(idx)?)
            }
        };
        let (b_dec, w_dec, w_enc) = (host.b_dec.as_slice(), host.w_dec.as_slice(), host.w_enc.as_slice());
        let ids_tensor = |v: &[i64], k: usize| {
            Tensor::<B::InnerBackend, 2, Int>::from_data(TensorData::new(v.to_vec(), [m, k]), &device)
        };
        let mut fired_indices = ids_tensor(&idx, k);
        let tv = host_values(tv).first().copied().unwrap_or(f32::NAN);
        let y_h = host_values(y);

        // Decoder, residual, FVU; the gradient at the output (∂FVU/∂out = −2e / tv).
        let bias_rows: Vec<f32> = (0..m).flat_map(|_| b_dec.iter().copied()).collect();
        let out = rows_combine(w_dec, d, &idx, &acts, k, Some(&bias_rows));
        let e: Vec<f32> = y_h.iter().zip(&out).map(|(y, o)| y - o).collect();
        let fvu = sum_sq(&e) / tv;
        let g_out: Vec<f32> = e.iter().map(|e| -2.0 * e / tv).collect();
        let mut decoder_sets: Vec<(Vec<i64>, Vec<f32>, usize, Vec<f32>)> = Vec::new();
        let mut g_b_dec = column_sums(&g_out, d);

        let mut auxk_value = 0.0;
        if let Some(mask) = dead
            && num_dead > 0
        {
            // AuxK: the top k_aux dead latents decode the (detached) residual; its gradient
            // reaches only their decoder rows.
            let k_aux = d / 2;
            let scale = (num_dead as f64 / k_aux as f64).min(1.0) as f32;
            let k_aux = k_aux.min(num_dead as usize);
            let keep: Vec<bool> = host_bools(mask)?;
            let (a, i) = topk_rows_host_among(&pre, l, k_aux, Some(&keep));
            let e_hat = rows_combine(w_dec, d, &i, &a, k_aux, None);
            let diff: Vec<f32> = e_hat.iter().zip(&e).map(|(h, e)| h - e).collect();
            auxk_value = scale * sum_sq(&diff) / tv;
            let w = 2.0 * scale * self.cfg.auxk_alpha / tv;
            decoder_sets.push((i, a, k_aux, diff.iter().map(|v| w * v).collect()));
        }
        let mut multi_value = 0.0;
        if cfg.multi_topk {
            let k4 = (4 * k).min(l);
            let (a, i) = topk_rows_host(&pre, l, k4);
            // sparsify's forward returns the 4k indices in this mode, and its trainer marks
            // them all as fired; do the same so dead-latent counts agree.
            fired_indices = ids_tensor(&i, k4);
            let out4 = rows_combine(w_dec, d, &i, &a, k4, Some(&bias_rows));
            let diff: Vec<f32> = out4.iter().zip(&y_h).map(|(o, y)| o - y).collect();
            multi_value = sum_sq(&diff) / tv;
            let g4: Vec<f32> = diff.iter().map(|v| 2.0 * v / (8.0 * tv)).collect();
            for (acc, g) in g_b_dec.iter_mut().zip(column_sums(&g4, d)) {
                *acc += g;
            }
            decoder_sets.push((i, a, k4, g4));
        }

        // The selected latents: ∂/∂act = g_out · W_dec[i], passed straight through the ReLU.
        let g_acts = rows_dot(w_dec, d, &idx, &g_out, k);
        let xc: Vec<f32> = y_h.chunks_exact(d).flat_map(|r| r.iter().zip(b_dec).map(|(y, b)| y - b)).collect();
        let g_enc_b = scatter_sum(l, &idx, &g_acts);
        let g_enc_w = scatter_rows(l, d, &[Scatter { idx: &idx, coef: &g_acts, k, src: &xc }]);
        let mut sets = vec![Scatter { idx: &idx, coef: &acts, k, src: &g_out }];
        sets.extend(decoder_sets.iter().map(|(i, a, k, g)| Scatter { idx: i, coef: a, k: *k, src: g }));
        let g_w_dec = scatter_rows(l, d, &sets);
        // x − b_dec feeds the encoder: b_dec also gets −Σ_i g_enc_b[i] · W_enc[i].
        for (i, &gb) in g_enc_b.iter().enumerate() {
            if gb != 0.0 {
                for (acc, w) in g_b_dec.iter_mut().zip(&w_enc[i * d..(i + 1) * d]) {
                    *acc -= gb * w;
                }
            }
        }
        let t2 = |v: Vec<f32>, shape: [usize; 2]| {
            Tensor::<B::InnerBackend, 2>::from_data(TensorData::new(v, shape), &device)
        };
        let t1 = |v: Vec<f32>, n: usize| Tensor::<B::InnerBackend, 1>::from_data(TensorData::new(v, [n]), &device);
        let grads = Params {
            enc_w: t2(g_enc_w, [l, d]),
            enc_b: t1(g_enc_b, l),
            w_dec: t2(g_w_dec, [l, d]),
            b_dec: t1(g_b_dec, d),
            w_skip: None,
        };
        Ok(ChunkResult { grads, indices: fired_indices, fvu, auxk: auxk_value, multi: multi_value })
    }

    fn apply(&mut self, grads: Params<B::InnerBackend>) -> Result<()> {
        // Nothing below fails: the parameters can leave the coder until the new ones replace them.
        let params = if self.host && matches!(self.opt, OptState::Adam { .. }) {
            Params::take(&mut self.sae)
        } else {
            Params::of(&self.sae)
        };
        let lr = self.lr;
        let momentum = self.cfg.momentum;
        let new = match &mut self.opt {
            OptState::Signum { z, weight_sum, lr_max, k } => {
                // y → x, z ← z − lr·sign(g), x ← lerp(x, z, c), y ← lerp(x, z, 1 − β).
                let z_old = z.take().unwrap_or_else(|| params.clone());
                let back = 1.0 - 1.0 / momentum;
                let x = params.zip_map(z_old.clone(), &mut |y, z| lerp(y, z, back), &mut |y, z| lerp(y, z, back));
                let z_new = z_old
                    .zip_map(grads, &mut |z, g| z - g.sign().mul_scalar(lr), &mut |z, g| z - g.sign().mul_scalar(lr));
                *lr_max = lr_max.max(lr);
                let weight = lr_max.powi(2);
                *weight_sum += weight;
                let ckp1 = weight / *weight_sum;
                *k += 1;
                let x = x.zip_map(z_new.clone(), &mut |x, z| lerp(x, z, ckp1), &mut |x, z| lerp(x, z, ckp1));
                let y = x.zip_map(z_new.clone(), &mut |x, z| lerp(x, z, 1.0 - momentum), &mut |x, z| {
                    lerp(x, z, 1.0 - momentum)
                });
                *z = Some(z_new);
                y
            }
            OptState::Adam { m, v, t } => {
                let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
                // The schedule's multiplier for this step (scheduler steps after the optimizer).
                let s = *t;
                let warm = self.cfg.lr_warmup_steps;
                let total = self.cfg.total_steps.max(s + 1);
                let mult = if s < warm {
                    s as f64 / warm.max(1) as f64
                } else {
                    ((total - s) as f64 / (total - warm).max(1) as f64).max(0.0)
                };
                *t += 1;
                let m_old = m.take().unwrap_or_else(|| params.zeros_like());
                let v_old = v.take().unwrap_or_else(|| params.zeros_like());
                let bc1 = 1.0 - b1.powi(*t as i32);
                let bc2 = 1.0 - b2.powi(*t as i32);
                let step_size = lr * mult / bc1;
                let (new, m_new, v_new) = if self.host {
                    let hp = HostAdam {
                        betas: (b1 as f32, b2 as f32, eps as f32),
                        step: step_size as f32,
                        sqrt_bc2: bc2.sqrt() as f32,
                    };
                    hp.update(params, grads, m_old, v_old)
                } else {
                    let m_new = m_old.zip_map(
                        grads.clone(),
                        &mut |m, g| m.mul_scalar(b1) + g.mul_scalar(1.0 - b1),
                        &mut |m, g| m.mul_scalar(b1) + g.mul_scalar(1.0 - b1),
                    );
                    let v_new = v_old.zip_map(
                        grads,
                        &mut |v, g| v.mul_scalar(b2) + g.powi_scalar(2).mul_scalar(1.0 - b2),
                        &mut |v, g| v.mul_scalar(b2) + g.powi_scalar(2).mul_scalar(1.0 - b2),
                    );
                    let upd = m_new.clone().zip_map(
                        v_new.clone(),
                        &mut |m, v| m / (v.sqrt().div_scalar(bc2.sqrt()) + eps),
                        &mut |m, v| m / (v.sqrt().div_scalar(bc2.sqrt()) + eps),
                    );
                    let new = params
                        .zip_map(upd, &mut |p, u| p - u.mul_scalar(step_size), &mut |p, u| p - u.mul_scalar(step_size));
                    (new, m_new, v_new)
                };
                *m = Some(m_new);
                *v = Some(v_new);
                new
            }
        };
        new.write_into(&mut self.sae);
        Ok(())
    }

    /// Writes the training state (parameters, optimizer buffers, dead-latent counters,
    /// step) to `dir/train_state.safetensors` and `dir/train_state.json`.
    pub fn save_state(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut tensors = Params::of(&self.sae).tensors("param.")?;
        let mut scalars = SavedScalars {
            step: self.step,
            optimizer: self.cfg.optimizer,
            weight_sum: 0.0,
            lr_max: 0.0,
            sf_k: 0,
            adam_t: 0,
            has_moments: false,
        };
        match &self.opt {
            OptState::Signum { z, weight_sum, lr_max, k } => {
                scalars.weight_sum = *weight_sum;
                scalars.lr_max = *lr_max;
                scalars.sf_k = *k;
                if let Some(z) = z {
                    tensors.extend(z.tensors("z.")?);
                    scalars.has_moments = true;
                }
            }
            OptState::Adam { m, v, t } => {
                scalars.adam_t = *t;
                if let (Some(m), Some(v)) = (m, v) {
                    tensors.extend(m.tensors("m.")?);
                    tensors.extend(v.tensors("v.")?);
                    scalars.has_moments = true;
                }
            }
        }
        let counts = self
            .tokens_since_fired
            .clone()
            .into_data()
            .convert::<i64>()
            .to_vec::<i64>()
            .map_err(|e| Error::Internal(format!("the latents' firing counts could not be read: {e:?}")))?;
        let l = counts.len();
        tensors.push(OwnedTensor::from_i64("num_tokens_since_fired", &counts, vec![l]));
        write_safetensors(dir.join("train_state.safetensors"), &tensors, None)?;
        let json = serde_json::to_string_pretty(&scalars)
            .map_err(|e| Error::Json { what: "the SAE trainer state", cause: e.to_string() })?;
        write_atomic(dir.join("train_state.json"), json.as_bytes())?;
        Ok(())
    }

    /// Restores what [`SaeTrainer::save_state`] wrote, into a trainer made with the same
    /// SAE shape and options.
    pub fn load_state(&mut self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        let json_path = dir.join("train_state.json");
        let text = std::fs::read_to_string(&json_path).map_err(|e| Error::io(&json_path, e))?;
        let scalars: SavedScalars = serde_json::from_str(&text)
            .map_err(|e| Error::Resume { path: json_path.clone(), message: e.to_string() })?;
        if scalars.optimizer != self.cfg.optimizer {
            return Err(Error::Resume {
                path: dir.into(),
                message: format!(
                    "saved with optimizer {:?}, resuming with {:?}",
                    scalars.optimizer, self.cfg.optimizer
                ),
            });
        }
        let reader = SafetensorsReader::open_file(dir.join("train_state.safetensors"))?;
        let device = self.sae.device();
        let like = Params::of(&self.sae);
        Params::read(&reader, "param.", &like, &device)?.write_into(&mut self.sae);
        self.opt = match self.cfg.optimizer {
            OptimizerKind::Signum => OptState::Signum {
                z: if scalars.has_moments { Some(Params::read(&reader, "z.", &like, &device)?) } else { None },
                weight_sum: scalars.weight_sum,
                lr_max: scalars.lr_max,
                k: scalars.sf_k,
            },
            OptimizerKind::Adam => {
                let (m, v) = if scalars.has_moments {
                    (
                        Some(Params::read(&reader, "m.", &like, &device)?),
                        Some(Params::read(&reader, "v.", &like, &device)?),
                    )
                } else {
                    (None, None)
                };
                OptState::Adam { m, v, t: scalars.adam_t }
            }
        };
        let (counts, shape) = reader.read_i64_any("num_tokens_since_fired")?;
        if shape != [self.sae.num_latents()] {
            return Err(Error::Resume {
                path: dir.into(),
                message: format!(
                    "num_tokens_since_fired has shape {shape:?}, the SAE has {} latents",
                    self.sae.num_latents()
                ),
            });
        }
        self.tokens_since_fired = Tensor::from_data(TensorData::new(counts, shape), &device);
        self.step = scalars.step;
        Ok(())
    }
}

struct ChunkResult<B: Backend> {
    grads: Params<B>,
    indices: Tensor<B, 2, Int>,
    fvu: f32,
    auxk: f32,
    multi: f32,
}

/// The parameters a host step reads ([`SaeTrainer::chunk_grads_host`]), as f32 on the host.
struct HostParams {
    b_dec: Vec<f32>,
    w_dec: Vec<f32>,
    w_enc: Vec<f32>,
    enc_b: Vec<f32>,
    /// `[L, d_in]` of the two matrices.
    shape: [usize; 2],
    /// The dtypes the coder held them in (`enc_w`, `enc_b`, `w_dec`, `b_dec`).
    dtypes: [DType; 4],
}

impl HostParams {
    /// The coder's parameters moved to the host: buffers the coder alone holds are taken over
    /// as they are, others copied. Until [`HostParams::restore`] the coder holds empty tensors.
    fn take<B: Backend>(sae: &mut SparseCoder<B>) -> Self {
        let p = Params::take(sae);
        let shape = p.enc_w.dims();
        let dtypes = [p.enc_w.dtype(), p.enc_b.dtype(), p.w_dec.dtype(), p.b_dec.dtype()];
        HostParams {
            b_dec: host_values(p.b_dec),
            w_dec: host_values(p.w_dec),
            w_enc: host_values(p.enc_w),
            enc_b: host_values(p.enc_b),
            shape,
            dtypes,
        }
    }

    /// Gives the parameters back to `sae`, each in the dtype it had (without a copy in f32).
    fn restore<B: Backend>(self, sae: &mut SparseCoder<B>) {
        let device = sae.b_dec.device();
        let [l, d] = self.shape;
        let t2 = |v: Vec<f32>, dtype: DType| {
            let t = Tensor::<B, 2>::from_data(TensorData::new(v, [l, d]), (&device, DType::F32));
            if dtype == DType::F32 { t } else { t.cast(dtype) }
        };
        let t1 = |v: Vec<f32>, n: usize, dtype: DType| {
            let t = Tensor::<B, 1>::from_data(TensorData::new(v, [n]), (&device, DType::F32));
            if dtype == DType::F32 { t } else { t.cast(dtype) }
        };
        let [e, eb, w, b] = self.dtypes;
        Params {
            enc_w: t2(self.w_enc, e),
            enc_b: t1(self.enc_b, l, eb),
            w_dec: t2(self.w_dec, w),
            b_dec: t1(self.b_dec, d, b),
            w_skip: None,
        }
        .write_into(sae);
    }

    /// `(y − b_dec) W_encᵀ` on the backend, as [`SparseCoder::pre_acts`] computes it before
    /// the bias and the ReLU; the encoder's buffer goes to the backend and comes back whole.
    fn encoder_product<B: Backend>(&mut self, y: Tensor<B, 2>) -> Tensor<B, 2> {
        let device = y.device();
        let w = Tensor::<B, 2>::from_data(TensorData::new(std::mem::take(&mut self.w_enc), self.shape), &device);
        let b = Tensor::<B, 1>::from_data(TensorData::new(self.b_dec.clone(), [self.shape[1]]), &device);
        let out = (y.cast(DType::F32) - b.unsqueeze_dim(0)).matmul(w.clone().transpose());
        self.w_enc = host_values(w);
        out
    }
}

/// The encoder's bias and ReLU in place on products `pre` `[n, L]`: `max(p + b, 0)`.
fn bias_relu_host(pre: &mut [f32], bias: &[f32]) {
    use rayon::prelude::*;
    pre.par_chunks_mut(bias.len().max(1)).for_each(|row| {
        for (p, &b) in row.iter_mut().zip(bias) {
            *p = (*p + b).max(0.0);
        }
    });
}

/// What [`SaeTrainer::chunks`] sums over a step's chunks.
struct Summed<B: Backend> {
    grads: Params<B>,
    fired: Tensor<B, 1, Int>,
    fvu: f32,
    auxk: f32,
    multi: f32,
}

/// Adam's constants of one step, for the host update ([`crate::host::adam_update`]).
struct HostAdam {
    betas: (f32, f32, f32),
    step: f32,
    sqrt_bc2: f32,
}

impl HostAdam {
    /// Updates every tensor of `p` with `g`, `m`, `v` (the new parameters and moments).
    fn update<B: Backend>(
        &self,
        p: Params<B>,
        g: Params<B>,
        m: Params<B>,
        v: Params<B>,
    ) -> (Params<B>, Params<B>, Params<B>) {
        fn one<B: Backend, const D: usize>(
            h: &HostAdam,
            p: Tensor<B, D>,
            g: Tensor<B, D>,
            m: Tensor<B, D>,
            v: Tensor<B, D>,
        ) -> (Tensor<B, D>, Tensor<B, D>, Tensor<B, D>) {
            let (shape, device, dtype) = (p.shape(), p.device(), p.dtype());
            let (mut pv, gv, mut mv, mut vv) = (host_values(p), host_values(g), host_values(m), host_values(v));
            crate::host::adam_update(&mut pv, &gv, &mut mv, &mut vv, h.betas, h.step, h.sqrt_bc2);
            let t = |v: Vec<f32>| Tensor::<B, D>::from_data(TensorData::new(v, shape.clone()), (&device, DType::F32));
            let p = t(pv);
            (if dtype == DType::F32 { p } else { p.cast(dtype) }, t(mv), t(vv))
        }
        let (enc_w, m_enc_w, v_enc_w) = one(self, p.enc_w, g.enc_w, m.enc_w, v.enc_w);
        let (enc_b, m_enc_b, v_enc_b) = one(self, p.enc_b, g.enc_b, m.enc_b, v.enc_b);
        let (w_dec, m_w_dec, v_w_dec) = one(self, p.w_dec, g.w_dec, m.w_dec, v.w_dec);
        let (b_dec, m_b_dec, v_b_dec) = one(self, p.b_dec, g.b_dec, m.b_dec, v.b_dec);
        let (sp, sm, sv) = match (p.w_skip, g.w_skip, m.w_skip, v.w_skip) {
            (Some(p), Some(g), Some(m), Some(v)) => {
                let (p, m, v) = one(self, p, g, m, v);
                (Some(p), Some(m), Some(v))
            }
            _ => (None, None, None),
        };
        (
            Params { enc_w, enc_b, w_dec, b_dec, w_skip: sp },
            Params { enc_w: m_enc_w, enc_b: m_enc_b, w_dec: m_w_dec, b_dec: m_b_dec, w_skip: sm },
            Params { enc_w: v_enc_w, enc_b: v_enc_b, w_dec: v_w_dec, b_dec: v_b_dec, w_skip: sv },
        )
    }
}

/// A mask's values on the host.
fn host_bools<B: Backend, const D: usize>(t: Tensor<B, D, Bool>) -> Result<Vec<bool>> {
    t.into_data()
        .convert::<bool>()
        .into_vec::<bool>()
        .map_err(|e| Error::Internal(format!("could not read a mask: {e:?}")))
}

/// An index tensor's values on the host, as i64.
fn host_ids<B: Backend, const D: usize>(t: Tensor<B, D, Int>) -> Result<Vec<i64>> {
    t.into_data()
        .convert::<i64>()
        .into_vec::<i64>()
        .map_err(|e| Error::Internal(format!("could not read indices: {e:?}")))
}

/// `Σ v²`, accumulated in f64.
fn sum_sq(v: &[f32]) -> f32 {
    v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>() as f32
}

/// The sums of the columns of `v` `[n, d]`.
fn column_sums(v: &[f32], d: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; d];
    for row in v.chunks_exact(d) {
        for (acc, x) in out.iter_mut().zip(row) {
            *acc += x;
        }
    }
    out
}

/// Removes from each row of `grad` `[L, d]` its component along the same row of `w`
/// (`g − (g·w) w`; the rows of `w` are unit-norm), so that a step moves decoder directions
/// along the unit sphere to first order.
pub fn remove_parallel_component<B: Backend>(grad: Tensor<B, 2>, w: Tensor<B, 2>) -> Tensor<B, 2> {
    let parallel = (grad.clone() * w.clone()).sum_dim(1);
    grad - parallel * w
}

pub(crate) fn scalar_f32<B: Backend>(t: Tensor<B, 1>) -> f32 {
    host_values(t).first().copied().unwrap_or(f32::NAN)
}

pub(crate) fn scalar_i64<B: Backend>(t: Tensor<B, 1, Int>) -> i64 {
    t.into_data().convert::<i64>().to_vec::<i64>().ok().and_then(|v| v.first().copied()).unwrap_or(0)
}
