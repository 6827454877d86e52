//! Levelled, structured logging into the run's log (always allowed).
//!
//! ```no_run
//! use switchboard_sdk::log;
//! log::info("contact synced");
//! log::with(log::Level::Warn, "skipping", &[("reason", "no email")]);
//! ```

use crate::bindings::switchboard::recipes::log as wit;

pub use wit::Level;

/// Log `message` at `level` with key-value fields.
pub fn with(level: Level, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    wit::log(level, message, &fields);
}

/// Log at trace level.
pub fn trace(message: &str) {
    with(Level::Trace, message, &[]);
}

/// Log at debug level.
pub fn debug(message: &str) {
    with(Level::Debug, message, &[]);
}

/// Log at info level.
pub fn info(message: &str) {
    with(Level::Info, message, &[]);
}

/// Log at warn level.
pub fn warn(message: &str) {
    with(Level::Warn, message, &[]);
}

/// Log at error level.
pub fn error(message: &str) {
    with(Level::Error, message, &[]);
}
