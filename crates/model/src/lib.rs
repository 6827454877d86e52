//! Switchboard's own vocabulary: events, manifests, outcomes and errors, runs and their
//! records, schedules, the effect journal's and kv's types. No I/O and no wasm types: the
//! runtime converts WIT records to and from these, and every other layer (vendors, the
//! pipeline and its backends, the binary) speaks only these.

pub mod backoff;
pub mod effect;
pub mod kv;
pub mod run;
pub mod schedule;

pub use run::{
    AttemptRecord, DeliveryMark, Lease, Level, LogLine, RunError, RunRecord, RunStatus,
    StoredEvent, Unconfirmed, VendorCall,
};

use serde::{Deserialize, Serialize};
use std::fmt;

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// RFC 3339 in UTC with milliseconds: every timestamp the host writes has this one shape, so
/// they sort as strings.
pub fn rfc3339(ms: i64) -> String {
    // Years outside 0000..=9999 have no four-digit form: those fall back to the epoch.
    chrono::DateTime::from_timestamp_millis(ms)
        .filter(|t| (0..=9999).contains(&chrono::Datelike::year(t)))
        .unwrap_or(chrono::DateTime::UNIX_EPOCH)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Unix milliseconds of an RFC 3339 time.
pub fn parse_ms(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Cut `text` to at most `limit` bytes (on a character boundary), marking the cut.
pub fn bound_text(text: &mut String, limit: usize) {
    if text.len() <= limit {
        return;
    }
    let total = text.len();
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(&format!(" [... cut: {end} of {total} bytes kept]"));
}

/// The id of the run of `recipe` on the event `event_id`: one run per (event, recipe).
pub fn run_id(event_id: &str, recipe: &str) -> String {
    format!("{event_id}.{recipe}")
}

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
    /// A JSON pointer into events' payloads: runs of this recipe whose events have the same
    /// value there run one at a time, in the order the events were accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering_key: Option<String>,
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
///
/// As JSON: `{"status": "done" | "skipped" | "deferred", "summary": "...", "until": "..."}`
/// (`until` only when deferred).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "OutcomeJson", try_from = "OutcomeJson")]
pub enum Outcome {
    Done(String),
    Skipped(String),
    /// Run the event again at `until` (RFC 3339), for `reason`.
    Deferred {
        until: String,
        reason: String,
    },
}

impl Outcome {
    /// The recipe's summary (a deferral's reason).
    pub fn summary(&self) -> &str {
        match self {
            Outcome::Done(s) | Outcome::Skipped(s) => s,
            Outcome::Deferred { reason, .. } => reason,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Done(s) => write!(f, "done: {s}"),
            Outcome::Skipped(s) => write!(f, "skipped: {s}"),
            Outcome::Deferred { until, reason } => write!(f, "deferred until {until}: {reason}"),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct OutcomeJson {
    status: String,
    summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    until: Option<String>,
}

impl From<Outcome> for OutcomeJson {
    fn from(o: Outcome) -> Self {
        let (status, summary, until) = match o {
            Outcome::Done(s) => ("done", s, None),
            Outcome::Skipped(s) => ("skipped", s, None),
            Outcome::Deferred { until, reason } => ("deferred", reason, Some(until)),
        };
        OutcomeJson {
            status: status.into(),
            summary,
            until,
        }
    }
}

impl TryFrom<OutcomeJson> for Outcome {
    type Error = String;

    fn try_from(j: OutcomeJson) -> Result<Self, String> {
        match (j.status.as_str(), j.until) {
            ("done", _) => Ok(Outcome::Done(j.summary)),
            ("skipped", _) => Ok(Outcome::Skipped(j.summary)),
            ("deferred", Some(until)) => Ok(Outcome::Deferred {
                until,
                reason: j.summary,
            }),
            (other, _) => Err(format!("unknown outcome status '{other}'")),
        }
    }
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
    /// The request may have taken effect; the host will not send it again.
    #[error("unknown outcome: {message}")]
    UnknownOutcome { message: String },
    #[error("quota exceeded: {message}")]
    QuotaExceeded { message: String },
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

    /// Cut every text in the error to `limit` bytes.
    pub fn bound(&mut self, limit: usize) {
        match self {
            RecipeError::NotFound { message }
            | RecipeError::Unauthorized { message }
            | RecipeError::Forbidden { message }
            | RecipeError::Unsupported { message }
            | RecipeError::Upstream { message, .. }
            | RecipeError::Denied { message }
            | RecipeError::UnknownOutcome { message }
            | RecipeError::QuotaExceeded { message }
            | RecipeError::Other { message } => bound_text(message, limit),
            RecipeError::Invalid { field, reason } => {
                bound_text(field, limit);
                bound_text(reason, limit);
            }
            RecipeError::RateLimited { .. } | RecipeError::Timeout => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_sort_as_strings() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_768_435_200_123), "2026-01-15T00:00:00.123Z");
        assert!(rfc3339(999) < rfc3339(1_000));
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(i64::MAX), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(253_402_300_800_000), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn rfc3339_text_parses_with_any_offset() {
        assert_eq!(
            parse_ms("2026-01-15T00:00:00.123Z"),
            Some(1_768_435_200_123)
        );
        assert_eq!(parse_ms("2026-01-15T00:00:00Z"), Some(1_768_435_200_000));
        assert_eq!(
            parse_ms("2026-01-14T17:00:00-07:00"),
            Some(1_768_435_200_000)
        );
        assert_eq!(
            parse_ms("2026-01-15T05:30:00.5+05:30"),
            Some(1_768_435_200_500)
        );
        assert_eq!(parse_ms("2026-01-15t00:00:00z"), Some(1_768_435_200_000));
        assert_eq!(
            parse_ms(&rfc3339(1_768_435_200_123)),
            Some(1_768_435_200_123)
        );
        assert_eq!(parse_ms("2026-01-15T00:00:00"), None);
        assert_eq!(parse_ms("2026-01-15"), None);
        assert_eq!(parse_ms("not a time"), None);
    }

    #[test]
    fn bounded_text_is_cut_on_a_character_boundary_with_a_marker() {
        let mut s = "é".repeat(10);
        bound_text(&mut s, 5);
        assert_eq!(s, "éé [... cut: 4 of 20 bytes kept]");
        let mut short = "ok".to_string();
        bound_text(&mut short, 5);
        assert_eq!(short, "ok");
    }
}

/// What a phone number is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PhoneKind {
    Mobile,
    Home,
    Work,
    Other,
}

/// A phone number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phone {
    pub kind: PhoneKind,
    pub number: String,
}

/// A postal address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub street: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<String>,
}

/// A person or business in a CRM, in the shape every vendor maps to and from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    pub id: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company: Option<String>,
    pub emails: Vec<String>,
    pub phones: Vec<Phone>,
    pub addresses: Vec<Address>,
    pub tags: Vec<String>,
    pub source: Option<String>,
    pub notes: Option<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    /// The vendor's own JSON for this record.
    pub raw: Option<serde_json::Value>,
}

impl Contact {
    /// The first phone of `kind`, or else the first phone.
    pub fn phone(&self, kind: PhoneKind) -> Option<&str> {
        self.phones
            .iter()
            .find(|p| p.kind == kind)
            .or_else(|| self.phones.first())
            .map(|p| p.number.as_str())
    }
}

/// A query over a vendor's records; unset fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    pub text: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub status: Option<String>,
    pub updated_after: Option<String>,
    pub starts_after: Option<String>,
    pub starts_before: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// One page of records and the cursor of the next.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
    pub total: Option<u64>,
}

