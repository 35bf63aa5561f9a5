//! Reading and writing safetensors checkpoints, single-file or sharded.
//!
//! The reader parses only the JSON header up front and reads each tensor's bytes on demand,
//! so a multi-GB checkpoint is never held in memory twice. Every stored float dtype the
//! Hugging Face checkpoints use (F32, F16, BF16) is widened to `f32` here, in one place;
//! BF16 and F16 widen exactly.
//!
//! Writes are published by [`resa_publish::write_atomic`]: a crash never leaves a
//! half-written file under the final name.

use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
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
    Ok(resa_publish::write_atomic(path, &bytes)?)
}

/// Row-major `[rows, cols]` → `[cols, rows]` (PyTorch's `[out, in]` ↔ this project's `[in, out]`),
/// the output's rows in pieces on all threads.
pub fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const TILE: usize = 64;
    let mut out = vec![0.0; v.len()];
    if rows == 0 || cols == 0 {
        return out;
    }
    // Each piece: `TILE` output rows (input columns c0..c0+TILE), filled one input row at a
    // time: `TILE` values read in a run, written to `TILE` output rows that each advance by one.
    out.par_chunks_mut(TILE * rows).enumerate().for_each(|(p, piece)| {
        let c0 = p * TILE;
        let width = piece.len() / rows;
        for r in 0..rows {
            let src = &v[r * cols + c0..r * cols + c0 + width];
            for (j, &x) in src.iter().enumerate() {
                piece[j * rows + r] = x;
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tiled transposition on all threads equals the element-by-element one, at shapes
    /// that are and are not multiples of its tile.
    #[test]
    fn transpose_equals_the_definition() {
        for (rows, cols) in [(1, 1), (3, 200), (130, 70), (64, 128), (257, 1)] {
            let v: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            let t = transpose(&v, rows, cols);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(t[c * rows + r], v[r * cols + c], "{rows}×{cols} at ({r}, {c})");
                }
            }
        }
    }

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
