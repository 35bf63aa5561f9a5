//! Parity with Hugging Face transformers on tiny random checkpoints written by
//! `scripts/reference/qwen2_reference.py` (f32 compute, tolerance 1e-4 absolute).

mod common;

use burn::tensor::{Bool, DType, Int, Tensor, TensorData, backend::Backend};
use common::*;
use resa_qwen2::{ForwardInput, GenerationConfig, Hookpoint, Hooks, KvCache, Logits, Qwen2ForCausalLM, generate};

const TOL: f32 = 1e-4;

fn ids_tensor<B: Backend>(v: Vec<i64>, shape: [usize; 2], device: &B::Device) -> Tensor<B, 2, Int> {
    Tensor::from_data(TensorData::new(v, shape), device)
}

fn logits_and_hookpoints<B: Backend>(device: &B::Device) {
    for case in CASES {
        let model = Qwen2ForCausalLM::<B>::from_pretrained(fixture(case), device, DType::F32).expect(case);
        let r = reference(case);
        let (ids, shape) = r.read_i64_any("input_ids").expect("input_ids");
        let layers = model.config().num_hidden_layers;
        let points: Vec<_> = (0..layers)
            .flat_map(|l| [Hookpoint::Residual(l), Hookpoint::Mlp(l)])
            .map(|h| h.within(layers).expect("in range"))
            .collect();
        let out = model
            .forward(
                ForwardInput::new(ids_tensor(ids, [shape[0], shape[1]], device)),
                &Hooks::capture(points.clone()),
                None,
            )
            .expect("forward");
        for hp in points {
            let want = r.read_f32_any(&hp.to_string()).expect("hookpoint").0;
            let got = host(out.activation(hp).expect("captured").clone());
            assert_close(&format!("{case} {hp}"), &got, &want, TOL);
        }
        let want = r.read_f32_any("logits").expect("logits").0;
        assert_close(&format!("{case} logits"), &host(out.logits.clone().expect("logits")), &want, TOL);
    }
}

fn padded_batch<B: Backend>(device: &B::Device) {
    for case in CASES {
        let model = Qwen2ForCausalLM::<B>::from_pretrained(fixture(case), device, DType::F32).expect(case);
        let r = reference(case);
        let (ids, shape) = r.read_i64_any("padded_input_ids").expect("ids");
        let (mask, _) = r.read_i64_any("padded_attention_mask").expect("mask");
        let (pos, _) = r.read_i64_any("padded_position_ids").expect("pos");
        let [b, s] = [shape[0], shape[1]];
        let mask_t = Tensor::<B, 2, Bool>::from_data(
            TensorData::new(mask.iter().map(|&m| m == 1).collect::<Vec<_>>(), [b, s]),
            device,
        );
        let input =
            ForwardInput::new(ids_tensor(ids, [b, s], device)).with_mask(mask_t, ids_tensor(pos, [b, s], device));
        let out = model
            .forward(
                input,
                &Hooks::capture([Hookpoint::Residual(1).within(model.config().num_hidden_layers).expect("in range")]),
                None,
            )
            .expect("forward");
        let logits = host(out.logits.clone().expect("logits"));
        let acts = host(out.activation(Hookpoint::Residual(1)).expect("captured").clone());
        let want_logits = r.read_f32_any("padded_logits").expect("logits").0;
        let want_acts = r.read_f32_any("padded_layers.1").expect("acts").0;
        let (v, h) = (model.config().vocab_size, model.config().hidden_size);
        // Compare real tokens only: outputs at padding positions are meaningless.
        for (i, _) in mask.iter().enumerate().filter(|(_, m)| **m == 1) {
            assert_close(
                &format!("{case} padded logits @{i}"),
                &logits[i * v..(i + 1) * v],
                &want_logits[i * v..(i + 1) * v],
                TOL,
            );
            assert_close(
                &format!("{case} padded layers.1 @{i}"),
                &acts[i * h..(i + 1) * h],
                &want_acts[i * h..(i + 1) * h],
                TOL,
            );
        }
    }
}

