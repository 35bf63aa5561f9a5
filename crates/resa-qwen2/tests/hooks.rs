//! Hookpoint capture and splicing, including how gradients pass a splice.

mod common;

use burn::backend::{Autodiff, Flex};
use burn::tensor::{DType, Int, Tensor};
use common::{assert_close, fixture, host};
use resa_qwen2::{Error, ForwardInput, Hookpoint, Hooks, Logits, Qwen2ForCausalLM, Splice, SpliceError, SpliceGrad};

type B = Flex;

fn ids() -> Tensor<B, 2, Int> {
    Tensor::from_ints([[5, 17, 3, 44, 9, 60]], &Default::default())
}

/// A splice that always fails, as an SAE of another width would.
struct Failing;

impl Splice<B> for Failing {
    fn splice(&self, _x: Tensor<B, 3>) -> Result<Tensor<B, 3>, SpliceError> {
        Err("reads width 7, the activation has width 32".into())
    }
}

#[test]
fn a_failing_splice_fails_the_forward_pass_in_every_gradient_mode() {
    let model = Qwen2ForCausalLM::<B>::from_pretrained(fixture("tied_gqa_f32_old"), &Default::default(), DType::F32)
        .expect("load");
    for grad in [SpliceGrad::Detach, SpliceGrad::Flow, SpliceGrad::StraightThrough] {
        let at = Hookpoint::Residual(1).within(model.config().num_hidden_layers).expect("in range");
        let hooks = Hooks::default().with_splice(at, &Failing, grad);
        match model.forward(ForwardInput::new(ids()), &hooks, None) {
            Err(Error::Splice { at, cause }) => {
                assert_eq!(at, "layers.1");
                assert!(cause.to_string().contains("width 7"), "{cause}");
            }
            Err(e) => panic!("{grad}: wrong error {e}"),
            Ok(_) => panic!("{grad}: a failing splice must fail the forward pass"),
        }
    }
}

#[test]
fn splice_grad_names_round_trip() {
    for name in SpliceGrad::NAMES {
        let g: SpliceGrad = name.parse().expect("parse");
        assert_eq!(g.to_string(), name);
        let json = serde_json::to_string(&g).expect("json");
        assert_eq!(json, format!("\"{name}\""));
    }
    let err = "straight_through".parse::<SpliceGrad>().expect_err("unknown name");
    assert!(err.to_string().contains("detach, straight-through, flow"), "{err}");
}

#[test]
fn identity_splice_changes_nothing_and_zero_splice_changes_logits() {
    let model = Qwen2ForCausalLM::<B>::from_pretrained(fixture("tied_gqa_f32_old"), &Default::default(), DType::F32)
        .expect("load");
    let plain =
        host(model.forward(ForwardInput::new(ids()), &Hooks::default(), None).expect("fwd").logits.expect("logits"));
    for hp in [Hookpoint::Residual(1), Hookpoint::Mlp(0)] {
        let hp = hp.within(model.config().num_hidden_layers).expect("in range");
        let identity = |x: Tensor<B, 3>| x;
        let hooks = Hooks::default().with_splice(hp, &identity, SpliceGrad::Detach);
        let out = host(model.forward(ForwardInput::new(ids()), &hooks, None).expect("fwd").logits.expect("logits"));
        assert_close(&format!("identity splice at {hp}"), &out, &plain, 0.0);

        let zero = |x: Tensor<B, 3>| x.zeros_like();
        let hooks = Hooks::capture([hp]).with_splice(hp, &zero, SpliceGrad::Detach);
        let out = model.forward(ForwardInput::new(ids()), &hooks, None).expect("fwd");
        // The capture sees the activation before it is replaced.
        let captured = host(out.activation(hp).expect("captured").clone());
        assert!(captured.iter().any(|v| *v != 0.0));
        let logits = host(out.logits.expect("logits"));
        let diff = logits.iter().zip(&plain).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(diff > 1e-2, "zeroing {hp} should change the logits (max diff {diff})");
    }
}

/// A hookpoint checked against a model of another depth is refused, naming both depths;
/// one out of range cannot be made at all.
#[test]
fn a_hookpoint_checked_for_another_model_is_refused() {
    let model = Qwen2ForCausalLM::<B>::from_pretrained(fixture("tied_gqa_f32_old"), &Default::default(), DType::F32)
        .expect("load");
    let layers = model.config().num_hidden_layers;
    let deeper = Hookpoint::Residual(layers).within(layers + 4).expect("in range of the deeper model");
    let err = model.forward(ForwardInput::new(ids()), &Hooks::capture([deeper]), None).err().expect("refused");
    assert!(matches!(err, Error::Hookpoint { .. }), "{err}");
    assert!(err.to_string().contains(&format!("{} layers", layers + 4)), "{err}");
    assert!(Hookpoint::Residual(layers).within(layers).is_err());
}

