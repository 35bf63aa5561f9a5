//! End-to-end tests of the stable diagnostic commands, `resa forward` and `resa generate`,
//! against the transformers reference values of the resa-qwen2 fixtures.

use std::path::{Path, PathBuf};
use std::process::Command;

use resa::qwen2::safetensors_io::SafetensorsReader;

mod common;
use common::s;

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/resa-qwen2/tests/fixtures").join(case)
}

fn resa(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_resa")).args(args).output().expect("runs resa")
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn forward_writes_logits_and_hookpoints_matching_transformers() {
    let case = "untied_mqa_bf16_sharded_new";
    let reference = SafetensorsReader::open_file(fixture(case).join("reference.safetensors")).expect("reference");
    let (ids, shape) = reference.read_i64_any("input_ids").expect("ids");
    let rows: Vec<Vec<i64>> = ids.chunks(shape[1]).map(<[i64]>::to_vec).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let ids_path = dir.path().join("ids.json");
    std::fs::write(&ids_path, serde_json::to_string(&rows).expect("json")).expect("write");
    let out = dir.path().join("out.safetensors");
    let model = fixture(case);
    let o = resa(&[
        "forward",
        "--model",
        s(&model),
        "--input-ids",
        s(&ids_path),
        "--out",
        s(&out),
        "--hookpoint",
        "layers.2",
        "--hookpoint",
        "layers.0.mlp",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = SafetensorsReader::open_file(&out).expect("output");
    let mut keys: Vec<&str> = got.keys().collect();
    keys.sort_unstable();
    assert_eq!(keys, ["layers.0.mlp", "layers.2", "logits"]);
    for key in keys {
        let (g, gs) = got.read_f32_any(key).expect("read");
        let (w, ws) = reference.read_f32_any(key).expect("read");
        assert_eq!(gs, ws, "{key} shape");
        assert!(max_diff(&g, &w) <= 1e-4, "{key}: {}", max_diff(&g, &w));
    }
}

#[test]
fn generate_json_matches_transformers_greedy() {
    let case = "tied_gqa_f32_old";
    let reference = SafetensorsReader::open_file(fixture(case).join("reference.safetensors")).expect("reference");
    let (ids, shape) = reference.read_i64_any("padded_input_ids").expect("ids");
    let prompt: Vec<String> = ids[..shape[1]].iter().map(i64::to_string).collect();
    let (hf, _) = reference.read_i64_any("generate_single_output").expect("gen");
    let mut want: Vec<i64> = Vec::new();
    for &t in &hf[shape[1]..] {
        want.push(t);
        if t == 2 {
            break;
        }
    }
    let model = fixture(case);
    let o = resa(&[
        "generate",
        "--model",
        s(&model),
        "--prompt-ids",
        &prompt.join(","),
        "--max-new-tokens",
        "12",
        "--greedy",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8(o.stdout).expect("utf8");
    let last = stdout.lines().last().expect("a line");
    let v: serde_json::Value = serde_json::from_str(last).expect("json line");
    let got: Vec<i64> = v["ids"].as_array().expect("ids").iter().map(|x| x.as_i64().expect("int")).collect();
    assert_eq!(got, want);
    assert!(v["text"].is_string());
}

#[test]
fn bad_inputs_fail_with_a_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ids = dir.path().join("ids.json");
    std::fs::write(&ids, "[[1, 2, 3], [4, 5]]").expect("write");
    let model = fixture("tied_gqa_f32_old");
    let out = dir.path().join("o.safetensors");
    let base = ["forward", "--model", s(&model), "--input-ids", s(&ids), "--out", s(&out)];
    let o = resa(&base);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("row 1 has 2 ids"), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!out.exists(), "no output file on failure");

    std::fs::write(&ids, "[[1, 2, 3]]").expect("write");
    let mut args = base.to_vec();
    args.extend(["--hookpoint", "layers.9"]);
    let o = resa(&args);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("layers.9"), "{}", String::from_utf8_lossy(&o.stderr));

    std::fs::write(&ids, "[[1, 2, 999]]").expect("write");
    let o = resa(&base);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("999"), "{}", String::from_utf8_lossy(&o.stderr));
}

fn lora_fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/resa-lora/tests/fixtures").join(case)
}

