//! The loaded plugins, kept in step with the plugins folder (hot reload).
//!
//! The folder is polled: a new or changed `*.wasm` is loaded once its size and mtime have
//! held still for one poll (so a file still being written is not read half-done), then
//! swapped in; runs already going keep the `Arc` of the version they started with. A file
//! that fails to load leaves the previous version serving and its error on record. A
//! removed file unloads its plugin. Polling needs no platform notification API and sees
//! every change on any filesystem, for one `stat` per file per interval.

use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use switchboard_runtime::plugin::LoadError;
use switchboard_runtime::{Plugins, Runtime};
use tokio::sync::watch;

/// What the folder last showed of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    meta.is_file().then(|| Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

#[derive(Debug, Clone)]
struct FileState {
    /// The stamp of the version loaded (or refused).
    stamp: Stamp,
    /// The plugin this file provides, when it loaded.
    plugin: Option<String>,
    /// Refused because another file had its recipe's name: tried again when a plugin goes.
    duplicate: bool,
}

/// A plugin as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PluginStatus {
    pub name: String,
    pub version: String,
    pub path: PathBuf,
    pub hash: String,
    pub loaded_at: String,
    pub manifest: switchboard_model::Manifest,
}

/// The plugins folder, loaded.
pub struct Registry {
    runtime: Arc<Runtime>,
    dir: PathBuf,
    plugins: RwLock<Arc<Plugins>>,
    loaded_at: Mutex<BTreeMap<String, String>>,
    files: Mutex<BTreeMap<PathBuf, FileState>>,
    /// Changed files waiting to hold still, with the stamp seen last poll.
    settling: Mutex<BTreeMap<PathBuf, Stamp>>,
    errors: RwLock<BTreeMap<PathBuf, String>>,
    version: watch::Sender<u64>,
}

impl Registry {
    /// Load every plugin in `dir` now.
    pub async fn open(runtime: Arc<Runtime>, dir: PathBuf) -> Arc<Self> {
        let registry = Arc::new(Registry {
            runtime,
            dir,
            plugins: RwLock::new(Arc::new(Plugins::default())),
            loaded_at: Mutex::new(BTreeMap::new()),
            files: Mutex::new(BTreeMap::new()),
            settling: Mutex::new(BTreeMap::new()),
            errors: RwLock::new(BTreeMap::new()),
            version: watch::channel(0).0,
        });
        registry.scan(false).await;
        registry
    }

