//! `pipe`: a test guest for the pipeline. It answers with its version, sleeps when asked
//! (to keep runs in flight), and has a cron trigger the tests switch on in the config.

use serde::Deserialize;
use switchboard_sdk::prelude::*;

const VERSION: &str = if cfg!(feature = "v2") {
    "2.0.0"
} else {
    "1.0.0"
};

struct Pipe;

/// Settings from the host config; all optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Appended to every outcome.
    label: Option<String>,
    /// Times the outcome is repeated.
    #[serde(default)]
    repeat: u8,
}

#[derive(Deserialize, Default)]
struct Ask {
    #[serde(default)]
    sleep_ms: u64,
    /// Defer the run until this instant (`YYYY-MM-DDTHH:MM:SSZ`) if it is still ahead.
    defer_until: Option<String>,
    /// Defer the run every time (until now: the host holds it its minimum second).
    #[serde(default)]
    always_defer: bool,
}

impl Recipe for Pipe {
    fn manifest() -> Manifest {
        Manifest::new("pipe", VERSION)
            .description("Test guest: answers with its version")
            .on_webhook("test", "*")
            // Once a year: the tests set their own schedule in the config.
            .on_cron("0 0 0 1 1 *")
    }

    fn handle(event: Event) -> Result<Outcome> {
        if event.source == "cron" {
            // Longer than the tests' one-second schedule: fires during a run are skipped.
            std::thread::sleep(std::time::Duration::from_millis(1200));
            return Ok(Outcome::done(format!("v{VERSION} tick")));
        }
        let ask: Ask = event.payload().unwrap_or_default();
        if ask.sleep_ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(ask.sleep_ms));
        }
        if ask.always_defer {
            return Ok(Outcome::deferred(clock::now("UTC")?.utc, "never ready"));
        }
        if let Some(until) = ask.defer_until
            && clock::now("UTC")?.utc < until
        {
            return Ok(Outcome::deferred(until, "asked to wait"));
        }
        let settings: Settings = settings::get()?;
        let mut answer = format!("v{VERSION}");
        if let Some(label) = settings.label {
            answer = format!("{answer} {label}").repeat(settings.repeat.max(1) as usize);
        }
        Ok(Outcome::done(answer))
    }
}

export_recipe!(Pipe, settings = Settings);
