//! The admin API's requests and answers, as types shared by the server
//! ([`crate::server`]) and its command-line client (`switchboard runs`, `trigger`), so the two
//! cannot disagree about a field.

use crate::model::effect::Effect;
use crate::model::{RunRecord, RunStatus, StoredEvent, parse_ms};
use crate::pipeline::backend::RunQuery;
use crate::pipeline::{Ack, RunDetail};
use serde::{Deserialize, Serialize};

/// Filters of `GET /admin/runs` and of bulk replay, as query parameters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunFilter {
    /// Comma-separated statuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// The sender's delivery id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
    /// RFC 3339: runs created at or after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// RFC 3339: runs created before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Only runs with (`true`) or without (`false`) unconfirmed calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unconfirmed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Where the previous page ended (`next` of a [`RunsPage`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Bulk replay only: count, do not replay.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// Why `query` cannot select runs to replay: it asks for a status that is not finished.
pub fn not_replayable(query: &RunQuery) -> Option<String> {
    query.statuses.iter().find(|s| !s.is_terminal()).map(|s| {
        format!(
            "status: only finished runs can be replayed, not {}",
            s.as_str()
        )
    })
}

/// Statuses as a comma-separated list says them.
pub fn parse_statuses(text: &str) -> Result<Vec<RunStatus>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse::<RunStatus>)
        .collect()
}

impl RunFilter {
    /// The backend's query for this filter; the error names the parameter at fault.
    pub fn query(&self) -> Result<RunQuery, String> {
        let time = |param: &str, text: &Option<String>| {
            text.as_deref()
                .map(|t| {
                    parse_ms(t).ok_or_else(|| format!("{param}: '{t}' is not an RFC 3339 time"))
                })
                .transpose()
        };
        Ok(RunQuery {
            statuses: self
                .status
                .as_deref()
                .map(parse_statuses)
                .transpose()
                .map_err(|e| format!("status: {e}"))?
                .unwrap_or_default(),
            plugin: self.plugin.clone(),
            source: self.source.clone(),
            event_id: self.event.clone(),
            delivery_id: self.delivery.clone(),
            since_ms: time("since", &self.since)?,
            until_ms: time("until", &self.until)?,
            unconfirmed: self.unconfirmed,
            limit: self.limit.unwrap_or(100).min(10_000),
            cursor: self.cursor.clone(),
        })
    }
}

/// `GET /admin/runs`: runs, newest first, without their logs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunsPage {
    pub runs: Vec<RunRecord>,
    /// The cursor of the next (older) page, if there may be one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// `GET /admin/runs/{id}`: a run with its logs, its event and its effect journal (the calls,
/// without the vendors' answers).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunView {
    pub run: RunDetail,
    pub event: Option<StoredEvent>,
    pub effects: Vec<Effect>,
}

/// `POST /admin/runs/{id}/replay` parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayParams {
    /// Forget the run's unconfirmed calls first, so the replay sends them again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resend_unconfirmed: bool,
}

/// `POST /admin/runs/{id}/replay`: the run, queued again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Replayed {
    pub run: RunRecord,
}

/// `POST /admin/runs/replay?<filter>`: what a bulk replay found and queued.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BulkReplayed {
    /// Finished runs the filter matched.
    pub matched: usize,
    /// Runs queued again (0 for a dry run).
    pub queued: usize,
    pub runs: Vec<String>,
    pub dry_run: bool,
}

/// `POST /admin/trigger`: a manual event.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerBody {
    /// Only this recipe; default: every recipe subscribed to `source` and `kind`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    #[serde(default = "manual")]
    pub source: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Box<serde_json::value::RawValue>>,
    /// Answer when the runs are finished or deferred (up to 60 s), with their records.
    #[serde(default)]
    pub wait: bool,
}

fn manual() -> String {
    "manual".into()
}

/// The answer to `POST /admin/trigger`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Triggered {
    pub ack: Ack,
    /// With `wait`: whether every run finished (or was deferred) in time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete: Option<bool>,
    #[serde(default)]
    pub runs: Vec<RunRecord>,
}

/// An error answer: `{"error": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_queries_and_name_what_is_wrong() {
        let f = RunFilter {
            status: Some("dead, failed".into()),
            plugin: Some("hello".into()),
            since: Some("2026-12-01T00:00:00Z".into()),
            ..RunFilter::default()
        };
        let q = f.query().unwrap();
        assert_eq!(q.statuses, vec![RunStatus::Dead, RunStatus::Failed]);
        assert_eq!(q.since_ms, Some(1_796_083_200_000));
        assert_eq!(q.limit, 100);
        let bad = RunFilter {
            status: Some("lost".into()),
            ..RunFilter::default()
        };
        assert!(
            bad.query()
                .unwrap_err()
                .starts_with("status: 'lost' is not a run status")
        );
        let bad = RunFilter {
            until: Some("soon".into()),
            ..RunFilter::default()
        };
        assert_eq!(
            bad.query().unwrap_err(),
            "until: 'soon' is not an RFC 3339 time"
        );
    }
}
