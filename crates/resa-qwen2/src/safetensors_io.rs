//! Reading and writing safetensors checkpoints, single-file or sharded.
//!
//! The reader parses only the JSON header up front and reads each tensor's bytes on demand,
//! so a multi-GB checkpoint is never held in memory twice. Every stored float dtype the
//! Hugging Face checkpoints use (F32, F16, BF16) is widened to `f32` here, in one place;
//! BF16 and F16 widen exactly.
//!
//! Writes go to a temporary file in the destination folder and are renamed into place,
//! so a crash never leaves a half-written file under the final name.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// Element type of a stored tensor (the subset of safetensors dtypes this project handles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredDtype {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
    /// 64-bit signed integer.
    I64,
    /// 32-bit signed integer.
    I32,
    /// Unsigned byte (masks).
    U8,
    /// Boolean stored as one byte.
    Bool,
}

impl StoredDtype {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "F32" => Self::F32,
            "F16" => Self::F16,
            "BF16" => Self::BF16,
            "I64" => Self::I64,
            "I32" => Self::I32,
            "U8" => Self::U8,
            "BOOL" => Self::Bool,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::I64 => 8,
            Self::U8 | Self::Bool => 1,
        }
    }

    /// The name safetensors uses in its header.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::BF16 => "BF16",
            Self::I64 => "I64",
            Self::I32 => "I32",
            Self::U8 => "U8",
            Self::Bool => "BOOL",
        }
    }

    fn to_safetensors(self) -> safetensors::Dtype {
        match self {
            Self::F32 => safetensors::Dtype::F32,
            Self::F16 => safetensors::Dtype::F16,
            Self::BF16 => safetensors::Dtype::BF16,
            Self::I64 => safetensors::Dtype::I64,
            Self::I32 => safetensors::Dtype::I32,
            Self::U8 => safetensors::Dtype::U8,
            Self::Bool => safetensors::Dtype::BOOL,
        }
    }

    /// The dtype named by a `torch_dtype` / `dtype` config string.
    pub fn from_torch_name(name: &str) -> Option<Self> {
        Some(match name {
            "float32" | "float" => Self::F32,
            "float16" | "half" => Self::F16,
            "bfloat16" => Self::BF16,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
struct Entry {
    file: usize,
    dtype: Result<StoredDtype, String>,
    shape: Vec<usize>,
    /// Absolute byte offset of the tensor's data in its file.
    start: u64,
    len: u64,
}

#[derive(Deserialize)]
struct RawInfo {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: (u64, u64),
}

/// A set of tensors stored in one or more safetensors files.
#[derive(Debug, Clone)]
pub struct SafetensorsReader {
    /// Folder or file the reader was opened on (for error messages).
    origin: PathBuf,
    files: Vec<PathBuf>,
    entries: BTreeMap<String, Entry>,
}

fn malformed(path: &Path, reason: impl Into<String>) -> Error {
    Error::Safetensors { path: path.to_path_buf(), reason: reason.into() }
}

impl SafetensorsReader {
    /// Opens one `.safetensors` file.
    pub fn open_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let mut reader = SafetensorsReader { origin: path.to_path_buf(), files: Vec::new(), entries: BTreeMap::new() };
        reader.add_file(path, None)?;
        Ok(reader)
    }

    /// Opens the weights of a Hugging Face model folder: `model.safetensors.index.json` with
    /// its shards when present, else `model.safetensors`.
    pub fn open_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let index = dir.join("model.safetensors.index.json");
        if index.is_file() {
            return Self::open_index(&index);
        }
        let single = dir.join("model.safetensors");
        if single.is_file() {
            let mut r = Self::open_file(&single)?;
            r.origin = dir.to_path_buf();
            return Ok(r);
        }
        Err(Error::io(
            &single,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no model.safetensors or model.safetensors.index.json in the model folder",
            ),
        ))
    }

    /// Opens a sharded checkpoint through its `*.safetensors.index.json`.
    pub fn open_index(index: impl AsRef<Path>) -> Result<Self> {
        #[derive(Deserialize)]
        struct Index {
            weight_map: HashMap<String, String>,
        }
        let index = index.as_ref();
        let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
        let parsed: Index =
            serde_json::from_str(&text).map_err(|source| Error::Json { path: index.to_path_buf(), cause: source })?;
        let dir = index.parent().unwrap_or(Path::new("."));
        let mut reader = SafetensorsReader { origin: dir.to_path_buf(), files: Vec::new(), entries: BTreeMap::new() };
        let mut shards: Vec<&String> = parsed.weight_map.values().collect();
        shards.sort();
        shards.dedup();
        for shard in shards {
            let expected: Vec<&str> =
                parsed.weight_map.iter().filter(|(_, f)| *f == shard).map(|(k, _)| k.as_str()).collect();
            reader.add_file(&dir.join(shard), Some(&expected))?;
        }
        Ok(reader)
    }

    fn add_file(&mut self, path: &Path, expected: Option<&[&str]>) -> Result<()> {
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let mut n = [0u8; 8];
        file.read_exact(&mut n).map_err(|_| malformed(path, "file shorter than its 8-byte header length"))?;
        let header_len = u64::from_le_bytes(n);
        if header_len > 100_000_000 || 8 + header_len > file_len {
            return Err(malformed(path, format!("header length {header_len} does not fit a file of {file_len} bytes")));
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact(&mut header).map_err(|e| Error::io(path, e))?;
        let header: HashMap<String, serde_json::Value> = serde_json::from_slice(&header)
            .map_err(|e| malformed(path, format!("header is not a JSON object: {e}")))?;
        let data_start = 8 + header_len;
        let file_index = self.files.len();
        self.files.push(path.to_path_buf());
        for (key, value) in header {
            if key == "__metadata__" {
                continue;
            }
            let info: RawInfo =
                serde_json::from_value(value).map_err(|e| malformed(path, format!("header entry `{key}`: {e}")))?;
            let dtype = StoredDtype::parse(&info.dtype).ok_or(info.dtype.clone());
            let (s, e) = info.data_offsets;
            // Checked arithmetic: a hostile header (`[2^55, 128]`) must not wrap around.
            let numel: Option<u64> = info.shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
            let size = dtype.as_ref().map(|d| d.size() as u64).unwrap_or(0);
            let bytes = numel.and_then(|n| n.checked_mul(size));
            let end = data_start.checked_add(e);
            if e < s || end.is_none_or(|end| end > file_len) || (size > 0 && bytes != Some(e - s)) {
                return Err(malformed(
                    path,
                    format!(
                        "tensor `{key}`: data_offsets [{s}, {e}] do not match shape {:?} or the file size",
                        info.shape
                    ),
                ));
            }
            if let Some(old) = self.entries.get(&key) {
                return Err(malformed(
                    path,
                    format!("tensor `{key}` is also stored in {}", self.files[old.file].display()),
                ));
            }
            self.entries
                .insert(key, Entry { file: file_index, dtype, shape: info.shape, start: data_start + s, len: e - s });
        }
        if let Some(expected) = expected {
            for key in expected {
                match self.entries.get(*key) {
                    Some(entry) if entry.file == file_index => {}
                    _ => {
                        return Err(Error::MissingTensor { key: key.to_string(), path: path.to_path_buf() });
                    }
                }
            }
        }
        Ok(())
    }

    /// The folder or file this reader was opened on.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// All tensor names, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Whether the checkpoint has this tensor.
    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// Shape of a tensor, if present.
    pub fn shape(&self, key: &str) -> Option<&[usize]> {
        self.entries.get(key).map(|e| e.shape.as_slice())
    }

    /// Stored dtype of a tensor, if present and supported.
    pub fn dtype(&self, key: &str) -> Option<StoredDtype> {
        self.entries.get(key).and_then(|e| e.dtype.clone().ok())
    }

    fn entry(&self, key: &str) -> Result<&Entry> {
        self.entries.get(key).ok_or_else(|| Error::MissingTensor { key: key.to_string(), path: self.origin.clone() })
    }

    fn read_bytes(&self, entry: &Entry) -> Result<Vec<u8>> {
        let path = &self.files[entry.file];
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        file.seek(SeekFrom::Start(entry.start)).map_err(|e| Error::io(path, e))?;
        let mut bytes = vec![0u8; entry.len as usize];
        file.read_exact(&mut bytes).map_err(|e| Error::io(path, e))?;
        Ok(bytes)
    }

    /// Reads a float tensor, widened to `f32`, after checking its shape.
    pub fn read_f32(&self, key: &str, expected_shape: &[usize]) -> Result<Vec<f32>> {
        let entry = self.entry(key)?;
        if entry.shape != expected_shape {
            return Err(Error::ShapeMismatch {
                key: key.to_string(),
                expected: expected_shape.to_vec(),
                found: entry.shape.clone(),
            });
        }
        self.read_f32_any(key).map(|(v, _)| v)
    }

    /// [`SafetensorsReader::read_f32`], refusing NaN and infinities ([`Error::NonFinite`]
    /// names the tensor, the file and the first bad element).
    pub fn read_f32_finite(&self, key: &str, expected_shape: &[usize]) -> Result<Vec<f32>> {
        let v = self.read_f32(key, expected_shape)?;
        if let Some((index, &value)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            let path = self.entry(key).map(|e| self.files[e.file].clone()).unwrap_or_default();
            return Err(Error::NonFinite { key: key.to_string(), path, index, value });
        }
        Ok(v)
    }

    /// Reads a float tensor of any shape, widened to `f32`, with its shape.
    pub fn read_f32_any(&self, key: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let entry = self.entry(key)?;
        let dtype = match &entry.dtype {
            Ok(d @ (StoredDtype::F32 | StoredDtype::F16 | StoredDtype::BF16)) => *d,
            Ok(other) => {
                return Err(Error::UnsupportedDtype {
                    key: key.into(),
                    path: self.files[entry.file].clone(),
                    dtype: other.name().into(),
                    expected: "F32, F16 or BF16",
                });
            }
            Err(name) => {
                return Err(Error::UnsupportedDtype {
                    key: key.into(),
                    path: self.files[entry.file].clone(),
                    dtype: name.clone(),
                    expected: "F32, F16 or BF16",
                });
            }
        };
        let bytes = self.read_bytes(entry)?;
        let values = match dtype {
            StoredDtype::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            StoredDtype::BF16 => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32())
                .collect(),
            StoredDtype::F16 => {
                bytes.chunks_exact(2).map(|b| half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()).collect()
            }
            _ => unreachable!("filtered above"),
        };
        Ok((values, entry.shape.clone()))
    }

    /// Reads an integer tensor (I64, I32 or U8/BOOL) as `i64`, with its shape.
    pub fn read_i64_any(&self, key: &str) -> Result<(Vec<i64>, Vec<usize>)> {
        let entry = self.entry(key)?;
        let bytes = self.read_bytes(entry)?;
        let values = match &entry.dtype {
            Ok(StoredDtype::I64) => {
                bytes.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8]))).collect()
            }
            Ok(StoredDtype::I32) => {
                bytes.chunks_exact(4).map(|b| i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))).collect()
            }
            Ok(StoredDtype::U8 | StoredDtype::Bool) => bytes.iter().map(|&b| i64::from(b)).collect(),
            Ok(other) => {
                return Err(Error::UnsupportedDtype {
                    key: key.into(),
                    path: self.files[entry.file].clone(),
                    dtype: other.name().into(),
                    expected: "an integer dtype (I64, I32, U8 or BOOL)",
                });
            }
            Err(name) => {
                return Err(Error::UnsupportedDtype {
                    key: key.into(),
                    path: self.files[entry.file].clone(),
                    dtype: name.clone(),
                    expected: "an integer dtype (I64, I32, U8 or BOOL)",
                });
            }
        };
        Ok((values, entry.shape.clone()))
    }
}

