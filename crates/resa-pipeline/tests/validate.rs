//! A bad value anywhere in a run TOML is refused before any work starts, with the file, the
//! table, the key, the value and what is allowed in the message.

use resa_pipeline::stamp::{STAMP_VERSION, Stage1Stamp, Stage2Stamp};
use resa_pipeline::{Error, PipelineFile};
use resa_qwen2::Hookpoint;

const GOOD: &str = r#"
out = "run"
[source]
model = "m"
[target]
model = "m"
[data]
trigger = "t.jsonl"
elicitation = "e.jsonl"
[sae]
mode = "scratch"
hookpoint = "layers.12"
[lora]
r = 32
[stage2]
lr = 1e-6
"#;

/// Replaces `key = …` in `[table]` (or adds it there) and parses.
fn with(table: &str, key: &str, value: &str) -> String {
    let mut out = String::new();
    let mut in_table = table.is_empty();
    let mut done = false;
    for line in GOOD.lines() {
        if line.starts_with('[') {
            if in_table && !done {
                out.push_str(&format!("{key} = {value}\n"));
                done = true;
            }
            in_table = line == format!("[{table}]");
        }
        if in_table && !done && line.split('=').next().is_some_and(|k| k.trim() == key) {
            out.push_str(&format!("{key} = {value}\n"));
            done = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !done {
        out.push_str(&format!("{key} = {value}\n"));
    }
    out
}

fn load(text: &str) -> Result<PipelineFile, Error> {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("run.toml");
    std::fs::write(&path, text).expect("write");
    PipelineFile::from_toml_file(&path)
}

#[test]
fn the_good_file_is_accepted() {
    load(GOOD).expect("valid");
}

#[test]
fn every_table_refuses_bad_values_with_file_table_key_and_value() {
    let cases: &[(&str, &str, &str, &str)] = &[
        ("", "out", "\"\"", "run folder"),
        ("source", "model", "\" \"", "model folder"),
        ("data", "trigger", "\"\"", "dataset"),
        ("data", "template", "\"Q: {question}\"", "{problem}"),
        ("data", "ctx_len", "1", "2 ..= 1048576"),
        ("data", "max_rows", "0", "at least 1"),
        ("sae", "hookpoint", "\"layer12\"", "layers.N"),
        ("sae", "mode", "\"finetune\"", "need the SAE folder"),
        ("sae", "num_latents", "0", "at least 1"),
        ("sae", "k", "100000", "num_latents"),
        ("sae", "batch_size", "0", "at least 1"),
        ("sae", "lr", "-0.5", "positive finite"),
        ("sae", "max_steps", "0", "at least 1"),
        ("lora", "r", "100000000", "1 ..= 65536"),
        ("lora", "r", "0", "1 ..= 65536"),
        ("lora", "alpha", "-1.5", "positive"),
        ("lora", "dropout", "2.5", "[0, 1)"),
        ("lora", "targets", "[\"qproj\"]", "q_proj"),
        ("lora", "targets", "[]", "one or more"),
        ("stage2", "lr", "-0.001", "positive finite"),
        ("stage2", "cosine", "[10, 1.5]", "floor ratio"),
        ("stage2", "epochs", "0", "at least 1"),
        ("stage2", "max_steps", "0", "at least 1"),
        ("stage2", "batch_size", "0", "at least 1"),
        ("stage2", "grad_accum", "0", "at least 1"),
        ("stage2", "data_parallel", "0", "at least 1"),
        ("stage2", "save_every", "0", "at least 1"),
    ];
    for (table, key, value, allowed) in cases {
        let text = with(table, key, value);
        let err = load(&text).expect_err(&format!("[{table}] {key} = {value} accepted:\n{text}"));
        let msg = err.to_string();
        // Hookpoints and templates are parsed with the file (a value that does not parse is
        // a parse error, led by its table and key); every other value is checked after.
        let parsed = matches!(*key, "hookpoint" | "template");
        match err {
            Error::Invalid { .. } => assert!(!parsed, "[{table}] {key}: {msg}"),
            Error::Parse { .. } => assert!(parsed, "[{table}] {key}: {msg}"),
            _ => panic!("[{table}] {key}: {msg}"),
        }
        assert!(msg.contains("run.toml"), "{msg}");
        let shown = if *key == "targets" { value.trim_matches(['[', ']']) } else { value };
        assert!(*key == "mode" || msg.contains(shown), "the value is shown: {msg}");
        // A finetune SAE without `path`: the missing key is the one named.
        let named = if *key == "mode" { "path" } else { key };
        let sep = if parsed { ":" } else { " =" };
        let location = if table.is_empty() { format!("{named}{sep} ") } else { format!("[{table}] {named}{sep} ") };
        assert!(msg.contains(&location), "{msg}");
        assert!(msg.contains(allowed), "[{table}] {key}: {msg}");
    }
}

#[test]
fn unknown_keys_and_wrong_types_name_the_key() {
    let err = load(&with("lora", "lora_dropout", "0.1")).expect_err("unknown key").to_string();
    assert!(err.contains("run.toml") && err.contains("lora_dropout"), "{err}");
    let err = load(&with("stage2", "lr", "\"fast\"")).expect_err("wrong type").to_string();
    assert!(err.contains("run.toml") && err.contains("lr"), "{err}");
}

/// Too little data for one chunk is refused with the cause: rows, tokens, the chunk length.
#[test]
fn too_little_data_for_one_chunk_says_why() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("two.jsonl");
    std::fs::write(&data, "{\"problem\": \"1+1\", \"answer\": \"2\"}\n{\"problem\": \"2+2\", \"answer\": \"4\"}\n")
        .expect("write");
    let section: resa_pipeline::pipeline::DataSection = toml::from_str(&format!(
        "trigger = \"{d}\"\nelicitation = \"{d}\"\nctx_len = 2048\n",
        d = data.display().to_string().replace('\\', "/")
    ))
    .expect("section");
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/toy-qwen2");
    let err = resa_pipeline::data::prepare_chunks(&section, &section.trigger, &model).expect_err("no chunk");
    let msg = err.to_string();
    assert!(msg.contains("no chunk of 2048 tokens") && msg.contains("2 rows") && msg.contains("ctx_len"), "{msg}");
}

#[test]
fn the_schedule_is_typed_and_keeps_its_file_form() {
    use resa_tune::LrSchedule;
    assert_eq!(load(GOOD).expect("good").stage2.schedule, LrSchedule::Constant);
    let cfg = load(&with("stage2", "cosine", "[10, 0.1]")).expect("cosine");
    assert_eq!(cfg.stage2.schedule, LrSchedule::Cosine { warmup_steps: 10, min_lr_ratio: 0.1 });
    // Written back as the pair it was read from (run stamps are unchanged by the type).
    let text = toml::to_string(&cfg).expect("toml");
    assert!(text.contains("cosine = [10, 0.1]"), "{text}");
    let json = serde_json::to_value(&cfg.stage2).expect("json");
    assert_eq!(json["cosine"], serde_json::json!([10, 0.1]));
    let json = serde_json::to_value(&load(GOOD).expect("good").stage2).expect("json");
    assert_eq!(json["cosine"], serde_json::Value::Null);
}

#[test]
fn a_cot_template_needs_rows_with_solutions() {
    use resa_data::{ReadOptions, Template};
    use resa_pipeline::data::{ChunkSource, chunk_dataset};
    let dir = tempfile::tempdir().expect("tmp");
    let toy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/toy-qwen2");
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(toy.join(file), dir.path().join(file)).expect("tokenizer");
    }
    let data = dir.path().join("rows.jsonl");
    let rows: String = (0..40)
        .map(|i| {
            let mut row = serde_json::json!({"problem": format!("What is {i}+1?"), "answer": (i + 1).to_string()});
            if i % 2 == 0 {
                row["solution"] = serde_json::json!(format!("{i}+1={}", i + 1));
            }
            format!("{row}\n")
        })
        .collect();
    std::fs::write(&data, rows).expect("write");
    let spec = data.display().to_string();
    let cot = Template::custom("Q: {problem}\nA: <think> {solution} </think> {answer}").expect("template");
    let source = |template, read| ChunkSource {
        spec: &spec,
        split: "train",
        template,
        ctx_len: 16,
        max_rows: None,
        read,
        shuffle_seed: None,
        ctx_len_name: "[data] ctx_len",
    };
    // Half the rows have a solution: those are used (the others skipped), or, strict, refused.
    let chunks = chunk_dataset(&source(&cot, ReadOptions::default()), dir.path()).expect("chunks");
    assert_eq!(chunks.stats.rows, 20);
    let err = chunk_dataset(&source(&cot, ReadOptions::strict()), dir.path()).expect_err("strict");
    assert!(err.to_string().contains("20 of 40 rows have no worked solution"), "{err}");
    // None has one under another key.
    let other = ReadOptions { solution_keys: vec!["trace".into()], ..ReadOptions::default() };
    let err = chunk_dataset(&source(&cot, other), dir.path()).expect_err("no solutions");
    assert!(err.to_string().contains("none of its 40 rows has one (looked for: trace)"), "{err}");
    // A CoT-free template reads every row.
    let free = chunk_dataset(&source(&Template::Reference, ReadOptions::default()), dir.path()).expect("chunks");
    assert_eq!(free.stats.rows, 40);
}

