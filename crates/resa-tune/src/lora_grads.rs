//! Reading the adapters' gradients in PEFT's naming and layout.

use burn::tensor::{Tensor, backend::AutodiffBackend};
use resa_qwen2::Qwen2ForCausalLM;

/// The gradient of every adapter matrix that received one, keyed like PEFT's parameters
/// without `base_model.model.` and `.default` (`model.layers.2.self_attn.q_proj.lora_A.weight`)
/// and laid out as PEFT's (`lora_A` `[r, in]`, `lora_B` `[out, r]`), in model order.
pub fn lora_gradients<B: AutodiffBackend>(
    model: &Qwen2ForCausalLM<B>,
    grads: &B::Gradients,
) -> Vec<(String, Tensor<B::InnerBackend, 2>)> {
    let mut out = Vec::new();
    for (name, lin) in model.linears() {
        let Some(ad) = &lin.adapter else { continue };
        for (suffix, p) in [("lora_A.weight", &ad.a), ("lora_B.weight", &ad.b)] {
            if let Some(g) = p.val().grad(grads) {
                out.push((format!("{name}.{suffix}"), g.transpose()));
            }
        }
    }
    out
}