#[test]
fn forward_with_adapter_matches_peft_and_merge_writes_an_equivalent_checkpoint() {
    let reference =
        SafetensorsReader::open_file(lora_fixture("all7_tied_gqa").join("expected.safetensors")).expect("ref");
    let (ids, shape) = reference.read_i64_any("input_ids").expect("ids");
    let rows: Vec<Vec<i64>> = ids.chunks(shape[1]).map(<[i64]>::to_vec).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let ids_path = dir.path().join("ids.json");
    std::fs::write(&ids_path, serde_json::to_string(&rows).expect("json")).expect("write");
    let model = fixture("tied_gqa_f32_old");
    let adapter = lora_fixture("all7_tied_gqa").join("adapter");
    let out = dir.path().join("with_adapter.safetensors");
    let o = resa(&[
        "forward",
        "--model",
        s(&model),
        "--adapter",
        s(&adapter),
        "--input-ids",
        s(&ids_path),
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = reference.read_f32_any("logits").expect("logits").0;
    let got = SafetensorsReader::open_file(&out).expect("out").read_f32_any("logits").expect("logits").0;
    assert!(max_diff(&got, &want) <= 1e-4, "adapter logits differ by {}", max_diff(&got, &want));

    let merged = dir.path().join("merged");
    let o = resa(&["merge", "--model", s(&model), "--adapter", s(&adapter), "--out", s(&merged)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(merged.join("config.json")).expect("config")).expect("json");
    assert_eq!(cfg["torch_dtype"], "float32", "the base model's dtype is kept");
    let out2 = dir.path().join("merged.safetensors");
    let o = resa(&["forward", "--model", s(&merged), "--input-ids", s(&ids_path), "--out", s(&out2)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = SafetensorsReader::open_file(&out2).expect("out").read_f32_any("logits").expect("logits").0;
    let want = reference.read_f32_any("logits_merged").expect("merged").0;
    assert!(max_diff(&got, &want) <= 1e-4, "merged logits differ by {}", max_diff(&got, &want));

    let o = resa(&[
        "merge",
        "--model",
        s(&fixture("untied_mha_f16_old")),
        "--adapter",
        s(&adapter),
        "--out",
        s(&dir.path().join("bad")),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("lora_B.weight") && err.contains("shape"), "{err}");
    assert!(!dir.path().join("bad").exists(), "no output folder on failure");
}

#[test]
fn debug_stage2_step_matches_the_reference() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("tempdir");
    for (mode, file) in
        [("detach", "stage2_detach.safetensors"), ("straight-through", "stage2_straight-through.safetensors")]
    {
        let reference =
            SafetensorsReader::open_file(root.join("crates/resa-tune/tests/fixtures").join(file)).expect("reference");
        let (ids, shape) = reference.read_i64_any("input_ids").expect("ids");
        let rows: Vec<Vec<i64>> = ids.chunks(shape[1]).map(<[i64]>::to_vec).collect();
        let ids_path = dir.path().join("ids.json");
        std::fs::write(&ids_path, serde_json::to_string(&rows).expect("json")).expect("write");
        let out = dir.path().join(format!("{mode}.safetensors"));
        let o = resa(&[
            "debug",
            "stage2-step",
            "--model",
            s(&fixture("tied_gqa_f32_old")),
            "--sae",
            s(&root.join("crates/resa-sae/tests/fixtures/signum/final/layers.1")),
            "--hookpoint",
            "layers.1",
            "--adapter",
            s(&lora_fixture("all7_tied_gqa").join("adapter")),
            "--input-ids",
            s(&ids_path),
            "--out",
            s(&out),
            "--sae-grad",
            mode,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let got = SafetensorsReader::open_file(&out).expect("out");
        let mut got_keys: Vec<&str> = got.keys().collect();
        let mut want_keys: Vec<&str> = reference.keys().filter(|k| *k != "input_ids").collect();
        got_keys.sort_unstable();
        want_keys.sort_unstable();
        assert_eq!(got_keys, want_keys, "{mode}");
        for key in want_keys {
            let (a, b) = (got.read_f32_any(key).expect("ours").0, reference.read_f32_any(key).expect("ref").0);
            let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(max_diff(&a, &b) <= 1e-3 * scale, "{mode} {key}: {} vs scale {scale}", max_diff(&a, &b));
        }
    }
}

#[test]
fn grade_adds_correct_and_extracted_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.jsonl");
    let lines = [
        serde_json::json!({"id": 1, "gold": "\\frac{1}{2}", "completion": "Therefore, the final answer is: $\\boxed{0.5}$. I hope it is correct"}),
        serde_json::json!({"id": 2, "gold": "7", "completion": "so \\boxed{8}", "bench": "aime24"}),
        serde_json::json!({"id": 3, "gold": "C", "completion": "Answer: C", "bench": "gpqa_diamond"}),
    ];
    let text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    std::fs::write(&input, text.join("\n")).expect("write");
    let out = dir.path().join("out.jsonl");
    let o = resa(&["grade", "--input", s(&input), "--out", s(&out)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got: Vec<serde_json::Value> =
        std::fs::read_to_string(&out).expect("out").lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    assert_eq!(got.iter().map(|v| v["id"].as_i64().expect("id")).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(got.iter().map(|v| v["correct"].as_bool().expect("bool")).collect::<Vec<_>>(), [true, false, true]);
    // math-verify's normalisation writes 0.5 as \frac{1}{2}.
    assert_eq!(got[0]["extracted"], "\\frac{1}{2}");
    assert_eq!(got[2]["extracted"], "c");
    assert!(got[0].get("explain").is_none());
    // --explain: candidates and the reason; a MATH-500 line with solution text as its gold
    // is graded against the solution's boxed answer.
    let lines = [
        serde_json::json!({"gold": "So $x=2$ and the answer is $\\boxed{\\frac{3}{4}}$.", "completion": "I get \\boxed{0.75}", "bench": "math500"}),
        serde_json::json!({"gold": "5", "completion": "no idea"}),
    ];
    let text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    std::fs::write(&input, text.join("\n")).expect("write");
    let o = resa(&["grade", "--input", s(&input), "--out", s(&out), "--explain"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got: Vec<serde_json::Value> =
        std::fs::read_to_string(&out).expect("out").lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    assert_eq!(got[0]["correct"], true);
    assert_eq!(got[0]["explain"]["config"], "solution");
    assert!(got[0]["explain"]["gold"][0].as_str().expect("gold").starts_with("\\frac{3}{4}"), "{}", got[0]);
    assert_eq!(got[1]["correct"], false);
    assert_eq!(got[1]["explain"]["reason"], "nothing extracted from the completion");
    let o = resa(&["grade", "--input", s(&input), "--out", s(&out), "--config", "nope"]);
    assert!(!o.status.success());
    std::fs::write(&input, "{\"gold\": \"1\"}\n").expect("write");
    let o = resa(&["grade", "--input", s(&input), "--out", s(&out)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains(":1: field `completion`"), "{err}");
}
