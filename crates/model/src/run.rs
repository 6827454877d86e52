//! Runs: one recipe on one event, across its attempts, as every layer records and shows it.

use crate::{Event, Outcome, RecipeError, bound_text, run_id};
use serde::{Deserialize, Serialize};

/// A host call that may have changed a vendor, whose outcome the run does not know: the
/// request may have gone out, and its answer never came back. Shown on the run's record for
/// an operator to check by hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unconfirmed {
    /// The call's place among the run's journaled calls, in this attempt.
    pub position: u32,
    /// E.g. `messages.send`.
    pub call: String,
    pub connection: String,
    pub reason: String,
}

/// A log level, as recipes and the host use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// One line of a run's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    pub level: Level,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<(String, String)>,
}

/// Why a run did not produce an outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RunError {
    /// The recipe returned an error.
    #[error("recipe error: {error}")]
    Recipe { error: RecipeError },
    /// The run passed its deadline (in guest code or in a host call).
    #[error("timeout: the run passed its {deadline_ms} ms deadline")]
    Timeout { deadline_ms: u64 },
    /// The guest grew its memory past its cap.
    #[error(
        "memory limit exceeded: the recipe asked for {requested_bytes} bytes; its cap is {limit_bytes} bytes"
    )]
    MemoryLimit {
        limit_bytes: usize,
        requested_bytes: usize,
    },
    /// The guest trapped (a panic, `unreachable`, an out-of-bounds access, ...).
    #[error("trap: {message}{}", panic.as_ref().map(|p| format!(" ({p})")).unwrap_or_default())]
    Trap {
        message: String,
        /// The Rust panic message the guest printed, when there is one.
        panic: Option<String>,
    },
    /// The instance could not be created (e.g. every pooled slot is busy).
    #[error("could not instantiate: {message}")]
    Instantiate { message: String },
    /// No plugin of that name is loaded (it was removed, or never loaded).
    #[error("no recipe named '{recipe}' is loaded")]
    NotLoaded { recipe: String },
    /// The host itself failed during the run (a bug): the run ends, the host goes on.
    #[error("host panic: {message}")]
    HostPanic { message: String },
}

impl RunError {
    /// Whether trying the run again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            RunError::Recipe { error } => error.is_retryable(),
            RunError::Timeout { .. } | RunError::Instantiate { .. } => true,
            RunError::MemoryLimit { .. }
            | RunError::Trap { .. }
            | RunError::NotLoaded { .. }
            | RunError::HostPanic { .. } => false,
        }
    }

    /// Cut every text in the error to `limit` bytes.
    pub fn bound(&mut self, limit: usize) {
        match self {
            RunError::Recipe { error } => error.bound(limit),
            RunError::Trap { message, panic } => {
                bound_text(message, limit);
                if let Some(p) = panic {
                    bound_text(p, limit);
                }
            }
            RunError::Instantiate { message } | RunError::HostPanic { message } => {
                bound_text(message, limit)
            }
            RunError::Timeout { .. }
            | RunError::MemoryLimit { .. }
            | RunError::NotLoaded { .. } => {}
        }
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Queued,
    Running,
    Succeeded,
    /// Failed with an error that retrying cannot fix; replayable.
    Failed,
    /// Failed with retryable errors on every allowed attempt; replayable.
    Dead,
}

impl RunStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Dead
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Dead => "dead",
        }
    }
}

impl std::str::FromStr for RunStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "queued" => RunStatus::Queued,
            "running" => RunStatus::Running,
            "succeeded" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            "dead" => RunStatus::Dead,
            other => {
                return Err(format!(
                    "'{other}' is not a run status (queued, running, succeeded, failed, dead)"
                ));
            }
        })
    }
}

/// An accepted event, as kept in the inbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredEvent {
    pub event: Event,
    /// The sender's id for this delivery (dedup key), when it has one.
    pub delivery_id: String,
    pub received_at: String,
    /// `received_at` in Unix milliseconds.
    #[serde(default)]
    pub received_ms: i64,
    /// The dedup window the delivery was accepted under, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_ms: Option<i64>,
}

