//! `resa serve` and `resa eval --engine openai` end to end on a tiny random model with the
//! toy tokenizer, over loopback: the served evaluation gives the same completions and report
//! as the local one with the same seeds; a server killed mid-run loses nothing (the rerun
//! against a restarted server completes with no duplicated or lost item); the errors a user
//! meets (nothing listening, a model not served, a context too short) say so.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use resa::eval::{CompletionRecord, Report, read_completions};
use resa::qwen2::safetensors_io::StoredDtype;
use resa::qwen2::{Qwen2Config, Qwen2ForCausalLM};
use resa::toy::world;

fn resa() -> Command {
    Command::new(env!("CARGO_BIN_EXE_resa"))
}

fn toy_model(dir: &Path) {
    let cfg = Qwen2Config { vocab_size: world::vocab_size(), max_position_embeddings: 256, ..Qwen2Config::tiny() };
    let model = Qwen2ForCausalLM::<burn::backend::Flex>::random(&cfg, 3, &Default::default(), burn::tensor::DType::F32);
    model.save_pretrained(dir, StoredDtype::F32).expect("save model");
    world::write_tokenizer(dir).expect("tokenizer");
}

/// A running `resa serve` and its base URL; killed when dropped.
struct Served {
    child: Child,
    url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(model: &Path) -> Served {
    serve_with(model, None)
}

/// `resa serve` with `RESA_API_KEY` set to `key`.
fn serve_with(model: &Path, key: Option<&str>) -> Served {
    let mut cmd = resa();
    cmd.env_remove("RESA_API_KEY");
    if let Some(key) = key {
        cmd.env("RESA_API_KEY", key);
    }
    let mut child = cmd
        .args(["serve", "--model", model.to_str().expect("utf8"), "--port", "0", "--served-model-name", "toy"])
        .args(["--max-batch", "8"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts resa serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("reads the ready line");
    let url = line
        .strip_prefix("resa serve: listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("not the ready line: {line:?}"))
        .to_string();
    Served { child, url }
}

fn eval_args(model: &Path, out: &Path) -> Vec<String> {
    eval_args_with(model, out, "16")
}

fn eval_args_with(model: &Path, out: &Path, max_new_tokens: &str) -> Vec<String> {
    [
        "eval",
        "--model",
        model.to_str().expect("utf8"),
        "--tasks",
        "toy",
        "--limit",
        "24",
        "--samples",
        "2",
        "--max-new-tokens",
        max_new_tokens,
        "--seed",
        "5",
        "--batch-size",
        "4",
        "--out",
        out.to_str().expect("utf8"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn keyed(records: &[CompletionRecord]) -> BTreeMap<(String, String, usize), CompletionRecord> {
    let mut map = BTreeMap::new();
    for r in records {
        let old = map.insert((r.bench.clone(), r.id.clone(), r.sample), r.clone());
        assert!(old.is_none(), "duplicated completion {} {} {}", r.bench, r.id, r.sample);
    }
    map
}

fn assert_same(local: &Path, remote: &Path) {
    let a = keyed(&read_completions(&local.join("completions.jsonl")).expect("local completions"));
    let b = keyed(&read_completions(&remote.join("completions.jsonl")).expect("remote completions"));
    assert_eq!(a.len(), 48);
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "lost or extra items");
    for (k, x) in &a {
        let y = &b[k];
        assert_eq!(
            (&x.seed, &x.prompt, &x.completion, x.new_tokens, &x.finish, x.correct),
            (&y.seed, &y.prompt, &y.completion, y.new_tokens, &y.finish, y.correct),
            "{k:?}"
        );
    }
    let ra = Report::read(&local.join("report.json")).expect("local report");
    let rb = Report::read(&remote.join("report.json")).expect("remote report");
    assert_eq!(ra.benches, rb.benches);
}

#[test]
fn served_evaluation_equals_the_local_one_and_survives_a_killed_server() {
    let tmp = tempfile::tempdir().expect("tmp");
    let model = tmp.path().join("model");
    toy_model(&model);

    let local = tmp.path().join("local");
    let o = resa().args(eval_args(&model, &local)).output().expect("runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // The same evaluation through the server, 8 requests in flight.
    let server = serve(&model);
    let remote = tmp.path().join("remote");
    let o = resa()
        .args(eval_args(&model, &remote))
        .args(["--engine", "openai", "--endpoint", &server.url, "--concurrency", "8"])
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_same(&local, &remote);

    // Killed mid-run: the client gives up after its retries with a message that says so, and
    // keeps every completion that finished.
    let resumed = tmp.path().join("resumed");
    let client = resa()
        .args(eval_args(&model, &resumed))
        .args(["--engine", "openai", "--endpoint", &server.url, "--concurrency", "1"])
        .args(["--max-retries", "1", "--retry-backoff", "0.1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts the client");
    let lines = resumed.join("completions.jsonl");
    let t0 = Instant::now();
    let count = || std::fs::read_to_string(&lines).map(|t| t.lines().count()).unwrap_or(0);
    while count() < 6 {
        assert!(t0.elapsed() < Duration::from_secs(120), "the client wrote nothing");
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(server);
    let o = client.wait_with_output().expect("client ends");
    let err = String::from_utf8_lossy(&o.stderr);
    let kept = count();
    assert!(!o.status.success(), "the client finished before the server was killed ({kept} lines): {err}");
    assert!(err.contains("did not answer after 2 attempt(s)") && err.contains("run again to resume"), "{err}");
    assert!((6..48).contains(&kept), "{kept}");

    // A restarted server (another port) and a rerun: the rest, nothing twice.
    let server = serve(&model);
    let o = resa()
        .args(eval_args(&model, &resumed))
        .args(["--engine", "openai", "--endpoint", &server.url])
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_same(&local, &resumed);

    // Errors a user meets.
    let run_err = |extra: &[&str], out: &str| {
        let max = if out == "e2" { "300" } else { "16" };
        let o = resa()
            .args(eval_args_with(&model, &tmp.path().join(out), max))
            .args(["--engine", "openai", "--max-retries", "0"])
            .args(extra)
            .output()
            .expect("runs");
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    let err = run_err(&["--endpoint", &server.url, "--served-model", "nope"], "e1");
    assert!(err.contains("does not serve the model `nope`") && err.contains("it serves: toy"), "{err}");
    let err = run_err(&["--endpoint", &server.url], "e2");
    assert!(
        err.contains("exceed the context") && err.contains("(256 tokens)") && err.contains("--max-new-tokens"),
        "{err}"
    );
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let err = run_err(&["--endpoint", &format!("http://{free}/v1")], "e3");
    assert!(err.contains("did not answer after 1 attempt(s)"), "{err}");
    let err = run_err(&["--endpoint", &server.url, "--adapter", "x"], "e4");
    assert!(err.contains("the server applies adapters"), "{err}");
}

#[test]
fn a_served_model_with_a_key_answers_only_clients_that_send_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let model = tmp.path().join("model");
    toy_model(&model);
    let served = serve_with(&model, Some("k3y-from-env"));
    let status_of = |path: &str| {
        use std::io::{Read, Write};
        let host = served.url.trim_start_matches("http://").trim_end_matches("/v1");
        let mut s = std::net::TcpStream::connect(host).expect("connect");
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("send");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("read");
        text.split(' ').nth(1).unwrap_or_default().to_string()
    };
    assert_eq!(status_of("/health"), "200", "/health needs no key");
    assert_eq!(status_of("/v1/models"), "401");
    let run = |key: Option<&str>, out: &str| {
        let mut cmd = resa();
        cmd.args(eval_args_with(&model, &tmp.path().join(out), "4"))
            .args(["--engine", "openai", "--endpoint", &served.url, "--api-key-env", "TEST_KEY"])
            .env_remove("TEST_KEY");
        if let Some(key) = key {
            cmd.env("TEST_KEY", key);
        }
        cmd.output().expect("runs resa eval")
    };
    let refused = run(None, "no-key");
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("401") || err.contains("Unauthorized"), "{err}");
    let wrong = run(Some("not-the-key"), "wrong-key");
    assert!(!wrong.status.success());
    let ok = run(Some("k3y-from-env"), "key");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
}
