//! Training curves as TensorBoard event files, so that a run can be watched live in
//! TensorBoard (and synced to Weights & Biases by its TensorBoard sync).
//!
//! A [`Mirror`] follows every `metrics.jsonl` under a run folder (Stage I, Stage II, SFT,
//! LoRA-GRPO: whatever a stage writes) and appends each new step's numeric metrics as scalar
//! events to `DIR/<the metrics file's folder, relative to the run>/events.out.tfevents.*.resa`:
//! one TensorBoard run per stage, one tag per metric (`layers.3/fvu` where the lines name a
//! hookpoint). `resa tune --tensorboard DIR` (or `tensorboard = "DIR"` in the run file) keeps
//! one going while the run trains; `resa tensorboard RUN_DIR DIR` writes (or `--follow`s) any
//! run folder.
//!
//! The format is TensorFlow's: TFRecord framing (length, masked CRC-32C of the length, the
//! record, its masked CRC-32C) around `Event` protocol buffers — a first event with
//! `file_version = "brain.Event:2"`, then one event per scalar with `wall_time`, `step` and a
//! `Summary` of one `simple_value`. The encoder is the few fields TensorBoard reads; its
//! output is checked byte for byte against a file written by TensorBoard's own writer
//! (`scripts/reference/tensorboard_events.py`).

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::curves::metrics_files;
use crate::error::{Error, Result};

/// Keys of a metrics line that are not scalars (the same as the curves leave out).
const NOT_SCALARS: [&str; 5] = ["step", "total", "epoch", "tokens", "hookpoint"];

/// How often a live mirror looks for new lines.
const POLL: Duration = Duration::from_secs(2);

