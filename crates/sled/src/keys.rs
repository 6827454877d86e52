//! How the sled backend lays its records out in its tree (`pipeline`), and the encodings.
//!
//! | key                                          | value                                      |
//! |----------------------------------------------|--------------------------------------------|
//! | `e/<event id>`                               | [`EventRow`] (JSON, short names)           |
//! | `r/<run id>`                                 | [`RunRow`]: the run as last settled        |
//! | `l/<run id>`                                 | the last attempt's log lines (JSON)        |
//! | `p/<run id>`                                 | [`Pending`]: the run is unfinished         |
//! | `d/<source>\n<delivery id>`                  | [`DeliveryMark`] (within the window)       |
//! | `t/<run id>\n<sled id>`                      | an attempt of the run, as it ended (JSON)  |
//! | `c/<plugin>/<trigger>`                       | last cron tick fired or skipped            |
//! | `z/<recipe>`                                 | the recipe is paused (empty value)         |
//! | `xs/<status>\0<created ms><run id>`          | finished runs by status                    |
//! | `xq/<plugin>\0<status>\0<created ms><run id>`| finished runs by recipe and status         |
//! | `xo/<source>\0<created ms><run id>`          | finished runs by source                    |
//! | `xd/<delivery id>\0<event id>`               | events by delivery id (history)            |
//! | `meta/schema`                                | the layout's version                       |
//! | `meta/id-base`                               | event ids go on from here (compaction)     |
//!
//! Times in keys are Unix ms, big-endian, so keys sort by time. Run ids are
//! `<event id>.<recipe>`.
//!
//! Unfinished runs are not indexed: they are all in memory too ([`super::ready`]), and a
//! query merges them with the indexes of finished runs. Writes are few because each costs
//! (a sled node update; see `docs/benchmarks.md`): accepting
//! an event writes its record, its delivery index, its runs' pending entries and its
//! delivery mark; a claim rewrites only the small pending entry (the lease itself lives in
//! memory: sled allows one process per store); a settle writes the run's record, its logs
//! and, once finished, its three indexes. A run that has never been settled has no record:
//! it is its event and its pending entry. Retention walks the status index by creation
//! time and keeps what finished within its window.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use switchboard_model::{
    Event, Outcome, RunError, RunRecord, RunStatus, StoredEvent, Unconfirmed, rfc3339,
};
use switchboard_pipeline::backend::BackendError;

/// The layout's version; an older store is re-indexed at open.
pub const SCHEMA: u8 = 3;
pub const SCHEMA_KEY: &[u8] = b"meta/schema";
/// Where event ids continue from after a compaction (sled's id generator starts again).
pub const ID_BASE_KEY: &[u8] = b"meta/id-base";

pub fn event(id: &str) -> Vec<u8> {
    [b"e/", id.as_bytes()].concat()
}
pub fn run(id: &str) -> Vec<u8> {
    [b"r/", id.as_bytes()].concat()
}
pub fn logs(id: &str) -> Vec<u8> {
    [b"l/", id.as_bytes()].concat()
}
/// Where a run's attempts are kept, oldest first: this prefix, then an id from sled's
/// monotonic counter (big-endian; two attempts may end in the same millisecond).
pub fn timeline(id: &str) -> Vec<u8> {
    [b"t/", id.as_bytes(), b"\n"].concat()
}
pub fn attempt(id: &str, n: u64) -> Vec<u8> {
    [timeline(id), n.to_be_bytes().to_vec()].concat()
}
pub fn delivery(source: &str, delivery: &str) -> Vec<u8> {
    format!("d/{source}\n{delivery}").into_bytes()
}
pub fn pending(id: &str) -> Vec<u8> {
    [b"p/", id.as_bytes()].concat()
}
/// Paused recipes: this prefix, then the recipe's name.
pub const PAUSED: &[u8] = b"z/";
pub fn paused(recipe: &str) -> Vec<u8> {
    [PAUSED, recipe.as_bytes()].concat()
}
pub fn tick(plugin: &str, trigger: usize) -> Vec<u8> {
    format!("c/{plugin}/{trigger}").into_bytes()
}
/// A prefix, then a creation time and a run id: the shape of every run index key.
fn timed(prefix: Vec<u8>, created: i64, id: &str) -> Vec<u8> {
    [
        prefix,
        created.to_be_bytes().to_vec(),
        id.as_bytes().to_vec(),
    ]
    .concat()
}

