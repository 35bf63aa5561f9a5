//! Stage II on two "machines" — two `resa tune` processes over localhost, meeting through
//! `resa collective-orchestrator` (burn-collective) — as a user with two machines starts it:
//! both nodes end with the same adapter, equal to one process running the same two
//! replicas (`--data-parallel 2`). Nodes that disagree on the run, or find no orchestrator,
//! stop with an error instead of waiting.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use resa::qwen2::safetensors_io::SafetensorsReader;

fn resa() -> Command {
    Command::new(env!("CARGO_BIN_EXE_resa"))
}

/// Kills the process when dropped (the orchestrator serves until stopped).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Waits for `child` at most `limit`; its exit status and stderr.
fn finish(mut child: Killed, limit: Duration) -> (bool, String) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            let mut err = String::new();
            if let Some(mut e) = child.0.stderr.take() {
                std::io::Read::read_to_string(&mut e, &mut err).expect("stderr");
            }
            return (status.success(), err);
        }
        assert!(start.elapsed() < limit, "a node ran past {limit:?} (it should have finished or failed)");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn setup(dir: &Path) -> std::path::PathBuf {
    setup_with(dir, 64, 3, 2)
}

/// A tiny model, toy data of `examples` problems and a run of `steps` Stage II steps with a
/// checkpoint every `save_every`. No dropout: with it, replicas sharing one device draw
/// their masks in thread order.
fn setup_with(dir: &Path, examples: usize, steps: u64, save_every: u64) -> std::path::PathBuf {
    common::toy_run(
        dir,
        [examples, 4, 4],
        3,
        "dropout = 0.0",
        &format!("max_steps = {steps}\nsave_every = {save_every}"),
    )
}

fn orchestrator() -> (Killed, u16) {
    let port = free_port();
    let mut child = resa()
        .args(["collective-orchestrator", "--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("orchestrator starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("ready line");
    assert_eq!(line.trim(), format!("resa collective-orchestrator: listening on ws://0.0.0.0:{port}"));
    (Killed(child), port)
}

fn node(config: &Path, out: &Path, rank: u32, orchestrator: u16, timeout: u64, extra: &[&str]) -> Killed {
    node_of(2, config, out, rank, orchestrator, timeout, extra, &[])
}

/// Node `rank` of `count`, with `env` set for it.
#[allow(clippy::too_many_arguments)]
fn node_of(
    count: u32,
    config: &Path,
    out: &Path,
    rank: u32,
    orchestrator: u16,
    timeout: u64,
    extra: &[&str],
    env: &[(&str, String)],
) -> Killed {
    let child = resa()
        .args(["--quiet", "tune", "--config", config.to_str().expect("utf8"), "--out", out.to_str().expect("utf8")])
        .args(["--nodes", &count.to_string(), "--node-rank", &rank.to_string()])
        .args(["--orchestrator", &format!("ws://127.0.0.1:{orchestrator}")])
        .args(["--node-address", &format!("ws://127.0.0.1:{}", free_port()), "--node-timeout", &timeout.to_string()])
        .args(extra)
        .env_remove("RESA_TEST_ABORT_AT_RENAME")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node starts");
    // Killed when the test ends early, so that a failing test leaves no node running.
    Killed(child)
}

fn adapter(dir: &Path) -> Vec<f32> {
    let r = SafetensorsReader::open_file(dir.join("stage2/adapter/adapter_model.safetensors")).expect("adapter");
    let mut keys: Vec<String> = r.keys().map(str::to_string).collect();
    keys.sort();
    keys.iter().flat_map(|k| r.read_f32_any(k).expect("tensor").0).collect()
}

#[test]
fn two_nodes_over_localhost_train_the_adapter_of_one_process_with_two_replicas() {
    let tmp = tempfile::tempdir().expect("tmp");
    let config = setup(tmp.path());
    let (_orchestrator, port) = orchestrator();
    let (a, b) = (tmp.path().join("node0"), tmp.path().join("node1"));
    let n0 = node(&config, &a, 0, port, 120, &[]);
    let n1 = node(&config, &b, 1, port, 120, &[]);
    for (i, n) in [n0, n1].into_iter().enumerate() {
        let (ok, err) = finish(n, Duration::from_secs(300));
        assert!(ok, "node {i}: {err}");
    }
    let one = tmp.path().join("one");
    let o = resa()
        .args(["--quiet", "tune", "--config", config.to_str().expect("utf8"), "--data-parallel", "2", "--out"])
        .arg(&one)
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let (w0, w1, w) = (adapter(&a), adapter(&b), adapter(&one));
    assert_eq!(w0, w1, "the two nodes' adapters differ");
    let diff = w0.iter().zip(&w).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(w0.len() == w.len() && diff <= 1e-6, "two nodes vs one process with two replicas: {diff}");
    // A step took one chunk from each node; every node logged the same steps.
    let metrics = |d: &Path| std::fs::read_to_string(d.join("stage2/metrics.jsonl")).expect("metrics");
    let lines: Vec<serde_json::Value> = metrics(&a).lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|m| m["tokens"] == 2 * 48), "{lines:?}");
    let losses = |d: &Path| -> Vec<f64> {
        metrics(d)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["loss"].as_f64().expect("loss"))
            .collect()
    };
    assert_eq!(losses(&a), losses(&b));
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(b.join("stage2/run.json")).expect("run.json")).expect("json");
    assert_eq!((run["nodes"]["count"].as_u64(), run["nodes"]["rank"].as_u64()), (Some(2), Some(1)), "{run}");
}