/// The typed pipeline: made only through the checks, holding the values the stages take.
#[test]
fn the_typed_pipeline_holds_what_the_stages_take() {
    use resa_pipeline::{Pipeline, SaeSource};
    use resa_tune::LrSchedule;

    let file = load(&with("stage2", "cosine", "[10, 0.1]")).expect("good");
    let pipeline = Pipeline::try_from(file.clone()).expect("typed");
    assert_eq!(pipeline.file(), &file, "the file form it keeps for the stamps is the one read");
    assert_eq!(pipeline.hookpoint(), Hookpoint::Residual(12));
    assert_eq!(
        pipeline.sae(),
        &SaeSource::Scratch {
            num_latents: resa_sae::SaeInit::DEFAULT_LATENTS,
            k: resa_sae::SaeInit::DEFAULT_K,
            seed: 0
        }
    );
    // The adapters: rank from the file, alpha and dropout the library's defaults, named
    // after the target model.
    let lora = pipeline.lora();
    assert_eq!(lora.r, 32);
    assert_eq!(lora.lora_alpha, resa_lora::LoraConfig::reference().lora_alpha);
    assert_eq!(lora.lora_dropout, resa_lora::LoraConfig::reference().lora_dropout);
    assert_eq!(lora.base_model_name_or_path.as_deref(), Some("m"));
    // The trainer: the file's values, the run folder's stage2/, resumable, the run's seed.
    let tune = pipeline.tune();
    assert_eq!(tune.lr, 1e-6);
    assert_eq!(tune.schedule, LrSchedule::Cosine { warmup_steps: 10, min_lr_ratio: 0.1 });
    assert_eq!(tune.out, std::path::Path::new("run/stage2"));
    assert!(tune.resume);
    assert_eq!(tune.seed, resa_tune::TuneConfig::default().seed);
    assert_eq!(tune.epochs, resa_tune::TuneConfig::default().epochs);
    // Stage I: one SAE per hookpoint asked for, into the run folder's stage1/.
    let stage1 = pipeline.stage1_options(&[Hookpoint::Residual(3), Hookpoint::Residual(5)]).expect("scratch trains");
    assert_eq!(stage1.hookpoints, vec![Hookpoint::Residual(3), Hookpoint::Residual(5)]);
    assert_eq!(stage1.out, std::path::Path::new("run/stage1"));
    assert!(matches!(stage1.init, resa_sae::SaeInit::Scratch { k, .. } if k == resa_sae::SaeInit::DEFAULT_K));

    // The SAE source is one value: the mode and its path together.
    let mut finetune = file.clone();
    finetune.sae.mode = resa_pipeline::pipeline::SaeMode::Finetune;
    finetune.sae.path = Some("saes/x".into());
    let typed = Pipeline::try_from(finetune).expect("finetune");
    assert_eq!(typed.sae(), &SaeSource::Finetune { from: "saes/x".into() });
    assert!(typed.sae().trains());
    let mut pretrained = file.clone();
    pretrained.sae.mode = resa_pipeline::pipeline::SaeMode::Pretrained;
    pretrained.sae.path = Some("saes/y".into());
    let typed = Pipeline::try_from(pretrained).expect("pretrained");
    assert_eq!(typed.sae(), &SaeSource::Pretrained { path: "saes/y".into() });
    assert!(typed.stage1_options(&[Hookpoint::Residual(12)]).is_none(), "a pretrained SAE has no Stage I");

    // A file changed after it was read is checked again on the way to the typed form.
    let mut bad = file.clone();
    bad.stage2.lr = -1.0;
    let err = Pipeline::new(bad, "edited.toml").expect_err("negative lr");
    assert!(matches!(err, Error::Invalid { table: "stage2", key: "lr", .. }), "{err}");
    assert!(err.to_string().contains("edited.toml"), "{err}");
    let mut bad = file;
    bad.sae.mode = resa_pipeline::pipeline::SaeMode::Pretrained;
    bad.sae.path = None;
    let err = Pipeline::try_from(bad).expect_err("pretrained without a path");
    assert!(matches!(err, Error::Invalid { table: "sae", key: "path", .. }), "{err}");
}

