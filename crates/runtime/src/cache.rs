//! Compiled components cached on disk, keyed by the component's content hash and the
//! engine's compatibility hash (wasmtime version and compilation settings), so a restart
//! does not recompile and an upgrade never loads stale code.

use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A folder of precompiled components.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: PathBuf,
}

/// The SHA-256 of a component's bytes, in hex.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl ComponentCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ComponentCache { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_for(&self, engine: &Engine, hash: &str) -> PathBuf {
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        self.dir
            .join(format!("{hash}-{:016x}.cwasm", hasher.finish()))
    }

    /// The cached compilation of the component with this content hash, if any.
    pub fn get(&self, engine: &Engine, hash: &str) -> Option<Component> {
        let path = self.path_for(engine, hash);
        if !path.is_file() {
            return None;
        }
        // SAFETY: the cache only ever holds files this host wrote with
        // `Component::serialize` for an engine with the same compatibility hash (it is in
        // the file name); a damaged file fails to deserialize and is recompiled.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unusable cached component");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Store a compiled component; failures only cost a recompile later, so they are logged.
    pub fn put(&self, engine: &Engine, hash: &str, component: &Component) {
        let path = self.path_for(engine, hash);
        let result = (|| -> Result<(), String> {
            std::fs::create_dir_all(&self.dir).map_err(|e| e.to_string())?;
            let bytes = component.serialize().map_err(|e| e.to_string())?;
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, bytes).map_err(|e| e.to_string())?;
            std::fs::rename(&tmp, &path).map_err(|e| e.to_string())
        })();
        if let Err(error) = result {
            tracing::warn!(path = %path.display(), %error, "could not cache compiled component");
        }
    }

    /// Remove every file of the cache but the compilations of `keep` (content hashes) for
    /// `engine`: components no longer loaded, compilations for another engine, and writes
    /// that never finished. Returns how many files went.
    pub fn retain<'a>(&self, engine: &Engine, keep: impl IntoIterator<Item = &'a str>) -> usize {
        let keep: HashSet<PathBuf> = keep
            .into_iter()
            .map(|hash| self.path_for(engine, hash))
            .collect();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut removed = 0;
        for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            let ours = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains(".cwasm") || n.contains(".tmp"));
            if ours && !keep.contains(&path) && std::fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retain_keeps_only_what_is_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ComponentCache::new(dir.path());
        let engine = Engine::default();
        // An empty component (magic, version 0x0d, layer 1): enough to serialize.
        let empty = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
        let component = Component::new(&engine, empty).unwrap();
        for hash in ["aa", "bb", "cc"] {
            cache.put(&engine, hash, &component);
        }
        std::fs::write(dir.path().join("dd-0000000000000000.cwasm"), b"stale").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"not ours").unwrap();
        assert_eq!(cache.retain(&engine, ["bb"]), 3);
        assert!(cache.get(&engine, "bb").is_some());
        assert!(cache.get(&engine, "aa").is_none());
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left.len(), 2, "{left:?}");
        assert_eq!(left[1], "notes.txt");
    }
}
