//! The Qwen2 decoder: modules whose fields follow the Hugging Face checkpoint keys
//! (`model.layers.N.self_attn.q_proj.weight`, ...), so loading needs no renaming.

use burn::module::{Module, Param};
use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Bool, DType, Int, Tensor, TensorData, backend::Backend};

use crate::config::Qwen2Config;
use crate::error::{Error, Result};
use crate::hooks::{Hookpoint, Hooks};

/// Rows (positions) from which a tied head without gradient computes `x Eᵀ` directly instead
/// of `(E xᵀ)ᵀ`. On flex at hidden 512 and vocabulary 8192 the two forms take the same time at
/// 64 rows, `x Eᵀ` 1.5× less at 512 and 3× more at 8.
const TIED_HEAD_DIRECT_ROWS: usize = 128;

/// A linear layer `y = x W + b`.
///
/// `weight` holds the checkpoint tensor of the same key, **transposed** to
/// `[in_features, out_features]`. The transposition happens once, at load
/// ([`Qwen2ForCausalLM::from_pretrained`]) and back at save
/// ([`Qwen2ForCausalLM::named_tensors`]), because burn's CPU matmul is several times
/// slower with a transposed (strided) right-hand side: measured on `flex`, 256×512×1408
/// ran at 35 GFLOP/s through a transposed view and 86 GFLOP/s contiguous, and a one-token
/// 512×8192 product 35 times slower.
#[derive(Module, Debug)]
pub struct Linear<B: Backend> {
    /// `[in_features, out_features]` (the checkpoint's `[out, in]`, transposed).
    pub weight: Param<Tensor<B, 2>>,
    /// `[out_features]`, when the layer has a bias.
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// A low-rank (LoRA) adapter, when one is attached (see the `resa-lora` crate).
    pub adapter: Option<LowRank<B>>,
}

/// How attached adapters act in a forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdapterMode {
    /// Adapters add their low-rank update; no dropout (evaluation).
    #[default]
    On,
    /// Adapters are ignored: the base model (Stage II's teacher).
    Off,
    /// Adapters add their update with dropout on their input (training). Each module's mask
    /// is a function of this key, the module (its layer and its place in the layer) and the
    /// input's shape ([`crate::dropout`]): not of what else the forward or the process drew,
    /// so a forward that skips layers, a data-parallel replica and a resumed run draw the
    /// same masks as the plain, single, uninterrupted one.
    Train(u64),
}

impl AdapterMode {
    /// The mode for the modules of decoder layer `layer`: [`AdapterMode::Train`]'s key
    /// derived for that layer, the others unchanged.
    pub fn for_layer(self, layer: usize) -> Self {
        self.derive(layer as u64)
    }

    /// The mode for module `index` of a layer (`q`, `k`, `v`, `o`, `gate`, `up`, `down`:
    /// 0–6).
    fn for_module(self, index: u64) -> Self {
        self.derive(0x100 + index)
    }

    fn derive(self, part: u64) -> Self {
        match self {
            AdapterMode::Train(key) => AdapterMode::Train(crate::dropout::mix(key, part)),
            other => other,
        }
    }
}

/// A low-rank update of a linear layer: `y += scale · dropout(x) A B`.
///
/// `a` is `[in, r]` and `b` is `[r, out]`: PEFT's `lora_A.weight` `[r, in]` and
/// `lora_B.weight` `[out, r]`, transposed (like [`Linear::weight`]).
#[derive(Module, Debug)]
pub struct LowRank<B: Backend> {
    /// `[in_features, r]`.
    pub a: Param<Tensor<B, 2>>,
    /// `[r, out_features]`.
    pub b: Param<Tensor<B, 2>>,
    /// `alpha / r` (or `alpha / √r` with rsLoRA).
    #[module(skip)]
    pub scale: f64,
    /// Dropout probability on the adapter's input in [`AdapterMode::Train`].
    #[module(skip)]
    pub dropout: f64,
    /// Set while the update is folded into the base weight (the adapter then adds nothing).
    #[module(skip)]
    pub merged: bool,
}

impl<B: Backend> LowRank<B> {
    /// The update `scale · x A B` for `x` `[batch, seq, in]`.
    pub fn delta(&self, x: Tensor<B, 3>, mode: AdapterMode) -> Tensor<B, 3> {
        let dtype = self.a.val().dtype();
        let x = if x.dtype() == dtype { x } else { x.cast(dtype) };
        let x = match mode {
            AdapterMode::Train(key) if self.dropout > 0.0 => {
                let mask = crate::dropout::mask::<B, 3>(x.dims(), 1.0 - self.dropout, key, &x.device(), dtype);
                x * mask
            }
            _ => x,
        };
        x.matmul(self.a.val().unsqueeze_dim(0)).matmul(self.b.val().unsqueeze_dim(0)).mul_scalar(self.scale)
    }
}

