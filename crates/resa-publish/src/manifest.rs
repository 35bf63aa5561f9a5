//! Content hashes of a published folder: `resa-manifest.json` lists every file under the
//! folder (its path relative to it, size and XXH3-64 hash), written last before the folder
//! is published, and checked before what was published is used again. Safetensors checks
//! only its header, so a flipped byte inside a weight file would otherwise load as if
//! nothing had happened.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::{Error, Result, write_atomic};

/// The manifest's file name.
pub const MANIFEST: &str = "resa-manifest.json";

/// XXH3-64 of a file's content, as 16 hex digits, and its size.
fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::new(path, e))?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::new(path, e))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, format!("{:016x}", hasher.digest())))
}

/// Every regular file under `dir` but the manifest, as paths relative to it with `/`
/// separators, sorted.
fn files(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let here = dir.join(&rel);
        for entry in std::fs::read_dir(&here).map_err(|e| Error::new(&here, e))? {
            let entry = entry.map_err(|e| Error::new(&here, e))?;
            let kind = entry.file_type().map_err(|e| Error::new(entry.path(), e))?;
            let name = rel.join(entry.file_name());
            if kind.is_dir() {
                stack.push(name);
            } else if kind.is_file() && name != Path::new(MANIFEST) {
                out.push(name.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Writes `dir/resa-manifest.json` with the size and hash of every file under `dir` (call
/// it last, before the folder is published).
pub fn write_manifest(dir: &Path) -> Result<()> {
    let mut entries = serde_json::Map::new();
    for rel in files(dir)? {
        let (bytes, xxh3) = hash_file(&dir.join(&rel))?;
        entries.insert(rel, serde_json::json!({"bytes": bytes, "xxh3": xxh3}));
    }
    let json = serde_json::json!({"version": 1, "hash": "xxh3-64", "files": entries});
    let text = serde_json::to_string_pretty(&json).unwrap_or_default();
    write_atomic(dir.join(MANIFEST), text.as_bytes())
}

/// What checking a folder against its manifest found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// Every file listed is there with its size and hash.
    Intact,
    /// The folder has no manifest (written elsewhere, or by an older version): nothing to
    /// check against.
    Unlisted,
}

/// Checks every file `dir/resa-manifest.json` lists; a damaged folder is an error naming
/// the file and what differs (its path, `InvalidData`).
pub fn verify(dir: &Path) -> Result<Checked> {
    let path = dir.join(MANIFEST);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Checked::Unlisted),
        Err(e) => return Err(Error::new(&path, e)),
    };
    let damaged =
        |file: &Path, message: String| Error::new(file, std::io::Error::new(std::io::ErrorKind::InvalidData, message));
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| damaged(&path, format!("not a manifest: {e}")))?;
    let Some(entries) = json.get("files").and_then(serde_json::Value::as_object) else {
        return Err(damaged(&path, "not a manifest: no `files` object".into()));
    };
    for (rel, entry) in entries {
        let file = dir.join(rel);
        let (want_bytes, want_hash) =
            match (entry.get("bytes").and_then(|v| v.as_u64()), entry.get("xxh3").and_then(|v| v.as_str())) {
                (Some(b), Some(h)) => (b, h),
                _ => return Err(damaged(&path, format!("the entry of `{rel}` has no `bytes` and `xxh3`"))),
            };
        if !file.is_file() {
            return Err(damaged(&file, "listed in the manifest, but missing".into()));
        }
        let (bytes, hash) = hash_file(&file)?;
        if bytes != want_bytes {
            return Err(damaged(
                &file,
                format!("{bytes} bytes; the manifest says {want_bytes} (damaged or truncated)"),
            ));
        }
        if hash != want_hash {
            return Err(damaged(&file, format!("content hash {hash}; the manifest says {want_hash} (damaged)")));
        }
    }
    Ok(Checked::Intact)
}

/// The newest of `candidates` (`(step, folder)`, oldest first) whose folder checks out
/// against its manifest; each damaged one passed over is logged with what is wrong.
pub fn newest_intact(candidates: Vec<(u64, PathBuf)>) -> Option<(u64, PathBuf)> {
    candidates.into_iter().rev().find(|(_, dir)| intact_or_logged(dir))
}

/// Those of `candidates` (`(step, folder)`) whose folders check out against their
/// manifests, in their order; each damaged one is logged with what is wrong.
pub fn all_intact(candidates: Vec<(u64, PathBuf)>) -> Vec<(u64, PathBuf)> {
    candidates.into_iter().filter(|(_, dir)| intact_or_logged(dir)).collect()
}

fn intact_or_logged(dir: &Path) -> bool {
    match verify(dir) {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!("{} is damaged and is passed over ({e}); an older checkpoint is used", dir.display());
            false
        }
    }
}
