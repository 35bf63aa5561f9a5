//! Datasets by name: local files and folders, the paper's registry, and Hugging Face hub
//! datasets (feature `hub`; cached, offline-aware).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::reader::{QaRow, ReadOptions, ReadReport, read_qa, read_qa_files};
use crate::registry;

/// Where rows came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A local file.
    File(PathBuf),
    /// The data files of a local folder.
    Folder(Vec<PathBuf>),
    /// A hub dataset's data files in the local cache.
    Hub {
        /// The repository id.
        repo: String,
        /// The cached files read.
        files: Vec<PathBuf>,
    },
}

fn is_data_file(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "parquet" | "jsonl" | "json"))
        && !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.') || n.contains("config"))
}

/// The data files of a split among `files` (relative paths): those whose path names the
/// split (`data/train-00000-of-00001.parquet`, `train.jsonl`), else all data files. Sorted.
pub fn split_files(files: &[String], split: &str) -> Vec<String> {
    let data: Vec<&String> = files.iter().filter(|f| is_data_file(Path::new(f))).collect();
    let named: Vec<&String> =
        data.iter().copied().filter(|f| f.split(['/', '-', '_', '.']).any(|part| part == split)).collect();
    let mut out: Vec<String> = if named.is_empty() { data } else { named }.into_iter().cloned().collect();
    out.sort();
    out
}

/// Where hub datasets are cached and whether the network may be used (feature `hub`).
#[cfg(feature = "hub")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubOptions {
    /// The Hugging Face cache folder (default: `HF_HOME`/`HF_HUB_CACHE` as the hub tools use).
    pub cache_dir: Option<PathBuf>,
    /// Use only the cache (default: `HF_HUB_OFFLINE=1`).
    pub offline: bool,
}

#[cfg(feature = "hub")]
impl Default for HubOptions {
    fn default() -> Self {
        HubOptions {
            cache_dir: None,
            offline: std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true")),
        }
    }
}

/// Reads a dataset named by `spec`: a data file; a folder of data files (the split's, see
/// [`split_files`]); a registry name (`still`, `deepscaler`, …, see [`registry::REGISTRY`],
/// whose field mapping is applied unless `options` overrides the defaults); or a hub id
/// `owner/name`. Registry names and hub ids are fetched with the feature `hub` (the cache
/// and `HF_HUB_OFFLINE` as the hub tools use them; `load_dataset_with` chooses); without
/// it they are an error that says so.
pub fn load_dataset(spec: &str, split: &str, options: &ReadOptions) -> Result<(Vec<QaRow>, ReadReport, Source)> {
    #[cfg(feature = "hub")]
    return load_dataset_with(spec, split, options, &HubOptions::default());
    #[cfg(not(feature = "hub"))]
    return load_from(spec, split, options, |repo, _split| {
        Err(Error::Hub { repo: repo.into(), message: "loading hub datasets needs the `hub` feature".into() })
    });
}

/// [`load_dataset`] with explicit [`HubOptions`] (feature `hub`).
#[cfg(feature = "hub")]
pub fn load_dataset_with(
    spec: &str,
    split: &str,
    options: &ReadOptions,
    hub: &HubOptions,
) -> Result<(Vec<QaRow>, ReadReport, Source)> {
    load_from(spec, split, options, |repo, split| fetch(repo, split, hub))
}