impl<B: Backend> Linear<B> {
    /// A layer without adapter.
    pub fn new(weight: Param<Tensor<B, 2>>, bias: Option<Param<Tensor<B, 1>>>) -> Self {
        Linear { weight, bias, adapter: None }
    }

    /// # Shapes
    /// `x`: `[batch, seq, in]` → `[batch, seq, out]`. An attached, unmerged adapter adds its
    /// update unless `mode` is [`AdapterMode::Off`].
    pub fn forward(&self, x: Tensor<B, 3>, mode: AdapterMode) -> Tensor<B, 3> {
        // One `[batch · seq, in] × [in, out]` product: burn's `linear` on `[batch, seq, in]`
        // broadcasts the weight over the batch, and flex then runs one product per sequence,
        // reading the whole weight `batch` times (a decoding step of 8 sequences did eight
        // matrix-vector products per layer instead of one matrix product).
        let [b, s, _] = x.dims();
        let base = match b {
            1 => burn::tensor::module::linear(x.clone(), self.weight.val(), self.bias.as_ref().map(Param::val)),
            _ => {
                let [i, o] = self.weight.dims();
                let flat = x.clone().reshape([b * s, i]);
                burn::tensor::module::linear(flat, self.weight.val(), self.bias.as_ref().map(Param::val))
                    .reshape([b, s, o])
            }
        };
        match &self.adapter {
            Some(ad) if !ad.merged && mode != AdapterMode::Off => {
                let d = ad.delta(x, mode);
                let d = if d.dtype() == base.dtype() { d } else { d.cast(base.dtype()) };
                base + d
            }
            _ => base,
        }
    }

    /// `(out_features, in_features)`, as PyTorch reports them.
    pub fn dims(&self) -> (usize, usize) {
        let [i, o] = self.weight.dims();
        (o, i)
    }
}

/// Token embedding: `weight` is `[vocab, hidden]`.
#[derive(Module, Debug)]
pub struct Embedding<B: Backend> {
    /// `[vocab_size, hidden_size]`.
    pub weight: Param<Tensor<B, 2>>,
}

impl<B: Backend> Embedding<B> {
    /// # Shapes
    /// `ids`: `[batch, seq]` → `[batch, seq, hidden]`.
    pub fn forward(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        burn::tensor::module::embedding(self.weight.val(), ids)
    }
}

/// Root-mean-square layer norm, computed in f32 as transformers' `Qwen2RMSNorm` does.
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    /// `[hidden]`.
    pub weight: Param<Tensor<B, 1>>,
    /// Added to the mean square before the square root.
    #[module(skip)]
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    /// # Shapes
    /// `x`: `[batch, seq, hidden]` → same.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let dtype = x.dtype();
        let x32 = if dtype == DType::F32 { x } else { x.cast(DType::F32) };
        let var = x32.clone().square().mean_dim(2);
        let normed = x32 * var.add_scalar(self.eps).sqrt().recip();
        let normed = if dtype == DType::F32 { normed } else { normed.cast(dtype) };
        normed * self.weight.val().unsqueeze::<3>()
    }
}

/// SwiGLU MLP: `down(silu(gate(x)) * up(x))`, no biases.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// `[intermediate, hidden]`.
    pub gate_proj: Linear<B>,
    /// `[intermediate, hidden]`.
    pub up_proj: Linear<B>,
    /// `[hidden, intermediate]`.
    pub down_proj: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    /// # Shapes
    /// `x`: `[batch, seq, hidden]` → same.
    pub fn forward(&self, x: Tensor<B, 3>, mode: AdapterMode) -> Tensor<B, 3> {
        let gate = silu(self.gate_proj.forward(x.clone(), mode.for_module(4)));
        self.down_proj.forward(gate * self.up_proj.forward(x, mode.for_module(5)), mode.for_module(6))
    }
}

/// Rotary tables for one forward: `cos` and `sin` of shape `[batch, seq, 1, head_dim]`, and
/// the rotate-half permutation as a `[head_dim, head_dim]` matrix.
#[derive(Debug, Clone)]
pub struct Rope<B: Backend> {
    cos: Tensor<B, 4>,
    sin: Tensor<B, 4>,
    rotate: Tensor<B, 2>,
    /// `cos` and `sin` repeated over the heads, per head count ([`Rope::for_heads`]).
    per_heads: Vec<(usize, Tensor<B, 4>, Tensor<B, 4>)>,
}

