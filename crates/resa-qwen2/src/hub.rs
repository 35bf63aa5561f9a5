//! Finding a model folder: a local path, or (with the `hub` feature) a Hugging Face hub id
//! such as `deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B`, fetched into the standard cache
//! (`HF_HOME`, default `~/.cache/huggingface`). Files already in the cache are used without
//! network access; `HF_HUB_OFFLINE=1` forbids network access altogether.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Files of a model repository this crate reads, besides the weights.
pub const MODEL_FILES: [&str; 3] = ["config.json", "tokenizer.json", "tokenizer_config.json"];

/// Resolves `name` to a local model folder: an existing folder is returned as is; with the
/// `hub` feature anything else is read as a hub id and fetched (or read from the cache);
/// without it, anything else is an error naming `name`.
pub fn resolve_model(name: &str) -> Result<PathBuf> {
    let path = Path::new(name);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    #[cfg(feature = "hub")]
    {
        fetch(name)
    }
    #[cfg(not(feature = "hub"))]
    {
        Err(not_a_folder(name, "no such model folder"))
    }
}

/// The error for a name that is not a local folder, in a build without the `hub` feature.
#[cfg(not(feature = "hub"))]
fn not_a_folder(name: &str, what: &str) -> Error {
    Error::io(
        name,
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{what} (a hub id needs resa built with the `hub` feature)"),
        ),
    )
}

/// Resolves `spec` to a local folder holding `files`: a local folder is returned as is;
/// otherwise `spec` is read as `owner/name/sub/folder` (a hub repository and a folder inside
/// it, e.g. `EleutherAI/sae-DeepSeek-R1-Distill-Qwen-1.5B-65k/layers.12`) or `owner/name`
/// (the repository's top folder), the named files of that folder are fetched into (or read
/// from) the Hugging Face cache (feature `hub`), and the cached folder is returned. Without
/// the `hub` feature anything but a local folder is an error naming `spec`.
pub fn resolve_subfolder(spec: &str, files: &[&str]) -> Result<PathBuf> {
    let path = Path::new(spec);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    #[cfg(feature = "hub")]
    {
        resolve_hub_subfolder(spec, files)
    }
    #[cfg(not(feature = "hub"))]
    {
        let _ = files;
        Err(not_a_folder(spec, "no such folder"))
    }
}

/// [`resolve_subfolder`] for a spec that is not a local folder.
#[cfg(feature = "hub")]
fn resolve_hub_subfolder(spec: &str, files: &[&str]) -> Result<PathBuf> {
    let mut parts = spec.splitn(3, '/');
    let (Some(owner), Some(name)) = (parts.next(), parts.next()) else {
        return Err(Error::io(
            spec,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such folder, and not of the form owner/name[/folder]",
            ),
        ));
    };
    let repo = format!("{owner}/{name}");
    let Some(sub) = parts.next() else {
        return fetch_files(&repo, files);
    };
    let sub = sub.trim_end_matches('/');
    let wanted: Vec<String> = files.iter().map(|f| format!("{sub}/{f}")).collect();
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    fetch_files(&repo, &wanted).map(|root| root.join(sub))
}

#[cfg(feature = "hub")]
fn fetch_files(repo: &str, files: &[&str]) -> Result<PathBuf> {
    let get = hub_getter(repo)?;
    let mut root = None;
    for f in files {
        let p = get(f, true)?.ok_or_else(|| Error::Hub {
            repo: repo.into(),
            file: (*f).into(),
            message: "not found".into(),
        })?;
        // The snapshot folder: the file's path less the file's own components.
        let mut base = p;
        for _ in f.split('/') {
            base.pop();
        }
        root.get_or_insert(base);
    }
    root.ok_or_else(|| Error::Hub { repo: repo.into(), file: String::new(), message: "no files asked for".into() })
}

/// Gets one file of a repository: its cached path, or `None` for a missing optional file.
#[cfg(feature = "hub")]
type Getter<'a> = Box<dyn Fn(&str, bool) -> Result<Option<PathBuf>> + 'a>;

/// A file getter for `repo`: the cache first, then the network unless `HF_HUB_OFFLINE` is set.
#[cfg(feature = "hub")]
fn hub_getter(repo: &str) -> Result<Getter<'_>> {
    use hf_hub::{Cache, Repo, api::sync::ApiBuilder};

    if !repo.contains('/') || repo.split('/').count() != 2 {
        return Err(Error::io(
            repo,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such folder, and not a hub id of the form owner/name",
            ),
        ));
    }
    let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    let cache = Cache::from_env();
    let cached = cache.repo(Repo::model(repo.to_string()));
    let api = if offline {
        None
    } else {
        Some(ApiBuilder::from_cache(cache.clone()).with_progress(false).build().map_err(|e| Error::Hub {
            repo: repo.into(),
            file: String::new(),
            message: e.to_string(),
        })?)
    };
    let get = move |file: &str, required: bool| -> Result<Option<PathBuf>> {
        let found = if let Some(p) = cached.get(file) {
            Some(p)
        } else if let Some(api) = &api {
            match api.model(repo.to_string()).get(file) {
                Ok(p) => Some(p),
                Err(e) if !required => {
                    tracing::debug!(repo, file, error = %e, "optional file not fetched");
                    None
                }
                Err(e) => {
                    return Err(Error::Hub {
                        repo: repo.into(),
                        file: file.into(),
                        message: format!(
                            "{e} (offline? files already in {} are used without network)",
                            cache.path().display()
                        ),
                    });
                }
            }
        } else if required {
            return Err(Error::Hub {
                repo: repo.into(),
                file: file.into(),
                message: format!("not in the cache at {} and HF_HUB_OFFLINE is set", cache.path().display()),
            });
        } else {
            None
        };
        Ok(found)
    };
    Ok(Box::new(get))
}

#[cfg(feature = "hub")]
fn fetch(repo: &str) -> Result<PathBuf> {
    let get = hub_getter(repo)?;
    let config = get("config.json", true)?.ok_or_else(|| Error::Hub {
        repo: repo.into(),
        file: "config.json".into(),
        message: "not found".into(),
    })?;
    for file in &MODEL_FILES[1..] {
        get(file, false)?;
    }
    get("generation_config.json", false)?;
    if let Some(index) = get("model.safetensors.index.json", false)? {
        let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| Error::Json { path: index.clone(), cause: source })?;
        let mut shards: Vec<String> = value
            .get("weight_map")
            .and_then(|m| m.as_object())
            .map(|m| m.values().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        shards.sort();
        shards.dedup();
        for shard in shards {
            get(&shard, true)?;
        }
    } else {
        get("model.safetensors", true)?;
    }
    Ok(config.parent().map(Path::to_path_buf).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_folder_is_used_as_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().to_str().expect("utf8");
        assert_eq!(resolve_model(p).expect("resolves"), dir.path());
    }

    #[test]
    fn missing_folder_is_an_error() {
        assert!(resolve_model("/definitely/not/here").is_err());
    }
}
