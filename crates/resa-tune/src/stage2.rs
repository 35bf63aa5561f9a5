//! The Stage II objective: KL(teacher ‖ student) with the frozen SAE spliced into the student.
//!
//! teacher = the target model with adapters off and no SAE (no gradient);
//! student = the same weights with adapters on (dropout in training) and the SAE's
//! reconstruction replacing the activation at the hookpoint;
//! loss = Σ_{t,v} p_teacher (log p_teacher − log p_student) / batch
//! (PyTorch's `kl_div(log_softmax(student), softmax(teacher), reduction="batchmean")`).

use burn::module::AutodiffModule;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{DType, Int, Tensor, TensorData, backend::Backend};
use resa_qwen2::{
    AdapterMode, CheckedHookpoint, ForwardInput, Hookpoint, Hooks, LayerInputs, Logits, Qwen2ForCausalLM, Splice,
    SpliceError, SpliceGrad, SpliceHook, host_values,
};
use resa_sae::SparseCoder;

use crate::error::{Error, Result};

/// How gradients pass the spliced SAE: the model's own [`SpliceGrad`] (one type, named
/// `detach`, `straight-through` or `flow` in files and on the command line). `Detach`, the
/// default, is Resa's code: the SAE runs under `no_grad`, so only adapters after the
/// hookpoint train; `StraightThrough` treats the splice as the identity backwards, so
/// adapters at and below it train too; `Flow` is the frozen SAE's true gradient.
pub type SaeGrad = SpliceGrad;

/// Whether Stage II's student can start from the teacher's activation at `at` (the shared
/// prefix, and recomputing the student's layers, need it): with the `detach` splice at a
/// residual hookpoint `layers.L` nothing below the splice gets a gradient, so while the
/// adapters of layers `0..=L` are zero the student's activation there is the teacher's.
/// Returns `L`. The one statement of this rule: [`SaeTuning`](crate::SaeTuning) and a run's
/// configuration both ask it.
pub fn student_starts_at(grad: SaeGrad, at: Hookpoint) -> Option<usize> {
    match (grad, at) {
        (SpliceGrad::Detach, Hookpoint::Residual(l)) => Some(l),
        _ => None,
    }
}

/// A sparse coder as a [`Splice`]: `[b, s, d]` → its reconstruction, in the input dtype. An
/// SAE of another width fails the splice ([`resa_sae::Error::Width`]).
pub struct SaeSplice<'a, B: Backend> {
    sae: &'a SparseCoder<B>,
}

impl<'a, B: Backend> SaeSplice<'a, B> {
    /// `sae` as a splice.
    pub fn new(sae: &'a SparseCoder<B>) -> Self {
        SaeSplice { sae }
    }
}

impl<B: Backend> Splice<B> for SaeSplice<'_, B> {
    fn splice(&self, x: Tensor<B, 3>) -> std::result::Result<Tensor<B, 3>, SpliceError> {
        let [b, s, d] = x.dims();
        Ok(self.sae.reconstruct(x.reshape([b * s, d]))?.reshape([b, s, d]))
    }
}

/// `Σ p_t (log p_t − log p_s) / batch` over `[batch, seq, vocab]` logits, in f32.
///
/// On the CPU backends (flex, ndarray), with a teacher that needs no gradient (Stage II's),
/// the KL and its gradient with respect to the student's logits are computed on the host in
/// one pass per row on all threads ([`crate::host::kl_rows`]) and reach autodiff through a
/// surrogate; elsewhere as tensor operations. Both give the same loss and gradients (to
/// float rounding; `cargo test -p resa-tune --lib`).
pub fn kl_batchmean<B: Backend>(teacher: Tensor<B, 3>, student: Tensor<B, 3>) -> Tensor<B, 1> {
    if resa_qwen2::on_host::<B>(&student.device()) && !teacher.is_require_grad() {
        let [b, s, v] = student.dims();
        let (kl, g) =
            crate::host::kl_rows(&host_values(teacher), &host_values(student.clone().detach()), v, 1.0 / b as f32);
        let g = Tensor::<B, 3>::from_data(TensorData::new(g, [b, s, v]), (&student.device(), DType::F32));
        let value = Tensor::<B, 1>::from_data(
            TensorData::new(vec![(kl / b as f64) as f32], [1]),
            (&student.device(), DType::F32),
        );
        return with_gradient(student.cast(DType::F32), g, value);
    }
    kl_batchmean_tensors(teacher, student)
}

