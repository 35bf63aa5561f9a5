//! `cargo xtask bench --compare`: `resa bench` against `scripts/bench/bench_torch.py`
//! (PyTorch + transformers + PEFT + sparsify) on the same workloads, interleaved in one run —
//! for each round, for each workload, resa then PyTorch, each in its own process (so that the
//! peak RSS is the workload's own) — and a Markdown table of tokens/s per round, the ratio of
//! the medians over the rounds, the peak memory and the goal of each ratio. With `gemm`, each
//! round also times numpy's GEMM (OpenBLAS in the PyPI wheel), a row of its own: the
//! machine's limit for that product.
//!
//! The Python side runs in a venv: `--python PATH` names its interpreter; otherwise
//! `--venv DIR` (default `target/bench-venv`) is used, and made with `python3 -m venv` and
//! `pip install -r scripts/reference/requirements.txt` when it does not exist (several GB: the
//! PyPI torch wheel).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::{run, workspace_root};

/// The workloads both sides run, in order.
pub const SHARED: [&str; 6] = ["gemm", "prefill", "stage2_step", "sae_step", "decode_b1", "decode_b8"];

/// The ratio (resa over PyTorch) each workload should reach.
pub fn goal(workload: &str) -> Option<f64> {
    match workload {
        "stage2_step" => Some(1.3),
        "sae_step" => Some(1.5),
        "prefill" => Some(1.0),
        "decode_b8" => Some(1.5),
        "decode_b1" => Some(1.5),
        _ => None,
    }
}

/// The row of numpy's GEMM beside PyTorch's (`gemm` compared with the machine's BLAS).
pub const GEMM_NUMPY: &str = "gemm_numpy";

/// Options of the comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareOptions {
    /// Workloads (a subset of [`SHARED`]).
    pub only: Vec<String>,
    /// Timed runs per workload and process.
    pub repeats: usize,
    /// Rounds of the whole interleaved sequence.
    pub rounds: usize,
    /// Threads for PyTorch (`torch.set_num_threads`); resa uses the machine's cores.
    pub threads: usize,
    /// The Python interpreter, or the venv to use or make.
    pub python: Python,
    /// Also write every measurement as JSON here.
    pub out: Option<PathBuf>,
    /// Arguments passed to both sides unchanged (`--size 1.5b --dtype bf16 --device cuda`).
    pub passthrough: Vec<String>,
}

/// Where the Python side comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Python {
    /// This interpreter (a venv's `bin/python`).
    Path(PathBuf),
    /// This venv, made when missing.
    Venv(PathBuf),
}

/// One measurement of one side.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Tokens per second.
    pub tokens_per_second: f64,
    /// Peak RSS of the process, MiB.
    pub peak_rss_mib: Option<f64>,
}

/// What was measured for one workload: a sample per round and side.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Row {
    /// Workload name.
    pub workload: String,
    /// resa's samples, one per round.
    pub resa: Vec<Sample>,
    /// PyTorch's samples, one per round.
    pub torch: Vec<Sample>,
}

/// The median tokens/s of `v` (the mean of the middle two for an even count).
fn median(v: &[Sample]) -> f64 {
    let mut t: Vec<f64> = v.iter().map(|s| s.tokens_per_second).collect();
    t.sort_by(f64::total_cmp);
    match t.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => t[n / 2],
        n => (t[n / 2 - 1] + t[n / 2]) / 2.0,
    }
}

fn max_rss(v: &[Sample]) -> String {
    v.iter().filter_map(|s| s.peak_rss_mib).reduce(f64::max).map_or("-".into(), |m| format!("{m:.0}"))
}

impl Row {
    /// resa's median tokens/s over the rounds, divided by PyTorch's.
    pub fn ratio(&self) -> f64 {
        median(&self.resa) / median(&self.torch)
    }
}

/// The Markdown table of `rows`.
pub fn table(rows: &[Row]) -> String {
    let rounds = |v: &[Sample]| v.iter().map(|s| format!("{:.1}", s.tokens_per_second)).collect::<Vec<_>>().join(" / ");
    let mut t = String::from(
        "| workload | resa-rs tokens/s (per round) | PyTorch tokens/s (per round) | ratio of medians | goal | met | resa RSS MiB | PyTorch RSS MiB |\n\
         |---|---:|---:|---:|---:|---|---:|---:|\n",
    );
    for r in rows {
        let ratio = r.ratio();
        let (goal, met) = match goal(&r.workload) {
            Some(g) => (format!("{g:.1}"), if ratio >= g { "yes" } else { "no" }),
            None => ("-".into(), "-"),
        };
        let name =
            if r.workload == GEMM_NUMPY { "gemm against numpy (OpenBLAS: the machine's limit)" } else { &r.workload };
        t.push_str(&format!(
            "| {} | {} | {} | {:.2} | {} | {} | {} | {} |\n",
            name,
            rounds(&r.resa),
            rounds(&r.torch),
            ratio,
            goal,
            met,
            max_rss(&r.resa),
            max_rss(&r.torch)
        ));
    }
    t
}