/// A seen delivery: which event it became, and when.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliveryMark {
    pub event_id: String,
    pub at_ms: i64,
}

/// One run of one plugin on one event, across its attempts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub event_id: String,
    pub plugin: String,
    pub source: String,
    pub kind: String,
    pub status: RunStatus,
    pub attempts: u32,
    #[serde(default)]
    pub replays: u32,
    /// How often the recipe deferred this run (deferrals are not attempts).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub deferrals: u32,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
    /// The version of the recipe that ran the last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
    /// The error, as a sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Calls of the last attempt that may have changed a vendor and whose outcome is
    /// unknown: to be checked by hand (the host never sends them again by itself).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unconfirmed: Vec<Unconfirmed>,
    /// Log lines of the last attempt dropped past the run's log limits. (The lines kept are
    /// stored apart from the record, so lists of runs never carry them.)
    #[serde(default, skip_serializing_if = "is_zero")]
    pub logs_dropped: usize,
    /// Runs of this recipe with the same key run one at a time, in acceptance order (the
    /// recipe's ordering key, read from the event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_key: Option<String>,
    /// While running: the host holding it, and until when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    /// While queued behind an earlier run with the same ordering key: that run (shown, not
    /// stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    /// The trace (W3C trace id, hex) of the last attempt, when the host exports traces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// A host's hold on a running run, until it expires; each claim gets a new fencing token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub run: String,
    pub token: u64,
    pub holder: String,
    pub expires_ms: i64,
}

fn is_zero<T: Default + PartialEq>(n: &T) -> bool {
    *n == T::default()
}

impl RunRecord {
    /// A queued run of `plugin` on `event`.
    pub fn queued(event: &Event, plugin: &str, now: &str) -> Self {
        RunRecord {
            id: run_id(&event.id, plugin),
            event_id: event.id.clone(),
            plugin: plugin.to_string(),
            source: event.source.clone(),
            kind: event.kind.clone(),
            status: RunStatus::Queued,
            attempts: 0,
            replays: 0,
            deferrals: 0,
            created_at: now.to_string(),
            updated_at: now.to_string(),
            next_attempt_at: None,
            started_at: None,
            finished_at: None,
            duration_us: None,
            plugin_version: None,
            outcome: None,
            error: None,
            reason: None,
            unconfirmed: Vec::new(),
            logs_dropped: 0,
            order_key: None,
            lease: None,
            waiting_for: None,
            trace_id: None,
        }
    }
}

impl RunRecord {
    /// Held by its recipe until a later time (queued, outcome deferred).
    pub fn is_deferred(&self) -> bool {
        self.status == RunStatus::Queued && matches!(self.outcome, Some(Outcome::Deferred { .. }))
    }
}

/// One attempt of a run as it ended: a run's timeline is a list of these, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// The attempt's number (counted again from 1 after a replay).
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    pub finished_at: String,
    /// `succeeded`, `deferred`, `retry`, `failed` or `dead`.
    pub outcome: String,
    /// The error, as a sentence, when it ended with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
    /// The version of the recipe that ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The requests the attempt sent to vendors, in order (at most [`MAX_VENDOR_CALLS`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<VendorCall>,
    /// Requests past [`MAX_VENDOR_CALLS`], not listed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub calls_dropped: u32,
}

/// Vendor requests an attempt keeps in its timeline entry; the rest are counted.
pub const MAX_VENDOR_CALLS: usize = 50;

/// One request an attempt sent to a vendor (each retry is one): what for, and how it went.
/// No path, query or body: those can hold personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorCall {
    /// The capability call that sent it, e.g. `contacts.upsert` or `vendor-http.send`.
    pub operation: String,
    /// The host's connection it went through (a recipe's alias resolved).
    pub connection: String,
    pub vendor: String,
    pub method: String,
    /// The vendor's HTTP status; none when no answer came (refused, broken, timed out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why no answer came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// 0 for the first send, 1 for the first retry, …
    pub retry: u32,
    pub duration_ms: u64,
}
