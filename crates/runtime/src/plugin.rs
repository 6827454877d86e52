//! A loaded recipe plugin: its compiled component, pre-linked, with its manifest and limits.

use super::bindings::RecipePre;
use super::bindings::types as wit;
use super::state::{Grants, RunState};
use crate::store::KvSpace;
use std::path::{Path, PathBuf};
use std::sync::Arc as KvArc;
use std::sync::Arc;
use std::time::Duration;
use switchboard_model::{Capability, Manifest, Trigger};

/// The version of the WIT package `switchboard:recipes` this host serves.
pub const CONTRACT_VERSION: &str = "0.4.0";

/// The world every recipe must target.
pub const RECIPE_WORLD: &str = "switchboard:recipes/recipe@0.4.0";

/// Why a plugin file was refused. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a WebAssembly file (it does not start with the `\\0asm` magic bytes)", path.display())]
    NotWasm { path: PathBuf },
    #[error(
        "{}: a core WebAssembly module, not a component; build recipes with `cargo build --target wasm32-wasip2`",
        path.display()
    )]
    CoreModule { path: PathBuf },
    #[error("{}: invalid component: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("{}: not a Switchboard recipe (world {RECIPE_WORLD}): {reason}", path.display())]
    WrongWorld { path: PathBuf, reason: String },
    #[error("{}: calling manifest() failed: {reason}", path.display())]
    Manifest { path: PathBuf, reason: String },
    #[error("{}: invalid manifest: {field}: {reason}", path.display())]
    BadManifest {
        path: PathBuf,
        field: String,
        reason: String,
    },
    #[error("{}: connections of recipe '{name}' (config [plugins.{name}] connections): {reason}", path.display())]
    Connections {
        path: PathBuf,
        name: String,
        reason: String,
    },
    #[error("{}: settings of recipe '{name}' (config [plugins.{name}.settings]): {reason}", path.display())]
    Settings {
        path: PathBuf,
        name: String,
        reason: String,
    },
    #[error("{}: a recipe named '{name}' is already loaded from {}", path.display(), other.display())]
    Duplicate {
        path: PathBuf,
        name: String,
        other: PathBuf,
    },
    #[error("{}: {source}", path.display())]
    Store {
        path: PathBuf,
        #[source]
        source: crate::store::StoreFailure,
    },
}

/// The limits one plugin runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginLimits {
    /// Wall-clock budget of one run, host calls included.
    pub deadline: Duration,
    /// Largest linear memory, in bytes.
    pub memory_limit: usize,
    /// What its kv may hold.
    pub kv_quota: switchboard_model::kv::KvQuota,
}

/// A recipe ready to run: compile once, instantiate per event.
pub struct Plugin {
    pub name: Arc<str>,
    pub manifest: Manifest,
    pub path: PathBuf,
    /// SHA-256 of the component's bytes.
    pub hash: String,
    pub limits: PluginLimits,
    /// The component's imports, as WIT names (e.g. `switchboard:recipes/kv@0.4.0`).
    pub imports: Vec<String>,
    pub(crate) grants: Arc<Grants>,
    pub(crate) kv: Option<KvArc<dyn KvSpace>>,
    /// The settings from the config, checked by the recipe at load.
    pub(crate) settings: Arc<str>,
    pub(crate) pre: RecipePre<RunState>,
}

impl Plugin {
    /// What the recipe's kv space holds, if it uses kv.
    pub fn kv_usage(&self) -> Option<switchboard_model::kv::KvUsage> {
        self.kv.as_ref().map(|kv| kv.usage())
    }
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("hash", &self.hash)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Classify a file by its header before handing it to the compiler.
pub(crate) fn check_header(path: &Path, bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(LoadError::NotWasm {
            path: path.to_owned(),
        });
    }
    // Bytes 4..8 are version + layer: a core module has layer 0, a component layer 1.
    if bytes[6..8] == [0, 0] {
        return Err(LoadError::CoreModule {
            path: path.to_owned(),
        });
    }
    Ok(())
}