/// [`kl_batchmean`] as tensor operations (burn's softmax and log-softmax).
pub(crate) fn kl_batchmean_tensors<B: Backend>(teacher: Tensor<B, 3>, student: Tensor<B, 3>) -> Tensor<B, 1> {
    let [b, _, _] = student.dims();
    let t = teacher.cast(DType::F32);
    let s = student.cast(DType::F32);
    let p = softmax(t.clone(), 2);
    let kl = p * (log_softmax(t, 2) - log_softmax(s, 2));
    kl.sum().div_scalar(b as f64)
}

/// How a Stage II loss applies the output head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// Whole `[batch, seq, vocab]` logits (the reference's computation).
    Full,
    /// This many positions at a time ([`kl_batchmean_from_hidden`]): the same loss and
    /// gradients, without the whole logits.
    Chunked(usize),
}

impl Head {
    /// Logit elements (`positions × vocab`) above which [`Head::auto`] chunks: 2²⁶ f32 values
    /// are 256 MB per logits tensor.
    pub const AUTO_LIMIT: usize = 1 << 26;

    /// Positions per piece of [`Head::auto`].
    pub const AUTO_CHUNK: usize = 256;

    /// [`Head::Full`] up to [`Head::AUTO_LIMIT`] logit elements, else [`Head::AUTO_CHUNK`]
    /// positions at a time.
    pub fn auto(positions: usize, vocab: usize) -> Head {
        if positions.saturating_mul(vocab) > Self::AUTO_LIMIT { Head::Chunked(Self::AUTO_CHUNK) } else { Head::Full }
    }

    fn logits(self) -> Logits {
        match self {
            Head::Full => Logits::All,
            Head::Chunked(_) => Logits::Hidden,
        }
    }

    /// The KL of the teacher's and the student's outputs (logits, or hidden states when
    /// chunked).
    fn kl<B: Backend>(self, model: &Qwen2ForCausalLM<B>, teacher: Tensor<B, 3>, student: Tensor<B, 3>) -> Tensor<B, 1> {
        match self {
            Head::Full => kl_batchmean(teacher, student),
            Head::Chunked(n) => kl_batchmean_from_hidden(model, teacher, student, n),
        }
    }
}

/// [`kl_batchmean`] from the final hidden states (`Logits::Hidden` forwards of the teacher,
/// detached, and of the student), the head applied to `chunk` positions at a time: the value
/// is the KL and the gradient with respect to `student` is exact (`(p_s − p_t) W / batch` per
/// piece, through the frozen head), but no `[batch, seq, vocab]` tensor is ever held — at
/// DeepSeek-R1-Distill's vocabulary of 151,936, 2,048 positions of f32 logits are 1.2 GB
/// each, and the plain loss keeps several.
pub fn kl_batchmean_from_hidden<B: Backend>(
    model: &Qwen2ForCausalLM<B>,
    teacher: Tensor<B, 3>,
    student: Tensor<B, 3>,
    chunk: usize,
) -> Tensor<B, 1> {
    let [b, s, h] = student.dims();
    let n = b * s;
    let chunk = chunk.max(1);
    let t2 = teacher.detach().reshape([1, n, h]);
    let s2 = student.clone().detach().reshape([1, n, h]);
    let device = student.device();
    let host = resa_qwen2::on_host::<B>(&device);
    let mut kl = Tensor::<B, 1>::zeros([1], (&device, DType::F32));
    let mut host_kl = 0.0f64;
    let mut grads = Vec::with_capacity(n.div_ceil(chunk));
    for start in (0..n).step_by(chunk) {
        let end = (start + chunk).min(n);
        let tl = model.head(t2.clone().slice([0..1, start..end, 0..h])).cast(DType::F32);
        let sl = model.head(s2.clone().slice([0..1, start..end, 0..h])).cast(DType::F32);
        if host {
            // The KL and `(p_s − p_t) / batch` in one pass per row ([`crate::host`]).
            let [_, rows, v] = sl.dims();
            let (k, g) = crate::host::kl_rows(&host_values(tl), &host_values(sl), v, 1.0 / b as f32);
            host_kl += k;
            let g = Tensor::<B, 3>::from_data(TensorData::new(g, [1, rows, v]), (&device, DType::F32));
            grads.push(model.head_input_grad(g.cast(student.dtype())).detach());
            continue;
        }
        let lpt = log_softmax(tl, 2);
        let lps = log_softmax(sl, 2);
        let pt = lpt.clone().exp();
        kl = kl + (pt.clone() * (lpt - lps.clone())).sum();
        let g = (lps.exp() - pt).div_scalar(b as f64).cast(student.dtype());
        grads.push(model.head_input_grad(g).detach());
    }
    let g = Tensor::cat(grads, 1).reshape([b, s, h]);
    let kl = if host {
        kl + Tensor::from_data(TensorData::new(vec![host_kl as f32], [1]), (&device, DType::F32))
    } else {
        kl
    };
    with_gradient(student, g, kl.div_scalar(b as f64))
}

