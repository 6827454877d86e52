//! The host's own vocabulary: events, manifests, outcomes and errors, free of wasm types.
//!
//! The WIT bindings convert to and from these in [`crate::capabilities`] and
//! [`crate::runtime`]; everything else in the host (vendors, store, CLI) speaks only these.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Something that happened, delivered to recipes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Unique per event; stable across retries and replays.
    pub id: String,
    /// A webhook source (`housecallpro`, `gohighlevel`, ...), `cron` or `cli`.
    pub source: String,
    /// What happened, e.g. `customer.updated`.
    pub kind: String,
    /// RFC 3339.
    pub time: String,
    /// The event's JSON body, as received: handed to recipes without re-serializing.
    pub payload: Box<serde_json::value::RawValue>,
}

impl Event {
    /// An event whose payload is `payload` serialized.
    pub fn new(
        id: impl Into<String>,
        source: impl Into<String>,
        kind: impl Into<String>,
        time: impl Into<String>,
        payload: &serde_json::Value,
    ) -> Self {
        Event {
            id: id.into(),
            source: source.into(),
            kind: kind.into(),
            time: time.into(),
            payload: serde_json::value::to_raw_value(payload)
                .expect("a JSON value always serializes"),
        }
    }
}

/// What a recipe declares about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub description: String,
    pub triggers: Vec<Trigger>,
    pub capabilities: Vec<Capability>,
    pub connections: Vec<String>,
}

/// When a recipe runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Trigger {
    /// Webhook events from `source` whose kind matches `kind` (`*` is a wildcard).
    Webhook { source: String, kind: String },
    /// A six-field cron schedule, in `timezone` (UTC when unset).
    Cron {
        schedule: String,
        timezone: Option<String>,
    },
}

/// A host capability a recipe may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    Contacts,
    Leads,
    Jobs,
    Messages,
    DataExport,
    VendorHttp,
    Kv,
}

impl Capability {
    /// The WIT interface name.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Contacts => "contacts",
            Capability::Leads => "leads",
            Capability::Jobs => "jobs",
            Capability::Messages => "messages",
            Capability::DataExport => "data-export",
            Capability::VendorHttp => "vendor-http",
            Capability::Kv => "kv",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a successful run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", content = "summary", rename_all = "kebab-case")]
pub enum Outcome {
    Done(String),
    Skipped(String),
}

/// The error of the WIT contract: what a capability call or a recipe reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "error", rename_all = "kebab-case")]
pub enum RecipeError {
    #[error("not found: {message}")]
    NotFound { message: String },
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("unauthorized: {message}")]
    Unauthorized { message: String },
    #[error("forbidden: {message}")]
    Forbidden { message: String },
    #[error("rate limited{}", retry_after_ms.map(|ms| format!(", retry after {ms} ms")).unwrap_or_default())]
    RateLimited { retry_after_ms: Option<u64> },
    #[error("unsupported: {message}")]
    Unsupported { message: String },
    #[error("upstream answered {status}: {message}")]
    Upstream { status: u16, message: String },
    #[error("timed out")]
    Timeout,
    #[error("denied: {message}")]
    Denied { message: String },
    #[error("{message}")]
    Other { message: String },
}

impl RecipeError {
    /// Shorthand for [`RecipeError::Invalid`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        RecipeError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Whether trying again later may succeed (rate limits, vendor failures, timeouts).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            RecipeError::RateLimited { .. } | RecipeError::Upstream { .. } | RecipeError::Timeout
        )
    }
}