/// HF's output rows are `[left-padded prompt, new tokens, padding after EOS]`.
fn hf_continuations(
    r: &resa_qwen2::safetensors_io::SafetensorsReader,
    key: &str,
    prompt_width: usize,
) -> Vec<Vec<u32>> {
    let (out, shape) = r.read_i64_any(key).expect("generate output");
    out.chunks_exact(shape[1])
        .map(|row| {
            let mut new: Vec<u32> = Vec::new();
            for &t in &row[prompt_width..] {
                new.push(t as u32);
                if t == 2 {
                    break;
                }
            }
            new
        })
        .collect()
}

fn greedy_generation<B: Backend>(device: &B::Device) {
    for case in CASES {
        let model = Qwen2ForCausalLM::<B>::from_pretrained(fixture(case), device, DType::F32).expect(case);
        let r = reference(case);
        let (ids, shape) = r.read_i64_any("padded_input_ids").expect("ids");
        let (lens, _) = r.read_i64_any("generate_prompt_lengths").expect("lens");
        let prompts: Vec<Vec<u32>> = ids
            .chunks_exact(shape[1])
            .zip(&lens)
            .map(|(row, &n)| row[shape[1] - n as usize..].iter().map(|&t| t as u32).collect())
            .collect();
        let mut cfg = GenerationConfig::greedy(10, vec![2]);
        cfg.pad_token_id = 0;
        let got = generate(&model, &prompts, &cfg).expect("generate");
        let want = hf_continuations(&r, "generate_output", shape[1]);
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(&g.ids, w, "{case}: batched greedy continuation");
        }
        let single = generate(&model, &prompts[..1], &GenerationConfig::greedy(12, vec![2])).expect("generate");
        let want = hf_continuations(&r, "generate_single_output", prompts[0].len());
        assert_eq!(single[0].ids, want[0], "{case}: single greedy continuation");
    }
}

/// Decoding with the KV cache one token at a time gives the logits of the full forward.
fn kv_cache_matches_full_forward<B: Backend>(device: &B::Device) {
    let case = CASES[1];
    let model = Qwen2ForCausalLM::<B>::from_pretrained(fixture(case), device, DType::F32).expect(case);
    let r = reference(case);
    let (ids, shape) = r.read_i64_any("input_ids").expect("input_ids");
    let s = shape[1];
    let row: Vec<i64> = ids[..s].to_vec();
    let full = host(
        model
            .forward(ForwardInput::new(ids_tensor(row.clone(), [1, s], device)), &Hooks::default(), None)
            .expect("forward")
            .logits
            .expect("logits"),
    );
    let v = model.config().vocab_size;
    let mut cache = KvCache::new(model.config().num_hidden_layers);
    // Prefill 5 tokens, then one at a time.
    let pre = model
        .forward(
            ForwardInput::new(ids_tensor(row[..5].to_vec(), [1, 5], device)).with_logits(Logits::Last),
            &Hooks::default(),
            Some(&mut cache),
        )
        .expect("prefill");
    assert_close("prefill last", &host(pre.logits.expect("logits")), &full[4 * v..5 * v], TOL);
    for i in 5..s {
        let step = model
            .forward(ForwardInput::new(ids_tensor(vec![row[i]], [1, 1], device)), &Hooks::default(), Some(&mut cache))
            .expect("step");
        assert_close(&format!("cached step {i}"), &host(step.logits.expect("logits")), &full[i * v..(i + 1) * v], TOL);
    }
    assert_eq!(cache.len(), s);
}

macro_rules! backend_tests {
    ($module:ident, $backend:ty) => {
        mod $module {
            type B = $backend;
            fn device() -> <B as burn::tensor::backend::BackendTypes>::Device {
                Default::default()
            }
            #[test]
            fn logits_and_hookpoints() {
                super::logits_and_hookpoints::<B>(&device());
            }
            #[test]
            fn padded_batch() {
                super::padded_batch::<B>(&device());
            }
            #[test]
            fn greedy_generation() {
                super::greedy_generation::<B>(&device());
            }
            #[test]
            fn kv_cache_matches_full_forward() {
                super::kv_cache_matches_full_forward::<B>(&device());
            }
        }
    };
}

#[cfg(feature = "flex")]
backend_tests!(flex, burn::backend::Flex);
#[cfg(feature = "ndarray")]
backend_tests!(ndarray, burn::backend::NdArray);
#[cfg(feature = "wgpu")]
backend_tests!(wgpu, burn::backend::Wgpu);