impl<B: Backend> Rope<B> {
    /// HF's default RoPE: `inv_freq[i] = 1 / theta^(2i / head_dim)` in f32, angles
    /// `position * inv_freq` in f32, duplicated (`cat(freqs, freqs)`) for rotate-half.
    ///
    /// # Shapes
    /// `positions`: `[batch, seq]`.
    pub fn new(positions: Tensor<B, 2, Int>, head_dim: usize, theta: f64, dtype: DType) -> Self {
        let device = positions.device();
        let half = head_dim / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| {
                let exponent = (2 * i) as f32 / head_dim as f32;
                1.0 / (theta as f32).powf(exponent)
            })
            .collect();
        let inv_freq = Tensor::<B, 1>::from_data(TensorData::new(inv_freq, [half]), (&device, DType::F32));
        let [b, s] = positions.dims();
        let pos = positions.float().cast(DType::F32).reshape([b, s, 1]);
        let freqs = pos * inv_freq.reshape([1, 1, half]);
        let emb = Tensor::cat(vec![freqs.clone(), freqs], 2).reshape([b, s, 1, head_dim]);
        let (cos, sin) = (emb.clone().cos(), emb.sin());
        let (cos, sin) = if dtype == DType::F32 { (cos, sin) } else { (cos.cast(dtype), sin.cast(dtype)) };
        // rotate_half(x) = cat(−x₂, x₁) = x R: column j < d/2 takes −x[j + d/2], column
        // j ≥ d/2 takes x[j − d/2]. One product with a ±1 permutation is exact (each output
        // is one input, the other terms are zeros) and replaces two strided slices, a
        // negation and a concatenation.
        let mut r = vec![0.0f32; head_dim * head_dim];
        for j in 0..half {
            r[(j + half) * head_dim + j] = -1.0;
            r[j * head_dim + j + half] = 1.0;
        }
        let rotate = Tensor::<B, 2>::from_data(TensorData::new(r, [head_dim, head_dim]), (&device, dtype));
        Rope { cos, sin, rotate, per_heads: Vec::new() }
    }

    /// Keeps `cos` and `sin` repeated over each of these head counts (the query's and the
    /// keys'): the products of [`Rope::apply`] then read two whole tensors of one layout,
    /// which the CPU backends compute in their vectorised path instead of walking a
    /// broadcast over the heads element by element. The same values either way.
    pub fn for_heads(mut self, heads: &[usize]) -> Self {
        for &h in heads {
            if h > 1 && !self.per_heads.iter().any(|(n, _, _)| *n == h) {
                let (cos, sin) = (self.cos.clone().repeat_dim(2, h), self.sin.clone().repeat_dim(2, h));
                self.per_heads.push((h, cos, sin));
            }
        }
        self
    }

    /// Rotates `x` `[batch, seq, heads, head_dim]` (the projection's own layout, before the
    /// heads are moved in front of the positions).
    pub fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, s, h, d] = x.dims();
        let rotated = x.clone().reshape([b * s * h, d]).matmul(self.rotate.clone()).reshape([b, s, h, d]);
        match self.per_heads.iter().find(|(n, _, _)| *n == h) {
            Some((_, cos, sin)) => x * cos.clone() + rotated * sin.clone(),
            None => x * self.cos.clone() + rotated * self.sin.clone(),
        }
    }
}

/// Keys and values of the tokens seen so far, per layer: `[batch, kv_heads, past, head_dim]`.
///
/// Passed explicitly into [`Qwen2ForCausalLM::forward`]; empty means no past.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for a model with `num_layers` layers.
    pub fn new(num_layers: usize) -> Self {
        KvCache { layers: vec![None; num_layers] }
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.layers.first().and_then(|l| l.as_ref()).map_or(0, |(k, _)| k.dims()[2])
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Batch rows.
    pub fn batch(&self) -> usize {
        self.layers.first().and_then(|l| l.as_ref()).map_or(0, |(k, _)| k.dims()[0])
    }

    /// Prepends `n` zero positions to every row (positions a mask must hide): a row with a
    /// shorter history joins a batch with a longer one.
    pub fn pad_left(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        for (k, v) in self.layers.iter_mut().flatten() {
            let [b, h, _, d] = k.dims();
            let zeros = Tensor::<B, 4>::zeros([b, h, n, d], (&k.device(), k.dtype()));
            *k = Tensor::cat(vec![zeros.clone(), k.clone()], 2);
            *v = Tensor::cat(vec![zeros, v.clone()], 2);
        }
    }

    /// Drops the first `n` positions of every row (padding no row needs any more).
    pub fn drop_leading(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        for (k, v) in self.layers.iter_mut().flatten() {
            let [b, h, t, d] = k.dims();
            *k = k.clone().slice([0..b, 0..h, n..t, 0..d]);
            *v = v.clone().slice([0..b, 0..h, n..t, 0..d]);
        }
    }

    /// Appends the rows of `other`, which must cache as many positions, after these.
    pub fn append_rows(&mut self, other: KvCache<B>) {
        for (mine, theirs) in self.layers.iter_mut().zip(other.layers) {
            *mine = match (mine.take(), theirs) {
                (Some((k, v)), Some((k2, v2))) => Some((Tensor::cat(vec![k, k2], 0), Tensor::cat(vec![v, v2], 0))),
                (a, b) => a.or(b),
            };
        }
    }

    /// Keeps only the batch rows `rows` (in that order): sequences that finished leave a
    /// batch being decoded.
    pub fn retain_rows(&mut self, rows: &[usize]) {
        for (k, v) in self.layers.iter_mut().flatten() {
            let device = k.device();
            let index = Tensor::<B, 1, burn::tensor::Int>::from_data(
                burn::tensor::TensorData::new(rows.iter().map(|&r| r as i64).collect::<Vec<_>>(), [rows.len()]),
                &device,
            );
            *k = k.clone().select(0, index.clone());
            *v = v.clone().select(0, index);
        }
    }
}

