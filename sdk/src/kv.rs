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

/// Atomically add `delta` to the integer under `key` (absent counts as 0) and return the
/// sum: one host call, however many runs count at once (no retries, unlike [`update`]).
/// The value is a JSON integer, so [`get`] reads it as one (`kv::get::<i64>`). A value that
/// is not an integer, or a sum outside `i64`, is [`Error::Invalid`](crate::Error) and
/// changes nothing.
///
/// ```no_run
/// # fn f() -> switchboard_sdk::Result<()> {
/// let seen = switchboard_sdk::kv::increment("count/job.created", 1)?;
/// # let _ = seen; Ok(()) }
/// ```
pub fn increment(key: &str, delta: i64) -> Result<i64> {
    Ok(wit::increment(key, delta)?)
}

/// Set `key` to a JSON value only if it is absent; returns whether it was set.
pub fn set_if_absent<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<bool> {
    set_if_absent_raw(key, &serde_json::to_vec(value)?)
}

/// What [`once`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Once<T> {
    /// `f` took effect in this run: now, or in an earlier attempt of it (then its value is
    /// the one kept with the claim, and `f` is not called again).
    Done(T),
    /// An earlier run did it, and it was confirmed: the value its `f` returned, kept with
    /// the claim (`None` for a claim made before claims kept values).
    Before(Option<T>),
    /// Another run claimed it and has not confirmed it: that run is doing it now, or it ended
    /// without knowing whether it took effect (its record shows the call as unconfirmed).
    /// Do not do it again, and do not act as if it was done.
    Held {
        /// The id of the event whose run holds the claim.
        by: String,
    },
}

/// What a [`once`] key says, read without claiming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnceState {
    /// Nobody claimed it.
    Free,
    /// Done and confirmed (by this run or an earlier one).
    Done,
    /// Claimed by this run's earlier attempt, not confirmed: [`once`] tries again (the host's
    /// effect journal answers what already took effect).
    Mine,
    /// Claimed by another run, not confirmed.
    Held {
        /// The id of the event whose run holds the claim.
        by: String,
    },
}

/// A claim in kv: which run (event) made it, whether its effect was confirmed, and the value
/// `f` returned then.
#[derive(serde::Serialize, serde::Deserialize)]
struct Claim {
    run: String,
    done: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<serde_json::Value>,
}

/// The claim under `key`; claims from before claims named their run were only ever made
/// confirmed.
fn claim(key: &str) -> Result<Option<Claim>> {
    Ok(get_raw(key)?.map(|bytes| {
        serde_json::from_slice(&bytes).unwrap_or(Claim {
            run: String::new(),
            done: true,
            value: None,
        })
    }))
}

/// What `key` says now, without claiming it: to skip work (a lookup, a message built) for
/// something already done or held by another run.
pub fn once_state(key: &str) -> Result<OnceState> {
    let run = crate::__private::current_event();
    Ok(match claim(key)? {
        None => OnceState::Free,
        Some(Claim { done: true, .. }) => OnceState::Done,
        Some(Claim { run: by, .. }) if by == run => OnceState::Mine,
        Some(Claim { run: by, .. }) => OnceState::Held { by },
    })
}

/// Do `f` at most once per `key`, across runs, retries and restarts.
///
/// The key is claimed for this run right before `f` runs. The claim is durable before any
/// request `f` sends leaves the host (the host writes its effect journal to disk first, and
/// the claim with it), and it is kept unless `f` fails with an error that proves nothing took
/// effect ([`Error::took_no_effect`]): then it is released, so a later run can try again. On
/// `Ok`, the claim is marked confirmed and keeps `f`'s value.
///
/// A retry or replay of the same run that finds its own confirmed claim answers the kept
/// value without calling `f`; one that finds its own unconfirmed claim calls `f` again, and
/// the host's effect journal answers each call that an earlier attempt sent, with its result
/// or with [`Error::UnknownOutcome`] (it is never sent twice).
///
/// ```no_run
/// # use switchboard_sdk::{kv, kv::Once, messages, Result};
/// # fn f(customer: &str) -> Result<()> {
/// let sms = messages::sms(customer, "Welcome!");
/// match kv::once(&format!("welcomed/{customer}"), || messages::send("hb", &sms)) {
///     Ok(Once::Done(_)) => {}                 // sent, in this run
///     Ok(Once::Before(_)) => {}               // welcomed before
///     Ok(Once::Held { by }) => {}             // another run holds it, unconfirmed
///     Err(switchboard_sdk::Error::UnknownOutcome(_)) => {} // maybe sent: do not resend
///     Err(e) => return Err(e),                // nothing was sent; the claim is released
/// }
/// # Ok(()) }
/// ```
pub fn once<T: Serialize + DeserializeOwned>(
    key: &str,
    f: impl FnOnce() -> Result<T>,
) -> Result<Once<T>> {
    let run = crate::__private::current_event();
    let mine = serde_json::to_vec(&Claim {
        run: run.clone(),
        done: false,
        value: None,
    })?;
    if !set_if_absent_raw(key, &mine)? {
        match claim(key)? {
            // Released meanwhile: claim it again.
            None => return once(key, f),
            Some(Claim {
                run: by,
                done: true,
                value: Some(value),
            }) if by == run => {
                return Ok(Once::Done(serde_json::from_value(value)?));
            }
            Some(Claim {
                done: true, value, ..
            }) => {
                let value = value.map(serde_json::from_value).transpose()?;
                return Ok(Once::Before(value));
            }
            Some(Claim { run: by, .. }) if by != run => return Ok(Once::Held { by }),
            // This run's own claim, unconfirmed: go on (the journal answers).
            Some(_) => {}
        }
    }
    match f() {
        Ok(value) => {
            let kept = serde_json::to_value(&value)?;
            set(
                key,
                &Claim {
                    run,
                    done: true,
                    value: Some(kept),
                },
            )?;
            Ok(Once::Done(value))
        }
        Err(e) => {
            if e.took_no_effect() {
                compare_and_swap_raw(key, Some(&mine), None)?;
            }
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
