//! `resa plot RUN_DIR`: every `metrics.jsonl` under a folder drawn as `curves.svg` and
//! `curves.png` beside it, a run still being written included; a folder with nothing to
//! draw is an error that says so. `resa tensorboard RUN_DIR LOGDIR`: the same metrics as
//! TensorBoard event files.

fn resa(args: &[&std::ffi::OsStr]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_resa")).args(args).output().expect("runs resa")
}

#[test]
fn plot_draws_every_run_under_a_folder() {
    let tmp = tempfile::tempdir().expect("tmp");
    let run = tmp.path().join("run");
    // A Stage II run, its last line still being written.
    let stage2 = run.join("stage2");
    std::fs::create_dir_all(&stage2).expect("dir");
    let mut lines: String = (1..=20)
        .map(|s| format!("{{\"step\":{s},\"total\":40,\"loss\":{},\"lr\":0.001,\"grad_norm\":0.5}}\n", 1.0 / s as f64))
        .collect();
    lines.push_str("{\"step\":21,\"total\":40,\"lo");
    std::fs::write(stage2.join("metrics.jsonl"), lines).expect("write");
    // A Stage I run over two hookpoints: one line per hookpoint and step.
    let stage1 = run.join("stage1");
    std::fs::create_dir_all(&stage1).expect("dir");
    let lines: String = (0..10)
        .flat_map(|s| {
            ["layers.1", "layers.2"].map(|h| {
                format!(
                    "{{\"step\":{s},\"hookpoint\":\"{h}\",\"fvu\":{},\"dead_fraction\":0.0}}\n",
                    1.0 / (s + 1) as f64
                )
            })
        })
        .collect();
    std::fs::write(stage1.join("metrics.jsonl"), lines).expect("write");

    let o = resa(&["plot".as_ref(), run.as_os_str()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let listed = String::from_utf8_lossy(&o.stdout);
    for dir in [&stage1, &stage2] {
        let svg = std::fs::read_to_string(dir.join("curves.svg")).expect("svg");
        assert!(svg.starts_with("<svg") && svg.contains("<polyline"), "{}", dir.display());
        let png = std::fs::read(dir.join("curves.png")).expect("png");
        assert!(png.starts_with(b"\x89PNG"), "{}", dir.display());
        assert!(listed.contains(&dir.join("curves.svg").display().to_string()), "{listed}");
    }
    let svg = std::fs::read_to_string(stage2.join("curves.svg")).expect("svg");
    for panel in ["loss", "lr", "grad_norm"] {
        assert!(svg.contains(panel), "no {panel} panel");
    }
    assert!(!svg.contains(">total<") && !svg.contains(">step<\n"), "counters are not curves");
    let svg = std::fs::read_to_string(stage1.join("curves.svg")).expect("svg");
    assert!(svg.contains("layers.1") && svg.contains("layers.2"), "one line per hookpoint");

    // Nothing to draw, or no folder: an error that says so.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).expect("dir");
    let o = resa(&["plot".as_ref(), empty.as_os_str()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no metrics.jsonl"), "{}", String::from_utf8_lossy(&o.stderr));
    let o = resa(&["plot".as_ref(), tmp.path().join("nowhere").as_os_str()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a folder"));
}

#[test]
fn tensorboard_writes_one_event_file_per_run() {
    let tmp = tempfile::tempdir().expect("tmp");
    let run = tmp.path().join("run");
    for (dir, lines) in [
        (
            "stage2",
            "{\"step\":1,\"total\":2,\"loss\":1.5,\"lr\":0.001}\n{\"step\":2,\"total\":2,\"loss\":1.25,\"lr\":0.001}\n",
        ),
        ("toy-tina", "{\"step\":1,\"reward\":0.5,\"kl\":0.0}\n{\"step\":2,\"re"),
    ] {
        std::fs::create_dir_all(run.join(dir)).expect("dir");
        std::fs::write(run.join(dir).join("metrics.jsonl"), lines).expect("write");
    }
    let logdir = tmp.path().join("tb");
    let o = resa(&["tensorboard".as_ref(), run.as_os_str(), logdir.as_os_str()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("6 scalars from 2 metrics files"), "{err}");
    for dir in ["stage2", "toy-tina"] {
        let files: Vec<_> = std::fs::read_dir(logdir.join(dir)).expect("events").flatten().collect();
        assert_eq!(files.len(), 1, "{dir}");
        assert!(files[0].file_name().to_string_lossy().starts_with("events.out.tfevents."));
    }
    // Run again: the same files' content, not a second copy beside them.
    let o = resa(&["tensorboard".as_ref(), run.as_os_str(), logdir.as_os_str()]);
    assert!(o.status.success());
    assert_eq!(std::fs::read_dir(logdir.join("stage2")).expect("events").count(), 1);

    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).expect("dir");
    let o = resa(&["tensorboard".as_ref(), empty.as_os_str(), logdir.as_os_str()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no metrics.jsonl"));
}