const CASTAGNOLI: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// TFRecord's masked CRC-32C.
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = CASTAGNOLI.checksum(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord: length, masked CRC of the length, data, masked CRC of the data.
fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited protobuf field.
fn bytes_field(field: u32, data: &[u8], out: &mut Vec<u8>) {
    varint(u64::from(field << 3 | 2), out);
    varint(data.len() as u64, out);
    out.extend_from_slice(data);
}

/// `Event { wall_time = 1, step = 2, file_version = 3 | summary = 5 }`.
fn event(wall_time: f64, step: i64, body: EventBody<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(1 << 3 | 1);
    out.extend_from_slice(&wall_time.to_le_bytes());
    if step != 0 {
        out.push(2 << 3);
        varint(step as u64, &mut out);
    }
    match body {
        EventBody::FileVersion(v) => bytes_field(3, v.as_bytes(), &mut out),
        EventBody::Scalar(tag, value) => {
            // Summary.Value { tag = 1, simple_value = 2 }
            let mut v = Vec::new();
            bytes_field(1, tag.as_bytes(), &mut v);
            v.push(2 << 3 | 5);
            v.extend_from_slice(&value.to_le_bytes());
            // Summary { value = 1 }
            let mut summary = Vec::new();
            bytes_field(1, &v, &mut summary);
            bytes_field(5, &summary, &mut out);
        }
    }
    out
}

enum EventBody<'a> {
    FileVersion(&'a str),
    Scalar(&'a str, f32),
}

/// The record that starts an event file: `Event { wall_time, file_version: "brain.Event:2" }`.
pub fn version_record(wall_time: f64) -> Vec<u8> {
    record(&event(wall_time, 0, EventBody::FileVersion("brain.Event:2")))
}

/// The record of one scalar: `Event { wall_time, step, summary { value { tag, simple_value } } }`.
pub fn scalar_record(tag: &str, step: i64, value: f32, wall_time: f64) -> Vec<u8> {
    record(&event(wall_time, step, EventBody::Scalar(tag, value)))
}

/// An event file being written (appended to; each event is flushed as written, so
/// TensorBoard sees it at once).
pub struct EventWriter {
    path: PathBuf,
    file: std::fs::File,
}

impl EventWriter {
    /// Creates `dir/events.out.tfevents.SECONDS.HOST.resa` with its version event.
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty() && !h.contains('/'));
        let path =
            dir.join(format!("events.out.tfevents.{}.{}.resa", now.as_secs(), host.as_deref().unwrap_or("resa")));
        let file = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
        let mut w = EventWriter { path, file };
        w.write(&version_record(now.as_secs_f64()))?;
        Ok(w)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one scalar.
    pub fn scalar(&mut self, tag: &str, step: i64, value: f32, wall_time: f64) -> Result<()> {
        self.write(&scalar_record(tag, step, value, wall_time))
    }

    fn write(&mut self, record: &[u8]) -> Result<()> {
        // Flushed by `append`.
        Ok(resa_publish::append(&mut self.file, &self.path, record)?)
    }
}

/// The scalars of one metrics line: `(step, [(tag, value)])`; `None` for a line that is not
/// a whole JSON object with a step (one still being written).
fn scalars(line: &str) -> Option<(i64, Vec<(String, f32)>)> {
    let serde_json::Value::Object(m) = serde_json::from_str::<serde_json::Value>(line).ok()? else { return None };
    let step = m.get("step")?.as_i64()?;
    let series = m.get("hookpoint").and_then(|h| h.as_str());
    let values = m
        .iter()
        .filter(|(k, _)| !NOT_SCALARS.contains(&k.as_str()))
        .filter_map(|(k, v)| {
            let v = v.as_f64().filter(|v| v.is_finite())?;
            Some((series.map_or_else(|| k.clone(), |s| format!("{s}/{k}")), v as f32))
        })
        .collect();
    Some((step, values))
}

/// How far one metrics file has been mirrored.
struct Followed {
    writer: EventWriter,
    /// Bytes of the file read (up to the last whole line).
    offset: u64,
    /// The newest step written per series (a resumed run rewrites its file from an earlier
    /// step: steps already written are not written again).
    last: BTreeMap<String, i64>,
}

/// Mirrors a run folder's `metrics.jsonl` files into a TensorBoard log folder.
pub struct Mirror {
    run: PathBuf,
    logdir: PathBuf,
    followed: BTreeMap<PathBuf, Followed>,
}

impl Mirror {
    /// A mirror of `run` into `logdir`. Event files this project wrote there before (`*.resa`)
    /// are replaced: the mirror writes every step again from the metrics files.
    pub fn new(run: impl Into<PathBuf>, logdir: impl Into<PathBuf>) -> Self {
        Mirror { run: run.into(), logdir: logdir.into(), followed: BTreeMap::new() }
    }

    /// Appends the steps written since the last call (every step, the first time); returns
    /// how many scalars were written.
    pub fn sync(&mut self) -> Result<usize> {
        if !self.run.is_dir() {
            return Ok(0);
        }
        let mut written = 0;
        for path in metrics_files(&self.run)? {
            written += self.sync_file(&path)?;
        }
        Ok(written)
    }

    fn sync_file(&mut self, path: &Path) -> Result<usize> {
        let rel = path.parent().and_then(|p| p.strip_prefix(&self.run).ok()).unwrap_or(Path::new(""));
        let f = match self.followed.entry(path.to_path_buf()) {
            std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => {
                let dir = self.logdir.join(rel);
                remove_own_event_files(&dir)?;
                let writer = EventWriter::create(&dir)?;
                v.insert(Followed { writer, offset: 0, last: BTreeMap::new() })
            }
        };
        // Only what was appended since the last call is read.
        let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len < f.offset {
            // Rewritten shorter (a resumed run drops the steps after its checkpoint).
            f.offset = 0;
        }
        let mut new = Vec::new();
        file.seek(SeekFrom::Start(f.offset))
            .and_then(|_| file.read_to_end(&mut new))
            .map_err(|e| Error::io(path, e))?;
        // Only whole lines: the last one may still be being written.
        let Some(end) = new.iter().rposition(|&b| b == b'\n') else { return Ok(0) };
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        let mut written = 0;
        for line in String::from_utf8_lossy(&new[..end]).lines() {
            let Some((step, values)) = scalars(line) else { continue };
            for (tag, value) in values {
                let last = f.last.entry(tag.clone()).or_insert(i64::MIN);
                if step <= *last {
                    continue;
                }
                *last = step;
                f.writer.scalar(&tag, step, value, wall)?;
                written += 1;
            }
        }
        f.offset += end as u64 + 1;
        Ok(written)
    }

    /// Mirrors in a background thread every two seconds until the returned guard is dropped
    /// (which mirrors once more, so the file ends with the run's last step). A failure to
    /// write is logged once and ends the mirroring, never the run.
    pub fn spawn(self) -> LiveMirror {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut mirror = self;
            loop {
                let last = flag.load(Ordering::SeqCst);
                if let Err(e) = mirror.sync() {
                    tracing::warn!("TensorBoard mirror of {} stopped: {e}", mirror.run.display());
                    return;
                }
                if last {
                    return;
                }
                let until = std::time::Instant::now() + POLL;
                while std::time::Instant::now() < until && !flag.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        });
        LiveMirror { stop, handle: Some(handle) }
    }
}

/// A mirror running in the background ([`Mirror::spawn`]); dropping it mirrors the last
/// steps and stops it.
pub struct LiveMirror {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for LiveMirror {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Removes the event files this project wrote in `dir` (`events.out.tfevents.*.resa`),
/// leaving any other program's.
fn remove_own_event_files(dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("events.out.tfevents.") && name.ends_with(".resa") {
            std::fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_crc_matches_tensorflow() {
        // CRC-32C check value of "123456789" (RFC 3720) is 0xE3069283.
        assert_eq!(CASTAGNOLI.checksum(b"123456789"), 0xe306_9283);
        let crc = 0xe306_9283u32;
        assert_eq!(masked_crc(b"123456789"), ((crc >> 15) | (crc << 17)).wrapping_add(0xa282_ead8));
    }

    #[test]
    fn lines_become_tagged_scalars() {
        let (step, v) = scalars(r#"{"step":3,"total":9,"loss":0.5,"lr":0.001,"note":"x","grad_norm":null}"#).unwrap();
        assert_eq!(step, 3);
        assert_eq!(v, vec![("loss".to_string(), 0.5), ("lr".to_string(), 0.001)]);
        let (_, v) = scalars(r#"{"step":1,"hookpoint":"layers.3","fvu":0.25}"#).unwrap();
        assert_eq!(v, vec![("layers.3/fvu".to_string(), 0.25)]);
        assert!(scalars(r#"{"step":1,"loss":0."#).is_none());
        assert!(scalars(r#"{"loss":1.0}"#).is_none());
    }
}
