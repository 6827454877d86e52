//! Compiled components cached on disk, keyed by the component's content hash and the
//! engine's compatibility hash (wasmtime version and compilation settings), so a restart
//! does not recompile and an upgrade never loads stale code.

use sha2::{Digest, Sha256};
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
}