/// A sales lead.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lead {
    pub id: Option<String>,
    pub contact_id: Option<String>,
    pub contact: Option<Contact>,
    pub status: Option<String>,
    pub source: Option<String>,
    pub external_id: Option<String>,
    pub notes: Option<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub raw: Option<serde_json::Value>,
}

/// Scheduled work: a job, visit or appointment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: Option<String>,
    pub contact_id: Option<String>,
    pub contact: Option<Contact>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub status: Option<String>,
    pub category: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub duration_minutes: Option<u32>,
    pub address: Option<Address>,
    pub raw: Option<serde_json::Value>,
}

/// How a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Sms,
    Mms,
    Email,
}

/// A text or email to a contact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: Option<String>,
    pub channel: Channel,
    pub to: String,
    pub body: Option<String>,
    pub media_url: Option<String>,
    pub status: Option<String>,
    pub sent_at: Option<String>,
    pub raw: Option<serde_json::Value>,
}

/// What to export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportRequest {
    pub table: String,
    pub scope: Option<String>,
    pub updated_after: Option<String>,
    pub page_size: Option<u32>,
    pub snapshot: bool,
}

/// One page of an export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportPage {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub next: Option<String>,
}

/// The full name of a contact, when it has one.
pub fn full_name(c: &Contact) -> Option<String> {
    let name = [c.first_name.as_deref(), c.last_name.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    (!name.is_empty()).then_some(name)
}

/// Whether `s` is an E.164 phone number (`+` and 8 to 15 digits).
pub fn is_e164(s: &str) -> bool {
    s.strip_prefix('+').is_some_and(|d| {
        (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
    })
}
