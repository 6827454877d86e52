//! Runs and events as rows: which columns hold what, and back.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::postgres::PgRow;
use switchboard_model::{
    Event, Lease, Outcome, RunError, RunRecord, RunStatus, StoredEvent, Unconfirmed, parse_ms,
    rfc3339,
};
use switchboard_pipeline::backend::{BackendError, BackendResult, Ms};

/// A run's columns, from a relation aliased `r` with the columns of `runs`; a queued run
/// behind an earlier one of its key names it (`waiting_for`).
pub const RUN: &str = "r.id, r.event_id, r.plugin, r.source, r.kind, r.status, r.order_key, \
     r.attempts, r.replays, r.deferrals, r.created_ms, r.updated_ms, r.next_attempt_ms, \
     r.started_ms, r.due_ms, r.finished_ms, r.lease_token, r.lease_holder, r.detail, \
     CASE WHEN r.status = 'queued' AND r.order_key IS NOT NULL THEN \
       (SELECT o.id FROM runs o WHERE o.plugin = r.plugin AND o.order_key = r.order_key \
          AND o.due_ms IS NOT NULL AND o.seq < r.seq ORDER BY o.seq LIMIT 1) END AS waiting_for";

/// An event's columns, from a relation aliased `e` (all null when it is missing).
pub const EVENT: &str = "e.id AS e_id, e.source AS e_source, e.kind AS e_kind, e.time AS e_time, \
     e.payload AS e_payload, e.delivery_id AS e_delivery, e.received_ms AS e_received, \
     e.window_ms AS e_window";

/// What a run's last attempt left, kept as JSON in `runs.detail`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Detail {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unconfirmed: Vec<Unconfirmed>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub logs_dropped: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Detail {
    /// The detail of `run`, as JSON, or none when there is nothing to keep.
    pub fn of(run: &RunRecord) -> Option<String> {
        let detail = Detail {
            duration_us: run.duration_us,
            plugin_version: run.plugin_version.clone(),
            outcome: run.outcome.clone(),
            error: run.error.clone(),
            reason: run.reason.clone(),
            unconfirmed: run.unconfirmed.clone(),
            logs_dropped: run.logs_dropped,
            trace_id: run.trace_id.clone(),
        };
        let json = serde_json::to_string(&detail).expect("run details serialize");
        (json != "{}").then_some(json)
    }
}

fn corrupt(key: &str, reason: impl ToString) -> BackendError {
    BackendError::Corrupt {
        key: key.to_string(),
        reason: reason.to_string(),
    }
}

/// `text`, JSON kept in a column, read back; `what` names it in the error.
pub fn json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> BackendResult<T> {
    serde_json::from_str(text).map_err(|e| corrupt(what, e))
}

pub fn db(e: sqlx::Error) -> BackendError {
    BackendError::Io(e.to_string())
}

fn get<'r, T>(row: &'r PgRow, column: &str) -> BackendResult<T>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(column)
        .map_err(|e| corrupt(&format!("column {column}"), e))
}

/// A run from a row of [`RUN`].
pub fn run(row: &PgRow) -> BackendResult<RunRecord> {
    let id: String = get(row, "id")?;
    let status: String = get(row, "status")?;
    let status: RunStatus = status
        .parse()
        .map_err(|e: String| corrupt(&format!("run {id}"), e))?;
    let detail: Option<String> = get(row, "detail")?;
    let detail: Detail = match detail {
        Some(text) => json(&format!("run {id}"), &text)?,
        None => Detail::default(),
    };
    let ms =
        |c: &str| -> BackendResult<Option<String>> { Ok(get::<Option<i64>>(row, c)?.map(rfc3339)) };
    let lease = match (status, get::<Option<i64>>(row, "lease_token")?) {
        (RunStatus::Running, Some(token)) => Some(Lease {
            run: id.clone(),
            token: token as u64,
            holder: get::<Option<String>>(row, "lease_holder")?.unwrap_or_default(),
            expires_ms: get::<Option<i64>>(row, "due_ms")?.unwrap_or_default(),
        }),
        _ => None,
    };
    Ok(RunRecord {
        event_id: get(row, "event_id")?,
        plugin: get(row, "plugin")?,
        source: get(row, "source")?,
        kind: get(row, "kind")?,
        status,
        attempts: get::<i32>(row, "attempts")? as u32,
        replays: get::<i32>(row, "replays")? as u32,
        deferrals: get::<i32>(row, "deferrals")? as u32,
        created_at: rfc3339(get(row, "created_ms")?),
        updated_at: rfc3339(get(row, "updated_ms")?),
        next_attempt_at: ms("next_attempt_ms")?,
        started_at: ms("started_ms")?,
        finished_at: ms("finished_ms")?,
        duration_us: detail.duration_us,
        plugin_version: detail.plugin_version,
        outcome: detail.outcome,
        error: detail.error,
        reason: detail.reason,
        unconfirmed: detail.unconfirmed,
        logs_dropped: detail.logs_dropped,
        trace_id: detail.trace_id,
        order_key: get(row, "order_key")?,
        lease,
        waiting_for: get(row, "waiting_for")?,
        id,
    })
}

/// The event of a row of [`EVENT`], if the row has one.
pub fn event(row: &PgRow) -> BackendResult<Option<StoredEvent>> {
    let Some(id) = get::<Option<String>>(row, "e_id")? else {
        return Ok(None);
    };
    let payload: String = get(row, "e_payload")?;
    let payload = serde_json::value::RawValue::from_string(payload)
        .map_err(|e| corrupt(&format!("event {id}"), e))?;
    let received_ms: i64 = get(row, "e_received")?;
    Ok(Some(StoredEvent {
        event: Event {
            source: get(row, "e_source")?,
            kind: get(row, "e_kind")?,
            time: get(row, "e_time")?,
            payload,
            id,
        },
        delivery_id: get(row, "e_delivery")?,
        received_at: rfc3339(received_ms),
        received_ms,
        window_ms: get(row, "e_window")?,
    }))
}

/// A time a run record keeps as text, in Unix ms.
pub fn ms_of(text: &Option<String>) -> Option<Ms> {
    text.as_deref().and_then(parse_ms)
}
