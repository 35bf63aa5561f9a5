//! How much memory one Stage II step needs at least, from the shapes alone — before any
//! model is loaded, so a run that cannot fit is refused before Stage I (which can take
//! hours) instead of aborting in its first Stage II step.
//!
//! The figure is a **lower bound**: what any autodiff must keep — the weights, the SAE, the
//! adapters with their gradients and AdamW moments, the logits the loss needs, and per
//! token and student layer the tensors a backward cannot do without (attention
//! probabilities, queries/keys/values, the norms' inputs, the MLP's gate, up and down
//! inputs). burn keeps more than that (decomposed attention, intermediate products), so the
//! measured peaks are above it: the test `memory_bound` of resa-pipeline checks the bound against the
//! peaks measured in `docs/performance.md` (1.5B bf16, 2,048 tokens: 18.1 GiB measured, a
//! bound of 8.7 GiB; with the student's layers recomputed 7.7 GiB measured, a bound of
//! 5.8 GiB; the CPU bench shapes 1.6–2.7× their bound). A step whose bound is above the memory at hand cannot run; one whose bound
//! is below may still not fit, and the estimate says so.

use resa_lora::LoraConfig;
use resa_qwen2::Qwen2Config;

use crate::stage2::Head;

/// What one Stage II micro-step computes, as far as memory is concerned.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage2Shape {
    /// The target model.
    pub model: Qwen2Config,
    /// The adapters.
    pub lora: LoraConfig,
    /// Tokens per chunk.
    pub seq_len: usize,
    /// Chunks per micro-batch.
    pub micro_batch: usize,
    /// Bytes per element of the compute dtype (4 for f32, 2 for bf16/f16).
    pub dtype_bytes: usize,
    /// The spliced SAE's `(d_in, num_latents)`; `None` for the SFT baseline (no SAE).
    pub sae: Option<(usize, usize)>,
    /// The first layer whose activations the backward needs: the hookpoint's layer + 1 when
    /// the student starts from the teacher's activation there (the `detach` splice at a
    /// residual hookpoint), 0 otherwise.
    pub student_from: usize,
    /// How the loss applies the head; `None`: as the objective chooses ([`Head::auto`]).
    pub head: Option<Head>,
    /// Whether the student's layers are recomputed in the backward
    /// ([`SaeTuning::with_recompute`](crate::SaeTuning::with_recompute)): then one student
    /// layer's activations are held at a time, beside every student layer's input.
    pub recompute: bool,
}

/// A lower bound of one Stage II step's peak memory, in bytes, by part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryEstimate {
    /// The model's weights in the compute dtype.
    pub weights: u64,
    /// The SAE (f32).
    pub sae: u64,
    /// Adapter weights, their gradients and AdamW's f32 copies and moments.
    pub adapters: u64,
    /// Activations the backward needs (per token and student layer).
    pub activations: u64,
    /// Logits (or pieces of them) the loss needs, f32.
    pub logits: u64,
}

impl MemoryEstimate {
    /// The sum of the parts.
    pub fn total(&self) -> u64 {
        self.weights + self.sae + self.adapters + self.activations + self.logits
    }
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

impl std::fmt::Display for MemoryEstimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "at least {:.2} GiB (weights {:.2}, SAE {:.2}, adapters with gradients and AdamW state {:.2}, \
             activations for the backward {:.2}, logits {:.2})",
            gib(self.total()),
            gib(self.weights),
            gib(self.sae),
            gib(self.adapters),
            gib(self.activations),
            gib(self.logits)
        )
    }
}

/// The lower bound of one Stage II micro-step of `shape` ([module docs](self)).
pub fn stage2_memory(shape: &Stage2Shape) -> MemoryEstimate {
    let c = &shape.model;
    let (d, i, v) = (c.hidden_size as u64, c.intermediate_size as u64, c.vocab_size as u64);
    let q = (c.num_attention_heads * c.head_dim) as u64;
    let kv = (c.num_key_value_heads * c.head_dim) as u64;
    let layers = c.num_hidden_layers as u64;
    let bytes = shape.dtype_bytes as u64;
    let (s, b) = (shape.seq_len as u64, shape.micro_batch as u64);

    let per_layer = d * q + 2 * d * kv + q * d + 3 * d * i + q + 2 * kv + 2 * d;
    let embed = v * d * if c.tie_word_embeddings { 1 } else { 2 };
    let weights = (per_layer * layers + embed + d) * bytes;

    // Each adapted linear: A [in, r] and B [r, out] in the compute dtype, plus an f32
    // gradient and AdamW's f32 weight copy and two moments.
    let r = shape.lora.r as u64;
    let linears = [
        ("q_proj", d, q),
        ("k_proj", d, kv),
        ("v_proj", d, kv),
        ("o_proj", q, d),
        ("gate_proj", d, i),
        ("up_proj", d, i),
        ("down_proj", i, d),
    ];
    let mut adapter_params = 0u64;
    for layer in 0..c.num_hidden_layers {
        for (name, inp, out) in linears {
            let part = if matches!(name, "gate_proj" | "up_proj" | "down_proj") { "mlp" } else { "self_attn" };
            if shape.lora.matches(&format!("model.layers.{layer}.{part}.{name}")) {
                adapter_params += r * (inp + out);
            }
        }
    }
    let adapters = adapter_params * (bytes + 4 * 4);

    let sae = shape.sae.map_or(0, |(d_in, n)| (2 * d_in as u64 * n as u64 + n as u64 + d_in as u64) * 4);

    // Per token and student layer: attention probabilities (one row of `s` per head), the
    // queries, keys and values, the two norms' inputs, the MLP's gate and up outputs and the
    // down projection's input.
    let student_layers = layers.saturating_sub(shape.student_from as u64);
    let heads = c.num_attention_heads as u64;
    let per_token = heads * s + q + 2 * kv + 2 * d + 3 * i;
    let mut activations = if shape.recompute && student_layers > 0 {
        (b * s * per_token + student_layers * b * s * d) * bytes
    } else {
        student_layers * b * s * per_token * bytes
    };
    // The SAE's encoder pre-activations of every spliced token (f32), while it encodes.
    if let Some((_, n)) = shape.sae {
        activations += b * s * n as u64 * 4;
    }

    // SAE-Tuning holds the teacher's and the student's logits (or pieces of the head's
    // output, chunked as the objective chooses); SFT the student's.
    let positions = b * s;
    let head = shape.head.unwrap_or_else(|| Head::auto(positions as usize, c.vocab_size));
    let held = match (shape.sae.is_some(), head) {
        (true, Head::Full) => 2 * positions * v,
        (true, Head::Chunked(n)) => 2 * (n as u64).min(positions) * v,
        (false, _) => positions * v,
    };
    let logits = held * 4;
    MemoryEstimate { weights, sae, adapters, activations, logits }
}

/// Memory available to a CPU backend: Linux's `MemAvailable` (bytes), `None` elsewhere.
pub fn available_host_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