/// One tensor to write: name, dtype, shape and little-endian bytes.
#[derive(Debug, Clone)]
pub struct OwnedTensor {
    /// Tensor name in the file.
    pub name: String,
    /// Stored dtype.
    pub dtype: StoredDtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// Raw little-endian data.
    pub data: Vec<u8>,
}

impl OwnedTensor {
    /// An `f32` tensor stored as `dtype` (F32, F16 or BF16; narrowing rounds to nearest even).
    pub fn from_f32(name: impl Into<String>, values: &[f32], shape: Vec<usize>, dtype: StoredDtype) -> Self {
        let data = match dtype {
            StoredDtype::F16 => values.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect(),
            StoredDtype::BF16 => values.iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect(),
            _ => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        };
        let dtype = match dtype {
            StoredDtype::F16 | StoredDtype::BF16 => dtype,
            _ => StoredDtype::F32,
        };
        OwnedTensor { name: name.into(), dtype, shape, data }
    }

    /// An `i64` tensor.
    pub fn from_i64(name: impl Into<String>, values: &[i64], shape: Vec<usize>) -> Self {
        OwnedTensor {
            name: name.into(),
            dtype: StoredDtype::I64,
            shape,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

/// Writes tensors to a safetensors file atomically (temporary file, then rename).
pub fn write_safetensors(
    path: impl AsRef<Path>,
    tensors: &[OwnedTensor],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let path = path.as_ref();
    let views = tensors
        .iter()
        .map(|t| {
            safetensors::tensor::TensorView::new(t.dtype.to_safetensors(), t.shape.clone(), &t.data)
                .map(|v| (t.name.clone(), v))
                .map_err(|e| malformed(path, format!("tensor `{}`: {e}", t.name)))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes =
        safetensors::serialize(views, metadata).map_err(|e| malformed(path, format!("serialisation failed: {e}")))?;
    write_atomic(path, &bytes)
}

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
        f.write_all(bytes)?;
        f.sync_all()?;
        rename(&tmp, path)?;
        sync_dir(&dir);
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
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
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
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
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    if dir.exists() && !dir.is_dir() {
        let _ = std::fs::remove_dir_all(tmp);
        return Err(Error::io(
            dir,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists and is not a folder; refusing to replace it (choose another output path)",
            ),
        ));
    }
    if dir.is_dir() && !looks_written_by_resa(dir) {
        let _ = std::fs::remove_dir_all(tmp);
        return Err(Error::io(
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
        rename(dir, &old).map_err(|e| Error::io(dir, e))?;
        rename(tmp, dir).map_err(|e| Error::io(dir, e))?;
        sync_dir(parent);
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    } else {
        rename(tmp, dir).map_err(|e| Error::io(dir, e))?;
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
        result.map_err(|e| Error::io(&path, e))?;
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

/// Row-major `[rows, cols]` → `[cols, rows]` (PyTorch's `[out, in]` ↔ this project's `[in, out]`).
pub fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = v[r * cols + c];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_all_float_dtypes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let values = [1.0f32, -2.5, 0.125, 3.0e-3];
        for dtype in [StoredDtype::F32, StoredDtype::F16, StoredDtype::BF16] {
            let path = dir.path().join(format!("{}.safetensors", dtype.name()));
            write_safetensors(&path, &[OwnedTensor::from_f32("x", &values, vec![2, 2], dtype)], None).expect("write");
            let r = SafetensorsReader::open_file(&path).expect("open");
            assert_eq!(r.dtype("x"), Some(dtype));
            let back = r.read_f32("x", &[2, 2]).expect("read");
            for (a, b) in values.iter().zip(&back) {
                assert!((a - b).abs() <= 1e-2 * a.abs(), "{dtype:?}: {a} vs {b}");
            }
            assert!(matches!(r.read_f32("x", &[4]), Err(Error::ShapeMismatch { .. })));
            assert!(matches!(r.read_f32("y", &[4]), Err(Error::MissingTensor { .. })));
        }
    }

    #[test]
    fn truncated_file_is_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.safetensors");
        write_safetensors(&path, &[OwnedTensor::from_f32("x", &[1.0; 16], vec![16], StoredDtype::F32)], None)
            .expect("write");
        let bytes = std::fs::read(&path).expect("read");
        std::fs::write(&path, &bytes[..bytes.len() - 4]).expect("truncate");
        assert!(matches!(SafetensorsReader::open_file(&path), Err(Error::Safetensors { .. })));
        std::fs::write(&path, b"abc").expect("write");
        assert!(matches!(SafetensorsReader::open_file(&path), Err(Error::Safetensors { .. })));
    }
}
