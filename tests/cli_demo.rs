//! `resa demo --quick` end to end on the committed toy model: every artifact exists and
//! reloads (SAE folder in sparsify format, PEFT adapters, merged model, evaluation folders,
//! report and figure), and a rerun skips the finished stages.

use std::path::Path;
use std::process::Command;

use burn::backend::Flex;
use burn::tensor::DType;
use resa::qwen2::Qwen2ForCausalLM;
use resa::toy::demo::DemoReport;

#[test]
fn quick_demo_writes_every_artifact_and_reruns_from_them() {
    let model = resa::toy::model::default_dir();
    assert!(model.join("model.safetensors").is_file(), "the committed toy model is missing: {}", model.display());
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("demo");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_resa"))
            .args(["demo", "--quick", "--out", out.to_str().expect("utf8")])
            .output()
            .expect("runs resa")
    };
    let o = run();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    for row in ["| Toy model (base) |", "| CoT-free SFT |", "| SAE-Tuning |"] {
        assert!(stdout.contains(row), "{row} missing from {stdout}");
    }

    let report: DemoReport =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("report.json")).expect("parses");
    assert_eq!(report.rows.len(), 3);
    for r in &report.rows {
        assert_eq!(r.report.benches[0].problems, 10, "{}", r.name);
    }
    assert!(std::fs::read_to_string(out.join("report.md")).expect("report.md").contains("| SAE-Tuning |"));
    assert!(std::fs::read_to_string(out.join("figures/pass_at_1.svg")).expect("svg").starts_with("<svg"));
    // Every run's training curves, linked from the report.
    let md = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    assert!(md.contains("## Training curves") && md.contains("sae-tuning/stage2/curves.svg"), "{md}");
    for run in ["sae-tuning/stage1", "sae-tuning/stage2", "cot-free-sft/stage2"] {
        assert!(out.join(run).join("curves.svg").is_file() && out.join(run).join("curves.png").is_file(), "{run}");
    }

    feature_dashboard_renders(&out.join("features"), &report);

    let device = Default::default();
    let sae = resa::sae::SparseCoder::<Flex>::load(&report.sae, &device).expect("SAE folder in sparsify format");
    assert_eq!(sae.num_latents(), 256);
    assert!(report.sae.join("cfg.json").is_file() && report.sae.join("sae.safetensors").is_file());
    for r in &report.rows[1..] {
        let adapter = r.adapter.as_ref().expect("adapter");
        let mut m = Qwen2ForCausalLM::<Flex>::from_pretrained(&model, &device, DType::F32).expect("toy model");
        resa::lora::load_adapter(&mut m, adapter).expect("PEFT adapter reloads");
        assert!(
            out.join(format!("eval/{}", if r.name == "SAE-Tuning" { "sae-tuning" } else { "cot-free-sft" }))
                .join("completions.jsonl")
                .is_file()
        );
    }
    let merged = report.merged.as_ref().expect("merged model");
    Qwen2ForCausalLM::<Flex>::from_pretrained(merged, &device, DType::F32).expect("merged model reloads");
    assert!(merged.join("tokenizer.json").is_file());

    let o = run();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("stage I: up to date, skipped") && err.contains("stage II: up to date, skipped"), "{err}");
}

/// The feature dashboard of the demo, rendered by headless Chromium: no console message
/// (an error in the page's script would be one), and the rendered DOM holds the counts table
/// with every layer's count and one card per reasoning feature. Skipped, with a message,
/// where Chromium is not installed (`.ci/run` installs Debian's `chromium`).
fn feature_dashboard_renders(features: &Path, report: &DemoReport) {
    let page = features.join("dashboard.html");
    let html = std::fs::read_to_string(&page).expect("dashboard.html");
    assert!(html.contains("<table id=\"counts\">"), "no counts table");
    let analysis = report.features.as_ref().expect("features");
    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
    else {
        eprintln!("SKIPPED: the dashboard's browser check (no chromium on PATH; `apt-get install chromium`)");
        return;
    };
    let profile = tempfile::tempdir().expect("profile");
    let mut child = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--enable-logging=stderr"])
        .args(["--v=0", "--dump-dom"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("file://{}", page.canonicalize().expect("path").display()))
        // Files, not pipes: a page larger than a pipe's buffer must not stall the browser.
        .stdout(std::fs::File::create(profile.path().join("dom.html")).expect("dom file"))
        .stderr(std::fs::File::create(profile.path().join("log.txt")).expect("log file"))
        .spawn()
        .expect("chromium starts");
    // A browser that hangs fails the test instead of holding it up.
    let started = std::time::Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > std::time::Duration::from_secs(120) {
            let _ = child.kill();
            panic!("chromium did not finish rendering the dashboard within 120 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let status = child.wait().expect("chromium exit");
    let log = std::fs::read_to_string(profile.path().join("log.txt")).unwrap_or_default();
    assert!(status.success(), "chromium failed: {log}");
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "the page logged to the console: {console:?}");
    let dom = std::fs::read_to_string(profile.path().join("dom.html")).expect("the rendered DOM");
    assert!(dom.contains("<table id=\"counts\">"), "the rendered page has no counts table: {dom}");
    for layer in &analysis.layers {
        let row = format!("<tr><td>{}</td><td class=\"num\">{}</td>", layer.hookpoint, layer.count);
        assert!(dom.contains(&row), "no row {row} in the rendered table");
        for latent in &layer.latents {
            assert!(dom.contains(&format!("id=\"{}-{latent}\"", layer.hookpoint)), "no card for {latent}");
        }
    }
    assert!(dom.contains("<svg"), "the figure is not inline");
}
