//! Loading plugins: compile (or take from the cache), check the component, read its
//! manifest.

use crate::cache::content_hash;
use crate::execute::{classify, other_contract_version};
use crate::plugin::{LoadError, Plugin, PluginLimits};
use crate::state::{Grants, RunSetup};
use crate::{Plugins, Runtime, bindings, plugin};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
pub use switchboard_model::RunError;
use switchboard_vendors::Connections;
use wasmtime::component::Component;

impl Runtime {
    /// Compile (or take from the cache) on a blocking thread: compiling takes the CPU for
    /// a while, and a server reloading plugins must keep answering meanwhile.
    pub(crate) async fn compile(
        &self,
        path: &Path,
        bytes: Vec<u8>,
        hash: &str,
    ) -> Result<Component, LoadError> {
        let engine = self.engine.clone();
        let cache = self.cache.clone();
        let compilations = self.compilations.clone();
        let (path, hash) = (path.to_owned(), hash.to_owned());
        let task_path = path.clone();
        tokio::task::spawn_blocking(move || {
            let path = task_path;
            if let Some(component) = cache.as_ref().and_then(|c| c.get(&engine, &hash)) {
                tracing::debug!(path = %path.display(), "using cached compilation");
                return Ok(component);
            }
            let started = Instant::now();
            compilations.fetch_add(1, Ordering::Relaxed);
            let component = Component::new(&engine, &bytes).map_err(|e| LoadError::Invalid {
                path: path.clone(),
                reason: format!("{e:#}"),
            })?;
            tracing::info!(path = %path.display(), elapsed = ?started.elapsed(), "compiled component");
            if let Some(cache) = &cache {
                cache.put(&engine, &hash, &component);
            }
            Ok(component)
        })
        .await
        .map_err(|e| LoadError::Invalid {
            path,
            reason: format!("compilation did not finish: {e}"),
        })?
    }

    /// Load, check and pre-link one plugin file, and read its manifest.
    pub async fn load(&self, path: &Path) -> Result<Plugin, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        plugin::check_header(path, &bytes)?;
        let hash = content_hash(&bytes);
        let component = self.compile(path, bytes, &hash).await?;
        let imports: Vec<String> = component
            .component_type()
            .imports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let wrong_world = |e: wasmtime::Error| LoadError::WrongWorld {
            path: path.to_owned(),
            reason: match other_contract_version(&imports) {
                Some(version) => format!(
                    "it was built against switchboard:recipes@{version}, and this host serves @{}: rebuild it with the current switchboard-sdk",
                    plugin::CONTRACT_VERSION
                ),
                None => format!("{e:#}"),
            },
        };
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(wrong_world)?;
        let pre = bindings::RecipePre::new(pre).map_err(wrong_world)?;

        // Ask the recipe for its manifest, with no grants at all.
        let file_name: Arc<str> = path
            .file_stem()
            .map(|s| s.to_string_lossy().into())
            .unwrap_or_else(|| "plugin".into());
        let limits = PluginLimits {
            deadline: self.options.deadline,
            memory_limit: self.options.memory_limit,
            kv_quota: self.options.kv_quota,
        };
        let mut store = self.new_store(
            RunSetup {
                recipe: file_name,
                event_id: "manifest".into(),
                grants: Arc::new(Grants::default()),
                kv: None,
                connections: Arc::new(Connections::default()),
                settings: Arc::from("{}"),
                memory_limit: limits.memory_limit,
                log_limits: self.options.log_limits,
                output_limit: self.options.output_limit,
                deadline_at: Instant::now(),
                effects: None,
            },
            limits.deadline,
        );
        // Then, in the same instance, have it check its settings from the config.
        let settings_for = |name: &str| -> Arc<str> {
            self.options
                .settings
                .get(name)
                .cloned()
                .unwrap_or_else(|| Arc::from("{}"))
        };
        let call = async {
            let recipe = pre.instantiate_async(&mut store).await?;
            let manifest = plugin::manifest_from_wit(recipe.call_manifest(&mut store).await?);
            let settings = settings_for(&manifest.name);
            let checked = recipe.call_check_settings(&mut store, &settings).await?;
            wasmtime::Result::Ok((manifest, settings, checked))
        };
        let (manifest, settings) = match tokio::time::timeout(limits.deadline, call).await {
            Ok(Ok((manifest, settings, Ok(())))) => (manifest, settings),
            Ok(Ok((manifest, _, Err(e)))) => {
                return Err(LoadError::Settings {
                    path: path.to_owned(),
                    name: manifest.name,
                    reason: switchboard_model::RecipeError::from(e).to_string(),
                });
            }
            Ok(Err(e)) => {
                let error = classify(e, limits, &store.data().stderr);
                return Err(LoadError::Manifest {
                    path: path.to_owned(),
                    reason: error.to_string(),
                });
            }
            Err(_) => {
                return Err(LoadError::Manifest {
                    path: path.to_owned(),
                    reason: RunError::Timeout {
                        deadline_ms: limits.deadline.as_millis() as u64,
                    }
                    .to_string(),
                });
            }
        };
        plugin::validate_manifest(&manifest).map_err(|(field, reason)| LoadError::BadManifest {
            path: path.to_owned(),
            field,
            reason,
        })?;
        let uses_kv = manifest
            .capabilities
            .contains(&switchboard_model::Capability::Kv);
        let kv = if uses_kv {
            Some(
                self.store
                    .kv(&manifest.name, self.limits_for(&manifest.name).kv_quota)
                    .map_err(|source| LoadError::Store {
                        path: path.to_owned(),
                        source,
                    })?,
            )
        } else {
            None
        };
        let mut grants = Grants::from_manifest(&manifest);
        if let Some(map) = self.options.connection_maps.get(&manifest.name) {
            if let Some(undeclared) = map.keys().find(|k| !grants.connections.contains(*k)) {
                return Err(LoadError::Connections {
                    path: path.to_owned(),
                    name: manifest.name.clone(),
                    reason: format!(
                        "maps '{undeclared}', which the recipe does not use (it uses: {})",
                        manifest.connections.join(", ")
                    ),
                });
            }
            grants.aliases = map.clone();
        }
        Ok(Plugin {
            name: manifest.name.as_str().into(),
            limits: self.limits_for(&manifest.name),
            grants: Arc::new(grants),
            manifest,
            path: path.to_owned(),
            hash,
            imports,
            kv,
            settings,
            pre,
        })
    }

    /// Load every `*.wasm` in `dir`, sorted by file name. Files that fail are reported
    /// beside the plugins that loaded; one bad file never stops the others.
    pub async fn load_dir(&self, dir: &Path) -> std::io::Result<(Plugins, Vec<LoadError>)> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "wasm") && p.is_file())
            .collect();
        paths.sort();
        let mut plugins = Plugins::default();
        let mut errors = Vec::new();
        for path in paths {
            match self.load(&path).await {
                Ok(p) => {
                    if let Err(e) = plugins.insert(p) {
                        errors.push(e);
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        Ok((plugins, errors))
    }
}
