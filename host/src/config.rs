//! The host's TOML configuration. Every field is optional; unknown fields are errors, so a
//! typo never silently falls back to a default.
//!
//! ```toml
//! data_dir = ".switchboard"    # sled store and compiled-component cache
//! plugins_dir = "plugins"      # the drop-in folder of recipe components
//!
//! [runtime]
//! deadline = "10s"             # per run, host calls included
//! memory_limit_mib = 64        # per instance
//! max_instances = 128          # instances alive at once
//!
//! [plugins.hello]              # per-recipe overrides, by recipe name
//! deadline = "2s"
//! memory_limit_mib = 16
//!
//! [connections.ghl]            # a vendor connection recipes name as "ghl"
//! vendor = "gohighlevel"
//! secret = { env = "GHL_TOKEN" }           # or { file = "/run/secrets/ghl" }
//! location_id = "ve9EPM428h8vShlRW1KT"
//! base_url = "http://127.0.0.1:8787/gohighlevel"   # optional: the vendor sandbox
//! ```

use crate::runtime::{PluginOverrides, RuntimeOptions};
use crate::vendors::ConnectionConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{}: {field}: {reason}", path.display())]
    Invalid {
        path: PathBuf,
        field: String,
        reason: String,
    },
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub data_dir: Option<PathBuf>,
    pub plugins_dir: Option<PathBuf>,
    #[serde(default)]
    pub runtime: RuntimeSection,
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginSection>,
    /// `[connections.<name>]`: vendor connections recipes may use by name.
    #[serde(default)]
    pub connections: BTreeMap<String, ConnectionConfig>,
}

/// `[runtime]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSection {
    #[serde(default, with = "humantime_serde")]
    pub deadline: Option<Duration>,
    pub memory_limit_mib: Option<u32>,
    pub max_instances: Option<u32>,
}

/// `[plugins.<name>]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSection {
    #[serde(default, with = "humantime_serde")]
    pub deadline: Option<Duration>,
    pub memory_limit_mib: Option<u32>,
}

const MAX_MEMORY_MIB: u32 = 4096;

impl Config {
    /// Read and check a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::parse(path, &text)?;
        // Secret files named relative to the config file are found beside it.
        let base = path.parent().unwrap_or(Path::new(""));
        for c in config.connections.values_mut() {
            if let crate::secrets::SecretSource::File(f) = &mut c.secret
                && f.is_relative()
            {
                *f = base.join(&*f);
            }
        }
        Ok(config)
    }

    /// Parse and check configuration text; `path` only names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let invalid = |field: String, reason: &str| ConfigError::Invalid {
            path: path.to_owned(),
            field,
            reason: reason.to_string(),
        };
        let check = |field: String, deadline: Option<Duration>, mib: Option<u32>| {
            if deadline.is_some_and(|d| d.is_zero()) {
                return Err(invalid(format!("{field}.deadline"), "must be more than 0"));
            }
            if mib.is_some_and(|m| m == 0 || m > MAX_MEMORY_MIB) {
                return Err(invalid(
                    format!("{field}.memory_limit_mib"),
                    "must be between 1 and 4096",
                ));
            }
            Ok(())
        };
        check(
            "runtime".into(),
            config.runtime.deadline,
            config.runtime.memory_limit_mib,
        )?;
        if config.runtime.max_instances == Some(0) {
            return Err(invalid(
                "runtime.max_instances".into(),
                "must be more than 0",
            ));
        }
        for (name, p) in &config.plugins {
            check(format!("plugins.{name}"), p.deadline, p.memory_limit_mib)?;
        }
        Ok(config)
    }

    /// The runtime options this configuration asks for, over the defaults.
    pub fn runtime_options(&self, data_dir: &Path) -> RuntimeOptions {
        let defaults = RuntimeOptions::default();
        let mib = |m: u32| m as usize * 1024 * 1024;
        RuntimeOptions {
            deadline: self.runtime.deadline.unwrap_or(defaults.deadline),
            memory_limit: self
                .runtime
                .memory_limit_mib
                .map(mib)
                .unwrap_or(defaults.memory_limit),
            max_instances: self.runtime.max_instances.unwrap_or(defaults.max_instances),
            cache_dir: Some(data_dir.join("cache")),
            overrides: self
                .plugins
                .iter()
                .map(|(name, p)| {
                    (
                        name.clone(),
                        PluginOverrides {
                            deadline: p.deadline,
                            memory_limit: p.memory_limit_mib.map(mib),
                        },
                    )
                })
                .collect(),
            ..defaults
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_overrides() {
        let c = Config::parse(
            Path::new("t.toml"),
            "[runtime]\ndeadline = \"2s\"\n[plugins.hello]\nmemory_limit_mib = 16\n",
        )
        .unwrap();
        let o = c.runtime_options(Path::new("/d"));
        assert_eq!(o.deadline, Duration::from_secs(2));
        assert_eq!(o.overrides["hello"].memory_limit, Some(16 << 20));
        assert_eq!(o.cache_dir.as_deref(), Some(Path::new("/d/cache")));
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let e = Config::parse(Path::new("t.toml"), "[runtime]\ndeadlin = \"2s\"\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("t.toml: "), "{msg}");
        assert!(msg.contains("deadlin"), "{msg}");
        let e = Config::parse(Path::new("t.toml"), "[plugins.x]\nmemory_limit_mib = 0\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "t.toml: plugins.x.memory_limit_mib: must be between 1 and 4096"
        );
    }
}
