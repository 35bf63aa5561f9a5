//! The bad-input suite: one test per hostile or mistaken input named in the faults issue,
//! each through the library (the error variant) and through the `resa` command a user runs
//! (exit status 1 — never a panic's 101 or an abort's 134 —, a message naming the cause, and
//! no output left behind).

use std::path::{Path, PathBuf};
use std::process::Output;

use burn::backend::Flex;
use burn::tensor::DType;
use resa::qwen2::safetensors_io::{OwnedTensor, SafetensorsReader, StoredDtype, write_safetensors};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tiny_model() -> PathBuf {
    root().join("crates/resa-qwen2/tests/fixtures/tied_gqa_f32_old")
}

fn toy_model() -> PathBuf {
    root().join("models/toy-qwen2")
}

fn encode_fixture() -> PathBuf {
    root().join("crates/resa-sae/tests/fixtures/encode")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn resa(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_resa")).args(args).output().expect("runs resa")
}

/// A refusal as a user sees it: status 1 (an error, not a panic or an abort), stderr holding
/// every one of `wanted`, nothing on stdout.
#[track_caller]
fn refused(o: &Output, wanted: &[&str]) -> String {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(1), "exit status {:?} (101 is a panic, 134 an abort): {err}", o.status);
    assert!(!err.contains("panicked"), "{err}");
    for w in wanted {
        assert!(err.contains(w), "the message lacks {w:?}: {err}");
    }
    assert!(o.stdout.is_empty(), "output on stdout: {}", String::from_utf8_lossy(&o.stdout));
    err
}

/// Copies a folder's files (one level) into a fresh temporary folder.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        if e.path().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

/// Rewrites the f32 tensors of `path` through `edit`.
fn edit_tensors(path: &Path, edit: impl FnOnce(&mut Vec<(String, Vec<f32>, Vec<usize>)>)) {
    let r = SafetensorsReader::open_file(path).expect("open");
    let mut tensors: Vec<(String, Vec<f32>, Vec<usize>)> = r
        .keys()
        .map(|k| {
            let (v, shape) = r.read_f32_any(k).expect("read");
            (k.to_string(), v, shape)
        })
        .collect();
    drop(r);
    edit(&mut tensors);
    let owned: Vec<OwnedTensor> =
        tensors.iter().map(|(k, v, shape)| OwnedTensor::from_f32(k, v, shape.clone(), StoredDtype::F32)).collect();
    write_safetensors(path, &owned, None).expect("write");
}

/// A safetensors file holding only `header` (and no data).
fn raw_safetensors(path: &Path, header: &str) {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    std::fs::write(path, bytes).expect("write");
}

/// A run TOML on the toy model with `data` as both sets; `extra` is appended to `[stage2]`.
fn run_toml(dir: &Path, data: &Path, ctx_len: usize, lora_r: usize) -> PathBuf {
    let text = format!(
        "out = \"{out}\"\n[source]\nmodel = \"{m}\"\n[target]\nmodel = \"{m}\"\n[data]\ntrigger = \"{d}\"\n\
         elicitation = \"{d}\"\nctx_len = {ctx_len}\n[sae]\nmode = \"scratch\"\nhookpoint = \"layers.1\"\n\
         num_latents = 64\nk = 4\nmax_steps = 2\n[lora]\nr = {lora_r}\n[stage2]\nlr = 1e-3\nmax_steps = 2\n",
        out = dir.join("run").display(),
        m = toy_model().display(),
        d = data.display(),
    );
    let path = dir.join("run.toml");
    std::fs::write(&path, text).expect("write");
    path
}

/// `resa sae encode` used to panic (exit 101) on a header whose shape product overflows.
#[test]
fn a_safetensors_shape_that_overflows_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().expect("tmp");
    let sae = tmp.path().join("sae");
    copy_dir(&encode_fixture().join("sae"), &sae);
    raw_safetensors(
        &sae.join("sae.safetensors"),
        r#"{"W_enc":{"dtype":"F32","shape":[36028797018963968,128],"data_offsets":[0,0]}}"#,
    );
    let err = match resa::sae::SparseCoder::<Flex>::load(&sae, &Default::default()) {
        Err(e) => e,
        Ok(_) => panic!("an overflowing shape was loaded"),
    };
    assert!(matches!(err, resa::sae::Error::Tensors(_)), "a safetensors error: {err:?}");
    let out = tmp.path().join("out.safetensors");
    let input = encode_fixture().join("input.safetensors");
    let o = resa(&["sae", "encode", "--sae", s(&sae), "--input", s(&input), "--out", s(&out)]);
    refused(&o, &["sae.safetensors", "W_enc"]);
    assert!(!out.exists(), "no output on failure");
}