/// Parses the arguments after `bench --compare`.
pub fn parse(args: &[String]) -> anyhow::Result<CompareOptions> {
    let mut o = CompareOptions {
        only: SHARED.iter().map(|s| s.to_string()).collect(),
        repeats: 3,
        rounds: 3,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        python: Python::Venv(workspace_root().join("target/bench-venv")),
        out: None,
        passthrough: Vec::new(),
    };
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        let value = |i: usize| args.get(i + 1).cloned().with_context(|| format!("`{a}` needs a value"));
        let number = |i: usize| -> anyhow::Result<usize> {
            let v = value(i)?;
            v.parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .with_context(|| format!("`{a}` takes a positive number, got {v:?}"))
        };
        match a {
            "--only" => {
                o.only = value(i)?.split(',').filter(|w| !w.is_empty()).map(str::to_string).collect();
                if let Some(w) = o.only.iter().find(|w| !SHARED.contains(&w.as_str())) {
                    bail!("`--only {w}`: both sides run {}", SHARED.join(", "));
                }
            }
            "--repeats" => o.repeats = number(i)?,
            "--rounds" => o.rounds = number(i)?,
            "--threads" => o.threads = number(i)?,
            "--python" => o.python = Python::Path(value(i)?.into()),
            "--venv" => o.python = Python::Venv(value(i)?.into()),
            "--out" => o.out = Some(value(i)?.into()),
            "--size" | "--dtype" | "--device" => {
                o.passthrough.extend([a.to_string(), value(i)?]);
            }
            "--compare" => {
                i += 1;
                continue;
            }
            _ => bail!(
                "`bench --compare` takes --only W,W --repeats N --rounds N --threads N --python PATH | --venv DIR \
                 --out FILE --size S --dtype D --device D; got {a:?}"
            ),
        }
        i += 2;
    }
    if o.only.is_empty() {
        bail!("`--only` names no workload");
    }
    Ok(o)
}

/// The interpreter to run, making the venv when asked and missing; checks that it imports
/// what the script needs before anything is timed.
fn python(p: &Python) -> anyhow::Result<PathBuf> {
    let exe = match p {
        Python::Path(exe) => exe.clone(),
        Python::Venv(dir) => {
            let exe = dir.join("bin/python");
            if !exe.is_file() {
                eprintln!("making the PyTorch venv {} (pip install, several GB) …", dir.display());
                let ok = Command::new("python3").arg("-m").arg("venv").arg(dir).status().context("running python3")?;
                anyhow::ensure!(ok.success(), "python3 -m venv {} failed", dir.display());
                let reqs = workspace_root().join("scripts/reference/requirements.txt");
                let ok = Command::new(&exe).args(["-m", "pip", "install", "-q", "-r"]).arg(&reqs).status()?;
                anyhow::ensure!(ok.success(), "pip install -r {} failed", reqs.display());
            }
            exe
        }
    };
    let check = Command::new(&exe)
        .args(["-c", "import torch, transformers, peft, sparsify"])
        .env("SPARSIFY_DISABLE_TRITON", "1")
        .output()
        .with_context(|| format!("running {}", exe.display()))?;
    if !check.status.success() {
        bail!(
            "{} cannot import torch, transformers, peft and sparsify ({}); make a venv with \
             `pip install -r scripts/reference/requirements.txt` and pass --python or --venv",
            exe.display(),
            String::from_utf8_lossy(&check.stderr).lines().last().unwrap_or("")
        );
    }
    Ok(exe)
}

/// The one JSON line of `workload` in a side's output.
fn sample(out: &[u8], workload: &str, side: &str) -> anyhow::Result<Sample> {
    let text = String::from_utf8_lossy(out);
    for line in text.lines().filter(|l| l.trim_start().starts_with('{')) {
        let v: serde_json::Value = serde_json::from_str(line).with_context(|| format!("{side}: {line}"))?;
        if v["name"] == workload {
            let tokens_per_second =
                v["tokens_per_second"].as_f64().with_context(|| format!("{side}: no tokens_per_second in {line}"))?;
            return Ok(Sample { tokens_per_second, peak_rss_mib: v["peak_rss_mib"].as_f64() });
        }
    }
    bail!("{side} printed no result for {workload}: {text}")
}