#[test]
fn nodes_that_disagree_on_the_run_both_stop_with_the_reason() {
    let tmp = tempfile::tempdir().expect("tmp");
    let config = setup(tmp.path());
    let (_orchestrator, port) = orchestrator();
    let n0 = node(&config, &tmp.path().join("node0"), 0, port, 120, &[]);
    let n1 = node(&config, &tmp.path().join("node1"), 1, port, 120, &["--stage2-max-steps", "2"]);
    for (i, n) in [n0, n1].into_iter().enumerate() {
        let (ok, err) = finish(n, Duration::from_secs(300));
        assert!(!ok && err.contains("the nodes disagree on the configuration"), "node {i}: {err}");
    }
}

#[test]
fn a_node_without_its_orchestrator_gives_up_after_its_timeout() {
    let tmp = tempfile::tempdir().expect("tmp");
    let config = setup(tmp.path());
    let start = Instant::now();
    let child = node(&config, &tmp.path().join("node0"), 0, free_port(), 2, &[]);
    let (ok, err) = finish(child, Duration::from_secs(120));
    assert!(!ok && err.contains("no answer from the orchestrator") && err.contains("within 2 s"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(120));
    // Bad values are refused before anything runs.
    let o = resa()
        .args(["tune", "--config", config.to_str().expect("utf8"), "--nodes", "2", "--node-rank", "2"])
        .args(["--orchestrator", "ws://127.0.0.1:1", "--node-address", "ws://127.0.0.1:2"])
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.code() == Some(1) && err.contains("nodes.rank") && !tmp.path().join("unused").exists(), "{err}");
    let o = resa().args(["tune", "--config", config.to_str().expect("utf8"), "--nodes", "2"]).output().expect("runs");
    assert_eq!(o.status.code(), Some(2), "clap refuses --nodes without the rest");
}

/// The steps of a run folder's complete checkpoints.
fn checkpoint_steps(stage2: &Path) -> Vec<u64> {
    resa::tune::checkpoints(stage2).into_iter().map(|(s, _)| s).collect()
}

/// Three nodes: the same command gives the same adapter to the bit, whatever order the nodes
/// start in, within 1e-5 of one process with three replicas. Node 1 killed (SIGKILL) as it
/// publishes its step-10 checkpoint: the other two stop with exit status 1 and an error
/// naming the lost node and the last checkpoint, never a panic; started again, all three go
/// on from step 5 (the newest checkpoint every node has) and end with the adapter of the
/// uninterrupted run, bit for bit.
#[test]
fn three_nodes_agree_every_run_and_a_lost_node_stops_the_others_who_resume_with_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let config = setup_with(tmp.path(), 400, 24, 5);
    let (_orchestrator, port) = orchestrator();
    let limit = Duration::from_secs(600);
    // Starts the three nodes of run `name` (in `ranks` order), each with its `env`.
    let start = |name: &str, ranks: [u32; 3], env: &dyn Fn(u32) -> Vec<(&'static str, String)>| {
        let mut nodes: Vec<(u32, Killed)> = ranks
            .iter()
            .map(|&r| {
                let out = tmp.path().join(name).join(format!("node{r}"));
                let n = node_of(3, &config, &out, r, port, 60, &[], &env(r));
                std::thread::sleep(Duration::from_millis(300));
                (r, n)
            })
            .collect();
        nodes.sort_by_key(|(r, _)| *r);
        nodes.into_iter().map(|(_, n)| finish(n, limit)).collect::<Vec<_>>()
    };
    let node_dir = |name: &str, r: u32| tmp.path().join(name).join(format!("node{r}"));
    let adapters = |name: &str| (0..3).map(|r| adapter(&node_dir(name, r))).collect::<Vec<_>>();

    for (i, (ok, err)) in start("a", [2, 1, 0], &|_| vec![]).into_iter().enumerate() {
        assert!(ok, "run a, node {i}: {err}");
    }
    let a = adapters("a");
    assert!(a[0] == a[1] && a[1] == a[2], "the three nodes' adapters differ");
    for (i, (ok, err)) in start("b", [0, 1, 2], &|_| vec![]).into_iter().enumerate() {
        assert!(ok, "run b, node {i}: {err}");
    }
    assert!(adapters("b").iter().all(|b| *b == a[0]), "the same command gave another adapter (start order 0, 1, 2)");

    let one = tmp.path().join("one");
    let o = resa()
        .args(["--quiet", "tune", "--config", config.to_str().expect("utf8"), "--data-parallel", "3", "--out"])
        .arg(&one)
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let w = adapter(&one);
    let diff = a[0].iter().zip(&w).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(a[0].len() == w.len() && diff <= 1e-5, "three nodes vs one process with three replicas: {diff}");

    let kill =
        |r: u32| if r == 1 { vec![("RESA_TEST_ABORT_AT_RENAME", KILL_AT_CHECKPOINT_10.to_string())] } else { vec![] };
    let lost = start("c", [0, 1, 2], &kill);
    assert!(!lost[1].0, "node 1 was not killed: {}", lost[1].1);
    assert_eq!(checkpoint_steps(&node_dir("c", 1).join("stage2")), [5], "node 1 died before publishing checkpoint-10");
    for r in [0, 2] {
        let (ok, err) = &lost[r as usize];
        let newest = node_dir("c", r).join("stage2/checkpoint-10");
        assert!(!ok, "node {r} went on without node 1");
        eprintln!("node {r}, as its user sees it:\n{err}");
        assert!(
            err.contains("lost node")
                && err.contains("during the all-reduce of step 11")
                && err.contains(&newest.display().to_string()),
            "node {r}: {err}"
        );
        assert!(!err.contains("panicked"), "node {r} panicked: {err}");
        assert_eq!(checkpoint_steps(&node_dir("c", r).join("stage2")), [5, 10]);
    }
    for (i, (ok, err)) in start("c", [0, 1, 2], &|_| vec![]).into_iter().enumerate() {
        assert!(ok, "resumed run, node {i}: {err}");
    }
    assert!(adapters("c").iter().all(|c| *c == a[0]), "the resumed run ended with another adapter");
    for r in 0..3 {
        let metrics = std::fs::read_to_string(node_dir("c", r).join("stage2/metrics.jsonl")).expect("metrics");
        let steps: Vec<u64> = metrics
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["step"].as_u64().expect("step"))
            .collect();
        assert_eq!(steps, (1..=24).collect::<Vec<_>>(), "node {r}: every step once");
    }
}

