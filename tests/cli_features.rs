//! `resa features` on a tiny model with SAEs whose latents are constructed to fire exactly
//! where the test says: encoder rows solve `H w = y` for the captured activations `H`, with
//! `y = +1` at the chosen tokens and `-1` elsewhere, so the reasoning features are known.

use std::path::Path;
use std::process::Command;

use burn::backend::Flex;
use burn::tensor::{DType, Int, Tensor, TensorData};
use resa::qwen2::safetensors_io::{OwnedTensor, StoredDtype, write_safetensors};
use resa::qwen2::{ForwardInput, Hookpoint, Hooks, Logits, Qwen2Config, Qwen2ForCausalLM, Tokenizer};
use resa::toy::world;

const PROMPT: &str = "Q: <think> a+b </think> so <think> c </think> end";

/// Least-norm solution of `h w = y` (h: n × d, n ≤ d) by Gaussian elimination on h hᵀ.
fn solve(h: &[Vec<f64>], y: &[f64]) -> Vec<f64> {
    let n = h.len();
    let mut a: Vec<Vec<f64>> =
        (0..n).map(|i| (0..n).map(|j| h[i].iter().zip(&h[j]).map(|(x, z)| x * z).sum()).collect()).collect();
    let mut b = y.to_vec();
    for col in 0..n {
        let piv = (col..n).max_by(|&p, &q| a[p][col].abs().total_cmp(&a[q][col].abs())).expect("pivot");
        a.swap(col, piv);
        b.swap(col, piv);
        for row in 0..n {
            if row != col {
                let f = a[row][col] / a[col][col];
                let pivot_row = a[col].clone();
                for (x, p) in a[row].iter_mut().zip(&pivot_row).skip(col) {
                    *x -= f * p;
                }
                b[row] -= f * b[col];
            }
        }
    }
    let alpha: Vec<f64> = (0..n).map(|i| b[i] / a[i][i]).collect();
    let d = h[0].len();
    (0..d).map(|k| (0..n).map(|i| alpha[i] * h[i][k]).sum()).collect()
}

fn write_sae(dir: &Path, rows: &[Vec<f64>], d: usize) {
    std::fs::create_dir_all(dir).expect("dir");
    let l = rows.len();
    let enc: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
    let mut dec = vec![0.0f32; l * d];
    for i in 0..l {
        dec[i * d + i] = 1.0;
    }
    let tensors = vec![
        OwnedTensor::from_f32("encoder.weight", &enc, vec![l, d], StoredDtype::F32),
        OwnedTensor::from_f32("encoder.bias", &vec![0.0; l], vec![l], StoredDtype::F32),
        OwnedTensor::from_f32("W_dec", &dec, vec![l, d], StoredDtype::F32),
        OwnedTensor::from_f32("b_dec", &vec![0.0; d], vec![d], StoredDtype::F32),
    ];
    write_safetensors(dir.join("sae.safetensors"), &tensors, None).expect("sae");
    let cfg = serde_json::json!({"activation": "topk", "expansion_factor": 1, "normalize_decoder": true,
        "num_latents": l, "k": l, "multi_topk": false, "skip_connection": false, "transcode": false, "d_in": d});
    std::fs::write(dir.join("cfg.json"), cfg.to_string()).expect("cfg");
}

