//! Fault tests: Stage I (`resa train-sae`) and Stage II (`resa tune`) are killed with SIGKILL
//! just before each rename of their checkpoint writes (`RESA_TEST_ABORT_AT_RENAME=K`, for
//! every K until a run gets through), and at random moments of their run (a seeded draw;
//! `RESA_FAULT_SEED` picks another), then resumed. Every resumed run must end with files
//! bit-identical to an uninterrupted run's, each step once in `metrics.jsonl`, and no
//! temporary left behind. Stage II and a merge also meet a full disk at each of their writes
//! (`RESA_TEST_DISK_FULL_AT_WRITE=K`): they stop with exit status 1 and "No space left on
//! device" naming the file, every checkpoint left checks out against its manifest, and the
//! rerun (space freed) ends bit-identical.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{root, s};

use resa::qwen2::safetensors_io::StoredDtype;
use resa::qwen2::{Qwen2Config, Qwen2ForCausalLM};
use resa::toy::world::{self, ToyWorld};

fn resa(args: &[&str], kill_at: Option<u64>) -> Output {
    resa_with(args, kill_at.map(|k| ("RESA_TEST_ABORT_AT_RENAME", k)))
}

/// `resa ARGS` with one fault variable set (`(name, K)`), or none.
fn resa_with(args: &[&str], fault: Option<(&str, u64)>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_resa"));
    cmd.args(args).env_remove("RESA_TEST_ABORT_AT_RENAME").env_remove("RESA_TEST_DISK_FULL_AT_WRITE");
    if let Some((name, k)) = fault {
        cmd.env(name, k.to_string());
    }
    cmd.output().expect("runs resa")
}

/// Runs `args` (writing into a fresh OUT) on a disk that fills at its K-th write, for every K
/// until a run gets through: each stops with exit status 1 and an error naming the file,
/// leaves only checkpoints that check out, and its rerun ends with `compare` bit-identical
/// to an uninterrupted run's. Returns how many writes were tried.
fn disk_full_at_every_write(
    name: &str,
    args: &dyn Fn(&Path) -> Vec<String>,
    compare: &[&str],
    metrics: Option<(&str, Vec<u64>)>,
) -> u64 {
    let tmp = tempfile::tempdir().expect("tmp");
    let whole = tmp.path().join("whole");
    let a = args(&whole);
    let o = resa_with(&a.iter().map(String::as_str).collect::<Vec<_>>(), None);
    assert!(o.status.success(), "{name} uninterrupted: {}", String::from_utf8_lossy(&o.stderr));
    let (want, _) = snapshot(&whole, compare);
    for k in 1..300 {
        let out = tmp.path().join(format!("full{k}"));
        let a: Vec<String> = args(&out);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let o = resa_with(&a, Some(("RESA_TEST_DISK_FULL_AT_WRITE", k)));
        if o.status.success() {
            return k - 1;
        }
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{name} k={k}: not a clean stop: {err}");
        // The file is named: in the output folder or the temporary one assembled beside it.
        let folder = out.file_name().and_then(|n| n.to_str()).expect("name");
        assert!(err.contains("No space left on device") && err.contains(folder), "{name} k={k}: {err}");
        for dir in checkpoint_dirs(&out) {
            let checked = resa::publish::manifest::verify(&dir);
            assert!(checked.is_ok(), "{name} k={k}: {} damaged: {checked:?}", dir.display());
        }
        let o = resa_with(&a, None);
        assert!(o.status.success(), "{name} k={k}: the rerun failed: {}", String::from_utf8_lossy(&o.stderr));
        let (got, temps) = snapshot(&out, compare);
        assert!(temps.is_empty(), "{name} k={k}: temporaries left: {temps:?}");
        for ((file, a), (_, b)) in want.iter().zip(&got) {
            assert!(a == b, "{name} k={k}: {file} differs from the uninterrupted run's");
        }
        if let Some((file, want)) = &metrics {
            assert_eq!(&steps(&out.join(file)), want, "{name} k={k}: {file}");
        }
        std::fs::remove_dir_all(&out).expect("rm");
    }
    panic!("{name}: no run got through 300 writes");
}

/// Every checkpoint folder under `dir` (`checkpoint-N`, `step-N`).
fn checkpoint_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.path().is_dir() {
            if (name.starts_with("checkpoint-") || name.starts_with("step-")) && !name.starts_with('.') {
                out.push(e.path());
            }
            out.extend(checkpoint_dirs(&e.path()));
        }
    }
    out
}

