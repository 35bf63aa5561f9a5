//! Property tests over the files a user hands in: a safetensors header, a model's
//! `config.json`, an SAE's `cfg.json`, a PEFT `adapter_config.json` and a run TOML, each
//! mutated (bytes flipped, inserted, cut; values replaced by hostile ones). Every parse must
//! return `Ok` or a typed error — never panic — and a safetensors file that opens must read
//! every tensor without panicking (checked shape arithmetic).

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use resa_qwen2::safetensors_io::{OwnedTensor, SafetensorsReader, StoredDtype, write_safetensors};

fn crates() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Values that break naive parsers: zero, negatives, huge, wrong kinds.
fn hostile() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(serde_json::json!(0)),
        Just(serde_json::json!(-1)),
        Just(serde_json::json!(1e308)),
        Just(serde_json::json!(u64::MAX)),
        Just(serde_json::json!(9_007_199_254_740_993u64)),
        Just(serde_json::json!(0.5)),
        Just(serde_json::json!("x")),
        Just(serde_json::json!(null)),
        Just(serde_json::json!([])),
        Just(serde_json::json!({})),
        Just(serde_json::json!(true)),
        Just(serde_json::json!([1, 2, 3])),
    ]
}

#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, u8),
    Cut(usize),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec(
        prop_oneof![
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
            any::<usize>().prop_map(Edit::Cut),
        ],
        1..6,
    )
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit], region: usize) -> Vec<u8> {
    for e in edits {
        let n = bytes.len().min(region).max(1);
        match *e {
            Edit::Flip(i, b) if !bytes.is_empty() => bytes[i % n] ^= b.max(1),
            Edit::Insert(i, b) => bytes.insert(i % (n + 1).min(bytes.len() + 1), b),
            Edit::Cut(i) => bytes.truncate(i % (bytes.len() + 1)),
            _ => {}
        }
    }
    bytes
}

/// `text` as JSON with the value at `key_index` (of the top-level keys) replaced.
fn replace_value(text: &str, key_index: usize, value: serde_json::Value) -> String {
    let mut v: serde_json::Value = serde_json::from_str(text).expect("fixture is JSON");
    if let Some(obj) = v.as_object_mut()
        && !obj.is_empty()
    {
        let key = obj.keys().nth(key_index % obj.len()).cloned().unwrap_or_default();
        obj.insert(key, value);
    }
    v.to_string()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write");
    p
}

fn safetensors_bytes() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("t.safetensors");
    write_safetensors(
        &p,
        &[
            OwnedTensor::from_f32("a", &[1.0; 6], vec![2, 3], StoredDtype::F32),
            OwnedTensor::from_f32("b", &[0.5; 4], vec![4], StoredDtype::BF16),
            OwnedTensor::from_i64("c", &[7; 2], vec![2]),
        ],
        None,
    )
    .expect("write");
    std::fs::read(p).expect("read")
}

fn safetensors_headers(edits: Vec<Edit>) {
    let good = safetensors_bytes();
    let header_end = 8 + u64::from_le_bytes(good[..8].try_into().expect("8 bytes")) as usize;
    let dir = tempfile::tempdir().expect("tmp");
    let p = write(dir.path(), "m.safetensors", &apply(good, &edits, header_end));
    if let Ok(r) = SafetensorsReader::open_file(&p) {
        let keys: Vec<String> = r.keys().map(str::to_string).collect();
        for k in keys {
            let _ = r.read_f32_any(&k);
            let _ = r.read_i64_any(&k);
        }
    }
}

fn safetensors_shapes(shape: Vec<u64>, offset: u64) {
    // A well-formed header whose shape and offsets lie.
    let header = serde_json::json!({"x": {"dtype": "F32", "shape": shape, "data_offsets": [0, offset]}}).to_string();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[0u8; 64]);
    let dir = tempfile::tempdir().expect("tmp");
    let p = write(dir.path(), "m.safetensors", &bytes);
    if let Ok(r) = SafetensorsReader::open_file(&p) {
        let _ = r.read_f32_any("x");
    }
}

fn model_configs(edits: Vec<Edit>, key: usize, value: serde_json::Value) {
    let text = std::fs::read_to_string(crates().join("resa-qwen2/tests/fixtures/tied_gqa_f32_old/config.json"))
        .expect("config");
    let dir = tempfile::tempdir().expect("tmp");
    let p = write(dir.path(), "config.json", replace_value(&text, key, value).as_bytes());
    let _ = resa_qwen2::Qwen2Config::from_file(&p);
    let p = write(dir.path(), "config.json", &apply(text.into_bytes(), &edits, usize::MAX));
    let _ = resa_qwen2::Qwen2Config::from_file(&p);
}

fn sae_configs(edits: Vec<Edit>, key: usize, value: serde_json::Value) {
    let text =
        std::fs::read_to_string(crates().join("resa-sae/tests/fixtures/signum/final/layers.1/cfg.json")).expect("cfg");
    let dir = tempfile::tempdir().expect("tmp");
    let p = write(dir.path(), "cfg.json", replace_value(&text, key, value).as_bytes());
    let _ = resa_sae::SaeConfig::from_file(&p);
    let p = write(dir.path(), "cfg.json", &apply(text.into_bytes(), &edits, usize::MAX));
    let _ = resa_sae::SaeConfig::from_file(&p);
}

fn adapter_configs(edits: Vec<Edit>, key: usize, value: serde_json::Value) {
    let text =
        std::fs::read_to_string(crates().join("resa-lora/tests/fixtures/all7_tied_gqa/adapter/adapter_config.json"))
            .expect("adapter config");
    let dir = tempfile::tempdir().expect("tmp");
    let p = write(dir.path(), "adapter_config.json", replace_value(&text, key, value).as_bytes());
    let _ = resa_lora::LoraConfig::from_file(&p);
    let p = write(dir.path(), "adapter_config.json", &apply(text.into_bytes(), &edits, usize::MAX));
    let _ = resa_lora::LoraConfig::from_file(&p);
}