/// A loss of value `value` whose gradient with respect to `x` is `g`:
/// `Σ x·g − (Σ x·g)_detached + value` (`value` detached), in f32.
fn with_gradient<B: Backend, const D: usize>(x: Tensor<B, D>, g: Tensor<B, D>, value: Tensor<B, 1>) -> Tensor<B, 1> {
    let surrogate = (x * g).cast(DType::F32).sum();
    surrogate.clone() - surrogate.detach() + value.detach()
}

/// The Stage II loss on one batch of token ids `[batch, seq]`: teacher logits without
/// gradient, student logits with the SAE spliced at `hookpoint`, the head applied as `head`
/// says ([`Head::Full`]: whole logits).
pub fn stage2_loss<B: Backend>(
    model: &Qwen2ForCausalLM<B>,
    sae: &SparseCoder<B>,
    hookpoint: CheckedHookpoint,
    grad: SaeGrad,
    input_ids: Tensor<B, 2, Int>,
    student_adapters: AdapterMode,
    head: Head,
) -> Result<Tensor<B, 1>> {
    let splice = SaeSplice::new(sae);
    let teacher =
        logits(model, ForwardInput::new(input_ids.clone()).with_adapters(AdapterMode::Off), head, &Hooks::default())?;
    let hooks = Hooks::default().with_splice(hookpoint, &splice, grad);
    let student = logits(model, ForwardInput::new(input_ids).with_adapters(student_adapters), head, &hooks)?;
    Ok(head.kl(model, teacher.detach(), student))
}

/// The logits of `input` as `head` asks for them.
pub(crate) fn logits<B: Backend>(
    model: &Qwen2ForCausalLM<B>,
    input: ForwardInput<B>,
    head: Head,
    hooks: &Hooks<'_, B>,
) -> Result<Tensor<B, 3>> {
    model
        .forward(input.with_logits(head.logits()), hooks, None)?
        .logits
        .ok_or_else(|| Error::Internal("the forward returned no logits".into()))
}

/// [`stage2_loss`] with the `detach` splice at a residual hookpoint `layers.L`, doing less
/// work and giving the same loss and adapter gradients: no gradient reaches layers `0..=L`,
/// so while their adapters hold `B = 0` (they start so and never move) the student's
/// activation at the hookpoint *is* the teacher's. The teacher's layers up to it give it, and
/// the student runs only layers `L+1..` from the SAE's reconstruction of it. Dropout masks
/// are keyed per module ([`resa_qwen2::dropout`]), so the layers that run draw the plain
/// computation's masks and the skipped ones draw nothing. The caller checks the `B = 0` condition
/// ([`prefix_adapters_are_zero`]); [`SaeTuning`](crate::SaeTuning) does, once.
pub fn stage2_loss_shared_prefix<B: Backend>(
    model: &Qwen2ForCausalLM<B>,
    sae: &SparseCoder<B>,
    at: CheckedHookpoint,
    input_ids: Tensor<B, 2, Int>,
    student_adapters: AdapterMode,
    head: Head,
) -> Result<Tensor<B, 1>> {
    // The teacher up to the hookpoint; then the teacher's remaining layers and the student's
    // (from the SAE's reconstruction) are independent. On a CPU backend with the whole head
    // they run at once, so that one's single-threaded operations fill the core the other
    // leaves idle (`stage2_step`: a tenth less time, a higher peak); with the head in pieces
    // the overlap gains nothing measurable and costs a third more memory, so they run in turn.
    let [b, s] = input_ids.dims();
    let inputs = model.layer_inputs(b, s);
    let (h, x, layer) = teacher_to_splice(model, sae, at, input_ids, &inputs)?;
    let teacher_rest = || Ok::<_, Error>(layers_from(model, h, layer, &inputs, AdapterMode::Off, head)?.detach());
    let student = || layers_from(model, x, layer, &inputs, student_adapters, head);
    let (teacher, student) = if head == Head::Full && resa_qwen2::on_host::<B>(&model.device()) {
        rayon::join(teacher_rest, student)
    } else {
        (teacher_rest(), student())
    };
    Ok(head.kl(model, teacher?, student?))
}