    /// The plugins loaded now.
    pub fn current(&self) -> Arc<Plugins> {
        self.plugins.read().unwrap().clone()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Files that failed to load, with why.
    pub fn errors(&self) -> BTreeMap<PathBuf, String> {
        self.errors.read().unwrap().clone()
    }

    /// The loaded plugins, for the admin API.
    pub fn statuses(&self) -> Vec<PluginStatus> {
        let loaded_at = self.loaded_at.lock().unwrap();
        self.current()
            .iter()
            .map(|p| PluginStatus {
                name: p.name.to_string(),
                version: p.manifest.version.clone(),
                path: p.path.clone(),
                hash: p.hash.clone(),
                loaded_at: loaded_at.get(&*p.name).cloned().unwrap_or_default(),
                manifest: p.manifest.clone(),
            })
            .collect()
    }

    /// Changes whenever the set of plugins changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Poll the folder every `interval` until `stop` turns true.
    pub fn watch(self: &Arc<Self>, interval: Duration, mut stop: watch::Receiver<bool>) {
        let registry = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(interval) => registry.scan(true).await,
                    _ = stop.changed() => break,
                }
            }
        });
    }

    /// Look at the folder once. With `settle`, a changed file is loaded only once it has
    /// held still since the previous scan.
    pub async fn scan(&self, settle: bool) {
        let mut seen = BTreeMap::new();
        match std::fs::read_dir(&self.dir) {
            Ok(entries) => {
                for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
                    if path.extension().is_some_and(|e| e == "wasm")
                        && let Some(s) = stamp(&path)
                    {
                        seen.insert(path, s);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), "cannot read the plugins folder: {e}");
                return;
            }
        }
        let known = self.files.lock().unwrap().clone();
        let mut changed = false;
        let mut unloaded = false;
        for (path, state) in &known {
            if !seen.contains_key(path) {
                self.files.lock().unwrap().remove(path);
                self.errors.write().unwrap().remove(path);
                if let Some(name) = &state.plugin {
                    self.swap(|p| {
                        if p.get(name).is_some_and(|p| &p.path == path) {
                            p.remove(name);
                        }
                    });
                    tracing::info!(plugin = %name, path = %path.display(), "plugin file removed; unloaded");
                    changed = true;
                    unloaded = true;
                }
            }
        }
        for (path, s) in seen {
            // Unchanged files stay as they are, except one refused for a name that a
            // file removed just now held (a new version dropped in before the old left).
            let retry = known
                .get(&path)
                .is_some_and(|k| k.stamp == s && k.duplicate && unloaded);
            if known.get(&path).is_some_and(|k| k.stamp == s) && !retry {
                continue;
            }
            if settle && !retry {
                let mut settling = self.settling.lock().unwrap();
                if settling.get(&path) != Some(&s) {
                    settling.insert(path, s);
                    continue;
                }
                settling.remove(&path);
            }
            changed |= self.load(&path, s, known.get(&path)).await;
        }
        if changed {
            let current = self.current();
            self.runtime
                .prune_cache(current.iter().map(|p| p.hash.as_str()));
            self.version.send_modify(|v| *v += 1);
        }
    }

    /// Load one file; returns whether the set of plugins changed.
    async fn load(&self, path: &Path, s: Stamp, previous: Option<&FileState>) -> bool {
        let old_name = previous.and_then(|p| p.plugin.clone());
        let plugin = match self.runtime.load(path).await {
            Ok(plugin) => plugin,
            Err(e) => return self.refuse(path, s, old_name, e),
        };
        let name = plugin.name.to_string();
        if let Some(other) = self.current().get(&name)
            && other.path != path
        {
            let e = LoadError::Duplicate {
                path: path.to_owned(),
                name,
                other: other.path.clone(),
            };
            return self.refuse(path, s, old_name, e);
        }
        let version = plugin.manifest.version.clone();
        let plugin = Arc::new(plugin);
        self.swap(|p| {
            if let Some(old) = old_name.as_deref().filter(|o| *o != name) {
                p.remove(old);
            }
            p.upsert(plugin);
        });
        self.loaded_at
            .lock()
            .unwrap()
            .insert(name.clone(), super::rfc3339(super::now_ms()));
        self.errors.write().unwrap().remove(path);
        self.files.lock().unwrap().insert(
            path.to_owned(),
            FileState {
                stamp: s,
                plugin: Some(name.clone()),
                duplicate: false,
            },
        );
        tracing::info!(plugin = %name, %version, path = %path.display(), "plugin loaded");
        true
    }

    /// Record why a file was not loaded; the version it replaced (if any) keeps serving.
    fn refuse(&self, path: &Path, s: Stamp, old_name: Option<String>, e: LoadError) -> bool {
        let duplicate = matches!(e, LoadError::Duplicate { .. });
        let kept = old_name
            .as_deref()
            .map(|n| format!("; the loaded version of '{n}' keeps serving"))
            .unwrap_or_default();
        tracing::error!("plugin refused: {e}{kept}");
        self.errors
            .write()
            .unwrap()
            .insert(path.to_owned(), e.to_string());
        self.files.lock().unwrap().insert(
            path.to_owned(),
            FileState {
                stamp: s,
                plugin: old_name,
                duplicate,
            },
        );
        false
    }

    fn swap(&self, change: impl FnOnce(&mut Plugins)) {
        let mut guard = self.plugins.write().unwrap();
        let mut next = (**guard).clone();
        change(&mut next);
        *guard = Arc::new(next);
    }
}