/// Every file under `dir` (relative path → bytes), and the dot-entries (temporaries).
fn files(dir: &Path, rel: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>, temps: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let name = e.file_name();
        let rel = rel.join(&name);
        if name.to_string_lossy().starts_with('.') {
            temps.push(rel.clone());
        }
        if e.path().is_dir() {
            files(&e.path(), &rel, out, temps);
        } else {
            out.push((rel, std::fs::read(e.path()).expect("read")));
        }
    }
}

/// The bytes of `names` under `dir`, and any temporaries anywhere in `dir`.
fn snapshot(dir: &Path, names: &[&str]) -> (Vec<(String, Vec<u8>)>, Vec<PathBuf>) {
    let (mut all, mut temps) = (Vec::new(), Vec::new());
    files(dir, Path::new(""), &mut all, &mut temps);
    let wanted = names
        .iter()
        .map(|n| {
            let bytes = std::fs::read(dir.join(n)).unwrap_or_else(|e| panic!("{}: {e}", dir.join(n).display()));
            (n.to_string(), bytes)
        })
        .collect();
    (wanted, temps)
}

/// Steps recorded in a metrics file, in order.
fn steps(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .expect("metrics")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["step"].as_u64().expect("step"))
        .collect()
}

/// Kills `args` (with `--out OUT` appended) at every rename, resumes with `resume_args`,
/// and compares `compare` under OUT with the uninterrupted run's.
fn kill_at_every_rename(
    name: &str,
    args: &dyn Fn(&Path) -> Vec<String>,
    resume_args: &dyn Fn(&Path) -> Vec<String>,
    compare: &[&str],
    metrics: (&str, Vec<u64>),
) -> u64 {
    let tmp = tempfile::tempdir().expect("tmp");
    let whole = tmp.path().join("whole");
    let a = args(&whole);
    let o = resa(&a.iter().map(String::as_str).collect::<Vec<_>>(), None);
    assert!(o.status.success(), "{name} uninterrupted: {}", String::from_utf8_lossy(&o.stderr));
    let (want, temps) = snapshot(&whole, compare);
    assert!(temps.is_empty(), "{name}: the uninterrupted run left {temps:?}");
    assert_eq!(steps(&whole.join(metrics.0)), metrics.1, "{name}: uninterrupted metrics");
    let mut k = 1;
    loop {
        let out = tmp.path().join(format!("k{k}"));
        let a = args(&out);
        let o = resa(&a.iter().map(String::as_str).collect::<Vec<_>>(), Some(k));
        if o.status.success() {
            // K is past the last rename: every rename has been tried.
            return k - 1;
        }
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("RESA_TEST_ABORT_AT_RENAME"), "{name} k={k}: failed otherwise: {err}");
        let had_checkpoint = std::fs::read_dir(out.join("stage2"))
            .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with("checkpoint-")))
            .unwrap_or(false);
        let a = resume_args(&out);
        let o = resa(&a.iter().map(String::as_str).collect::<Vec<_>>(), None);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{name} k={k}: resume failed: {err}");
        if name == "stage II" && had_checkpoint && !err.contains("up to date") {
            // Stage II says which checkpoint it resumed from.
            assert!(err.contains("resumed from"), "{name} k={k}: {err}");
        }
        if name == "stage I" {
            assert!(err.contains("resuming Stage I from") || err.contains("no checkpoint in"), "{name} k={k}: {err}");
        }
        let (got, temps) = snapshot(&out, compare);
        assert!(temps.is_empty(), "{name} k={k}: temporaries left: {temps:?}");
        for ((file, a), (_, b)) in want.iter().zip(&got) {
            assert!(a == b, "{name} k={k}: {file} differs from the uninterrupted run's");
        }
        assert_eq!(steps(&out.join(metrics.0)), metrics.1, "{name} k={k}: metrics.jsonl");
        std::fs::remove_dir_all(&out).expect("rm");
        k += 1;
        assert!(k < 500, "{name}: no run got through 500 renames");
    }
}