/// Runs `cmd`, returning its stdout; an error with its stderr when it fails.
fn output(mut cmd: Command, what: &str) -> anyhow::Result<Vec<u8>> {
    let o = cmd.output().with_context(|| format!("starting {what}"))?;
    if !o.status.success() {
        bail!("{what} failed ({}): {}", o.status, String::from_utf8_lossy(&o.stderr));
    }
    Ok(o.stdout)
}

/// The interleaved runs: `resa(w)` and `torch(w)` make the two commands of workload `w`.
pub fn interleave(
    o: &CompareOptions,
    resa: &dyn Fn(&str) -> Command,
    torch: &dyn Fn(&str) -> Command,
    on_row: &mut dyn FnMut(&str, usize),
) -> anyhow::Result<Vec<Row>> {
    let mut rows: Vec<Row> = o.only.iter().map(|w| Row { workload: w.clone(), ..Row::default() }).collect();
    let mut numpy = Row { workload: GEMM_NUMPY.into(), ..Row::default() };
    for round in 0..o.rounds {
        for row in &mut rows {
            let w = row.workload.clone();
            on_row(&w, round);
            let mine = sample(&output(resa(&w), &format!("resa bench --only {w}"))?, &w, "resa")?;
            row.torch.push(sample(&output(torch(&w), &format!("bench_torch.py --only {w}"))?, &w, "PyTorch")?);
            if w == "gemm" {
                // The same resa measurement against numpy's BLAS, timed right after.
                numpy.resa.push(mine.clone());
                let out = output(torch(GEMM_NUMPY), &format!("bench_torch.py --only {GEMM_NUMPY}"))?;
                numpy.torch.push(sample(&out, GEMM_NUMPY, "numpy")?);
            }
            row.resa.push(mine);
        }
    }
    if !numpy.resa.is_empty() {
        let at = rows.iter().position(|r| r.workload == "gemm").map_or(rows.len(), |i| i + 1);
        rows.insert(at, numpy);
    }
    Ok(rows)
}

/// Runs the comparison (the task).
pub fn task(args: &[String]) -> anyhow::Result<()> {
    let (features, rest) = run::split_features(args)?;
    let o = parse(&rest)?;
    let exe = python(&o.python)?;
    let root = workspace_root();
    anyhow::ensure!(run::cargo_resa("build", &features).status()?.success(), "building resa failed");
    let bin = root.join("target/release/resa");
    let repeats = o.repeats.to_string();
    let threads = o.threads.to_string();
    let resa = |w: &str| {
        let mut c = Command::new(&bin);
        c.args(["bench", "--only", w, "--repeats", &repeats, "--json"]).args(&o.passthrough);
        c
    };
    let script = root.join("scripts/bench/bench_torch.py");
    let torch = |w: &str| {
        let mut c = Command::new(&exe);
        c.arg(&script).args(["--only", w, "--repeats", &repeats, "--threads", &threads, "--json"]);
        c.args(&o.passthrough).env("SPARSIFY_DISABLE_TRITON", "1");
        c
    };
    let rows = interleave(&o, &resa, &torch, &mut |w, round| eprintln!("round {}: {w}", round + 1))?;
    println!(
        "resa-rs (release, {}) against PyTorch ({} threads), interleaved, {} rounds of {} timed runs each (median per run)\n",
        if features.is_empty() { "flex".to_string() } else { features.join(",") },
        o.threads,
        o.rounds,
        o.repeats
    );
    print!("{}", table(&rows));
    if let Some(path) = &o.out {
        write_json(path, &rows)?;
    }
    Ok(())
}