/// Grouped-query self-attention with q/k/v biases and rotary position embeddings.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// `[heads * head_dim, hidden]` with bias.
    pub q_proj: Linear<B>,
    /// `[kv_heads * head_dim, hidden]` with bias.
    pub k_proj: Linear<B>,
    /// `[kv_heads * head_dim, hidden]` with bias.
    pub v_proj: Linear<B>,
    /// `[hidden, heads * head_dim]`, no bias.
    pub o_proj: Linear<B>,
    /// Query heads.
    #[module(skip)]
    pub num_heads: usize,
    /// Key/value heads.
    #[module(skip)]
    pub num_kv_heads: usize,
    /// Per-head width.
    #[module(skip)]
    pub head_dim: usize,
}

impl<B: Backend> Attention<B> {
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]`
    /// - `mask`: `[batch, heads, seq, past + seq]`, `true` where attention is forbidden
    /// - returns `[batch, seq, hidden]`
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &Rope<B>,
        mask: &Tensor<B, 4, Bool>,
        cache: Option<&mut Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
        mode: AdapterMode,
    ) -> Tensor<B, 3> {
        let [b, s, _] = x.dims();
        let (h, kvh, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let q = rope.apply(self.q_proj.forward(x.clone(), mode.for_module(0)).reshape([b, s, h, d])).swap_dims(1, 2);
        let mut k =
            rope.apply(self.k_proj.forward(x.clone(), mode.for_module(1)).reshape([b, s, kvh, d])).swap_dims(1, 2);
        let v = self.v_proj.forward(x, mode.for_module(2)).reshape([b, s, kvh, d]).swap_dims(1, 2);
        let mut v = v;
        if let Some(slot) = cache {
            if let Some((pk, pv)) = slot.take() {
                k = Tensor::cat(vec![pk, k], 2);
                v = Tensor::cat(vec![pv, v], 2);
            }
            *slot = Some((k.clone(), v.clone()));
        }
        let t = k.dims()[2];
        let groups = h / kvh;
        // Grouped-query attention without materialising repeated keys and values: query
        // heads j*groups .. (j+1)*groups share kv head j, so they are stacked along the
        // sequence axis of one matmul against that head.
        let scale = (d as f64).powf(-0.5);
        let q = q.reshape([b, kvh, groups * s, d]);
        let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale).reshape([b, h, s, t]);
        let scores = scores.mask_fill(mask.clone(), f32::NEG_INFINITY);
        let dtype = scores.dtype();
        // transformers computes the softmax in f32 and casts back.
        let probs =
            if dtype == DType::F32 { softmax(scores, 3) } else { softmax(scores.cast(DType::F32), 3).cast(dtype) };
        let out = probs.reshape([b, kvh, groups * s, t]).matmul(v).reshape([b, h, s, d]);
        let out = out.swap_dims(1, 2).reshape([b, s, h * d]);
        self.o_proj.forward(out, mode.for_module(3))
    }
}

/// One pre-norm decoder layer.
#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    /// Self-attention.
    pub self_attn: Attention<B>,
    /// SwiGLU MLP.
    pub mlp: Mlp<B>,
    /// Norm before attention.
    pub input_layernorm: RmsNorm<B>,
    /// Norm before the MLP.
    pub post_attention_layernorm: RmsNorm<B>,
}

impl<B: Backend> DecoderLayer<B> {
    /// `x + attn(norm(x))`, then `h + mlp(norm(h))`; the MLP's output is passed through
    /// `mlp_hook` before it is added (hooks at `mlp.N`).
    fn forward_with(
        &self,
        x: Tensor<B, 3>,
        rope: &Rope<B>,
        mask: &Tensor<B, 4, Bool>,
        cache: Option<&mut Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
        mode: AdapterMode,
        mlp_hook: impl FnOnce(Tensor<B, 3>) -> Result<Tensor<B, 3>>,
    ) -> Result<Tensor<B, 3>> {
        let attn = self.self_attn.forward(self.input_layernorm.forward(x.clone()), rope, mask, cache, mode);
        let h = x + attn;
        let mlp = self.mlp.forward(self.post_attention_layernorm.forward(h.clone()), mode);
        Ok(h + mlp_hook(mlp)?)
    }
}

/// What every decoder layer of one unpadded forward over positions `0 .. seq` shares (the
/// rotary tables and the causal mask), for running the layers one at a time with
/// [`Qwen2ForCausalLM::layer_forward`] — e.g. a backward that recomputes one layer at a
/// time instead of keeping every layer's activations.
#[derive(Debug, Clone)]
pub struct LayerInputs<B: Backend> {
    rope: Rope<B>,
    mask: Tensor<B, 4, Bool>,
    shape: [usize; 2],
}

/// `[b, heads, s, t]`, `true` where query `i` (absolute position `past + i`) may not see key `j`.
fn causal_mask<B: Backend>(b: usize, heads: usize, s: usize, past: usize, device: &B::Device) -> Tensor<B, 4, Bool> {
    let t = past + s;
    let causal: Vec<bool> = (0..s).flat_map(|i| (0..t).map(move |j| j > past + i)).collect();
    Tensor::<B, 2, Bool>::from_data(TensorData::new(causal, [s, t]), device)
        .reshape([1, 1, s, t])
        .expand([b, heads, s, t])
}

/// Embeddings, decoder layers and the final norm (`model.*` in the checkpoint).
#[derive(Module, Debug)]
pub struct Qwen2Model<B: Backend> {
    /// `model.embed_tokens`.
    pub embed_tokens: Embedding<B>,
    /// `model.layers.N`.
    pub layers: Vec<DecoderLayer<B>>,
    /// `model.norm`.
    pub norm: RmsNorm<B>,
}

/// Which positions the output head is applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Logits {
    /// Every position: `[batch, seq, vocab]` (training needs these).
    #[default]
    All,
    /// Only the last position: `[batch, 1, vocab]` (generation).
    Last,
    /// No logits; the forward stops after the deepest hooked layer (activation capture).
    None,
    /// The final normed hidden states `[batch, seq, hidden]` in place of the logits, for a
    /// head applied in pieces ([`Qwen2ForCausalLM::head`], [`Qwen2ForCausalLM::head_input_grad`]):
    /// the `[batch, seq, vocab]` logits never exist at once.
    Hidden,
}

/// Inputs of a forward pass.
#[derive(Debug, Clone)]
pub struct ForwardInput<B: Backend> {
    /// `[batch, seq]` token ids.
    pub input_ids: Tensor<B, 2, Int>,
    /// `[batch, past + seq]`, `true` for real tokens and `false` for padding, like HF's
    /// `attention_mask`. `None` means no padding.
    pub attention_mask: Option<Tensor<B, 2, Bool>>,
    /// `[batch, seq]` positions. `None` means `past .. past + seq` for every row, as HF's
    /// forward does when it is given no `position_ids`.
    pub position_ids: Option<Tensor<B, 2, Int>>,
    /// Which logits to compute.
    pub logits: Logits,
    /// How attached adapters act (default: on, no dropout).
    pub adapters: AdapterMode,
    /// Start at decoder layer `k` from the hidden states `[batch, seq, hidden]` entering it
    /// (the output of layer `k − 1`, as a capture at `layers.{k-1}` gives it) instead of
    /// embedding `input_ids` and running layers `0..k` (whose shape still sets the batch
    /// and positions). Hooks below `k` see nothing. Not with a KV cache.
    pub start: Option<(usize, Tensor<B, 3>)>,
}

impl<B: Backend> ForwardInput<B> {
    /// Unpadded ids with full logits.
    pub fn new(input_ids: Tensor<B, 2, Int>) -> Self {
        ForwardInput {
            input_ids,
            attention_mask: None,
            position_ids: None,
            logits: Logits::All,
            adapters: AdapterMode::On,
            start: None,
        }
    }

    /// Starts at decoder layer `layer` from `hidden`, the hidden states entering it (see
    /// [`ForwardInput::start`]).
    pub fn starting_at(mut self, layer: usize, hidden: Tensor<B, 3>) -> Self {
        self.start = Some((layer, hidden));
        self
    }

    /// Sets how attached adapters act.
    pub fn with_adapters(mut self, adapters: AdapterMode) -> Self {
        self.adapters = adapters;
        self
    }

    /// Chooses which logits to compute.
    pub fn with_logits(mut self, logits: Logits) -> Self {
        self.logits = logits;
        self
    }

    /// Sets the padding mask and positions.
    pub fn with_mask(mut self, attention_mask: Tensor<B, 2, Bool>, position_ids: Tensor<B, 2, Int>) -> Self {
        self.attention_mask = Some(attention_mask);
        self.position_ids = Some(position_ids);
        self
    }
}

/// Outputs of a forward pass.
#[derive(Debug, Clone)]
pub struct ForwardOutput<B: Backend> {
    /// `[batch, seq, vocab]` (or `[batch, 1, vocab]` with [`Logits::Last`]); `None` with
    /// [`Logits::None`].
    pub logits: Option<Tensor<B, 3>>,
    /// Captured activations `[batch, seq, hidden]`, in the order the forward reached them.
    pub captured: Vec<(Hookpoint, Tensor<B, 3>)>,
}

impl<B: Backend> ForwardOutput<B> {
    /// The activation captured at `at`, if it was requested.
    pub fn activation(&self, at: impl Into<Hookpoint>) -> Option<&Tensor<B, 3>> {
        let at = at.into();
        self.captured.iter().find(|(h, _)| *h == at).map(|(_, t)| t)
    }
}

/// Qwen2 with its language-model head (`Qwen2ForCausalLM` in transformers).
#[derive(Module, Debug)]
pub struct Qwen2ForCausalLM<B: Backend> {
    /// The decoder stack.
    pub model: Qwen2Model<B>,
    /// `lm_head`; `None` when tied to `model.embed_tokens`.
    pub lm_head: Option<Linear<B>>,
    /// Validated configuration.
    #[module(skip)]
    pub config: Qwen2Config,
}

impl<B: Backend> Qwen2ForCausalLM<B> {
    /// The configuration the model was built from.
    pub fn config(&self) -> &Qwen2Config {
        &self.config
    }

    /// Compute dtype of the weights.
    pub fn dtype(&self) -> DType {
        self.model.embed_tokens.weight.val().dtype()
    }

    /// Device holding the weights.
    pub fn device(&self) -> B::Device {
        self.model.embed_tokens.weight.val().device()
    }

    /// Runs the model.
    ///
    /// `cache`, when given, holds the keys and values of earlier positions and is extended
    /// with this call's. `hooks` captures activations and may replace one.
    ///
    /// # Shapes
    /// See [`ForwardInput`] and [`ForwardOutput`].
    pub fn forward(
        &self,
        input: ForwardInput<B>,
        hooks: &Hooks<'_, B>,
        mut cache: Option<&mut KvCache<B>>,
    ) -> Result<ForwardOutput<B>> {
        let cfg = &self.config;
        let [b, s] = input.input_ids.dims();
        if b == 0 || s == 0 {
            return Err(Error::Input {
                field: "input_ids",
                message: format!("has shape [{b}, {s}]; both must be positive"),
            });
        }
        for hp in hooks.hookpoints() {
            hp.check_depth(cfg.num_hidden_layers)?;
        }
        if let Some(c) = cache.as_deref()
            && c.layers.len() != cfg.num_hidden_layers
        {
            return Err(Error::Input {
                field: "cache",
                message: format!("KV cache has {} layers, the model {}", c.layers.len(), cfg.num_hidden_layers),
            });
        }
        if let Some((k, h)) = &input.start {
            if *k > cfg.num_hidden_layers || h.dims() != [b, s, cfg.hidden_size] {
                return Err(Error::Input {
                    field: "start",
                    message: format!(
                        "layer {k} with hidden states {:?}: expected a layer 0 ..= {} and [{b}, {s}, {}]",
                        h.dims(),
                        cfg.num_hidden_layers,
                        cfg.hidden_size
                    ),
                });
            }
            if cache.is_some() {
                return Err(Error::Input {
                    field: "cache",
                    message: "a forward that starts at a layer takes no KV cache".into(),
                });
            }
        }
        let past = cache.as_deref().map_or(0, KvCache::len);
        let t = past + s;
        let device = self.device();
        let dtype = self.dtype();

        let positions = match input.position_ids {
            Some(p) => {
                if p.dims() != [b, s] {
                    return Err(Error::Input {
                        field: "position_ids",
                        message: format!("has shape {:?}, expected [{b}, {s}]", p.dims()),
                    });
                }
                p
            }
            None => Tensor::<B, 1, Int>::arange(past as i64..t as i64, &device).reshape([1, s]).expand([b, s]),
        };
        let rope = Rope::new(positions, cfg.head_dim, cfg.rope_theta, dtype)
            .for_heads(&[cfg.num_attention_heads, cfg.num_key_value_heads]);

        // Causal mask on the host: query i (absolute position past + i) may see keys 0..=past + i.
        let mut mask = causal_mask::<B>(b, 1, s, past, &device);
        if let Some(am) = input.attention_mask {
            if am.dims() != [b, t] {
                return Err(Error::Input {
                    field: "attention_mask",
                    message: format!("has shape {:?}, expected [{b}, {t}] (past + current positions)", am.dims()),
                });
            }
            let padding = am.bool_not().reshape([b, 1, 1, t]).expand([b, 1, s, t]);
            // A query may always see itself, so rows of padding tokens never become all
            // -inf (whose softmax is NaN); their outputs are ignored anyway.
            let diag: Vec<bool> = (0..s).flat_map(|i| (0..t).map(move |j| j == past + i)).collect();
            let diag = Tensor::<B, 2, Bool>::from_data(TensorData::new(diag, [s, t]), &device)
                .reshape([1, 1, s, t])
                .expand([b, 1, s, t]);
            mask = mask.bool_or(padding).bool_and(diag.bool_not());
        }
        let mask = mask.expand([b, cfg.num_attention_heads, s, t]);

        let stop = match input.logits {
            Logits::None => hooks.last_layer().map_or(0, |l| l + 1),
            _ => cfg.num_hidden_layers,
        };
        let mut captured = Vec::new();
        let (first, mut x) = match input.start {
            Some((k, h)) => (k, h),
            None => (0, self.model.embed_tokens.forward(input.input_ids)),
        };
        for (i, layer) in self.model.layers.iter().enumerate().take(stop).skip(first) {
            let slot = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            let mode = input.adapters.for_layer(i);
            let out = layer
                .forward_with(x, &rope, &mask, slot, mode, |mlp| hooks.apply(Hookpoint::Mlp(i), mlp, &mut captured))?;
            x = hooks.apply(Hookpoint::Residual(i), out, &mut captured)?;
        }
        let logits = match input.logits {
            Logits::None => None,
            Logits::Hidden => Some(self.model.norm.forward(x)),
            which => {
                let x = if which == Logits::Last { x.narrow(1, s - 1, 1) } else { x };
                Some(self.head(self.model.norm.forward(x)))
            }
        };
        Ok(ForwardOutput { logits, captured })
    }

    /// The rotary tables and causal mask of an unpadded forward of `batch` rows over
    /// positions `0 .. seq`, for [`Qwen2ForCausalLM::layer_forward`].
    pub fn layer_inputs(&self, batch: usize, seq: usize) -> LayerInputs<B> {
        let cfg = &self.config;
        let device = self.device();
        let positions = Tensor::<B, 1, Int>::arange(0..seq as i64, &device).reshape([1, seq]).expand([batch, seq]);
        let rope = Rope::new(positions, cfg.head_dim, cfg.rope_theta, self.dtype())
            .for_heads(&[cfg.num_attention_heads, cfg.num_key_value_heads]);
        let mask = causal_mask::<B>(batch, cfg.num_attention_heads, seq, 0, &device);
        LayerInputs { rope, mask, shape: [batch, seq] }
    }

    /// Decoder layer `layer` alone on the hidden states `x` `[batch, seq, hidden]` entering
    /// it: its output, exactly as [`Qwen2ForCausalLM::forward`] computes it at `layers.N`
    /// (no hooks; `adapters` as the whole forward's mode, derived for the layer here).
    pub fn layer_forward(
        &self,
        layer: usize,
        x: Tensor<B, 3>,
        inputs: &LayerInputs<B>,
        adapters: AdapterMode,
    ) -> Result<Tensor<B, 3>> {
        let cfg = &self.config;
        let [b, s] = inputs.shape;
        let Some(decoder) = self.model.layers.get(layer) else {
            return Err(Error::Input {
                field: "layer",
                message: format!("{layer}: the model has {} decoder layers", cfg.num_hidden_layers),
            });
        };
        if x.dims() != [b, s, cfg.hidden_size] {
            return Err(Error::Input {
                field: "hidden_states",
                message: format!(
                    "hidden states of shape {:?} for layer {layer}; expected [{b}, {s}, {}]",
                    x.dims(),
                    cfg.hidden_size
                ),
            });
        }
        decoder.forward_with(x, &inputs.rope, &inputs.mask, None, adapters.for_layer(layer), Ok)
    }

    /// The final norm applied to the residual stream after the last layer (the hidden
    /// states [`Logits::Hidden`] returns).
    pub fn final_norm(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.model.norm.forward(x)
    }

    /// The decoder's linear layers with their module names as PEFT and transformers call
    /// them (`model.layers.3.self_attn.q_proj`, `model.layers.3.mlp.down_proj`), in layer
    /// order. The output head is not included.
    pub fn linears(&self) -> Vec<(String, &Linear<B>)> {
        let mut out = Vec::new();
        for (l, layer) in self.model.layers.iter().enumerate() {
            let (a, m) = (&layer.self_attn, &layer.mlp);
            for (name, lin) in
                [("q_proj", &a.q_proj), ("k_proj", &a.k_proj), ("v_proj", &a.v_proj), ("o_proj", &a.o_proj)]
            {
                out.push((format!("model.layers.{l}.self_attn.{name}"), lin));
            }
            for (name, lin) in [("gate_proj", &m.gate_proj), ("up_proj", &m.up_proj), ("down_proj", &m.down_proj)] {
                out.push((format!("model.layers.{l}.mlp.{name}"), lin));
            }
        }
        out
    }

    /// [`Qwen2ForCausalLM::linears`], mutably (attaching, merging or removing adapters).
    pub fn linears_mut(&mut self) -> Vec<(String, &mut Linear<B>)> {
        let mut out = Vec::new();
        for (l, layer) in self.model.layers.iter_mut().enumerate() {
            let (a, m) = (&mut layer.self_attn, &mut layer.mlp);
            for (name, lin) in [
                ("q_proj", &mut a.q_proj),
                ("k_proj", &mut a.k_proj),
                ("v_proj", &mut a.v_proj),
                ("o_proj", &mut a.o_proj),
            ] {
                out.push((format!("model.layers.{l}.self_attn.{name}"), lin));
            }
            for (name, lin) in
                [("gate_proj", &mut m.gate_proj), ("up_proj", &mut m.up_proj), ("down_proj", &mut m.down_proj)]
            {
                out.push((format!("model.layers.{l}.mlp.{name}"), lin));
            }
        }
        out
    }

    /// The gradient of a loss with respect to the head's input, given its gradient `g`
    /// `[batch, seq, vocab]` with respect to the logits: `g Wᵀ` for the head's (frozen) weight
    /// `W`, which takes no adapter.
    pub fn head_input_grad(&self, g: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, s, v] = g.dims();
        let g = g.reshape([b * s, v]);
        let x = match &self.lm_head {
            // `Linear::weight` is `[in, out]`: logits = x W.
            Some(head) => g.matmul(head.weight.val().transpose()),
            // Tied: logits = x Eᵀ, so the input gradient is g E.
            None => g.matmul(self.model.embed_tokens.weight.val()),
        };
        let h = self.config.hidden_size;
        x.reshape([b, s, h])
    }

    /// The output head applied to normed hidden states `[batch, seq, hidden]`.
    pub fn head(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.lm_head {
            Some(head) => head.forward(x, AdapterMode::Off),
            None => {
                // Tied head: logits = x Eᵀ. Where a gradient flows back through it (training)
                // or over many rows (a frozen teacher, logits of every position) as x Eᵀ
                // directly: its backward then multiplies contiguous operands (g E) and no
                // transposed `[rows, vocab]` output is copied. Over a few rows (prefill's last
                // position, decoding) as (E xᵀ)ᵀ, so the large embedding matrix is the
                // contiguous left operand: there a strided Eᵀ, packed anew by every product,
                // costs more than the output's transposition (see `Linear`; measured in
                // `cargo bench -p resa-qwen2 --bench qwen2 -- tied-head`).
                let [b, s, h] = x.dims();
                let vocab = self.config.vocab_size;
                let x = x.reshape([b * s, h]);
                let e = self.model.embed_tokens.weight.val();
                let logits = if x.is_require_grad() || b * s >= TIED_HEAD_DIRECT_ROWS {
                    x.matmul(e.transpose())
                } else {
                    e.matmul(x.transpose()).transpose()
                };
                logits.reshape([b, s, vocab])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// The rotation as one product with the ±1 permutation equals transformers'
    /// `x·cos + rotate_half(x)·sin` (`rotate_half(x) = cat(−x₂, x₁)`) bit for bit.
    #[test]
    fn rope_by_permutation_equals_rotate_half_exactly() {
        type B = burn::backend::Flex;
        let device = Default::default();
        let (b, s, h, d) = (2usize, 5usize, 3usize, 8usize);
        let positions = Tensor::<B, 1, Int>::arange(0..s as i64, &device).reshape([1, s]).expand([b, s]);
        let rope = Rope::new(positions, d, 10_000.0, DType::F32);
        let x = Tensor::<B, 4>::random([b, s, h, d], Distribution::Normal(0.0, 1.0), &device);
        let got = rope.apply(x.clone());
        let x1 = x.clone().narrow(3, 0, d / 2);
        let x2 = x.clone().narrow(3, d / 2, d / 2);
        let want = x * rope.cos.clone() + Tensor::cat(vec![x2.neg(), x1], 3) * rope.sin.clone();
        let got: Vec<f32> = got.into_data().iter::<f32>().collect();
        let want: Vec<f32> = want.into_data().iter::<f32>().collect();
        assert_eq!(got, want);
    }

    /// The tables repeated over the heads give the broadcast's values bit for bit.
    #[test]
    fn rope_tables_per_head_count_change_nothing() {
        type B = burn::backend::Flex;
        let device = Default::default();
        let (b, s, h, d) = (2usize, 5usize, 3usize, 8usize);
        let positions = Tensor::<B, 1, Int>::arange(0..s as i64, &device).reshape([1, s]).expand([b, s]);
        let plain = Rope::new(positions.clone(), d, 10_000.0, DType::F32);
        let per_heads = Rope::new(positions, d, 10_000.0, DType::F32).for_heads(&[h, 1, h]);
        assert_eq!(per_heads.per_heads.len(), 1, "one table per distinct head count above 1");
        let x = Tensor::<B, 4>::random([b, s, h, d], Distribution::Normal(0.0, 1.0), &device);
        let a: Vec<f32> = plain.apply(x.clone()).into_data().iter::<f32>().collect();
        let b2: Vec<f32> = per_heads.apply(x).into_data().iter::<f32>().collect();
        assert_eq!(a, b2);
    }
}
