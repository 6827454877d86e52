//! How the sled backend lays its records out in its tree (`pipeline`), and the encodings.
//!
//! | key                                          | value                                |
//! |----------------------------------------------|--------------------------------------|
//! | `e/<event id>`                               | [`StoredEvent`] (JSON)               |
//! | `r/<run id>`                                 | [`RunRecord`] without logs (JSON)    |
//! | `l/<run id>`                                 | the last attempt's log lines (JSON)  |
//! | `d/<source>\n<delivery id>`                  | [`DeliveryMark`] (within the window) |
//! | `p/<run id>`                                 | due time: the run is unfinished      |
//! | `c/<plugin>/<trigger>`                       | last cron tick fired or skipped      |
//! | `f/<finished ms><run id>`                    | finished runs, for retention         |
//! | `xs/<status>\0<created ms><run id>`          | runs by status                       |
//! | `xp/<plugin>\0<created ms><run id>`          | runs by recipe                       |
//! | `xq/<plugin>\0<status>\0<created ms><run id>`| runs by recipe and status            |
//! | `xo/<source>\0<created ms><run id>`          | runs by source                       |
//! | `xd/<delivery id>\0<event id>`               | events by delivery id (history)      |
//! | `meta/schema`                                | the layout's version                 |
//!
//! Times in keys are Unix ms, big-endian, so keys sort by time. Run ids are
//! `<event id>.<recipe>` and event ids sort by creation, so `r/` is in acceptance order.

use super::super::backend::BackendError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use switchboard_model::{RunRecord, RunStatus};

/// The layout's version; an older store is re-indexed at open.
pub const SCHEMA: u8 = 2;
pub const SCHEMA_KEY: &[u8] = b"meta/schema";

pub fn event(id: &str) -> Vec<u8> {
    [b"e/", id.as_bytes()].concat()
}
pub fn run(id: &str) -> Vec<u8> {
    [b"r/", id.as_bytes()].concat()
}
pub fn logs(id: &str) -> Vec<u8> {
    [b"l/", id.as_bytes()].concat()
}
pub fn delivery(source: &str, delivery: &str) -> Vec<u8> {
    format!("d/{source}\n{delivery}").into_bytes()
}
pub fn pending(id: &str) -> Vec<u8> {
    [b"p/", id.as_bytes()].concat()
}
pub fn tick(plugin: &str, trigger: usize) -> Vec<u8> {
    format!("c/{plugin}/{trigger}").into_bytes()
}
pub fn finished(ms: i64, id: &str) -> Vec<u8> {
    [b"f/" as &[u8], &ms.to_be_bytes(), id.as_bytes()].concat()
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
pub fn by_plugin(plugin: &str) -> Vec<u8> {
    format!("xp/{plugin}\0").into_bytes()
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

/// The index keys of `run`, created at `created` (Unix ms).
pub fn indexes(run: &RunRecord, created: i64) -> [Vec<u8>; 4] {
    [
        timed(by_status(run.status), created, &run.id),
        timed(by_plugin(&run.plugin), created, &run.id),
        timed(by_plugin_status(&run.plugin, run.status), created, &run.id),
        timed(by_source(&run.source), created, &run.id),
    ]
}

/// The creation time and run id at the end of an index key whose prefix is `prefix_len` long.
pub fn split_timed(key: &[u8], prefix_len: usize) -> Option<(i64, String)> {
    let rest = key.get(prefix_len..)?;
    let (ms, id) = rest.split_at_checked(8)?;
    let ms = i64::from_be_bytes(ms.try_into().ok()?);
    Some((ms, String::from_utf8(id.to_vec()).ok()?))
}

/// A cursor: where a page of runs ended (exclusive), as text.
pub fn cursor(created: i64, id: &str) -> String {
    format!("{created}:{id}")
}

pub fn parse_cursor(text: &str) -> Result<(i64, String), BackendError> {
    let bad = || BackendError::Corrupt {
        key: "cursor".into(),
        reason: format!("'{text}' is not a cursor this host gave"),
    };
    let (ms, id) = text.split_once(':').ok_or_else(bad)?;
    Ok((ms.parse().map_err(|_| bad())?, id.to_string()))
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
        let c = cursor(300, "e0.a");
        assert_eq!(parse_cursor(&c).unwrap(), (300, "e0.a".to_string()));
        assert!(parse_cursor("nope").is_err());
    }
}