/// `[stage2] recompute = true` is accepted with the detach splice at a residual hookpoint
/// and refused, naming the key and what it needs, with another splice, the SFT baseline or
/// an MLP hookpoint; the resolved file form names it either way (no stamp holds it).
#[test]
fn recompute_needs_the_student_to_start_at_the_hookpoint() {
    let on = with("stage2", "recompute", "true");
    assert!(load(&on).expect("detach at layers.12").stage2.recompute);
    for (from, to) in [
        ("[stage2]\n", "[stage2]\nsae_grad = \"straight-through\"\n"),
        ("[stage2]\n", "[stage2]\nobjective = \"sft\"\n"),
        ("hookpoint = \"layers.12\"", "hookpoint = \"layers.12.mlp\""),
    ] {
        let text = on.replacen(from, to, 1);
        assert_ne!(text, on);
        let msg = load(&text).expect_err(&format!("{to} with recompute")).to_string();
        assert!(msg.contains("[stage2] recompute = true") && msg.contains("sae_grad = \"detach\""), "{msg}");
    }
    let off = load(GOOD).expect("valid");
    assert!(!off.stage2.recompute);
    assert!(toml::to_string(&off).expect("serialise").contains("recompute = false"));
}

// Stamps hold what makes an output reusable and nothing else: a value an output depends on
// changes the stamp of its stage and of every stage after it; a value that changes only how
// it is computed, or where the run lives, changes none.

