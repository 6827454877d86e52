//! The recipe's own settings from the host config, as a typed struct.
//!
//! ```toml
//! [plugins.new-lead-sms.settings]      # in the host's config
//! template = "Hi {first_name}, thanks for reaching out!"
//! time_zone = "America/Denver"
//! ```
//!
//! ```no_run
//! use switchboard_sdk::prelude::*;
//!
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Settings {
//!     template: String,
//!     #[serde(default = "utc")]
//!     time_zone: String,
//! }
//! fn utc() -> String { "UTC".into() }
//!
//! struct Texter;
//! impl Recipe for Texter {
//!     fn manifest() -> Manifest { Manifest::new("texter", "0.1.0") }
//!     fn handle(_: Event) -> Result<Outcome> {
//!         let s: Settings = settings::get()?;
//!         Ok(Outcome::done(s.template))
//!     }
//! }
//! // The host checks the config against `Settings` when it loads the plugin: a missing or
//! // malformed setting refuses the plugin, naming the setting, before any event runs.
//! export_recipe!(Texter, settings = Settings);
//! ```

use crate::bindings::switchboard::recipes::settings as wit;
use crate::{Error, Result};
use serde::de::DeserializeOwned;

/// This recipe's settings, parsed into `T`.
pub fn get<T: DeserializeOwned>() -> Result<T> {
    parse(&wit::get())
}

/// Parse settings text (a JSON object) into `T`; the error names the setting.
pub fn parse<T: DeserializeOwned>(json: &str) -> Result<T> {
    serde_json::from_str(json).map_err(|e| Error::invalid("settings", e.to_string()))
}

#[doc(hidden)]
pub fn check_none(json: &str) -> Result<()> {
    match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(json) {
        Ok(map) if map.is_empty() => Ok(()),
        Ok(map) => Err(Error::invalid(
            "settings",
            format!(
                "this recipe takes no settings, but the config sets {}",
                map.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        )),
        Err(e) => Err(Error::invalid("settings", e.to_string())),
    }
}
