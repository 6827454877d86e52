//! Events in, outcomes out.

use crate::bindings::switchboard::recipes::types as wit;
use crate::{Error, Result};
use serde::de::DeserializeOwned;

/// Something that happened: a webhook delivery, a cron tick, a manual trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Unique per event; stable across retries and replays, so it is a good dedup key.
    pub id: String,
    /// Where it came from: `housecallpro`, `gohighlevel`, a generic source's name, or `cron`.
    pub source: String,
    /// What happened, e.g. `customer.updated`.
    pub kind: String,
    /// When, as RFC 3339.
    pub time: String,
    payload: String,
}

impl Event {
    /// A new event; recipes receive them from the host, tests build their own.
    pub fn new(
        id: impl Into<String>,
        source: impl Into<String>,
        kind: impl Into<String>,
        payload: &serde_json::Value,
    ) -> Self {
        Event {
            id: id.into(),
            source: source.into(),
            kind: kind.into(),
            time: String::new(),
            payload: payload.to_string(),
        }
    }

    /// The payload parsed into your own type. A mismatch is an [`Error::Invalid`] naming
    /// the payload and serde's reason.
    ///
    /// ```no_run
    /// # use switchboard_sdk::prelude::*;
    /// #[derive(serde::Deserialize)]
    /// struct Customer { id: String, email: Option<String> }
    /// #[derive(serde::Deserialize)]
    /// struct Hook { customer: Customer }
    ///
    /// # fn f(event: Event) -> Result<()> {
    /// let hook: Hook = event.payload()?;
    /// # let _ = hook.customer.id; Ok(()) }
    /// ```
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_str(&self.payload).map_err(|e| Error::invalid("payload", e.to_string()))
    }

    /// The payload as a JSON value.
    pub fn json(&self) -> Result<serde_json::Value> {
        self.payload()
    }

    /// The payload's JSON text, as delivered.
    pub fn raw_payload(&self) -> &str {
        &self.payload
    }
}

impl From<wit::Event> for Event {
    fn from(e: wit::Event) -> Self {
        Event {
            id: e.id,
            source: e.source,
            kind: e.kind,
            time: e.time,
            payload: e.payload,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The recipe acted; the text says what it did.
    Done(String),
    /// The recipe chose not to act; the text says why.
    Skipped(String),
    /// Not now: the host holds the run and runs this event again at `until`, without
    /// counting an attempt, across restarts (quiet hours, a daily quota). Nothing is dropped.
    Deferred {
        /// When to run again, RFC 3339 (e.g. from [`clock::next`](crate::clock::next)).
        until: String,
        /// Why, for the run's record.
        reason: String,
    },
}

impl Outcome {
    /// The recipe acted.
    pub fn done(summary: impl Into<String>) -> Self {
        Outcome::Done(summary.into())
    }

    /// The recipe chose not to act.
    pub fn skipped(reason: impl Into<String>) -> Self {
        Outcome::Skipped(reason.into())
    }

    /// Run this event again at `until` (RFC 3339), for `reason`.
    pub fn deferred(until: impl Into<String>, reason: impl Into<String>) -> Self {
        Outcome::Deferred {
            until: until.into(),
            reason: reason.into(),
        }
    }
}

impl From<Outcome> for wit::Outcome {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Done(s) => wit::Outcome::Done(s),
            Outcome::Skipped(s) => wit::Outcome::Skipped(s),
            Outcome::Deferred { until, reason } => {
                wit::Outcome::Deferred(wit::Deferral { until, reason })
            }
        }
    }
}