fn parsed(text: &str) -> PipelineFile {
    toml::from_str(text).expect("parses")
}

fn stamps(cfg: &PipelineFile) -> (Stage1Stamp, Stage2Stamp) {
    let s1 = Stage1Stamp::new(cfg, &[cfg.sae.hookpoint]);
    let s2 = Stage2Stamp::new(cfg, s1.clone(), 1);
    (s1, s2)
}

#[test]
fn what_an_output_depends_on_changes_its_stamp_and_the_later_ones() {
    let (s1, s2) = stamps(&parsed(GOOD));
    assert_eq!((s1.version, s2.version), (STAMP_VERSION, STAMP_VERSION));
    // Stage I's values change both stamps.
    for (table, key, value) in
        [("sae", "k", "16"), ("data", "ctx_len", "512"), ("data", "split", "\"test\""), ("sae", "seed", "3")]
    {
        let extra = (table, key, value);
        let (t1, t2) = stamps(&parsed(&with(table, key, value)));
        assert_ne!(t1, s1, "{extra:?}");
        assert_ne!(t2, s2, "{extra:?}");
    }
    // Stage II's values change Stage II's stamp only.
    for (table, key, value) in
        [("stage2", "epochs", "3"), ("stage2", "sae_grad", "\"flow\""), ("lora", "r", "8"), ("", "seed", "9")]
    {
        let extra = (table, key, value);
        let (t1, t2) = stamps(&parsed(&with(table, key, value)));
        assert_eq!(t1, s1, "{extra:?}");
        assert_ne!(t2, s2, "{extra:?}");
    }
    // More nodes: another adapter.
    let cfg = parsed(GOOD);
    assert_ne!(Stage2Stamp::new(&cfg, s1.clone(), 2), s2);
    // Another set of hookpoints trained together: another Stage I.
    assert_ne!(Stage1Stamp::new(&cfg, &[Hookpoint::Residual(12), Hookpoint::Residual(13)]), s1);
}

#[test]
fn how_and_where_a_run_computes_change_no_stamp() {
    let (s1, s2) = stamps(&parsed(GOOD));
    let mut moved = parsed(&with("stage2", "recompute", "true"));
    moved.stage2.merge = true;
    moved.out = "elsewhere".into();
    assert_eq!(stamps(&moved), (s1, s2));
}

/// A stamp is JSON with named fields (not a positional tuple), and its version first.
#[test]
fn a_stamp_names_its_fields() {
    let (_, s2) = stamps(&parsed(GOOD));
    let json: serde_json::Value = serde_json::from_str(&serde_json::to_string(&s2).expect("json")).expect("parses");
    assert_eq!(json["version"], STAMP_VERSION);
    assert_eq!(json["hookpoint"], "layers.12");
    assert_eq!(json["lora"]["r"], 32);
    assert_eq!(json["sae"]["trigger"]["dataset"], "t.jsonl");
    assert_eq!(json["elicitation"]["dataset"], "e.jsonl");
}