pub(crate) fn manifest_from_wit(m: wit::Manifest) -> Manifest {
    Manifest {
        name: m.name,
        version: m.version,
        description: m.description,
        triggers: m
            .triggers
            .into_iter()
            .map(|t| match t {
                wit::Trigger::Webhook(w) => Trigger::Webhook {
                    source: w.source,
                    kind: w.kind,
                },
                wit::Trigger::Cron(c) => Trigger::Cron {
                    schedule: c.schedule,
                    timezone: c.timezone,
                },
            })
            .collect(),
        ordering_key: m.ordering_key,
        capabilities: m
            .capabilities
            .into_iter()
            .map(|c| match c {
                wit::Capability::Contacts => Capability::Contacts,
                wit::Capability::Leads => Capability::Leads,
                wit::Capability::Jobs => Capability::Jobs,
                wit::Capability::Messages => Capability::Messages,
                wit::Capability::DataExport => Capability::DataExport,
                wit::Capability::VendorHttp => Capability::VendorHttp,
                wit::Capability::Kv => Capability::Kv,
            })
            .collect(),
        connections: m.connections,
    }
}

/// Whether `s` is a valid recipe or connection name: 1-64 lowercase letters, digits or
/// `-`, not starting with `-`.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
}

/// Check a manifest; the error names the field.
pub(crate) fn validate_manifest(m: &Manifest) -> Result<(), (String, String)> {
    let bad = |field: &str, reason: String| Err((field.to_string(), reason));
    if !valid_name(&m.name) {
        return bad(
            "name",
            format!(
                "'{}' must be 1-64 lowercase letters, digits or '-', not starting with '-'",
                m.name
            ),
        );
    }
    if m.version.trim().is_empty() {
        return bad("version", "must not be empty".into());
    }
    for (i, t) in m.triggers.iter().enumerate() {
        match t {
            Trigger::Webhook { source, kind } => {
                if source.trim().is_empty() {
                    return bad(&format!("triggers[{i}].source"), "must not be empty".into());
                }
                if kind.trim().is_empty() {
                    return bad(&format!("triggers[{i}].kind"), "must not be empty".into());
                }
            }
            Trigger::Cron { schedule, timezone } => {
                if let Err(e) =
                    switchboard_model::schedule::Schedule::parse(schedule, timezone.as_deref())
                {
                    return bad(&format!("triggers[{i}].{}", e.field), e.reason);
                }
            }
        }
    }
    for (i, c) in m.connections.iter().enumerate() {
        if !valid_name(c) {
            return bad(
                &format!("connections[{i}]"),
                format!("'{c}' must be 1-64 lowercase letters, digits or '-'"),
            );
        }
    }
    if let Some(pointer) = &m.ordering_key
        && !(pointer.starts_with('/') && pointer.len() > 1)
    {
        return bad(
            "ordering_key",
            format!("'{pointer}' is not a JSON pointer into the payload (e.g. \"/customer/id\")"),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            name: "hello".into(),
            version: "0.1.0".into(),
            description: String::new(),
            triggers: vec![Trigger::Cron {
                schedule: "0 * * * * *".into(),
                timezone: None,
            }],
            capabilities: vec![],
            connections: vec!["ghl".into()],
            ordering_key: None,
        }
    }

    #[test]
    fn manifest_errors_name_the_field() {
        assert!(validate_manifest(&manifest()).is_ok());
        let mut m = manifest();
        m.name = "Hello World".into();
        assert_eq!(validate_manifest(&m).unwrap_err().0, "name");
        let mut m = manifest();
        m.triggers = vec![Trigger::Cron {
            schedule: "* * * * *".into(),
            timezone: None,
        }];
        assert_eq!(validate_manifest(&m).unwrap_err().0, "triggers[0].schedule");
        let mut m = manifest();
        m.triggers = vec![Trigger::Cron {
            schedule: "0 0 9 * * Mon-Fri".into(),
            timezone: Some("Denver".into()),
        }];
        assert_eq!(validate_manifest(&m).unwrap_err().0, "triggers[0].timezone");
        let mut m = manifest();
        m.connections.push(String::new());
        assert_eq!(validate_manifest(&m).unwrap_err().0, "connections[1]");
        let mut m = manifest();
        m.ordering_key = Some("customer.id".into());
        assert_eq!(validate_manifest(&m).unwrap_err().0, "ordering_key");
        m.ordering_key = Some("/customer/id".into());
        assert!(validate_manifest(&m).is_ok());
    }

    #[test]
    fn headers_tell_modules_from_components() {
        let p = Path::new("x.wasm");
        assert!(matches!(
            check_header(p, b"garbage!"),
            Err(LoadError::NotWasm { .. })
        ));
        assert!(matches!(
            check_header(p, b"\0asm\x01\0\0\0"),
            Err(LoadError::CoreModule { .. })
        ));
        assert!(check_header(p, b"\0asm\x0d\0\x01\0").is_ok());
    }
}
