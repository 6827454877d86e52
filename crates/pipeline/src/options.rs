//! How the pipeline is tuned: workers, retries, deferrals, leases, retention, cron.

use crate::backend;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// What to do at start about cron fires missed while the host was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CatchUp {
    /// Run once for the latest missed fire.
    #[default]
    Once,
    /// Skip missed fires.
    Skip,
}

/// A cron trigger's schedule as the config sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CronOverride {
    /// Do not fire.
    Off,
    /// Fire on this schedule instead of the manifest's.
    Schedule {
        expr: String,
        timezone: Option<String>,
    },
}

/// Settings of the pipeline; see the binary's config for the TOML.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Runs in flight at once on this host, over all recipes.
    pub workers: usize,
    /// Runs in flight at once for one recipe (over every host), unless
    /// `plugin_concurrency` says otherwise.
    pub per_plugin: usize,
    pub plugin_concurrency: HashMap<String, usize>,
    /// Attempts before a run that keeps failing with retryable errors is dead.
    pub max_attempts: u32,
    /// Deferrals after which a run that keeps deferring fails (replayable).
    pub max_deferrals: u32,
    /// First retry delay; doubles per attempt, with jitter, up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// A repeated delivery id within this window is acknowledged and not run again.
    pub dedup_window: Duration,
    /// How long a shutdown waits for runs in flight.
    pub grace: Duration,
    pub cron_catch_up: CatchUp,
    pub cron_overrides: BTreeMap<String, CronOverride>,
    /// How often the plugins folder is looked at.
    pub reload_interval: Duration,
    /// How long a claimed run is held before another host may take it over, unless its
    /// holder extends it (every third of it while the run lasts).
    pub lease: Duration,
    /// How long succeeded runs are kept, from when they finished.
    pub keep_succeeded: Duration,
    /// How long failed and dead runs (not replayed) are kept.
    pub keep_failed: Duration,
    /// How often retention is applied.
    pub sweep_interval: Duration,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            workers: 16,
            per_plugin: 4,
            plugin_concurrency: HashMap::new(),
            // 1 + 2 + 4 + ... + 60 minutes: 8 tries over about two hours.
            max_attempts: 8,
            max_deferrals: 1_000,
            retry_base: Duration::from_secs(60),
            retry_max: Duration::from_secs(3600),
            dedup_window: Duration::from_secs(7 * 24 * 3600),
            grace: Duration::from_secs(10),
            cron_catch_up: CatchUp::Once,
            cron_overrides: BTreeMap::new(),
            reload_interval: Duration::from_millis(500),
            lease: Duration::from_secs(30),
            keep_succeeded: Duration::from_secs(30 * 24 * 3600),
            keep_failed: Duration::from_secs(90 * 24 * 3600),
            sweep_interval: Duration::from_secs(3600),
        }
    }
}

impl PipelineOptions {
    /// Runs of `plugin` in flight at once.
    pub fn concurrency(&self, plugin: &str) -> usize {
        self.plugin_concurrency
            .get(plugin)
            .copied()
            .unwrap_or(self.per_plugin)
    }

    /// The retention these options ask for.
    pub fn retention(&self) -> backend::Retention {
        backend::Retention {
            keep_succeeded_ms: self.keep_succeeded.as_millis() as i64,
            keep_failed_ms: self.keep_failed.as_millis() as i64,
            dedup_window_ms: self.dedup_window.as_millis() as i64,
        }
    }
}