/// [`stage2_loss_shared_prefix`]'s loss and the gradients of `loss / divisor`, with the
/// student's layers recomputed in the backward: the student runs layers `L+1..` once on the
/// inner backend, keeping only each layer's input; then the head's backward gives the
/// gradient at the last layer's output, and each layer, last first, runs again with its
/// graph from its kept input and is differentiated against the gradient at its output
/// (giving its adapters' gradients and the gradient at its input). The result equals the
/// plain backward's (same operations, same dropout masks: they are keyed per module); at
/// most one layer's activations are held at a time instead of every student layer's, for
/// one more forward of the student's layers.
pub fn stage2_gradients_recomputed<B: AutodiffBackend>(
    model: &Qwen2ForCausalLM<B>,
    sae: &SparseCoder<B>,
    at: CheckedHookpoint,
    input_ids: Tensor<B, 2, Int>,
    student_adapters: AdapterMode,
    head: Head,
    divisor: f64,
) -> Result<(f32, B::Gradients)> {
    let [b, s] = input_ids.dims();
    let layers = model.config().num_hidden_layers;
    let inputs = model.layer_inputs(b, s);
    let (h, x, layer) = teacher_to_splice(model, sae, at, input_ids, &inputs)?;
    let teacher = layers_from(model, h, layer, &inputs, AdapterMode::Off, head)?.detach();

    // The student's forward without a graph: the inputs of layers L+1.. and the last output.
    let inner = model.valid();
    let inner_inputs = inner.layer_inputs(b, s);
    let mut kept: Vec<Tensor<B::InnerBackend, 3>> = Vec::with_capacity(layers - layer);
    let mut h = x.inner();
    for l in layer + 1..layers {
        let next = inner.layer_forward(l, h.clone(), &inner_inputs, student_adapters)?;
        kept.push(h);
        h = next;
    }
    drop(inner);

    // The head and the loss, differentiated down to the last layer's output.
    let last = Tensor::<B, 3>::from_inner(h).require_grad();
    let student = model.final_norm(last.clone());
    let kl = match head {
        Head::Full => kl_batchmean(teacher, model.head(student)),
        Head::Chunked(n) => kl_batchmean_from_hidden(model, teacher, student, n),
    };
    let value = kl.clone().into_data().iter::<f32>().next().unwrap_or(f32::NAN);
    if !value.is_finite() {
        return Ok((value, kl.detach().require_grad().backward()));
    }
    let mut grads = kl.div_scalar(divisor).backward();
    let mut g = last
        .grad_remove(&mut grads)
        .ok_or_else(|| Error::Internal("the loss has no gradient at the student's last layer".into()))?;

    // Each layer again, last first, against the gradient at its output.
    for l in (layer + 1..layers).rev() {
        let Some(h) = kept.pop() else { break };
        let h = Tensor::<B, 3>::from_inner(h).require_grad();
        let out = model.layer_forward(l, h.clone(), &inputs, student_adapters)?;
        let surrogate = (out * Tensor::from_inner(g)).cast(DType::F32).sum();
        let mut layer_grads = surrogate.backward();
        for p in layer_adapter_params(model, l) {
            if let Some(pg) = p.grad_remove(&mut layer_grads) {
                p.grad_replace(&mut grads, pg);
            }
        }
        g = h
            .grad_remove(&mut layer_grads)
            .ok_or_else(|| Error::Internal(format!("no gradient reached the input of layer {l}")))?;
    }
    Ok((value, grads))
}

/// The teacher (adapters off) up to a residual hookpoint `layers.L` (detached), the SAE's
/// reconstruction of it (where the student starts), and `L`.
fn teacher_to_splice<B: Backend>(
    model: &Qwen2ForCausalLM<B>,
    sae: &SparseCoder<B>,
    at: CheckedHookpoint,
    input_ids: Tensor<B, 2, Int>,
    inputs: &LayerInputs<B>,
) -> Result<(Tensor<B, 3>, Tensor<B, 3>, usize)> {
    let layer = student_starts_at(SpliceGrad::Detach, at.hookpoint()).ok_or_else(|| {
        Error::option("hookpoint", format!("the student starts at a residual hookpoint (layers.N), not {at}"))
    })?;
    at.check_depth(model.config().num_hidden_layers)?;
    let mut h = model.model.embed_tokens.forward(input_ids);
    for l in 0..=layer {
        h = model.layer_forward(l, h, inputs, AdapterMode::Off)?;
    }
    let h = h.detach();
    let splice = SaeSplice::new(sae);
    let x = SpliceHook { at, func: &splice, grad: SpliceGrad::Detach }.replace(h.clone())?;
    Ok((h, x, layer))
}