fn write_json(path: &Path, rows: &[Row]) -> anyhow::Result<()> {
    let side = |v: &[Sample]| {
        v.iter()
            .map(|s| serde_json::json!({"tokens_per_second": s.tokens_per_second, "peak_rss_mib": s.peak_rss_mib}))
            .collect::<Vec<_>>()
    };
    let json: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "workload": r.workload, "resa": side(&r.resa), "torch": side(&r.torch),
                "ratio": r.ratio(), "goal": goal(&r.workload),
            })
        })
        .collect();
    let tmp = path.with_extension("tmp-compare");
    std::fs::write(&tmp, serde_json::to_string_pretty(&json)?).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn arguments_are_parsed_and_checked() {
        let o = parse(&s(&["--compare", "--only", "stage2_step,sae_step", "--rounds", "3", "--python", "/p"]))
            .expect("valid");
        assert_eq!(
            (o.only, o.rounds, o.repeats, o.python),
            (s(&["stage2_step", "sae_step"]), 3, 3, Python::Path("/p".into()))
        );
        let o = parse(&s(&["--size", "1.5b", "--dtype", "bf16"])).expect("valid");
        assert_eq!(o.passthrough, s(&["--size", "1.5b", "--dtype", "bf16"]));
        for bad in [&["--only", "serve_c1"][..], &["--rounds", "0"], &["--repeats"], &["--bogus"]] {
            assert!(parse(&s(bad)).is_err(), "{bad:?}");
        }
    }

    /// A command that prints `line` (as each side prints its one JSON line).
    fn printing(line: String) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", &format!("echo 'noise'; echo '{line}'")]);
        c
    }

    #[test]
    fn both_sides_run_interleaved_and_the_table_has_their_ratio() {
        let o = CompareOptions { only: s(&["stage2_step", "gemm"]), rounds: 2, ..parse(&[]).expect("defaults") };
        let order = std::cell::RefCell::new(Vec::new());
        let resa = |w: &str| {
            order.borrow_mut().push(format!("resa {w}"));
            printing(format!(r#"{{"name":"{w}","tokens_per_second":50.0,"peak_rss_mib":100.0}}"#))
        };
        let torch = |w: &str| {
            order.borrow_mut().push(format!("torch {w}"));
            printing(format!(r#"{{"name":"{w}","tokens_per_second":100.0,"peak_rss_mib":300.0}}"#))
        };
        let rows = interleave(&o, &resa, &torch, &mut |_, _| {}).expect("runs");
        assert_eq!(
            *order.borrow(),
            s(&["resa stage2_step", "torch stage2_step", "resa gemm", "torch gemm", "torch gemm_numpy"].repeat(2)),
            "per round, per workload: resa then PyTorch (and numpy after gemm)"
        );
        assert_eq!(rows[0].resa.len(), 2);
        assert_eq!(rows.iter().map(|r| r.workload.as_str()).collect::<Vec<_>>(), ["stage2_step", "gemm", GEMM_NUMPY]);
        let t = table(&rows);
        assert!(t.contains("| stage2_step | 50.0 / 50.0 | 100.0 / 100.0 | 0.50 | 1.3 | no | 100 | 300 |"), "{t}");
        assert!(t.contains("| gemm | 50.0 / 50.0 | 100.0 / 100.0 | 0.50 | - | - |"), "{t}");
        assert!(
            t.contains("| gemm against numpy (OpenBLAS: the machine's limit) | 50.0 / 50.0 | 100.0 / 100.0 |"),
            "{t}"
        );
    }

    #[test]
    fn the_ratio_is_of_the_medians() {
        let at = |v: &[f64]| v.iter().map(|&t| Sample { tokens_per_second: t, peak_rss_mib: None }).collect();
        let r = Row { workload: "prefill".into(), resa: at(&[10.0, 300.0, 12.0]), torch: at(&[8.0, 10.0, 1.0]) };
        assert!((r.ratio() - 12.0 / 8.0).abs() < 1e-12, "{}", r.ratio());
        let r = Row { workload: "prefill".into(), resa: at(&[10.0, 14.0]), torch: at(&[6.0, 2.0]) };
        assert!((r.ratio() - 3.0).abs() < 1e-12);
    }

    #[test]
    fn a_side_that_fails_or_prints_no_result_is_an_error() {
        let o = CompareOptions { only: s(&["prefill"]), rounds: 1, ..parse(&[]).expect("defaults") };
        let fine = |w: &str| printing(format!(r#"{{"name":"{w}","tokens_per_second":1.0}}"#));
        let silent = |_: &str| printing("{\"name\":\"other\",\"tokens_per_second\":1.0}".into());
        let failing = |_: &str| {
            let mut c = Command::new("sh");
            c.args(["-c", "echo 'No module named torch' >&2; exit 1"]);
            c
        };
        let e = interleave(&o, &fine, &silent, &mut |_, _| {}).expect_err("no result");
        assert!(e.to_string().contains("PyTorch printed no result for prefill"), "{e}");
        let e = interleave(&o, &fine, &failing, &mut |_, _| {}).expect_err("fails");
        assert!(e.to_string().contains("No module named torch"), "{e}");
    }
}
