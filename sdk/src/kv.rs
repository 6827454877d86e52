//! The recipe's own durable key-value state (needs [`Capability::Kv`](crate::Capability::Kv)).
//!
//! Keys are UTF-8, at most 1 KiB; values at most 1 MiB. No other recipe can see them.
//! Typed helpers store values as JSON.
//!
//! ```no_run
//! use switchboard_sdk::{kv, Result};
//!
//! # fn f(event_id: &str) -> Result<()> {
//! // Dedupe: only the first run for this id gets `true`.
//! if kv::set_if_absent_raw(&format!("seen/{event_id}"), b"1")? {
//!     // first time
//! }
//! kv::set("cursor", &"2026-11-22T00:00:00Z")?;
//! let cursor: Option<String> = kv::get("cursor")?;
//! # let _ = cursor; Ok(()) }
//! ```

use crate::bindings::switchboard::recipes::kv as wit;
use crate::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::invalid(format!("kv[{key}]"), e.to_string()))
}

/// The raw bytes stored under `key`.
pub fn get_raw(key: &str) -> Result<Option<Vec<u8>>> {
    Ok(wit::get(key)?)
}

/// Store raw bytes under `key`.
pub fn set_raw(key: &str, value: &[u8]) -> Result<()> {
    Ok(wit::set(key, value)?)
}

/// The JSON value stored under `key`, decoded.
pub fn get<T: DeserializeOwned>(key: &str) -> Result<Option<T>> {
    get_raw(key)?.map(|b| decode(key, &b)).transpose()
}

/// Store a value under `key`, as JSON.
pub fn set<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<()> {
    set_raw(key, &serde_json::to_vec(value)?)
}

/// Remove `key`; returns whether it existed.
pub fn delete(key: &str) -> Result<bool> {
    Ok(wit::delete(key)?)
}

/// Keys starting with `prefix`, in byte order, at most `limit` (all when `None`).
pub fn list_keys(prefix: &str, limit: Option<u32>) -> Result<Vec<String>> {
    Ok(wit::list_keys(prefix, limit)?)
}

/// Atomically replace `expected` (None = absent) by `new` (None = delete). False, with
/// nothing changed, when the current value is not `expected`.
pub fn compare_and_swap_raw(
    key: &str,
    expected: Option<&[u8]>,
    new: Option<&[u8]>,
) -> Result<bool> {
    Ok(wit::compare_and_swap(key, expected, new)?)
}

/// Set `key` only if it is absent; returns whether it was set. The way to dedupe.
pub fn set_if_absent_raw(key: &str, value: &[u8]) -> Result<bool> {
    Ok(wit::set_if_absent(key, value)?)
}

/// Set `key` to a JSON value only if it is absent; returns whether it was set.
pub fn set_if_absent<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<bool> {
    set_if_absent_raw(key, &serde_json::to_vec(value)?)
}

/// Do `f` at most once per `key`, across runs and restarts: the key is claimed right before
/// `f` runs and released if `f` fails, so a failure can be tried again and a success is never
/// repeated (a crash in the middle of `f` counts as done). `None`: claimed before.
///
/// ```no_run
/// # use switchboard_sdk::{kv, messages, Result};
/// # fn f(customer: &str) -> Result<()> {
/// let sms = messages::sms(customer, "Welcome!");
/// if kv::once(&format!("welcomed/{customer}"), || messages::send("hb", &sms))?.is_none() {
///     // welcomed before
/// }
/// # Ok(()) }
/// ```
pub fn once<T>(key: &str, f: impl FnOnce() -> Result<T>) -> Result<Option<T>> {
    if !set_if_absent_raw(key, b"")? {
        return Ok(None);
    }
    match f() {
        Ok(value) => Ok(Some(value)),
        Err(e) => {
            delete(key)?;
            Err(e)
        }
    }
}

/// Atomically update the JSON value under `key` with `f` (given the current value, if
/// any), retrying on concurrent changes; returns the new value.
pub fn update<T, F>(key: &str, mut f: F) -> Result<T>
where
    T: Serialize + DeserializeOwned,
    F: FnMut(Option<T>) -> T,
{
    loop {
        let current = get_raw(key)?;
        let value = f(current.as_deref().map(|b| decode(key, b)).transpose()?);
        let new = serde_json::to_vec(&value)?;
        if compare_and_swap_raw(key, current.as_deref(), Some(&new))? {
            return Ok(value);
        }
    }
}