/// The layers after `layer` from the activation `h` there, with the adapters acting as
/// `adapters` says, and the output as `head` asks for it.
fn layers_from<B: Backend>(
    model: &Qwen2ForCausalLM<B>,
    h: Tensor<B, 3>,
    layer: usize,
    inputs: &LayerInputs<B>,
    adapters: AdapterMode,
    head: Head,
) -> Result<Tensor<B, 3>> {
    let mut h = h;
    for l in layer + 1..model.config().num_hidden_layers {
        h = model.layer_forward(l, h, inputs, adapters)?;
    }
    let h = model.final_norm(h);
    Ok(match head {
        Head::Full => model.head(h),
        Head::Chunked(_) => h,
    })
}

/// The adapter matrices (`A`, `B`) of decoder layer `layer`.
fn layer_adapter_params<B: Backend>(model: &Qwen2ForCausalLM<B>, layer: usize) -> Vec<Tensor<B, 2>> {
    model
        .model
        .layers
        .get(layer)
        .map(|d| {
            let (a, m) = (&d.self_attn, &d.mlp);
            [&a.q_proj, &a.k_proj, &a.v_proj, &a.o_proj, &m.gate_proj, &m.up_proj, &m.down_proj]
                .into_iter()
                .filter_map(|lin| lin.adapter.as_ref())
                .flat_map(|ad| [ad.a.val(), ad.b.val()])
                .collect()
        })
        .unwrap_or_default()
}

/// Whether every adapter of decoder layers `0..=layer` has `B = 0` exactly (so it adds
/// nothing: the condition of [`stage2_loss_shared_prefix`]). Layers without adapters count
/// as zero. Reads those `B` tensors once.
pub fn prefix_adapters_are_zero<B: Backend>(model: &Qwen2ForCausalLM<B>, layer: usize) -> bool {
    model
        .linears()
        .into_iter()
        .filter(|(name, _)| {
            name.strip_prefix("model.layers.")
                .and_then(|r| r.split('.').next())
                .and_then(|n| n.parse::<usize>().ok())
                .is_some_and(|l| l <= layer)
        })
        .filter_map(|(_, lin)| lin.adapter.as_ref())
        .all(|ad| ad.b.val().abs().max().cast(DType::F32).into_data().iter::<f32>().all(|v| v == 0.0))
}

/// Next-token cross-entropy (the CoT-free SFT baseline, and full-parameter training):
/// mean over the `batch × (seq − 1)` predicted positions, as transformers' causal-LM loss.
pub fn causal_lm_loss<B: Backend>(
    model: &Qwen2ForCausalLM<B>,
    input_ids: Tensor<B, 2, Int>,
    adapters: AdapterMode,
) -> Result<Tensor<B, 1>> {
    let [b, s] = input_ids.dims();
    if s < 2 {
        return Err(Error::option("seq_len", "sequences need at least 2 tokens for a next-token loss"));
    }
    let logits =
        logits(model, ForwardInput::new(input_ids.clone()).with_adapters(adapters), Head::Full, &Hooks::default())?;
    let v = logits.dims()[2];
    let logp = log_softmax(logits.narrow(1, 0, s - 1).cast(DType::F32), 2).reshape([b * (s - 1), v]);
    let targets = input_ids.narrow(1, 1, s - 1).reshape([b * (s - 1), 1]);
    let picked = logp.gather(1, targets);
    Ok(picked.mean().neg())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::Distribution;

    type A = Autodiff<Flex>;

    fn values<const D: usize>(t: Tensor<Flex, D>) -> Vec<f32> {
        t.into_data().iter::<f32>().collect()
    }

    /// The host KL (flex's path) against the tensor operations: the loss and the student's
    /// gradient, with logits of ordinary and of large range.
    #[test]
    fn the_host_kl_equals_the_tensor_kl_and_its_gradient() {
        let device = Default::default();
        for std in [1.0, 25.0] {
            let t = Tensor::<A, 3>::random([2, 7, 61], Distribution::Normal(0.0, std), &device);
            let s = Tensor::<A, 3>::random([2, 7, 61], Distribution::Normal(0.5, std), &device);
            assert!(resa_qwen2::on_host::<A>(&device));

            let s_host = s.clone().require_grad();
            let host = kl_batchmean(t.clone(), s_host.clone());
            let g_host = s_host.grad(&host.backward()).expect("a gradient for the student");

            let s_tensor = s.require_grad();
            let tensor = kl_batchmean_tensors(t, s_tensor.clone());
            let g_tensor = s_tensor.grad(&tensor.backward()).expect("a gradient for the student");

            let (a, b) = (host.into_scalar(), tensor.into_scalar());
            assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "std {std}: KL {a} against {b}");
            for (x, y) in values(g_host).iter().zip(values(g_tensor)) {
                assert!((x - y).abs() <= 1e-6, "std {std}: gradient {x} against {y}");
            }
        }
    }
}
