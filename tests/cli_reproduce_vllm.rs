//! `resa reproduce --engine vllm` on the toy model, with a stand-in `vllm` program that
//! takes vLLM's command line and serves it with `resa serve` (the base and every
//! `--lora-modules NAME=DIR`): the experiment's results equal the local engine's (the
//! Stage II adapter, each checkpoint, and a model reference's adapter as a LoRA module), the
//! command is written beside the completions, and the vLLM command line is exactly the one
//! `docs/scaling-out.md` shows. A missing `vllm` and an endpoint asked to evaluate several
//! adapters are refused before any stage runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use resa::eval::vllm::{VllmOptions, vllm_command};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn resa(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_resa")).current_dir(root()).args(args).output().expect("runs resa")
}

/// A `vllm` that passes the options `resa serve` shares with vLLM on and drops the rest.
fn fake_vllm(dir: &Path) -> PathBuf {
    let path = dir.join("vllm");
    let script = format!(
        r#"#!/bin/sh
# vllm serve MODEL [options]: served by resa serve
[ "$1" = serve ] || exit 2
shift; model=$1; shift
set -- "$@" --end
keep=""
while [ "$1" != --end ]; do
  case $1 in
    --host|--port|--served-model-name) keep="$keep $1 $2"; shift 2;;
    --enable-lora) shift;;
    --lora-modules) keep="$keep --lora-modules"; shift
      while [ "$1" != --end ] && [ "${{1#--}}" = "$1" ]; do keep="$keep $1"; shift; done;;
    *) shift 2;;
  esac
done
exec {resa} serve --model "$model" $keep
"#,
        resa = env!("CARGO_BIN_EXE_resa")
    );
    std::fs::write(&path, script).expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    path
}

fn rows(runs: &Path, name: &str) -> Vec<(String, Option<u64>, Value)> {
    let text = std::fs::read_to_string(runs.join(name).join("result.json")).expect("result.json");
    let json: Value = serde_json::from_str(&text).expect("json");
    json["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (r["label"].as_str().unwrap_or_default().to_string(), r["step"].as_u64(), r["report"]["benches"].clone())
        })
        .collect()
}

#[cfg(unix)]
#[test]
fn reproduce_on_vllm_equals_the_local_engine() {
    let tmp = tempfile::tempdir().expect("tmp");
    let vllm = fake_vllm(tmp.path());
    let local = tmp.path().join("local");
    let served = tmp.path().join("served");
    for name in ["resa-still-v1", "tina-still"] {
        let o = resa(&["reproduce", name, "--tiny", "--runs", local.to_str().expect("utf8")]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let o = resa(&[
            "reproduce",
            name,
            "--tiny",
            "--runs",
            served.to_str().expect("utf8"),
            "--engine",
            "vllm",
            "--vllm",
            vllm.to_str().expect("utf8"),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{err}");
        assert!(err.contains("vLLM: ") && err.contains(" serve "), "the command is shown: {err}");
        let (a, b) = (rows(&local, name), rows(&served, name));
        assert!(!a.is_empty());
        assert_eq!(a, b, "{name}: the served evaluation differs from the local one");
    }
    // Resa-STILL-v1: the final adapter and its checkpoints, each a LoRA module.
    let cmd = std::fs::read_to_string(served.join("resa-still-v1/eval/vllm-command.txt")).expect("command");
    assert!(
        cmd.contains(" serve ") && cmd.contains("--served-model-name base --dtype bfloat16 --max-model-len 4120"),
        "{cmd}"
    );
    assert!(cmd.contains("--enable-lora --max-lora-rank ") && cmd.contains("--lora-modules adapter="), "{cmd}");
    let sweep =
        std::fs::read_to_string(served.join("resa-still-v1/eval-checkpoints/vllm-command.txt")).expect("command");
    assert!(sweep.contains("checkpoint-2=") && sweep.contains("--max-loras "), "{sweep}");
    // Tina: the model reference's adapter served as a module of its own.
    let tina = std::fs::read_to_string(served.join("tina-still/eval/vllm-command.txt")).expect("command");
    assert!(tina.contains("--lora-modules model-adapter="), "{tina}");
    assert!(served.join("tina-still/eval/vllm.log").is_file());
}

#[test]
fn engines_that_cannot_run_are_refused_before_any_stage() {
    let tmp = tempfile::tempdir().expect("tmp");
    let runs = tmp.path().join("runs");
    let o = resa(&[
        "reproduce",
        "resa-still-v1",
        "--tiny",
        "--runs",
        runs.to_str().expect("utf8"),
        "--engine",
        "vllm",
        "--vllm",
        "no-such-vllm-here",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("`no-such-vllm-here` is not on PATH"), "{err}");
    assert!(!runs.join("resa-still-v1/stage1").exists(), "a stage ran before the check");
    let o = resa(&["reproduce", "resa-still-v1", "--dry-run", "--engine", "endpoint"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("engine endpoint evaluates the one model your server serves"), "{err}");
    let o = resa(&["reproduce", "r1-distill", "--dry-run", "--engine", "endpoint"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("## evaluation engine: endpoint"));
}

/// The command `docs/scaling-out.md` shows is the one `reproduce` generates for it.
#[test]
fn the_documented_vllm_command_is_the_generated_one() {
    let opts = VllmOptions {
        port: 8000,
        extra_args: vec!["--tensor-parallel-size".into(), "2".into()],
        ..VllmOptions::default()
    };
    let cmd = vllm_command(
        &opts,
        Path::new("/models/DeepSeek-R1-Distill-Qwen-1.5B"),
        8000,
        32768 + 4096,
        &[("adapter".into(), PathBuf::from("runs/resa-still-v1/stage2/adapter"))],
        32,
    );
    let line = resa::experiments::shell_line(&cmd);
    assert_eq!(
        line,
        "vllm serve /models/DeepSeek-R1-Distill-Qwen-1.5B --host 127.0.0.1 --port 8000 --served-model-name base \
         --dtype bfloat16 --max-model-len 36864 --generation-config vllm --seed 0 --enable-lora --max-lora-rank 32 \
         --max-loras 1 --lora-modules adapter=runs/resa-still-v1/stage2/adapter --tensor-parallel-size 2"
    );
    let doc = std::fs::read_to_string(root().join("docs/scaling-out.md")).expect("docs/scaling-out.md");
    // Shell continuation lines joined.
    let joined: String =
        doc.split("\\\n").enumerate().map(|(i, piece)| if i == 0 { piece } else { piece.trim_start() }).collect();
    assert!(joined.contains(&line), "docs/scaling-out.md does not show the generated command:\n{line}");
    assert_eq!(resa::experiments::shell_line(&["a b".into(), "it's".into()]), r"'a b' 'it'\''s'");
}