/// Node 1's rename (1-based, of the whole `resa tune` process: Stage I's 18, Stage II's run
/// files 2, 8 per checkpoint) that publishes `stage2/checkpoint-10`; it is killed just
/// before it (the test checks that checkpoint-5 is its newest).
const KILL_AT_CHECKPOINT_10: u64 = 35;

/// A node that falls silent (stopped with SIGSTOP, as a node whose network is gone looks to
/// the others) stops the other two after the node timeout (20 s: also the time the nodes
/// have to meet at the start, on a loaded machine), with exit status 1 and an error saying
/// how long they waited, never a hang or a panic.
#[test]
fn a_silent_node_stops_the_others_after_the_node_timeout() {
    let tmp = tempfile::tempdir().expect("tmp");
    let config = setup_with(tmp.path(), 3000, 600, 1000);
    let (_orchestrator, port) = orchestrator();
    let dir = |r: u32| tmp.path().join(format!("node{r}"));
    let mut nodes: Vec<Option<Killed>> =
        (0..3).map(|r| Some(node_of(3, &config, &dir(r), r, port, 20, &[], &[]))).collect();
    let metrics = dir(1).join("stage2/metrics.jsonl");
    let start = Instant::now();
    while std::fs::read_to_string(&metrics).map_or(0, |m| m.lines().count()) < 5 {
        for r in 0..3 {
            if nodes[r].as_mut().expect("node").0.try_wait().expect("wait").is_some() {
                let (_, err) = finish(nodes[r].take().expect("node"), Duration::from_secs(1));
                panic!("node {r} ended before node 1 reached step 5: {err}");
            }
        }
        assert!(start.elapsed() < Duration::from_secs(300), "node 1 never reached step 5");
        std::thread::sleep(Duration::from_millis(5));
    }
    let silent = nodes[1].as_ref().expect("node 1").0.id().to_string();
    assert!(Command::new("kill").args(["-STOP", &silent]).status().expect("kill").success());
    let stopped = Instant::now();
    let mut timed_out = 0;
    for r in [0, 2] {
        let (ok, err) = finish(nodes[r].take().expect("node"), Duration::from_secs(120));
        assert!(!ok, "node {r} finished without node 1");
        assert!(err.contains("during the all-reduce of step"), "node {r}: {err}");
        assert!(!err.contains("panicked"), "node {r} panicked: {err}");
        // The node waiting on node 1 gives up after the timeout; the other may see that one
        // go first.
        timed_out += usize::from(err.contains("no answer from the other nodes for 20 s"));
    }
    assert!(timed_out >= 1, "no node reported the silence");
    assert!(stopped.elapsed() < Duration::from_secs(90), "the nodes took {:?} to give up", stopped.elapsed());
    let steps = std::fs::read_to_string(dir(0).join("stage2/metrics.jsonl")).expect("metrics").lines().count();
    assert!(steps < 600, "node 0 ran to the end ({steps} steps)");
}