/// `[lora] r = 100000000` (51 GB of adapter weights) used to end in an allocation abort.
#[test]
fn a_lora_rank_beyond_the_model_is_refused_before_any_work() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data.jsonl");
    std::fs::write(&data, "{\"problem\": \"1+1\", \"answer\": \"2\"}\n").expect("write");
    let config = run_toml(tmp.path(), &data, 48, 100_000_000);
    let err = resa::pipeline::Pipeline::from_toml_file(&config).expect_err("refused");
    assert!(matches!(err, resa::pipeline::Error::Invalid { table: "lora", key: "r", .. }), "{err}");
    let o = resa(&["tune", "--config", s(&config)]);
    refused(&o, &["run.toml", "[lora] r = 100000000", "1 ..= 65536"]);
    // Within the file's range but above the target's hidden size: refused against config.json.
    let config = run_toml(tmp.path(), &data, 48, 4096);
    let o = resa(&["tune", "--config", s(&config)]);
    refused(&o, &["[lora] r = 4096", "hidden size"]);
    assert!(!tmp.path().join("run").exists(), "nothing written before the refusal");
    // The library refuses the rank before allocating, with the size it would need.
    let mut model =
        resa::qwen2::Qwen2ForCausalLM::<Flex>::from_pretrained(tiny_model(), &Default::default(), DType::F32)
            .expect("model");
    let lora = resa::lora::LoraConfig::new(100_000_000, 16.0, 0.0, &["q_proj"]);
    let err = resa::lora::attach(&mut model, &lora, 0).expect_err("refused");
    assert!(err.to_string().contains("GiB"), "{err}");
}

/// A prompt past `max_position_embeddings` is refused with both numbers; so is
/// `--max-new-tokens 0` (it used to exit 0 with nothing).
#[test]
fn prompts_past_the_positions_and_zero_new_tokens_are_refused() {
    let model = tiny_model();
    let ids: Vec<String> = (0..257).map(|i| (i % 90 + 1).to_string()).collect();
    let o = resa(&["generate", "--model", s(&model), "--prompt-ids", &ids.join(","), "--max-new-tokens", "1"]);
    refused(&o, &["257 tokens", "256 positions"]);
    let o = resa(&["generate", "--model", s(&model), "--prompt-ids", "1,2,3", "--max-new-tokens", "0"]);
    refused(&o, &["`max_new_tokens`: must be at least 1"]);
    let loaded =
        resa::qwen2::Qwen2ForCausalLM::<Flex>::from_pretrained(&model, &Default::default(), DType::F32).expect("model");
    let cfg = resa::qwen2::GenerationConfig::greedy(0, vec![]);
    let err = resa::qwen2::generate(&loaded, &[vec![1, 2, 3]], &cfg).expect_err("refused");
    assert!(matches!(err, resa::qwen2::Error::Input { .. }), "{err:?}");
}

