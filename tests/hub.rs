//! Loading by hub id (feature `hub`): the local cache is honoured without network, and an
//! offline miss is a clear error. Runs the `resa` binary so that the environment
//! (`HF_HOME`, `HF_HUB_OFFLINE`) can be set per process.
#![cfg(feature = "hub")]

use std::path::Path;
use std::process::Command;

fn fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/resa-qwen2/tests/fixtures/tied_gqa_f32_old")
}

fn resa(home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_resa"))
        .args(args)
        .env("HF_HOME", home)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("runs resa")
}

#[test]
fn cached_model_loads_offline_by_id() {
    let home = tempfile::tempdir().expect("tempdir");
    let repo = home.path().join("hub/models--tiny-org--tiny-qwen2");
    let rev = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(repo.join("refs")).expect("mkdir");
    std::fs::write(repo.join("refs/main"), rev).expect("ref");
    let snap = repo.join("snapshots").join(rev);
    std::fs::create_dir_all(&snap).expect("mkdir");
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture().join(f), snap.join(f)).expect("copy");
    }
    let o = resa(
        home.path(),
        &["generate", "--model", "tiny-org/tiny-qwen2", "--prompt-ids", "5,6,7", "--max-new-tokens", "3", "--json"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn offline_miss_is_a_clear_error() {
    let home = tempfile::tempdir().expect("tempdir");
    let o =
        resa(home.path(), &["generate", "--model", "nobody/not-cached", "--prompt-ids", "1", "--max-new-tokens", "1"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("nobody/not-cached") && err.contains("config.json") && err.contains("HF_HUB_OFFLINE"),
        "{err}"
    );
}

#[test]
fn cached_sae_loads_offline_by_repo_and_hookpoint() {
    let home = tempfile::tempdir().expect("tempdir");
    let repo = home.path().join("hub/models--tiny-org--sae-tiny");
    let rev = "89abcdef0123456789abcdef0123456789abcdef";
    std::fs::create_dir_all(repo.join("refs")).expect("mkdir");
    std::fs::write(repo.join("refs/main"), rev).expect("ref");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/resa-sae/tests/fixtures/encode");
    let snap = repo.join("snapshots").join(rev).join("layers.1");
    std::fs::create_dir_all(&snap).expect("mkdir");
    for f in ["cfg.json", "sae.safetensors"] {
        std::fs::copy(fixtures.join("sae").join(f), snap.join(f)).expect("copy");
    }
    let out = home.path().join("out.safetensors");
    let input = fixtures.join("input.safetensors");
    let args = ["sae", "encode", "--sae", "tiny-org/sae-tiny/layers.1", "--input", input.to_str().expect("utf8")];
    let o = resa(home.path(), &[&args[..], &["--out", out.to_str().expect("utf8")]].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.is_file());
    let o = resa(
        home.path(),
        &[&["sae", "encode", "--sae", "tiny-org/sae-tiny/layers.9"], &args[4..], &["--out", "x"]].concat(),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("layers.9/cfg.json") && err.contains("HF_HUB_OFFLINE"), "{err}");
}
