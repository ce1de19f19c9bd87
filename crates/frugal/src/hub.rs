//! Finding a checkpoint: a directory, a repo id already in the local Hugging Face cache, or a repo
//! id downloaded into that cache through hf-hub with a progress bar, as candle's examples do.
//! `HF_HUB_OFFLINE=1` or `--offline` keeps to the cache; `HF_ENDPOINT` names another hub.
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};

/// Whether `HF_HUB_OFFLINE` asks for no network (`1`, `true`, `yes`, `on`), as HF's tools read it.
fn offline_from_env() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

/// The HF hub cache: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
fn cache() -> hf_hub::Cache {
    match std::env::var_os("HF_HUB_CACHE") {
        Some(p) => hf_hub::Cache::new(PathBuf::from(p)),
        None => hf_hub::Cache::from_env(),
    }
}

/// `org/name`, each part plain (letters, digits, `-`, `_`, `.`; not `.` or `..`).
fn repo_parts(repo: &str) -> Option<(&str, &str)> {
    let (org, name) = repo.split_once('/')?;
    let plain = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    (plain(org) && plain(name)).then_some((org, name))
}

/// `model` as a checkpoint directory: the directory itself, the `main` snapshot of a repo id in
/// the local HF cache, or (unless `offline` or `HF_HUB_OFFLINE`) that repo downloaded into the
/// cache first.
/// `needs` names files the caller requires besides config.json and the weights (tokenizer.json).
pub fn resolve_model(model: &str, offline: bool, needs: &[&str]) -> Result<PathBuf> {
    let dir = Path::new(model);
    if dir.is_dir() {
        return Ok(dir.to_path_buf());
    }
    let cache = cache();
    if let Some(snapshot) = cached_snapshot(cache.path(), model)? {
        return Ok(snapshot);
    }
    let looked = format!(
        "--model {model}: no such directory, and no Hugging Face cache entry for it under {} \
         (looked for models--{}/refs/main and its snapshot's config.json)",
        cache.path().display(),
        model.replace('/', "--")
    );
    if repo_parts(model).is_none() {
        bail!("{looked}. Pass a checkpoint directory or a repo id (org/name).");
    }
    if offline || offline_from_env() {
        bail!(
            "{looked}. Offline (HF_HUB_OFFLINE or --offline): nothing is downloaded. Fetch the repo \
             first, e.g. `huggingface-cli download {model}` (the cache follows HF_HUB_CACHE or \
             HF_HOME)."
        );
    }
    download(model, cache, needs)
}

/// Downloads config.json, the weights (one file, or the index and its shards) and `needs` into
/// the cache, each with a progress bar on a terminal; returns the snapshot directory.
fn download(repo: &str, cache: hf_hub::Cache, needs: &[&str]) -> Result<PathBuf> {
    let endpoint =
        std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".to_string());
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_cache_dir(cache.path().clone())
        .with_progress(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .build()
        .map_err(|e| anyhow!("setting up the Hugging Face hub client: {e}"))?;
    let files = api.model(repo.to_string());
    eprintln!(
        "downloading {repo} from {endpoint} into {}",
        cache.path().display()
    );
    let failed = |what: &str, e: hf_hub::api::sync::ApiError| {
        anyhow!(
            "cannot download {what} of {repo} from the Hugging Face hub ({endpoint}): {e}. Pass a \
             checkpoint directory, or set HF_HUB_OFFLINE=1 (or --offline) to use only the local \
             cache."
        )
    };
    let config = files
        .get("config.json")
        .map_err(|e| failed("config.json", e))?;
    let snapshot = config
        .parent()
        .ok_or_else(|| anyhow!("{}: no parent directory", config.display()))?
        .to_path_buf();
    for name in needs {
        files.get(name).map_err(|e| failed(name, e))?;
    }
    // Optional: generation settings (EOS ids).
    let _ = files.get("generation_config.json");
    match files.get("model.safetensors.index.json") {
        Ok(index) => {
            let json = layers::files::read_json(&index)?;
            let map = json
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| anyhow!("{}: no `weight_map` object", index.display()))?;
            let mut shards: Vec<&str> = map.values().filter_map(|v| v.as_str()).collect();
            shards.sort_unstable();
            shards.dedup();
            for shard in shards {
                // The same rule as loading: plain names inside the snapshot only.
                layers::files::join_inside(&snapshot, shard, &index)?;
                files.get(shard).map_err(|e| failed(shard, e))?;
            }
        }
        Err(_) => {
            files
                .get("model.safetensors")
                .map_err(|e| failed("model.safetensors", e))?;
        }
    }
    Ok(snapshot)
}

/// `root/models--{org}--{name}/snapshots/{ref}` for `repo` (`org/name`), where `ref` is the
/// commit `refs/main` names, when that snapshot holds a `config.json`. The ref is read from a
/// regular file and must be one plain name, so a tampered ref cannot lead out of the cache.
fn cached_snapshot(root: &Path, repo: &str) -> Result<Option<PathBuf>> {
    let Some((org, name)) = repo_parts(repo) else {
        return Ok(None);
    };
    let repo_dir = root.join(format!("models--{org}--{name}"));
    let refs = repo_dir.join("refs").join("main");
    if !refs.exists() {
        return Ok(None);
    }
    let commit = layers::files::read_to_string(&refs)?;
    let commit = commit.trim();
    let snapshot = layers::files::join_inside(&repo_dir.join("snapshots"), commit, &refs)?;
    if Path::new(commit).components().count() != 1 {
        return Err(layers::Error::Escapes {
            file: refs,
            entry: commit.to_string(),
        }
        .into());
    }
    Ok(snapshot.join("config.json").exists().then_some(snapshot))
}