#[test]
fn capture_only_forward_stops_early_and_matches() {
    let model = Qwen2ForCausalLM::<B>::from_pretrained(fixture("tied_gqa_f32_old"), &Default::default(), DType::F32)
        .expect("load");
    let hp = Hookpoint::Residual(0).within(model.config().num_hidden_layers).expect("in range");
    let full = model.forward(ForwardInput::new(ids()), &Hooks::capture([hp]), None).expect("fwd");
    let early =
        model.forward(ForwardInput::new(ids()).with_logits(Logits::None), &Hooks::capture([hp]), None).expect("fwd");
    assert!(early.logits.is_none());
    assert_close(
        "early capture",
        &host(early.activation(hp).expect("a").clone()),
        &host(full.activation(hp).expect("a").clone()),
        0.0,
    );
}

/// Gradient of a scalar loss with respect to layer 0's q_proj weight, with a splice at
/// `layers.1` that doubles the activation.
fn grad_below_splice(grad: SpliceGrad) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    type AD = Autodiff<Flex>;
    let device = Default::default();
    let model =
        Qwen2ForCausalLM::<AD>::from_pretrained(fixture("tied_gqa_f32_old"), &device, DType::F32).expect("load");
    let double = |x: Tensor<AD, 3>| x.mul_scalar(2.0);
    let at = Hookpoint::Residual(1).within(model.config().num_hidden_layers).expect("in range");
    let hooks = Hooks::default().with_splice(at, &double, grad);
    let ids = Tensor::<AD, 2, Int>::from_ints([[5, 17, 3, 44]], &device);
    let logits = model.forward(ForwardInput::new(ids), &hooks, None).expect("fwd").logits.expect("logits");
    let grads = logits.square().mean().backward();
    let below = model.model.layers[0].self_attn.q_proj.weight.grad(&grads).map(host);
    let above = model.model.layers[2].mlp.up_proj.weight.grad(&grads).map(host);
    (below, above)
}

#[test]
fn detached_splice_blocks_gradients_below_it() {
    let (below, above) = grad_below_splice(SpliceGrad::Detach);
    assert!(below.is_none_or(|g| g.iter().all(|v| *v == 0.0)), "layers below a detached splice got a gradient");
    assert!(above.is_some_and(|g| g.iter().any(|v| *v != 0.0)), "layers above the splice must get a gradient");
}

#[test]
fn flowing_splice_passes_gradients_below_it() {
    let (below, above) = grad_below_splice(SpliceGrad::Flow);
    assert!(below.is_some_and(|g| g.iter().any(|v| *v != 0.0)), "straight-through splice must pass gradients down");
    assert!(above.is_some_and(|g| g.iter().any(|v| *v != 0.0)));
}

#[test]
fn save_and_reload_round_trip() {
    use resa_qwen2::safetensors_io::StoredDtype;
    let device = Default::default();
    let model = Qwen2ForCausalLM::<B>::from_pretrained(fixture("untied_mqa_bf16_sharded_new"), &device, DType::F32)
        .expect("load");
    let want =
        host(model.forward(ForwardInput::new(ids()), &Hooks::default(), None).expect("fwd").logits.expect("logits"));
    // The weights are bf16-exact, so saving as bf16 loses nothing.
    for dtype in [StoredDtype::F32, StoredDtype::BF16] {
        let dir = tempfile::tempdir().expect("tempdir");
        model.save_pretrained(dir.path(), dtype).expect("save");
        let back = Qwen2ForCausalLM::<B>::from_pretrained(dir.path(), &device, DType::F32).expect("reload");
        let mut want_cfg = model.config().clone();
        want_cfg.torch_dtype = Some(if dtype == StoredDtype::BF16 { "bfloat16" } else { "float32" }.into());
        assert_eq!(back.config(), &want_cfg);
        let got =
            host(back.forward(ForwardInput::new(ids()), &Hooks::default(), None).expect("fwd").logits.expect("logits"));
        assert_close(&format!("reloaded {dtype:?}"), &got, &want, 0.0);
    }
}