/// Kills `args` (writing into a fresh OUT) with SIGKILL after a random delay within the
/// uninterrupted run's duration, `kills` times, each followed by a resume with
/// `resume_args`; compares `compare` with the uninterrupted run's.
fn kill_at_random_points(
    name: &str,
    args: &dyn Fn(&Path) -> Vec<String>,
    resume_args: &dyn Fn(&Path) -> Vec<String>,
    compare: &[&str],
    metrics: (&str, Vec<u64>),
    kills: usize,
) {
    let seed: u64 = std::env::var("RESA_FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20261201);
    let mut state = seed;
    let mut draw = || {
        // splitmix64
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) as f64 / u64::MAX as f64
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let whole = tmp.path().join("whole");
    let a = args(&whole);
    let started = std::time::Instant::now();
    let o = resa(&a.iter().map(String::as_str).collect::<Vec<_>>(), None);
    // The span the kills are drawn in; a run that finishes before its kill (the uninterrupted
    // run was timed on a busier machine) narrows it to that run's time.
    let mut duration = started.elapsed();
    assert!(o.status.success(), "{name} uninterrupted: {}", String::from_utf8_lossy(&o.stderr));
    let (want, _) = snapshot(&whole, compare);
    let mut killed = 0;
    for i in 0..kills {
        let out = tmp.path().join(format!("r{i}"));
        let delay = duration.mul_f64(draw());
        let a = args(&out);
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_resa"))
            .args(&a)
            .env_remove("RESA_TEST_ABORT_AT_RENAME")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        let spawned = std::time::Instant::now();
        std::thread::sleep(delay);
        // SIGKILL on Unix; a run that finished first is resumed all the same.
        if child.try_wait().expect("wait").is_none() {
            child.kill().expect("kill");
            killed += 1;
        } else {
            duration = duration.min(spawned.elapsed());
        }
        child.wait().expect("reap");
        let a = resume_args(&out);
        let o = resa(&a.iter().map(String::as_str).collect::<Vec<_>>(), None);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{name} (seed {seed}, kill {i} after {delay:?}): resume failed: {err}");
        let (got, temps) = snapshot(&out, compare);
        assert!(temps.is_empty(), "{name} (seed {seed}, kill {i} after {delay:?}): temporaries left: {temps:?}");
        for ((file, a), (_, b)) in want.iter().zip(&got) {
            assert!(a == b, "{name} (seed {seed}, kill {i} after {delay:?}): {file} differs");
        }
        assert_eq!(steps(&out.join(metrics.0)), metrics.1, "{name} (seed {seed}, kill {i}): metrics.jsonl");
        std::fs::remove_dir_all(&out).expect("rm");
    }
    eprintln!(
        "{name}: {killed} of {kills} runs killed at random points (seed {seed}, run {duration:?}), all identical"
    );
    assert!(killed * 2 >= kills, "{name}: only {killed} of {kills} runs were still running when killed");
}

#[test]
fn stage1_killed_at_every_rename_resumes_bit_identically() {
    let base = |out: &Path| -> Vec<String> {
        let mut args = common::train_sae_fixture_args(out);
        args.extend(["--save-every".to_string(), "1".to_string()]);
        args
    };
    let resume = |out: &Path| {
        let mut a = base(out);
        a.push("--resume".into());
        a
    };
    // Four steps, two hookpoints: a metrics line per hookpoint and step.
    let renames = kill_at_every_rename(
        "stage I",
        &base,
        &resume,
        &["layers.1/sae.safetensors", "layers.1/cfg.json", "layers.2.mlp/sae.safetensors", "layers.2.mlp/cfg.json"],
        ("metrics.jsonl", vec![0, 0, 1, 1, 2, 2, 3, 3]),
    );
    eprintln!("stage I: killed at each of {renames} renames, every resume identical");
    assert!(renames >= 20, "only {renames} renames: the checkpoint writes were not exercised");
    kill_at_random_points(
        "stage I",
        &base,
        &resume,
        &["layers.1/sae.safetensors", "layers.1/cfg.json", "layers.2.mlp/sae.safetensors", "layers.2.mlp/cfg.json"],
        ("metrics.jsonl", vec![0, 0, 1, 1, 2, 2, 3, 3]),
        8,
    );
}

#[test]
fn stage2_killed_at_every_rename_resumes_bit_identically() {
    let tmp = tempfile::tempdir().expect("tmp");
    let model = tmp.path().join("model");
    let cfg = Qwen2Config { vocab_size: world::vocab_size(), ..Qwen2Config::tiny() };
    Qwen2ForCausalLM::<burn::backend::Flex>::random(&cfg, 1, &Default::default(), burn::tensor::DType::F32)
        .save_pretrained(&model, StoredDtype::F32)
        .expect("model");
    world::write_tokenizer(&model).expect("tokenizer");
    ToyWorld::default().write_splits(tmp.path().join("data"), [60, 2, 2]).expect("data");
    let sae = tmp.path().join("sae");
    resa::sae::SparseCoder::<burn::backend::Flex>::random(
        resa::sae::SaeConfig::new(cfg.hidden_size, 64, 4),
        0,
        &Default::default(),
    )
    .expect("sae")
    .save(sae.join("layers.1"))
    .expect("save sae");
    let config = |out: &Path| {
        format!(
            "out = \"{out}\"\n[source]\nmodel = \"{m}\"\n[target]\nmodel = \"{m}\"\n[data]\ntrigger = \"{d}\"\n\
             elicitation = \"{d}\"\ntemplate = \"{t}\"\nctx_len = 48\n[sae]\nmode = \"pretrained\"\npath = \"{sae}\"\n\
             hookpoint = \"layers.1\"\n[lora]\nr = 4\nalpha = 16\n[stage2]\nlr = 1e-3\nmax_steps = 4\nsave_every = 1\n",
            out = out.display(),
            m = model.display(),
            d = tmp.path().join("data/train.jsonl").display(),
            t = world::TOY_TEMPLATE.replace('\n', "\\n"),
            sae = sae.display(),
        )
    };
    let configs = tmp.path().join("configs");
    std::fs::create_dir_all(&configs).expect("configs");
    let args = |out: &Path| -> Vec<String> {
        let file = configs.join(format!("{}.toml", out.file_name().and_then(|n| n.to_str()).unwrap_or("run")));
        // Written each time (the same text for a run and its resume; the random-kill runs
        // reuse names of the every-rename runs in another temporary folder).
        std::fs::write(&file, config(out)).expect("config");
        vec!["tune".into(), "--config".into(), file.display().to_string()]
    };
    // `resa tune` resumes by itself (the stage is redone from its newest checkpoint).
    let renames = kill_at_every_rename(
        "stage II",
        &args,
        &args,
        &["stage2/adapter/adapter_model.safetensors", "stage2/adapter/adapter_config.json"],
        ("stage2/metrics.jsonl", vec![1, 2, 3, 4]),
    );
    eprintln!("stage II: killed at each of {renames} renames, every resume identical");
    assert!(renames >= 10, "only {renames} renames: the checkpoint writes were not exercised");
    kill_at_random_points(
        "stage II",
        &args,
        &args,
        &["stage2/adapter/adapter_model.safetensors", "stage2/adapter/adapter_config.json"],
        ("stage2/metrics.jsonl", vec![1, 2, 3, 4]),
        8,
    );
    let writes = disk_full_at_every_write(
        "stage II",
        &args,
        &["stage2/adapter/adapter_model.safetensors", "stage2/adapter/adapter_config.json"],
        Some(("stage2/metrics.jsonl", vec![1, 2, 3, 4])),
    );
    eprintln!("stage II: a full disk at each of {writes} writes, every rerun identical");
    assert!(writes >= 10, "only {writes} writes: the checkpoint writes were not exercised");
    // A merge on a full disk: stopped with the file named, then made whole by the rerun.
    let merge_args = |out: &Path| -> Vec<String> {
        let adapter = tmp.path().join("merge-source");
        if !adapter.join("stage2/adapter/adapter_config.json").is_file() {
            let a = args(&adapter);
            let o = resa(&a.iter().map(String::as_str).collect::<Vec<_>>(), None);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        ["merge", "--model", s(&model), "--adapter", s(&adapter.join("stage2/adapter")), "--out", s(out)]
            .iter()
            .map(|a| a.to_string())
            .collect()
    };
    let writes = disk_full_at_every_write("merge", &merge_args, &["model.safetensors", "config.json"], None);
    eprintln!("merge: a full disk at each of {writes} writes, every rerun identical");
    assert!(writes >= 2, "merge: {writes} writes");
}

/// An evaluation on a disk that fills at each of its writes (its configuration, each
/// completion line — half of it written, as a full disk may —, its report): a clean stop
/// naming the file, and a rerun that ends with the uninterrupted run's completions, byte
/// for byte (one completion per batch, so no batch shape differs).
#[test]
fn an_evaluation_on_a_full_disk_resumes_to_the_same_completions() {
    let model = root().join("models/toy-qwen2");
    let args = |out: &Path| -> Vec<String> {
        ["eval", "--model", s(&model), "--tasks", "toy", "--limit", "5", "--samples", "2"]
            .into_iter()
            .chain(["--max-new-tokens", "40", "--seed", "3", "--batch-size", "1", "--out", s(out)])
            .map(str::to_string)
            .collect()
    };
    let writes = disk_full_at_every_write("evaluation", &args, &["completions.jsonl"], None);
    eprintln!("evaluation: a full disk at each of {writes} writes, every rerun identical");
    assert!(writes >= 10, "evaluation: {writes} writes (10 completions, the configuration, the report)");
}