/// NaN or Inf in the model, an SAE or an adapter is refused at load, naming the tensor and
/// the element (they used to load and generate garbage with exit 0).
#[test]
fn non_finite_weights_are_refused_naming_the_tensor() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ids = tmp.path().join("ids.json");
    std::fs::write(&ids, "[[1, 2, 3]]").expect("write");
    let out = tmp.path().join("out.safetensors");

    // The model.
    let model = tmp.path().join("model");
    copy_dir(&tiny_model(), &model);
    edit_tensors(&model.join("model.safetensors"), |t| {
        let w = t.iter_mut().find(|t| t.0 == "model.layers.1.mlp.down_proj.weight").expect("weight");
        w.1[7] = f32::NAN;
    });
    let err = match resa::qwen2::Qwen2ForCausalLM::<Flex>::from_pretrained(&model, &Default::default(), DType::F32) {
        Err(e) => e,
        Ok(_) => panic!("NaN weights loaded"),
    };
    assert!(matches!(err, resa::qwen2::Error::NonFinite { index: 7, .. }), "{err:?}");
    let o = resa(&["forward", "--model", s(&model), "--input-ids", s(&ids), "--out", s(&out)]);
    refused(&o, &["model.layers.1.mlp.down_proj.weight", "non-finite", "element 7"]);
    assert!(!out.exists(), "no output on failure");

    // An SAE.
    let sae = tmp.path().join("sae");
    copy_dir(&encode_fixture().join("sae"), &sae);
    edit_tensors(&sae.join("sae.safetensors"), |t| {
        let w = t.iter_mut().find(|t| t.0 == "W_dec").expect("W_dec");
        w.1[3] = f32::INFINITY;
    });
    let input = encode_fixture().join("input.safetensors");
    let o = resa(&["sae", "encode", "--sae", s(&sae), "--input", s(&input), "--out", s(&out)]);
    refused(&o, &["W_dec", "non-finite", "element 3"]);
    assert!(!out.exists(), "no output on failure");

    // An adapter.
    let adapter = tmp.path().join("adapter");
    copy_dir(&root().join("crates/resa-lora/tests/fixtures/all7_tied_gqa/adapter"), &adapter);
    let mut key = String::new();
    edit_tensors(&adapter.join("adapter_model.safetensors"), |t| {
        let w = t.iter_mut().find(|t| t.0.contains("lora_B")).expect("lora_B");
        w.1[0] = f32::NAN;
        key = w.0.clone();
    });
    let o = resa(&[
        "forward",
        "--model",
        s(&tiny_model()),
        "--adapter",
        s(&adapter),
        "--input-ids",
        s(&ids),
        "--out",
        s(&out),
    ]);
    refused(&o, &[&key, "non-finite"]);
    assert!(!out.exists(), "no output on failure");
}

/// A dataset field that is an array is reported as an array (it used to be "missing").
#[test]
fn a_dataset_field_that_is_an_array_is_named_as_one() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data.jsonl");
    std::fs::write(&data, "{\"problem\": [\"1+1\"], \"answer\": \"2\"}\n").expect("write");
    let strict = resa::data::ReadOptions { strict: true, ..Default::default() };
    match resa::data::load_dataset(s(&data), "train", &strict) {
        Err(resa::data::Error::MissingField { field, found, .. }) => {
            assert_eq!(field, "problem");
            assert!(found.contains("an array"), "{found}");
        }
        other => panic!("expected MissingField, got {other:?}"),
    }
    let config = run_toml(tmp.path(), &data, 48, 4);
    let o = resa(&["tune", "--config", s(&config)]);
    refused(&o, &["data.jsonl", "no usable rows", "line 1: `problem` is an array"]);
    assert!(!tmp.path().join("run/stage1/layers.1").exists(), "no SAE written");
}

/// Too little data for one chunk says why: the rows, the tokens, the chunk length, what to
/// change (it used to say only "no chunks to train on").
#[test]
fn too_little_data_for_one_chunk_says_why_and_writes_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data.jsonl");
    std::fs::write(&data, "{\"problem\": \"1+1\", \"answer\": \"2\"}\n{\"problem\": \"2+2\", \"answer\": \"4\"}\n")
        .expect("write");
    let config = run_toml(tmp.path(), &data, 2048, 4);
    let o = resa(&["tune", "--config", s(&config)]);
    refused(&o, &["no chunk of 2048 tokens", "2 rows", "[data] ctx_len"]);
    let stage1 = tmp.path().join("run/stage1");
    assert!(!stage1.join("layers.1").exists() && !stage1.join("done.json").exists(), "no SAE written");
    assert!(!tmp.path().join("run/stage2/adapter").exists(), "no adapter written");
}