pub fn by_status(status: RunStatus) -> Vec<u8> {
    format!("xs/{}\0", status.as_str()).into_bytes()
}
pub fn by_plugin_status(plugin: &str, status: RunStatus) -> Vec<u8> {
    format!("xq/{plugin}\0{}\0", status.as_str()).into_bytes()
}
pub fn by_source(source: &str) -> Vec<u8> {
    format!("xo/{source}\0").into_bytes()
}
pub fn by_delivery(delivery: &str) -> Vec<u8> {
    format!("xd/{delivery}\0").into_bytes()
}

/// The statuses a finished run can have: each has its indexes.
pub const FINISHED: [RunStatus; 3] = [RunStatus::Succeeded, RunStatus::Failed, RunStatus::Dead];

/// Every index prefix of this layout and the ones before it (rebuilt at migration).
pub const INDEX_PREFIXES: [&[u8]; 6] = [b"xs/", b"xq/", b"xo/", b"xp/", b"xa/", b"f/"];

/// The index keys of a finished run.
pub fn indexes(
    id: &str,
    plugin: &str,
    source: &str,
    status: RunStatus,
    created: i64,
) -> [Vec<u8>; 3] {
    [
        timed(by_status(status), created, id),
        timed(by_plugin_status(plugin, status), created, id),
        timed(by_source(source), created, id),
    ]
}

/// The creation time and run id at the end of an index key whose prefix is `prefix_len` long.
pub fn split_timed(key: &[u8], prefix_len: usize) -> Option<(i64, String)> {
    let rest = key.get(prefix_len..)?;
    let (ms, id) = rest.split_at_checked(8)?;
    let ms = i64::from_be_bytes(ms.try_into().ok()?);
    Some((ms, String::from_utf8(id.to_vec()).ok()?))
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialize")
}

pub fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, BackendError> {
    serde_json::from_slice(bytes).map_err(|e| BackendError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

pub fn be_i64(bytes: &[u8]) -> Option<i64> {
    bytes.try_into().ok().map(i64::from_be_bytes)
}

/// An unfinished run: when it is due, the attempts begun (a claim counts one before the run
/// starts, so a run that kills its host is not retried for ever), whether an attempt is
/// under way, and its ordering key. Binary: due (8) · attempts (4) · started ms, 0 when not
/// running (8) · key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pending {
    pub due: i64,
    pub attempts: u32,
    pub started: i64,
    pub key: Option<String>,
}

impl Pending {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(20 + self.key.as_ref().map_or(0, |k| k.len() + 1));
        out.extend_from_slice(&self.due.to_be_bytes());
        out.extend_from_slice(&self.attempts.to_be_bytes());
        out.extend_from_slice(&self.started.to_be_bytes());
        if let Some(key) = &self.key {
            out.push(1);
            out.extend_from_slice(key.as_bytes());
        }
        out
    }

    pub fn decode(key: &[u8], bytes: &[u8]) -> Result<Pending, BackendError> {
        let corrupt = || BackendError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            reason: format!("a pending entry of {} bytes", bytes.len()),
        };
        // Layout 2 kept only the due time.
        if bytes.len() == 8 {
            return Ok(Pending {
                due: be_i64(bytes).ok_or_else(corrupt)?,
                ..Pending::default()
            });
        }
        let (due, rest) = bytes.split_at_checked(8).ok_or_else(corrupt)?;
        let (attempts, rest) = rest.split_at_checked(4).ok_or_else(corrupt)?;
        let (started, rest) = rest.split_at_checked(8).ok_or_else(corrupt)?;
        let key = match rest.split_first() {
            None => None,
            Some((1, k)) => Some(String::from_utf8(k.to_vec()).map_err(|_| corrupt())?),
            Some(_) => return Err(corrupt()),
        };
        Ok(Pending {
            due: be_i64(due).ok_or_else(corrupt)?,
            attempts: u32::from_be_bytes(attempts.try_into().map_err(|_| corrupt())?),
            started: be_i64(started).ok_or_else(corrupt)?,
            key,
        })
    }
}