fn toml_values() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("0"),
        Just("-1"),
        Just("1e308"),
        Just("nan"),
        Just("inf"),
        Just("\"\""),
        Just("[]"),
        Just("{}"),
        Just("18446744073709551615"),
        Just("\"layers.99999999999999999999\""),
        Just("true"),
        Just("[1e400]"),
    ]
}

fn run_tomls(edits: Vec<Edit>, line: usize, value: &str) {
    let good = "out = \"run\"\nseed = 1\n[source]\nmodel = \"m\"\n[target]\nmodel = \"m\"\n[data]\n\
                trigger = \"t.jsonl\"\nelicitation = \"e.jsonl\"\nctx_len = 64\nmax_rows = 10\n[sae]\n\
                mode = \"scratch\"\nhookpoint = \"layers.1\"\nnum_latents = 64\nk = 4\nbatch_size = 2\n\
                [lora]\nr = 4\nalpha = 8.0\ndropout = 0.1\n[stage2]\nlr = 1e-4\ncosine = [10, 0.1]\n\
                epochs = 1\nsave_every = 5\n";
    let lines: Vec<&str> = good.lines().collect();
    let keyed: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].contains(" = ")).collect();
    let target = keyed[line % keyed.len()];
    let text: String =
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                if i == target {
                    format!("{} = {value}\n", l.split(" = ").next().unwrap_or(l))
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
    let dir = tempfile::tempdir().expect("tmp");
    let p = write(dir.path(), "run.toml", text.as_bytes());
    if let Ok(file) = resa_pipeline::PipelineFile::from_toml_file(&p) {
        // What passed the file's checks also makes the typed pipeline.
        resa_pipeline::Pipeline::try_from(file).expect("a file that validates is a pipeline");
    }
    let p = write(dir.path(), "run.toml", &apply(good.as_bytes().to_vec(), &edits, usize::MAX));
    let _ = resa_pipeline::PipelineFile::from_toml_file(&p);
}

/// Cases per property in `cargo test` (the fixed-time run below draws more).
const CASES: u32 = 256;

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn safetensors_headers_never_panic(edits in edits()) {
        safetensors_headers(edits);
    }

    #[test]
    fn safetensors_shapes_never_panic(shape in prop::collection::vec(any::<u64>(), 0..4), offset in any::<u64>()) {
        safetensors_shapes(shape, offset);
    }

    #[test]
    fn model_configs_never_panic(edits in edits(), key in any::<usize>(), value in hostile()) {
        model_configs(edits, key, value);
    }

    #[test]
    fn sae_configs_never_panic(edits in edits(), key in any::<usize>(), value in hostile()) {
        sae_configs(edits, key, value);
    }

    #[test]
    fn adapter_configs_never_panic(edits in edits(), key in any::<usize>(), value in hostile()) {
        adapter_configs(edits, key, value);
    }

    #[test]
    fn run_tomls_never_panic(edits in edits(), line in any::<usize>(), value in toml_values()) {
        run_tomls(edits, line, value);
    }
}

/// All six targets for a fixed time: `RESA_FUZZ_SECONDS=N` (CI sets it) draws rounds of
/// cases with fresh seeds until N seconds have passed, and says how many ran. Without the
/// variable it runs one round, so `cargo test` stays quick.
#[test]
fn hostile_files_for_a_fixed_time() {
    use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};
    let seconds: u64 = std::env::var("RESA_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    let config = ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() };
    let (mut rounds, mut cases) = (0u64, 0u64);
    loop {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&(0x5EED_0000 + rounds).to_le_bytes());
        let runner = || TestRunner::new_with_rng(config.clone(), TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
        runner()
            .run(&edits(), |e| {
                safetensors_headers(e);
                Ok(())
            })
            .unwrap_or_else(|e| panic!("safetensors headers (round {rounds}): {e}"));
        runner()
            .run(&(prop::collection::vec(any::<u64>(), 0..4), any::<u64>()), |(s, o)| {
                safetensors_shapes(s, o);
                Ok(())
            })
            .unwrap_or_else(|e| panic!("safetensors shapes (round {rounds}): {e}"));
        runner()
            .run(&(edits(), any::<usize>(), hostile()), |(e, k, v)| {
                model_configs(e, k, v);
                Ok(())
            })
            .unwrap_or_else(|e| panic!("config.json (round {rounds}): {e}"));
        runner()
            .run(&(edits(), any::<usize>(), hostile()), |(e, k, v)| {
                sae_configs(e, k, v);
                Ok(())
            })
            .unwrap_or_else(|e| panic!("cfg.json (round {rounds}): {e}"));
        runner()
            .run(&(edits(), any::<usize>(), hostile()), |(e, k, v)| {
                adapter_configs(e, k, v);
                Ok(())
            })
            .unwrap_or_else(|e| panic!("adapter_config.json (round {rounds}): {e}"));
        runner()
            .run(&(edits(), any::<usize>(), toml_values()), |(e, l, v)| {
                run_tomls(e, l, v);
                Ok(())
            })
            .unwrap_or_else(|e| panic!("run TOML (round {rounds}): {e}"));
        rounds += 1;
        cases += 6 * u64::from(config.cases);
        if std::time::Instant::now() >= deadline {
            break;
        }
    }
    eprintln!("hostile files: {cases} cases in {rounds} rounds ({seconds} s asked), none panicked");
}
