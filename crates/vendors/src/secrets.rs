//! Secrets: read from the environment or a file named in the config, never printed.
//!
//! [`Secret`] has no `Display`, and its `Debug` prints `[redacted]`, so a secret cannot end
//! up in a log line or an error message by accident. [`Redactor`] scrubs known secret
//! values out of text that came from elsewhere (a vendor's error body, say).

use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// A secret value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into().into())
    }

    /// The value, for the one place that must send it (an auth header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where the config says a secret is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum SecretSource {
    /// An environment variable's name.
    Env(String),
    /// A file whose contents (trimmed) are the secret.
    File(PathBuf),
}

/// Why a secret could not be read. Never contains the secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("environment variable {0} is not set")]
    MissingEnv(String),
    #[error("cannot read secret file {}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    #[error("the secret from {0} is empty")]
    Empty(String),
}

impl SecretSource {
    /// Read the secret.
    pub fn load(&self) -> Result<Secret, SecretError> {
        let (value, origin) = match self {
            SecretSource::Env(name) => (
                std::env::var(name).map_err(|_| SecretError::MissingEnv(name.clone()))?,
                format!("environment variable {name}"),
            ),
            SecretSource::File(path) => (
                std::fs::read_to_string(path).map_err(|e| SecretError::File {
                    path: path.clone(),
                    reason: e.kind().to_string(),
                })?,
                format!("file {}", path.display()),
            ),
        };
        let value = value.trim();
        if value.is_empty() {
            return Err(SecretError::Empty(origin));
        }
        Ok(Secret::new(value))
    }
}

/// Replaces known secret values in text with `[redacted]`.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<Secret>,
}

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = Secret>) -> Self {
        Redactor {
            secrets: secrets
                .into_iter()
                .filter(|s| s.expose().len() >= 4)
                .collect(),
        }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.expose()) {
                out = out.replace(s.expose(), "[redacted]");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), "[redacted]");
        let r = Redactor::new([s]);
        assert_eq!(
            r.redact("bad token hunter2-very-secret!"),
            "bad token [redacted]!"
        );
    }

    #[test]
    fn sources_say_what_is_missing_without_the_value() {
        let e = SecretSource::Env("SWITCHBOARD_TEST_SURELY_UNSET".into())
            .load()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "environment variable SWITCHBOARD_TEST_SURELY_UNSET is not set"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "  s3cret-value\n").unwrap();
        assert_eq!(
            SecretSource::File(path).load().unwrap().expose(),
            "s3cret-value"
        );
    }
}