/// An event as stored: what [`StoredEvent`] holds but its id (the key) and what is derived.
#[derive(Serialize, Deserialize)]
pub struct EventRow {
    #[serde(rename = "s")]
    source: String,
    #[serde(rename = "k")]
    kind: String,
    #[serde(rename = "t")]
    time: String,
    #[serde(rename = "d")]
    delivery: String,
    #[serde(rename = "r")]
    received_ms: i64,
    #[serde(rename = "w")]
    window_ms: i64,
    #[serde(rename = "p")]
    payload: Box<serde_json::value::RawValue>,
}

impl EventRow {
    pub fn of(e: &StoredEvent) -> EventRow {
        EventRow {
            source: e.event.source.clone(),
            kind: e.event.kind.clone(),
            time: e.event.time.clone(),
            delivery: e.delivery_id.clone(),
            received_ms: e.received_ms,
            window_ms: e.window_ms.unwrap_or(DEFAULT_WINDOW_MS),
            payload: e.event.payload.clone(),
        }
    }

    pub fn into_event(self, id: &str) -> StoredEvent {
        StoredEvent {
            event: Event {
                id: id.to_string(),
                source: self.source,
                kind: self.kind,
                time: self.time,
                payload: self.payload,
            },
            delivery_id: self.delivery,
            received_at: rfc3339(self.received_ms),
            received_ms: self.received_ms,
            window_ms: Some(self.window_ms),
        }
    }
}

/// The dedup window of events stored before it was kept with them.
pub const DEFAULT_WINDOW_MS: i64 = 7 * 24 * 3_600_000;