#[test]
fn constructed_features_are_found_per_layer() {
    let tmp = tempfile::tempdir().expect("tmp");
    let model_dir = tmp.path().join("model");
    let cfg = Qwen2Config { vocab_size: world::vocab_size(), ..Qwen2Config::tiny() };
    let model = Qwen2ForCausalLM::<Flex>::random(&cfg, 5, &Default::default(), DType::F32);
    model.save_pretrained(&model_dir, StoredDtype::F32).expect("save");
    world::write_tokenizer(&model_dir).expect("tokenizer");
    let tok = Tokenizer::from_dir(&model_dir).expect("tokenizer");
    let ids = tok.encode(PROMPT, true).expect("encode");
    let at = |id: u32| ids.iter().enumerate().filter(|(_, t)| **t == id).map(|(i, _)| i).collect::<Vec<_>>();
    let (think, end) = (at(4), at(5));
    assert_eq!((think.len(), end.len()), (2, 2), "{ids:?}");
    let d = cfg.hidden_size;
    assert!(ids.len() <= d, "the construction needs at most d tokens");

    let input = Tensor::<Flex, 2, Int>::from_data(
        TensorData::new(ids.iter().map(|&t| i64::from(t)).collect::<Vec<_>>(), [1, ids.len()]),
        &Default::default(),
    );
    let layers = model.config().num_hidden_layers;
    let hps = [Hookpoint::Residual(1), Hookpoint::Residual(2)].map(|h| h.within(layers).expect("in range"));
    let out =
        model.forward(ForwardInput::new(input).with_logits(Logits::None), &Hooks::capture(hps), None).expect("forward");
    // Latents per layer: the token sets where each fires.
    let layer1: Vec<Vec<usize>> = vec![
        vec![think[0], end[0]],                      // reasoning feature
        vec![think[0]],                              // only <think>
        vec![think[0], think[1], end[0], end[1], 1], // also on "Q"
        vec![],                                      // never
    ];
    let layer2: Vec<Vec<usize>> = vec![
        vec![think[0], think[1], end[0], end[1]], // reasoning feature
        vec![think[1], end[1]],                   // reasoning feature
        vec![end[0]],                             // only </think>
        vec![think[0], end[0], 3],                // also on a text token
    ];
    let saes = tmp.path().join("saes");
    for (hp, sets) in hps.iter().zip([&layer1, &layer2]) {
        let act = out.activation(*hp).expect("captured").clone();
        let v: Vec<f64> = act.into_data().iter::<f32>().map(f64::from).collect();
        let h: Vec<Vec<f64>> = v.chunks(d).map(<[f64]>::to_vec).collect();
        let rows: Vec<Vec<f64>> = sets
            .iter()
            .map(|set| {
                solve(&h, &(0..ids.len()).map(|p| if set.contains(&p) { 1.0 } else { -1.0 }).collect::<Vec<_>>())
            })
            .collect();
        write_sae(&saes.join(hp.to_string()), &rows, d);
    }
    let data = tmp.path().join("data.jsonl");
    std::fs::write(&data, "{\"problem\": \"Q: <think> x </think>\", \"answer\": \"1\"}\n{\"problem\": \"What is 2+3?\", \"answer\": \"5\"}\n")
        .expect("data");
    std::fs::write(tmp.path().join("scores.json"), r#"{"layers.1": 40.0, "layers.2": 45.5}"#).expect("scores");

    let out_dir = tmp.path().join("features");
    let o = Command::new(env!("CARGO_BIN_EXE_resa"))
        .args(["features", "--model", model_dir.to_str().expect("utf8"), "--saes", saes.to_str().expect("utf8")])
        .args(["--prompt", PROMPT, "--components", "1", "--out", out_dir.to_str().expect("utf8")])
        .args(["--scores", tmp.path().join("scores.json").to_str().expect("utf8")])
        .args(["--dataset", data.to_str().expect("utf8"), "--top", "2"])
        .output()
        .expect("runs resa");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let counts: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("counts.json")).expect("counts.json"))
            .expect("json");
    assert_eq!(counts[0]["hookpoint"], "layers.1");
    assert_eq!(counts[0]["latents"], serde_json::json!([0]));
    assert_eq!(counts[1]["hookpoint"], "layers.2");
    assert_eq!(counts[1]["latents"], serde_json::json!([0, 1]));
    assert_eq!(counts[1]["count"], 2);

    let gmm: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("gmm.json")).expect("gmm.json")).expect("json");
    // One component over weights 1 at layer 1 and 2 at layer 2: mean 5/3.
    let mean = gmm["counts"]["gmm"]["components"][0]["mean"].as_f64().expect("mean");
    assert!((mean - 5.0 / 3.0).abs() < 1e-6, "{mean}");
    assert_eq!(gmm["counts"]["proposals"][0]["hookpoint"], "layers.2");
    assert!(gmm["scores"]["gmm"].is_object());
    let summary = std::fs::read_to_string(out_dir.join("summary.md")).expect("summary.md");
    assert!(summary.contains("| layers.2 | 2 | 45.50 |"), "{summary}");
    let dashboard = std::fs::read_to_string(out_dir.join("dashboard.md")).expect("dashboard.md");
    assert!(dashboard.contains("## layers.1\n\n### latent 0") && dashboard.contains("### latent 1"), "{dashboard}");
    if resa::features::plot::font_available().is_some() {
        for f in ["counts.svg", "counts.png", "scores.svg", "counts_vs_scores.png"] {
            assert!(out_dir.join("figures").join(f).is_file(), "{f}");
        }
    }

    // A prompt without the markers is a clear error.
    let o = Command::new(env!("CARGO_BIN_EXE_resa"))
        .args(["features", "--model", model_dir.to_str().expect("utf8"), "--saes", saes.to_str().expect("utf8")])
        .args(["--prompt", "no markers here", "--out", out_dir.to_str().expect("utf8")])
        .output()
        .expect("runs resa");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("<think> (id 4) 0 time(s)"), "{err}");
}
