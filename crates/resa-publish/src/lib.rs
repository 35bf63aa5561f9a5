#![doc = include_str!("../README.md")]

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

pub mod error;
pub mod manifest;

pub use error::{Error, Result};

/// Writes bytes to `path` through a temporary sibling file (`.NAME.tmp`, synced) and one
/// rename, so `path` holds either its old or its new content, never part of either.
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    let path = path.as_ref();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        disk_full_for_tests()?;
        f.write_all(bytes)?;
        f.sync_all()?;
        rename(&tmp, path)?;
        sync_dir(&dir);
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::new(path, e));
    }
    Ok(())
}

/// A fresh temporary sibling of `dir` (`.NAME.TAG`), removed first if a crashed run left
/// one: a folder is assembled there and moved into place with [`replace_dir`]. The name
/// carries no process id, so the next run that writes `dir` finds and removes what a killed
/// one left (one writer per output folder, as for every run folder of this project).
pub fn temp_sibling(dir: &Path, tag: &str) -> Result<PathBuf> {
    let tmp = sibling(dir, tag);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::new(&tmp, e))?;
    }
    Ok(tmp)
}

fn sibling(dir: &Path, tag: &str) -> PathBuf {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    parent.join(format!(".{name}.{tag}"))
}

/// Moves the finished folder `tmp` to `dir`, replacing what was there, so `dir` is never
/// half-written: a new `dir` appears with one rename; an existing one is first renamed to
/// `.NAME.old` (removed after), so a reader sees the old folder, the new one, or — for the
/// instant between the two renames — none, never a mixture. A `dir` that exists and is not
/// a folder (a user's file) is refused, never moved aside: `tmp` is removed and the error
/// names the path; so is a non-empty folder holding none of [`WRITTEN_FILES`] (a user's
/// folder is never replaced). Files and folders are synced before they become visible.
pub fn replace_dir(tmp: &Path, dir: &Path) -> Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::new(parent, e))?;
    }
    if dir.exists() && !dir.is_dir() {
        let _ = std::fs::remove_dir_all(tmp);
        return Err(Error::new(
            dir,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists and is not a folder; refusing to replace it (choose another output path)",
            ),
        ));
    }
    if dir.is_dir() && !looks_written_by_resa(dir) {
        let _ = std::fs::remove_dir_all(tmp);
        return Err(Error::new(
            dir,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!(
                    "is a folder holding none of the files resa writes there ({}); refusing to replace it \
                     (choose another output path, or empty it first)",
                    WRITTEN_FILES.join(", ")
                ),
            ),
        ));
    }
    sync_dir(tmp);
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if dir.exists() {
        let old = temp_sibling(dir, "old")?;
        rename(dir, &old).map_err(|e| Error::new(dir, e))?;
        rename(tmp, dir).map_err(|e| Error::new(dir, e))?;
        sync_dir(parent);
        std::fs::remove_dir_all(&old).map_err(|e| Error::new(&old, e))?;
    } else {
        rename(tmp, dir).map_err(|e| Error::new(dir, e))?;
        sync_dir(parent);
    }
    Ok(())
}

/// The files by which [`replace_dir`] recognises a folder it may replace: every folder this
/// project writes whole holds one of them (a model or merged checkpoint, a PEFT adapter, an
/// SAE, a training checkpoint).
pub const WRITTEN_FILES: [&str; 8] = [
    "config.json",
    "model.safetensors",
    "adapter_config.json",
    "adapter_model.safetensors",
    "cfg.json",
    "sae.safetensors",
    "trainer_state.json",
    "stage1.json",
];

/// An empty folder, or one holding a file of [`WRITTEN_FILES`].
fn looks_written_by_resa(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none() || WRITTEN_FILES.iter().any(|f| dir.join(f).is_file()),
        Err(_) => false,
    }
}

/// Removes what killed runs left in `dir`: entries named `.NAME.tmp` or `.NAME.old` (the
/// temporaries of [`write_atomic`], [`temp_sibling`] and [`replace_dir`]). Returns how many
/// were removed. Call it at the start of a run that owns `dir`.
pub fn remove_stale_temporaries(dir: &Path) -> Result<usize> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(0) };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = name.starts_with('.') && (name.ends_with(".tmp") || name.ends_with(".old"));
        // Older versions of this crate added the process id (`.NAME.tmp-1234`).
        let legacy = name.starts_with('.')
            && [".tmp-", ".old-"].iter().any(|t| {
                name.rsplit_once(t).is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
            });
        if !(ours || legacy) {
            continue;
        }
        let path = entry.path();
        let result = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        result.map_err(|e| Error::new(&path, e))?;
        tracing::info!("removed {} (left by an interrupted run)", path.display());
        removed += 1;
    }
    Ok(removed)
}

/// Best-effort fsync of a folder, so a rename inside it survives a power loss (not every
/// platform can open a folder for syncing; failure is not an error).
fn sync_dir(dir: &Path) {
    if let Ok(f) = File::open(dir) {
        let _ = f.sync_all();
    }
}

/// Appends `bytes` (a whole line of a log that is read back, such as an evaluation's
/// completions) to `file`, open for appending at `path`, and flushes it. A full disk can
/// leave part of the line written: readers of such logs drop an unfinished last line.
pub fn append(file: &mut File, path: &Path, bytes: &[u8]) -> Result<()> {
    let result = (|| {
        if let Err(full) = disk_full_for_tests() {
            // As a real full disk may: part of the line, then the error.
            file.write_all(&bytes[..bytes.len() / 2])?;
            file.flush()?;
            return Err(full);
        }
        file.write_all(bytes)?;
        file.flush()
    })();
    result.map_err(|e| Error::new(path, e))
}

/// For fault tests, `RESA_TEST_DISK_FULL_AT_WRITE=K` makes the K-th write of the process
/// (1-based; a [`write_atomic`] or an [`append`]) and every later one fail as a full disk
/// does (`ENOSPC`, "No space left on device"); unset, nothing changes.
fn disk_full_for_tests() -> std::io::Result<()> {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static FULL_AT: OnceLock<Option<u64>> = OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);
    if let Some(k) = *FULL_AT.get_or_init(|| std::env::var("RESA_TEST_DISK_FULL_AT_WRITE").ok()?.parse().ok()) {
        let n = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= k {
            // ENOSPC.
            return Err(std::io::Error::from_raw_os_error(28));
        }
    }
    Ok(())
}

/// Every rename of a publish goes through here. For fault tests, `RESA_TEST_ABORT_AT_RENAME=K`
/// kills the process with SIGKILL (as `kill -9` would: no unwinding, no cleanup; `abort`
/// where `kill` cannot be run) just before the K-th rename (1-based) of the process; unset,
/// nothing changes.
fn rename(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static ABORT_AT: OnceLock<Option<u64>> = OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);
    if let Some(k) = *ABORT_AT.get_or_init(|| std::env::var("RESA_TEST_ABORT_AT_RENAME").ok()?.parse().ok()) {
        let n = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
        if n == k {
            tracing::error!(
                "RESA_TEST_ABORT_AT_RENAME: killed before rename {n} ({} → {})",
                from.display(),
                to.display()
            );
            let pid = std::process::id().to_string();
            if std::process::Command::new("kill").args(["-9", &pid]).status().is_ok() {
                // SIGKILL is delivered asynchronously; nothing more may happen meanwhile.
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
            }
            std::process::abort();
        }
    }
    std::fs::rename(from, to)
}