/// Decode an event stored under `e/<id>`, in this layout or an older one.
pub fn decode_event(key: &[u8], id: &str, bytes: &[u8]) -> Result<StoredEvent, BackendError> {
    match serde_json::from_slice::<EventRow>(bytes) {
        Ok(row) => Ok(row.into_event(id)),
        Err(_) => decode(key, bytes),
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_zero_usize(n: &usize) -> bool {
    *n == 0
}

/// A run as last settled (or replayed): what [`RunRecord`] holds but its ids (the key), its
/// lease (in memory), its reason (derived from the error) and its times as text.
#[derive(Serialize, Deserialize)]
pub struct RunRow {
    #[serde(rename = "p")]
    plugin: String,
    #[serde(rename = "o")]
    source: String,
    #[serde(rename = "k")]
    kind: String,
    #[serde(rename = "s")]
    status: RunStatus,
    #[serde(rename = "a")]
    attempts: u32,
    #[serde(rename = "rp", default, skip_serializing_if = "is_zero")]
    replays: u32,
    #[serde(rename = "df", default, skip_serializing_if = "is_zero")]
    deferrals: u32,
    #[serde(rename = "c")]
    created: i64,
    #[serde(rename = "u")]
    updated: i64,
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    next: Option<i64>,
    #[serde(rename = "st", default, skip_serializing_if = "Option::is_none")]
    started: Option<i64>,
    #[serde(rename = "f", default, skip_serializing_if = "Option::is_none")]
    finished: Option<i64>,
    #[serde(rename = "du", default, skip_serializing_if = "Option::is_none")]
    duration_us: Option<u64>,
    #[serde(rename = "v", default, skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(rename = "out", default, skip_serializing_if = "Option::is_none")]
    outcome: Option<Outcome>,
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    error: Option<RunError>,
    #[serde(rename = "uc", default, skip_serializing_if = "Vec::is_empty")]
    unconfirmed: Vec<Unconfirmed>,
    #[serde(rename = "ld", default, skip_serializing_if = "is_zero_usize")]
    logs_dropped: usize,
    #[serde(rename = "ok", default, skip_serializing_if = "Option::is_none")]
    order_key: Option<String>,
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    trace_id: Option<String>,
}

fn ms(text: &Option<String>) -> Option<i64> {
    text.as_deref().and_then(switchboard_model::parse_ms)
}

impl RunRow {
    pub fn of(run: &RunRecord) -> RunRow {
        RunRow {
            plugin: run.plugin.clone(),
            source: run.source.clone(),
            kind: run.kind.clone(),
            status: run.status,
            attempts: run.attempts,
            replays: run.replays,
            deferrals: run.deferrals,
            created: switchboard_model::parse_ms(&run.created_at).unwrap_or(0),
            updated: switchboard_model::parse_ms(&run.updated_at).unwrap_or(0),
            next: ms(&run.next_attempt_at),
            started: ms(&run.started_at),
            finished: ms(&run.finished_at),
            duration_us: run.duration_us,
            version: run.plugin_version.clone(),
            outcome: run.outcome.clone(),
            error: run.error.clone(),
            unconfirmed: run.unconfirmed.clone(),
            logs_dropped: run.logs_dropped,
            order_key: run.order_key.clone(),
            trace_id: run.trace_id.clone(),
        }
    }

    pub fn into_run(self, id: &str) -> RunRecord {
        let event_id = id
            .strip_suffix(&self.plugin)
            .and_then(|e| e.strip_suffix('.'))
            .unwrap_or(id)
            .to_string();
        RunRecord {
            id: id.to_string(),
            event_id,
            plugin: self.plugin,
            source: self.source,
            kind: self.kind,
            status: self.status,
            attempts: self.attempts,
            replays: self.replays,
            deferrals: self.deferrals,
            created_at: rfc3339(self.created),
            updated_at: rfc3339(self.updated),
            next_attempt_at: self.next.map(rfc3339),
            started_at: self.started.map(rfc3339),
            finished_at: self.finished.map(rfc3339),
            duration_us: self.duration_us,
            plugin_version: self.version,
            outcome: self.outcome,
            reason: self.error.as_ref().map(ToString::to_string),
            error: self.error,
            unconfirmed: self.unconfirmed,
            logs_dropped: self.logs_dropped,
            order_key: self.order_key,
            lease: None,
            waiting_for: None,
            trace_id: self.trace_id,
        }
    }
}

/// Decode a run stored under `r/<id>`, in this layout or an older one (a whole
/// [`RunRecord`]).
pub fn decode_run(key: &[u8], id: &str, bytes: &[u8]) -> Result<RunRecord, BackendError> {
    match serde_json::from_slice::<RunRow>(bytes) {
        Ok(row) => Ok(row.into_run(id)),
        Err(_) => decode(key, bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_keys_sort_by_time_and_split_back() {
        let a = timed(by_status(RunStatus::Dead), 5, "e1.a");
        let b = timed(by_status(RunStatus::Dead), 300, "e0.a");
        assert!(a < b, "earlier first, whatever the id");
        assert_eq!(
            split_timed(&b, by_status(RunStatus::Dead).len()),
            Some((300, "e0.a".to_string()))
        );
        let c = switchboard_pipeline::backend::cursor(300, "e0.a");
        assert_eq!(
            switchboard_pipeline::backend::parse_cursor(&c).unwrap(),
            (300, "e0.a".to_string())
        );
        assert!(switchboard_pipeline::backend::parse_cursor("nope").is_err());
    }
}