fn load_from(
    spec: &str,
    split: &str,
    options: &ReadOptions,
    fetch: impl FnOnce(&str, &str) -> Result<Vec<PathBuf>>,
) -> Result<(Vec<QaRow>, ReadReport, Source)> {
    let path = Path::new(spec);
    if path.is_file() {
        let (rows, report) = read_qa(path, options)?;
        return Ok((rows, report, Source::File(path.to_path_buf())));
    }
    if path.is_dir() {
        let mut rel = Vec::new();
        walk(path, path, &mut rel).map_err(|cause| Error::Io { path: path.to_path_buf(), cause })?;
        let files: Vec<PathBuf> = split_files(&rel, split).into_iter().map(|f| path.join(f)).collect();
        if files.is_empty() {
            return Err(Error::Empty { path: path.to_path_buf(), reason: "no .parquet, .jsonl or .json files".into() });
        }
        let (rows, report) = read_qa_files(&files, options)?;
        return Ok((rows, report, Source::Folder(files)));
    }
    let (repo, options) = match registry::lookup(spec) {
        Some(entry) => {
            let mut o = options.clone();
            if let Some(k) = entry.problem_key
                && o.problem_keys == ReadOptions::default().problem_keys
            {
                o.problem_keys = vec![k.to_string()];
            }
            if o.answer_keys == ReadOptions::default().answer_keys {
                o.answer_keys = vec![entry.answer_key.to_string()];
            }
            (entry.hub_id.to_string(), o)
        }
        None if spec.split('/').count() == 2 && !spec.starts_with('.') && !spec.starts_with('/') => {
            (spec.to_string(), options.clone())
        }
        None => return Err(Error::UnknownDataset { name: spec.into(), known: registry::names() }),
    };
    let files = fetch(&repo, split)?;
    let (rows, report) = read_qa_files(&files, &options)?;
    Ok((rows, report, Source::Hub { repo, files }))
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let p = entry?.path();
        if p.is_dir() {
            walk(root, &p, out)?;
        } else if let Ok(rel) = p.strip_prefix(root) {
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

/// Lists the repository (the cached snapshot when offline), picks the split's data files
/// and fetches them into the cache.
#[cfg(feature = "hub")]
fn fetch(repo: &str, split: &str, hub: &HubOptions) -> Result<Vec<PathBuf>> {
    use hf_hub::{Cache, Repo, api::sync::ApiBuilder};

    let offline = hub.offline;
    let cache = hub.cache_dir.clone().map_or_else(Cache::from_env, Cache::new);
    let hub_err = |message: String| Error::Hub { repo: repo.into(), message };
    if !offline {
        let api =
            ApiBuilder::from_cache(cache.clone()).with_progress(false).build().map_err(|e| hub_err(e.to_string()))?;
        let handle = api.repo(Repo::dataset(repo.to_string()));
        match handle.info() {
            Ok(info) => {
                let names: Vec<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();
                let wanted = split_files(&names, split);
                if wanted.is_empty() {
                    return Err(hub_err(format!("no .parquet, .jsonl or .json files among {} files", names.len())));
                }
                return wanted
                    .iter()
                    .map(|f| handle.get(f).map_err(|e| hub_err(format!("fetching {f}: {e}"))))
                    .collect();
            }
            Err(e) => tracing::warn!(repo, error = %e, "cannot list the hub dataset; trying the local cache"),
        }
    }
    // Offline (or listing failed): the snapshot `refs/main` points at in the cache.
    let folder = cache.path().join(format!("datasets--{}", repo.replace('/', "--")));
    let rev = std::fs::read_to_string(folder.join("refs/main")).map_err(|_| {
        hub_err(format!(
            "not in the cache at {} and {}",
            cache.path().display(),
            if offline { "HF_HUB_OFFLINE is set" } else { "the hub could not be reached" }
        ))
    })?;
    let snap = folder.join("snapshots").join(rev.trim());
    let mut rel = Vec::new();
    walk(&snap, &snap, &mut rel).map_err(|cause| Error::Io { path: snap.clone(), cause })?;
    let files: Vec<PathBuf> = split_files(&rel, split).into_iter().map(|f| snap.join(f)).collect();
    if files.is_empty() {
        return Err(hub_err(format!("the cached snapshot {} holds no data files", snap.display())));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_files_prefers_the_named_split() {
        let files: Vec<String> = [
            "README.md",
            "data/train-00000-of-00002.parquet",
            "data/train-00001-of-00002.parquet",
            "data/test-00000-of-00001.parquet",
            ".gitattributes",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            split_files(&files, "train"),
            ["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"]
        );
        assert_eq!(split_files(&files, "test"), ["data/test-00000-of-00001.parquet"]);
        let single = vec!["deepscaler.json".to_string(), "README.md".to_string()];
        assert_eq!(split_files(&single, "train"), ["deepscaler.json"]);
    }

    #[test]
    fn unknown_names_list_the_registry() {
        match load_dataset("no-such-set", "train", &ReadOptions::default()) {
            Err(Error::UnknownDataset { name, known }) => {
                assert_eq!(name, "no-such-set");
                assert!(known.contains("still") && known.contains("deepscaler") && known.contains("limr"));
            }
            other => panic!("expected UnknownDataset, got {other:?}"),
        }
    }

    #[test]
    fn registry_resolves_aliases() {
        assert_eq!(registry::lookup("curated_still").map(|e| e.hub_id), Some("RUC-AIBOX/STILL-3-Preview-RL-Data"));
        assert_eq!(registry::lookup("DeepScaleR").map(|e| e.name), Some("deepscaler"));
        assert_eq!(registry::lookup("open_s1").map(|e| e.hub_id), Some("knoveleng/open-s1"));
        assert!(registry::lookup("gsm8k").is_none());
    }
}