/// The SAE's `dead_mask` in an input of the wrong dtype: the message says what it may be and
/// nothing contrary (it used to contradict itself).
#[test]
fn a_dead_mask_of_the_wrong_dtype_says_what_is_expected() {
    let tmp = tempfile::tempdir().expect("tmp");
    let input = tmp.path().join("in.safetensors");
    write_safetensors(
        &input,
        &[
            OwnedTensor::from_f32("x", &[0.0; 64 * 2], vec![2, 64], StoredDtype::F32),
            OwnedTensor::from_f32("dead_mask", &[0.0; 128], vec![128], StoredDtype::F32),
        ],
        None,
    )
    .expect("write");
    let out = tmp.path().join("out.safetensors");
    let sae = encode_fixture().join("sae");
    let o = resa(&["sae", "encode", "--sae", s(&sae), "--input", s(&input), "--out", s(&out)]);
    let err = refused(&o, &["`dead_mask`", "has dtype F32; expected an integer dtype"]);
    assert!(!err.contains("expected F32"), "{err}");
    assert!(!out.exists(), "no output on failure");
}

/// Wrong tensor names in an SAE folder are an SAE problem, not a "Qwen2 model" one.
#[test]
fn wrong_tensor_names_in_an_sae_folder_are_an_sae_error() {
    let tmp = tempfile::tempdir().expect("tmp");
    let sae = tmp.path().join("sae");
    copy_dir(&encode_fixture().join("sae"), &sae);
    edit_tensors(&sae.join("sae.safetensors"), |t| {
        for (name, _, _) in t.iter_mut() {
            *name = format!("encoder.{name}");
        }
    });
    let err = match resa::sae::SparseCoder::<Flex>::load(&sae, &Default::default()) {
        Err(e) => e,
        Ok(_) => panic!("renamed tensors loaded"),
    };
    assert!(matches!(err, resa::sae::Error::SaeTensors { .. }), "{err:?}");
    let out = tmp.path().join("out.safetensors");
    let input = encode_fixture().join("input.safetensors");
    let o = resa(&["sae", "encode", "--sae", s(&sae), "--input", s(&input), "--out", s(&out)]);
    let err = refused(&o, &["sae.safetensors", "unexpected tensor `encoder.", "a sparsify SAE holds"]);
    assert!(!err.contains("Qwen2"), "named as a model problem: {err}");
    assert!(!out.exists(), "no output on failure");
}

/// A Stage II that diverges stops with an error, the diverging step recorded in
/// `metrics.jsonl` (it used to be left empty), no adapter published as if finished.
#[test]
fn a_diverging_stage2_stops_with_the_step_recorded() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    resa::toy::world::ToyWorld::default().write_splits(&data, [40, 2, 2]).expect("data");
    let train = data.join("train.jsonl");
    let config = run_toml(tmp.path(), &train, 48, 4);
    let text = std::fs::read_to_string(&config)
        .expect("read")
        .replace("lr = 1e-3\nmax_steps = 2", "lr = 1e30\nmax_steps = 20");
    let text = text.replacen(
        "[data]\n",
        &format!("[data]\ntemplate = \"{}\"\n", resa::toy::world::TOY_TEMPLATE.replace('\n', "\\n")),
        1,
    );
    std::fs::write(&config, text).expect("write");
    let o = resa(&["tune", "--config", s(&config)]);
    let err = refused(&o, &["training stopped at step", "not finite", "the last good checkpoint is kept"]);
    let metrics = std::fs::read_to_string(tmp.path().join("run/stage2/metrics.jsonl")).expect("metrics kept");
    let last: serde_json::Value = serde_json::from_str(metrics.lines().last().expect("a line")).expect("json");
    // The step that diverged is the last line, its non-finite value written as null.
    assert!(last["loss"].is_null() || last["grad_norm"].is_null(), "last line {last}: {err}");
    assert!(metrics.lines().count() >= 1 && last["step"].as_u64().is_some(), "{metrics}");
    assert!(!tmp.path().join("run/stage2/adapter").exists(), "a diverged run published an adapter: {err}");
}

