//! TensorBoard event files: the encoder against a file framed and encoded by TensorBoard's
//! own code (`scripts/reference/tensorboard_reference.py`), and the mirror of a run folder
//! as a run goes: new lines, a line still being written, a resumed run's rewritten file.

use std::path::Path;

use resa_pipeline::tensorboard::{Mirror, scalar_record, version_record};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tensorboard");

#[test]
fn records_are_tensorboards_bytes() {
    let want = std::fs::read(Path::new(FIXTURES).join("reference.tfevents")).expect("fixture");
    let events: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(Path::new(FIXTURES).join("events.json")).expect("json"))
            .expect("events");
    let mut got = Vec::new();
    for e in &events {
        let wall = e["wall_time"].as_f64().expect("wall_time");
        if e.get("file_version").is_some() {
            got.extend(version_record(wall));
        } else {
            let (tag, step) = (e["tag"].as_str().expect("tag"), e["step"].as_i64().expect("step"));
            got.extend(scalar_record(tag, step, e["value"].as_f64().expect("value") as f32, wall));
        }
    }
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the encoded events differ from TensorBoard's");
}

/// `(step, tag, value)` of every scalar event in the event files of `dir` (a decoder of just
/// the fields written: TFRecord framing, `Event.step`, `Summary.Value.tag/simple_value`).
fn scalars(dir: &Path) -> Vec<(i64, String, f32)> {
    fn varint(b: &[u8], at: &mut usize) -> u64 {
        let mut v = 0u64;
        for shift in (0..).step_by(7) {
            let byte = b[*at];
            *at += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                break;
            }
        }
        v
    }
    /// Fields of one message: (number, wire type, bytes of a length-delimited one / value).
    fn fields(b: &[u8]) -> Vec<(u64, Vec<u8>)> {
        let (mut at, mut out) = (0, Vec::new());
        while at < b.len() {
            let key = varint(b, &mut at);
            let data = match key & 7 {
                0 => varint(b, &mut at).to_le_bytes().to_vec(),
                1 => {
                    at += 8;
                    b[at - 8..at].to_vec()
                }
                5 => {
                    at += 4;
                    b[at - 4..at].to_vec()
                }
                2 => {
                    let n = varint(b, &mut at) as usize;
                    at += n;
                    b[at - n..at].to_vec()
                }
                w => panic!("wire type {w}"),
            };
            out.push((key >> 3, data));
        }
        out
    }
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir).expect("logdir").flatten().map(|e| e.path()).collect();
    files.sort();
    for file in files.iter().filter(|p| p.to_string_lossy().contains("tfevents")) {
        let b = std::fs::read(file).expect("events");
        let mut at = 0;
        while at < b.len() {
            let len = u64::from_le_bytes(b[at..at + 8].try_into().expect("len")) as usize;
            let event = &b[at + 12..at + 12 + len];
            at += 16 + len;
            let mut step = 0;
            for (n, data) in fields(event) {
                match n {
                    2 => step = i64::from_le_bytes(data[..8].try_into().expect("step")),
                    5 => {
                        for (_, value) in fields(&data) {
                            let v = fields(&value);
                            let tag = String::from_utf8(v[0].1.clone()).expect("tag");
                            out.push((step, tag, f32::from_le_bytes(v[1].1[..4].try_into().expect("f32"))));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

#[test]
fn a_run_folder_is_mirrored_as_it_is_written() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (run, logdir) = (tmp.path().join("run"), tmp.path().join("tb"));
    std::fs::create_dir_all(run.join("stage1")).expect("dir");
    std::fs::create_dir_all(run.join("stage2")).expect("dir");
    std::fs::write(
        run.join("stage1/metrics.jsonl"),
        "{\"step\":1,\"hookpoint\":\"layers.3\",\"fvu\":0.5}\n{\"step\":1,\"hookpoint\":\"layers.5\",\"fvu\":0.75}\n",
    )
    .expect("write");
    let stage2 = run.join("stage2/metrics.jsonl");
    std::fs::write(&stage2, "{\"step\":1,\"total\":3,\"loss\":2.0,\"lr\":0.001}\n{\"step\":2,\"total\":3,\"lo")
        .expect("write");
    let mut mirror = Mirror::new(&run, &logdir);
    assert_eq!(mirror.sync().expect("sync"), 4);
    let s1 = scalars(&logdir.join("stage1"));
    assert_eq!(s1, vec![(1, "layers.3/fvu".into(), 0.5), (1, "layers.5/fvu".into(), 0.75)]);
    assert_eq!(scalars(&logdir.join("stage2")), vec![(1, "loss".into(), 2.0), (1, "lr".into(), 0.001)]);
    // The half-written line is completed, and another step comes.
    std::fs::write(
        &stage2,
        "{\"step\":1,\"total\":3,\"loss\":2.0,\"lr\":0.001}\n{\"step\":2,\"total\":3,\"loss\":1.5,\"lr\":0.001}\n",
    )
    .expect("write");
    assert_eq!(mirror.sync().expect("sync"), 2);
    assert_eq!(mirror.sync().expect("sync"), 0, "nothing new, nothing written");
    // A resumed run rewrites its file from step 1 on: steps already mirrored are not repeated.
    std::fs::write(&stage2, "{\"step\":1,\"total\":3,\"loss\":2.0,\"lr\":0.001}\n").expect("write");
    assert_eq!(mirror.sync().expect("sync"), 0);
    std::fs::write(
        &stage2,
        "{\"step\":1,\"total\":3,\"loss\":2.0,\"lr\":0.001}\n{\"step\":2,\"total\":3,\"loss\":1.5,\"lr\":0.001}\n\
         {\"step\":3,\"total\":3,\"loss\":1.25,\"lr\":0.001,\"grad_norm\":null}\n",
    )
    .expect("write");
    assert_eq!(mirror.sync().expect("sync"), 2);
    let want: Vec<(i64, String, f32)> = vec![
        (1, "loss".into(), 2.0),
        (1, "lr".into(), 0.001),
        (2, "loss".into(), 1.5),
        (2, "lr".into(), 0.001),
        (3, "loss".into(), 1.25),
        (3, "lr".into(), 0.001),
    ];
    assert_eq!(scalars(&logdir.join("stage2")), want);
    // A new mirror (the command run again) replaces its own event files, not another's.
    std::fs::write(logdir.join("stage2/events.out.tfevents.1.other"), b"").expect("write");
    let mut again = Mirror::new(&run, &logdir);
    assert_eq!(again.sync().expect("sync"), 8);
    assert_eq!(scalars(&logdir.join("stage2")), want);
    assert!(logdir.join("stage2/events.out.tfevents.1.other").is_file());
}

#[test]
fn a_live_mirror_writes_the_last_steps_when_dropped() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (run, logdir) = (tmp.path().join("run"), tmp.path().join("tb"));
    std::fs::create_dir_all(run.join("stage2")).expect("dir");
    let live = Mirror::new(&run, &logdir).spawn();
    std::fs::write(run.join("stage2/metrics.jsonl"), "{\"step\":1,\"loss\":3.0}\n").expect("write");
    drop(live);
    assert_eq!(scalars(&logdir.join("stage2")), vec![(1, "loss".into(), 3.0)]);
}