/// A Stage II step that cannot fit is refused before Stage I, with the bound, its parts and
/// the limit (a 32k-token context on a 1.5B model: the attention probabilities alone are
/// tens of GiB); only the target's `config.json` is read.
#[test]
fn a_stage2_step_that_cannot_fit_is_refused_before_stage1() {
    let tmp = tempfile::tempdir().expect("tmp");
    let model = tmp.path().join("model");
    std::fs::create_dir_all(&model).expect("mkdir");
    let cfg = resa::bench::r1_distill_15b();
    let config = serde_json::json!({
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size, "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers, "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads, "max_position_embeddings": cfg.max_position_embeddings,
        "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": false, "hidden_act": "silu",
        "use_sliding_window": false, "torch_dtype": "bfloat16"
    });
    std::fs::write(model.join("config.json"), config.to_string()).expect("config");
    let data = tmp.path().join("data.jsonl");
    std::fs::write(&data, "{\"problem\": \"1+1\", \"answer\": \"2\"}\n").expect("write");
    let text = format!(
        "out = \"{out}\"\n[source]\nmodel = \"{m}\"\n[target]\nmodel = \"{m}\"\n[data]\ntrigger = \"{d}\"\n\
         elicitation = \"{d}\"\nctx_len = 32768\n[sae]\nmode = \"scratch\"\nhookpoint = \"layers.12\"\n",
        out = tmp.path().join("run").display(),
        m = model.display(),
        d = data.display(),
    );
    let path = tmp.path().join("run.toml");
    std::fs::write(&path, text).expect("write");

    // The library: the variant, with the bound above the limit.
    let limit = resa::pipeline::MemoryLimit { bytes: 16 << 30, source: "given".into(), shared_by_replicas: true };
    let pipeline = resa::pipeline::Pipeline::from_toml_file(&path).expect("valid").with_memory_limit(Some(limit));
    match pipeline.check_memory(&cfg, DType::BF16, "run.toml") {
        Err(resa::pipeline::Error::Memory { needed, ctx_len: 32768, .. }) => assert!(needed > 16 << 30, "{needed}"),
        other => panic!("expected Error::Memory, got {other:?}"),
    }
    // The same pipeline at 2,048 tokens is within 16 GiB by the bound.
    let mut file = pipeline.file().clone();
    file.data.ctx_len = 2048;
    let short = resa::pipeline::Pipeline::new(file, "run.toml")
        .expect("valid")
        .with_memory_limit(pipeline.memory_limit().cloned());
    let estimate = short.check_memory(&cfg, DType::BF16, "run.toml").expect("fits");
    assert!(estimate.total() < 16 << 30, "{estimate}");
    // Refused under 8 GiB, the message says that recomputing the student's layers fits; at
    // 32k tokens it says that recomputing alone does not.
    let tight = resa::pipeline::MemoryLimit { bytes: 8 << 30, source: "given".into(), shared_by_replicas: true };
    let err = short.clone().with_memory_limit(Some(tight)).check_memory(&cfg, DType::BF16, "run.toml");
    let text = err.expect_err("above 8 GiB without recomputation").to_string();
    assert!(
        text.contains("[stage2] recompute = true: ") && text.contains("GiB by the bound, within the limit"),
        "{text}"
    );
    let mut file = short.file().clone();
    file.stage2.recompute = true;
    let recomputed = resa::pipeline::Pipeline::new(file, "run.toml").expect("valid").with_memory_limit(Some(
        resa::pipeline::MemoryLimit { bytes: 8 << 30, source: "given".into(), shared_by_replicas: true },
    ));
    recomputed.check_memory(&cfg, DType::BF16, "run.toml").expect("fits with the student's layers recomputed");
    let text = pipeline.check_memory(&cfg, DType::BF16, "run.toml").expect_err("32k").to_string();
    assert!(text.contains("still above the limit"), "{text}");

    // The command: refused with the limit given, and by default on the CPU (what the
    // machine has available), before anything is written.
    let o = resa(&["tune", "--config", s(&path), "--dtype", "bf16", "--memory-limit", "16"]);
    refused(
        &o,
        &["one Stage II step needs at least", "GiB", "16.00 GiB given with --memory-limit", "[data] ctx_len (32768)"],
    );
    let o = resa(&["tune", "--config", s(&path), "--dtype", "bf16"]);
    refused(&o, &["one Stage II step needs at least", "available on this machine (MemAvailable)"]);
    assert!(!tmp.path().join("run").exists(), "nothing written before the refusal");
    let o = resa(&["tune", "--config", s(&path), "--memory-limit", "0"]);
    refused(&o, &["--memory-limit 0: a positive number of GiB"]);
}
