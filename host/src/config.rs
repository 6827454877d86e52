//! The host's TOML configuration. Every field is optional; unknown fields are errors, so a
//! typo never silently falls back to a default, and so are bad values: each field's type
//! refuses them (a count that must be at least 1 is a `NonZero*`), named by their dotted
//! field (`pipeline.workers: must be more than 0`).
//!
//! ```toml
//! data_dir = ".switchboard"    # sled store and compiled-component cache
//! plugins_dir = "plugins"      # the drop-in folder of recipe components
//!
//! [runtime]
//! deadline = "10s"             # per run, host calls included
//! memory_limit_mib = 64        # per instance
//! max_instances = 128          # instances alive at once
//! max_outcome_bytes = 65536    # outcome and error text kept per run (longer is cut, marked)
//! log_lines = 1000             # a run's log: lines kept...
//! log_bytes = 262144           # ...and bytes
//! host_log_lines = 50          # of those, copied to the host's own log (the rest counted)
//! host_log_bytes = 16384
//! kv_max_keys = 250000         # each recipe's kv quota (a write past it: quota-exceeded)
//! kv_max_bytes = 134217728
//! cpu_slice = "50ms"           # guest CPU time after which a run is demoted to the slow lane
//! slow_lane = 1                # demoted runs executing at once (0: no demotion)
//!
//! [plugins.hello]              # per-recipe overrides, by recipe name
//! deadline = "2s"
//! memory_limit_mib = 16
//! concurrency = 2              # runs in flight at once (default: pipeline.per_plugin)
//! kv_max_keys = 1000           # this recipe's kv quota, over [runtime]'s
//! kv_max_bytes = 1048576
//! cron = "0 */5 * * * *"       # replaces the manifest's schedule; "off" disables it
//! timezone = "America/Denver"
//!
//! [plugins.hello.settings]     # the recipe's own settings (its SDK `settings` type)
//! greeting = "hi"
//!
//! [server]                     # `switchboard serve`
//! listen = "127.0.0.1:8080"
//! admin_token = { env = "SWITCHBOARD_ADMIN_TOKEN" }   # bearer token of /admin
//! max_body_bytes = 1048576
//! header_timeout = "10s"       # a request's headers must arrive within this
//! body_timeout = "30s"         # a webhook's body must arrive within this
//! idle_timeout = "60s"         # a connection with no request in flight is closed after this
//! max_connections = 1024       # at the cap, the longest-idle connection makes room
//! metrics_listen = "10.0.0.5:9464"   # also serve GET /metrics here, without the token
//!
//! [store]
//! backend = "sled"             # the embedded store in data_dir (one host), or "postgres"
//! url = { env = "SWITCHBOARD_DATABASE_URL" }   # postgres: the database (the default source)
//! schema = "switchboard"       # postgres: where the tables live (migrated at start)
//! pool_size = 8                # postgres: connections per pool (two pools per host)
//!
//! [telemetry]
//! otlp_endpoint = "http://127.0.0.1:4318"   # export spans over OTLP/HTTP (default: none)
//! service_name = "switchboard"
//! sample_ratio = 0.1           # keep a tenth of the traces (default 1: all)
//! max_traces_per_second = 10   # trace at most this many events a second (default 10)
//!
//! [alerts]                     # signed JSON to a URL when runs fail (see `crate::alerts`)
//! url = "https://ops.example.com/hooks/switchboard"
//! secret = { env = "SWITCHBOARD_ALERT_SECRET" }
//! failures = 5                 # also when a recipe fails this often within `window`
//! window = "10m"
//! min_interval = "5m"          # per alert kind and recipe
//!
//! [pipeline]
//! workers = 16                 # runs in flight, all plugins
//! per_plugin = 4
//! max_attempts = 8             # then a run that keeps failing is dead
//! max_deferrals = 1000         # then a run its recipe keeps deferring fails
//! retry_base = "1m"            # doubles per attempt, with jitter, up to retry_max
//! retry_max = "1h"
//! dedup_window = "7d"
//! grace = "10s"                # shutdown waits this long for runs in flight
//! cron_catch_up = "once"       # or "skip": cron fires missed while down
//! reload_interval = "500ms"    # how often the plugins folder is looked at
//! lease = "30s"                # a run's hold on its host, renewed while it runs
//! keep_succeeded = "30d"       # retention of finished runs (events, logs, effects with them)
//! keep_failed = "90d"          # failed and dead runs not replayed
//! sweep_interval = "1h"        # how often retention is applied
//!
//! [sources.housecallpro]       # webhook sources: see `crate::ingest`
//! secret = { env = "HCP_WEBHOOK_SECRET" }
//!
//! [connections.ghl]            # a vendor connection recipes name as "ghl"
//! vendor = "gohighlevel"
//! secret = { env = "GHL_TOKEN" }           # or { file = "/run/secrets/ghl" }
//! location_id = "ve9EPM428h8vShlRW1KT"
//! base_url = "http://127.0.0.1:8787/gohighlevel"   # optional: the vendor sandbox
//! ```

use crate::ingest::SourceConfig;
use crate::model::schedule::Schedule;
use crate::pipeline::{CatchUp, CronOverride, PipelineOptions};
use crate::runtime::{PluginOverrides, RuntimeOptions};
use crate::secrets::SecretSource;
use crate::vendors::ConnectionConfig;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{}: {field}: {reason}", path.display())]
    Invalid {
        path: PathBuf,
        field: String,
        reason: String,
    },
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub data_dir: Option<PathBuf>,
    pub plugins_dir: Option<PathBuf>,
    #[serde(default)]
    pub runtime: RuntimeSection,
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginSection>,
    /// `[connections.<name>]`: vendor connections recipes may use by name.
    #[serde(default)]
    pub connections: BTreeMap<String, ConnectionConfig>,
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub pipeline: PipelineSection,
    /// `[store]`: where the pipeline keeps its records.
    #[serde(default)]
    pub store: StoreSection,
    /// `[sources.<name>]`: webhook sources served at `/hooks/<name>`.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
    /// `[telemetry]`: trace export.
    #[serde(default)]
    pub telemetry: crate::telemetry::TelemetrySection,
    /// `[alerts]`: signed notifications of failing runs.
    pub alerts: Option<crate::alerts::AlertsSection>,
}

/// Which store backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// The embedded store in the data dir: one host.
    #[default]
    Sled,
    /// A PostgreSQL database: any number of hosts.
    Postgres,
}

/// `[store]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    #[serde(default)]
    pub backend: StoreBackend,
    /// PostgreSQL: the database URL (it may carry a password, so it is read like a secret);
    /// default: `$SWITCHBOARD_DATABASE_URL`.
    pub url: Option<SecretSource>,
    /// PostgreSQL: the schema of Switchboard's tables (default `switchboard`).
    pub schema: Option<String>,
    /// PostgreSQL: connections per pool (two pools per host).
    #[serde(default, deserialize_with = "more_than_zero")]
    pub pool_size: Option<NonZeroU32>,
}

/// `[server]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub listen: Option<std::net::SocketAddr>,
    /// The bearer token of the admin API; default: `$SWITCHBOARD_ADMIN_TOKEN`.
    pub admin_token: Option<SecretSource>,
    #[serde(default, deserialize_with = "more_than_zero")]
    pub max_body_bytes: Option<NonZeroUsize>,
    #[serde(default, with = "humantime_serde")]
    pub header_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub body_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "more_than_zero")]
    pub max_connections: Option<NonZeroUsize>,
    /// Serve `GET /metrics` on this address too, without the admin token (for a Prometheus
    /// on a private network); the main listener keeps it behind the token.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl ServerSection {
    /// Default time a webhook's body may take.
    pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

    /// The connection limits this section asks for, over the defaults.
    pub fn connection_limits(&self) -> crate::server::listener::ConnectionLimits {
        let d = crate::server::listener::ConnectionLimits::default();
        crate::server::listener::ConnectionLimits {
            header_timeout: self.header_timeout.unwrap_or(d.header_timeout),
            idle_timeout: self.idle_timeout.unwrap_or(d.idle_timeout),
            max_connections: self
                .max_connections
                .map_or(d.max_connections, NonZeroUsize::get),
        }
    }
}

/// `[pipeline]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSection {
    #[serde(default, deserialize_with = "more_than_zero")]
    pub workers: Option<NonZeroUsize>,
    #[serde(default, deserialize_with = "more_than_zero")]
    pub per_plugin: Option<NonZeroUsize>,
    #[serde(default, deserialize_with = "more_than_zero")]
    pub max_attempts: Option<NonZeroU32>,
    #[serde(default, deserialize_with = "more_than_zero")]
    pub max_deferrals: Option<NonZeroU32>,
    #[serde(default, with = "humantime_serde")]
    pub retry_base: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub retry_max: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub dedup_window: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub grace: Option<Duration>,
    pub cron_catch_up: Option<CatchUp>,
    #[serde(default, with = "humantime_serde")]
    pub reload_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub lease: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub keep_succeeded: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub keep_failed: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub sweep_interval: Option<Duration>,
}

/// `[runtime]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSection {
    #[serde(default, with = "humantime_serde")]
    pub deadline: Option<Duration>,
    pub memory_limit_mib: Option<MemoryMib>,
    #[serde(default, deserialize_with = "more_than_zero")]
    pub max_instances: Option<NonZeroU32>,
    pub max_outcome_bytes: Option<usize>,
    #[serde(default, deserialize_with = "more_than_zero")]
    pub log_lines: Option<NonZeroUsize>,
    #[serde(default, deserialize_with = "more_than_zero")]
    pub log_bytes: Option<NonZeroUsize>,
    /// 0: no run log line is copied to the host's log.
    pub host_log_lines: Option<usize>,
    pub host_log_bytes: Option<usize>,
    #[serde(default, deserialize_with = "more_than_zero")]
    pub kv_max_keys: Option<NonZeroU64>,
    #[serde(default, deserialize_with = "more_than_zero")]
    pub kv_max_bytes: Option<NonZeroU64>,
    #[serde(default, with = "humantime_serde")]
    pub cpu_slice: Option<Duration>,
    /// 0: no demotion.
    pub slow_lane: Option<usize>,
}

/// `[plugins.<name>]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSection {
    #[serde(default, with = "humantime_serde")]
    pub deadline: Option<Duration>,
    pub memory_limit_mib: Option<MemoryMib>,
    /// Runs of this plugin in flight at once.
    #[serde(default, deserialize_with = "more_than_zero")]
    pub concurrency: Option<NonZeroUsize>,
    /// This recipe's kv quota.
    #[serde(default, deserialize_with = "more_than_zero")]
    pub kv_max_keys: Option<NonZeroU64>,
    #[serde(default, deserialize_with = "more_than_zero")]
    pub kv_max_bytes: Option<NonZeroU64>,
    /// A cron schedule replacing the manifest's, or `off`.
    pub cron: Option<CronSetting>,
    /// The time zone of `cron`.
    pub timezone: Option<String>,
    /// `[plugins.<name>.settings]`: the recipe's own settings, checked by the recipe at load.
    pub settings: Option<toml::Table>,
    /// Which configured connection each connection name of the recipe uses, e.g.
    /// `{ ghl = "ghl-west" }`; unmapped names use the connection of that name.
    #[serde(default)]
    pub connections: BTreeMap<String, String>,
}

const MAX_MEMORY_MIB: u32 = 4096;

/// `memory_limit_mib`: an instance's memory limit, 1 to 4096 MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u32")]
pub struct MemoryMib(NonZeroU32);

impl MemoryMib {
    pub fn get(self) -> u32 {
        self.0.get()
    }

    /// The limit in bytes.
    pub fn bytes(self) -> usize {
        self.0.get() as usize * 1024 * 1024
    }
}

impl TryFrom<u32> for MemoryMib {
    type Error = &'static str;

    fn try_from(mib: u32) -> Result<Self, Self::Error> {
        NonZeroU32::new(mib)
            .filter(|m| m.get() <= MAX_MEMORY_MIB)
            .map(MemoryMib)
            .ok_or("must be between 1 and 4096")
    }
}

/// `[plugins.<name>] cron`: `"off"`, or a cron schedule replacing the manifest's (checked
/// with the section's `timezone` by [`Config::parse`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub enum CronSetting {
    /// `cron = "off"`: the recipe's cron triggers do not fire.
    Off,
    /// `cron = "<six fields>"`.
    Schedule(String),
}

impl From<String> for CronSetting {
    fn from(s: String) -> Self {
        if s == "off" {
            CronSetting::Off
        } else {
            CronSetting::Schedule(s)
        }
    }
}

/// An optional count that must not be 0, refused in the words of the other checks.
fn more_than_zero<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<NonZeroU64>,
{
    use serde::de::Error;
    let Some(n) = Option::<u64>::deserialize(d)? else {
        return Ok(None);
    };
    let n = NonZeroU64::new(n).ok_or_else(|| D::Error::custom("must be more than 0"))?;
    T::try_from(n)
        .map(Some)
        .map_err(|_| D::Error::custom(format!("{n} is too large")))
}

/// The dotted name (`plugins.hello.concurrency`) of the key or value of `text` at `span`:
/// the innermost one holding it. `None` when `text` is not TOML or nothing there holds it.
fn field_at(text: &str, span: &Range<usize>) -> Option<String> {
    use toml::de::{DeTable, DeValue};
    type Found = Option<(usize, String)>;
    fn consider(at: Range<usize>, span: &Range<usize>, name: &str, best: &mut Found) {
        if at.start <= span.start
            && span.end <= at.end
            && best.as_ref().is_none_or(|(width, _)| at.len() < *width)
        {
            *best = Some((at.len(), name.to_string()));
        }
    }
    fn visit(value: &DeValue<'_>, name: &str, span: &Range<usize>, best: &mut Found) {
        match value {
            DeValue::Table(table) => {
                for (key, value) in table.iter() {
                    let name = if name.is_empty() {
                        key.get_ref().to_string()
                    } else {
                        format!("{name}.{}", key.get_ref())
                    };
                    consider(key.span(), span, &name, best);
                    consider(value.span(), span, &name, best);
                    visit(value.get_ref(), &name, span, best);
                }
            }
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let name = format!("{name}[{i}]");
                    consider(item.span(), span, &name, best);
                    visit(item.get_ref(), &name, span, best);
                }
            }
            _ => {}
        }
    }
    let root = DeTable::parse(text).ok()?.into_inner();
    let mut best = None;
    visit(&DeValue::Table(root), "", span, &mut best);
    best.map(|(_, name)| name)
}

impl Config {
    /// Read and check a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::parse(path, &text)?;
        // Secret files named relative to the config file are found beside it.
        let base = path.parent().unwrap_or(Path::new(""));
        let resolve = |s: &mut SecretSource| {
            if let SecretSource::File(f) = s
                && f.is_relative()
            {
                *f = base.join(&*f);
            }
        };
        for c in config.connections.values_mut() {
            resolve(&mut c.secret);
        }
        for c in config.sources.values_mut() {
            c.secret
                .iter_mut()
                .chain(c.secrets.iter_mut())
                .for_each(resolve);
        }
        if let Some(t) = &mut config.server.admin_token {
            resolve(t);
        }
        Ok(config)
    }

    /// Parse and check configuration text; `path` only names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        // A bad value or an unknown key is named by its dotted field; what is not TOML at all
        // keeps the parser's account (line, column, the line itself).
        let config: Config = toml::from_str(text).map_err(|e| {
            match e.span().and_then(|span| field_at(text, &span)) {
                Some(field) => ConfigError::Invalid {
                    path: path.to_owned(),
                    field,
                    reason: e.message().trim_end().to_string(),
                },
                None => ConfigError::Parse {
                    path: path.to_owned(),
                    message: e.to_string(),
                },
            }
        })?;
        let invalid = |field: String, reason: &str| ConfigError::Invalid {
            path: path.to_owned(),
            field,
            reason: reason.to_string(),
        };
        // Counts that must not be 0 and memory limits are refused by their types, above.
        let check = |field: String, deadline: Option<Duration>| {
            if deadline.is_some_and(|d| d.is_zero()) {
                return Err(invalid(format!("{field}.deadline"), "must be more than 0"));
            }
            Ok(())
        };
        check("runtime".into(), config.runtime.deadline)?;
        let rt = &config.runtime;
        for (field, zero) in [
            (
                "max_outcome_bytes",
                rt.max_outcome_bytes.is_some_and(|n| n < 256),
            ),
            ("cpu_slice", rt.cpu_slice.is_some_and(|d| d.is_zero())),
        ] {
            if zero {
                let least = if field == "max_outcome_bytes" {
                    "256"
                } else {
                    "0"
                };
                let reason = if least == "0" {
                    "must be more than 0".to_string()
                } else {
                    format!("must be at least {least}")
                };
                return Err(invalid(format!("runtime.{field}"), &reason));
            }
        }
        for (name, p) in &config.plugins {
            check(format!("plugins.{name}"), p.deadline)?;
            if let Some(CronSetting::Schedule(expr)) = &p.cron {
                Schedule::parse(expr, p.timezone.as_deref())
                    .map_err(|e| invalid(format!("plugins.{name}.{}", e.field), &e.reason))?;
            } else if p.timezone.is_some() && p.cron.is_none() {
                return Err(invalid(
                    format!("plugins.{name}.timezone"),
                    "applies to a `cron` override; set `cron` too",
                ));
            }
        }
        let pl = &config.pipeline;
        for (field, zero) in [
            ("retry_base", pl.retry_base.is_some_and(|d| d.is_zero())),
            (
                "reload_interval",
                pl.reload_interval.is_some_and(|d| d.is_zero()),
            ),
            (
                "lease",
                pl.lease.is_some_and(|d| d < Duration::from_secs(1)),
            ),
            (
                "keep_succeeded",
                pl.keep_succeeded.is_some_and(|d| d.is_zero()),
            ),
            ("keep_failed", pl.keep_failed.is_some_and(|d| d.is_zero())),
            (
                "sweep_interval",
                pl.sweep_interval.is_some_and(|d| d.is_zero()),
            ),
        ] {
            if zero {
                return Err(invalid(format!("pipeline.{field}"), "must be more than 0"));
            }
        }
        // A delivery may be resent as long as its signed timestamp is within tolerance (on
        // either side of now): the window must cover twice the largest tolerance, or a
        // resent delivery runs again.
        let window = pl
            .dedup_window
            .unwrap_or(PipelineOptions::default().dedup_window);
        let widest = config
            .sources
            .iter()
            .filter(|(_, s)| s.scheme != Some(crate::ingest::SchemeKind::None))
            .map(|(name, s)| {
                (
                    s.tolerance
                        .unwrap_or(crate::ingest::verify::DEFAULT_TOLERANCE),
                    name.as_str(),
                )
            })
            .max();
        let (tolerance, by) = widest.unwrap_or((crate::ingest::verify::DEFAULT_TOLERANCE, ""));
        if window < tolerance * 2 {
            let whose = if by.is_empty() {
                "the default signature tolerance".to_string()
            } else {
                format!("sources.{by}.tolerance")
            };
            return Err(invalid(
                "pipeline.dedup_window".into(),
                &format!(
                    "{} is less than twice {whose} ({}): a delivery resent within its tolerance would run again",
                    humantime::format_duration(window),
                    humantime::format_duration(tolerance),
                ),
            ));
        }
        let instances = config
            .runtime
            .max_instances
            .map_or(RuntimeOptions::default().max_instances, NonZeroU32::get);
        if pl.workers.is_some_and(|w| w.get() > instances as usize) {
            return Err(invalid(
                "pipeline.workers".into(),
                &format!(
                    "must not exceed runtime.max_instances ({instances}): every run in flight needs an instance"
                ),
            ));
        }
        let sv = &config.server;
        for (field, zero) in [
            (
                "header_timeout",
                sv.header_timeout.is_some_and(|d| d.is_zero()),
            ),
            ("body_timeout", sv.body_timeout.is_some_and(|d| d.is_zero())),
            ("idle_timeout", sv.idle_timeout.is_some_and(|d| d.is_zero())),
        ] {
            if zero {
                return Err(invalid(format!("server.{field}"), "must be more than 0"));
            }
        }
        Ok(config)
    }

    /// The pipeline options this configuration asks for, over the defaults.
    pub fn pipeline_options(&self) -> PipelineOptions {
        let d = PipelineOptions::default();
        let p = &self.pipeline;
        PipelineOptions {
            workers: p.workers.map_or(d.workers, NonZeroUsize::get),
            per_plugin: p.per_plugin.map_or(d.per_plugin, NonZeroUsize::get),
            plugin_concurrency: self
                .plugins
                .iter()
                .filter_map(|(n, s)| s.concurrency.map(|c| (n.clone(), c.get())))
                .collect(),
            max_attempts: p.max_attempts.map_or(d.max_attempts, NonZeroU32::get),
            max_deferrals: p.max_deferrals.map_or(d.max_deferrals, NonZeroU32::get),
            retry_base: p.retry_base.unwrap_or(d.retry_base),
            retry_max: p.retry_max.unwrap_or(d.retry_max),
            dedup_window: p.dedup_window.unwrap_or(d.dedup_window),
            grace: p.grace.unwrap_or(d.grace),
            cron_catch_up: p.cron_catch_up.unwrap_or(d.cron_catch_up),
            cron_overrides: self
                .plugins
                .iter()
                .filter_map(|(n, s)| {
                    let o = match s.cron.as_ref()? {
                        CronSetting::Off => CronOverride::Off,
                        CronSetting::Schedule(expr) => CronOverride::Schedule {
                            expr: expr.clone(),
                            timezone: s.timezone.clone(),
                        },
                    };
                    Some((n.clone(), o))
                })
                .collect(),
            reload_interval: p.reload_interval.unwrap_or(d.reload_interval),
            lease: p.lease.unwrap_or(d.lease),
            keep_succeeded: p.keep_succeeded.unwrap_or(d.keep_succeeded),
            keep_failed: p.keep_failed.unwrap_or(d.keep_failed),
            sweep_interval: p.sweep_interval.unwrap_or(d.sweep_interval),
        }
    }

    /// The runtime options this configuration asks for, over the defaults.
    pub fn runtime_options(&self, data_dir: &Path) -> RuntimeOptions {
        let defaults = RuntimeOptions::default();
        RuntimeOptions {
            deadline: self.runtime.deadline.unwrap_or(defaults.deadline),
            memory_limit: self
                .runtime
                .memory_limit_mib
                .map_or(defaults.memory_limit, MemoryMib::bytes),
            max_instances: self
                .runtime
                .max_instances
                .map_or(defaults.max_instances, NonZeroU32::get),
            max_outcome_bytes: self
                .runtime
                .max_outcome_bytes
                .unwrap_or(defaults.max_outcome_bytes),
            log_limits: crate::runtime::state::LogLimits {
                max_lines: self
                    .runtime
                    .log_lines
                    .map_or(defaults.log_limits.max_lines, NonZeroUsize::get),
                max_bytes: self
                    .runtime
                    .log_bytes
                    .map_or(defaults.log_limits.max_bytes, NonZeroUsize::get),
                host_lines: self
                    .runtime
                    .host_log_lines
                    .unwrap_or(defaults.log_limits.host_lines),
                host_bytes: self
                    .runtime
                    .host_log_bytes
                    .unwrap_or(defaults.log_limits.host_bytes),
            },
            kv_quota: crate::store::KvQuota {
                max_keys: self
                    .runtime
                    .kv_max_keys
                    .map_or(defaults.kv_quota.max_keys, NonZeroU64::get),
                max_bytes: self
                    .runtime
                    .kv_max_bytes
                    .map_or(defaults.kv_quota.max_bytes, NonZeroU64::get),
            },
            cpu_slice: self.runtime.cpu_slice.unwrap_or(defaults.cpu_slice),
            slow_lane: self.runtime.slow_lane.unwrap_or(defaults.slow_lane),
            cache_dir: Some(data_dir.join("cache")),
            settings: self
                .plugins
                .iter()
                .filter_map(|(name, p)| {
                    let json = serde_json::to_string(p.settings.as_ref()?)
                        .expect("TOML values serialize as JSON");
                    Some((name.clone(), std::sync::Arc::from(json)))
                })
                .collect(),
            connection_maps: self
                .plugins
                .iter()
                .filter(|(_, p)| !p.connections.is_empty())
                .map(|(name, p)| (name.clone(), p.connections.clone()))
                .collect(),
            overrides: self
                .plugins
                .iter()
                .map(|(name, p)| {
                    (
                        name.clone(),
                        PluginOverrides {
                            deadline: p.deadline,
                            memory_limit: p.memory_limit_mib.map(MemoryMib::bytes),
                            kv_max_keys: p.kv_max_keys.map(NonZeroU64::get),
                            kv_max_bytes: p.kv_max_bytes.map(NonZeroU64::get),
                        },
                    )
                })
                .collect(),
            ..defaults
        }
    }
}

/// A `[plugins.<name>]` section naming no loaded recipe: not an error (the recipe may be
/// dropped into the plugins folder later), but most likely a typo, so worth a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPlugin {
    pub name: String,
    /// The recipes that are loaded, by name.
    pub loaded: Vec<String>,
}

impl std::fmt::Display for UnknownPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let loaded = if self.loaded.is_empty() {
            "none".to_string()
        } else {
            self.loaded.join(", ")
        };
        write!(
            f,
            "[plugins.{}] names no loaded recipe (loaded: {loaded})",
            self.name
        )
    }
}

/// The `[plugins.<name>]` sections among `configured` that name none of the `loaded`
/// recipes, in the order of `configured`.
pub fn unknown_plugins<'a>(
    configured: impl IntoIterator<Item = &'a String>,
    loaded: &[String],
) -> Vec<UnknownPlugin> {
    let mut sorted = loaded.to_vec();
    sorted.sort();
    sorted.dedup();
    configured
        .into_iter()
        .filter(|name| sorted.binary_search(name).is_err())
        .map(|name| UnknownPlugin {
            name: name.clone(),
            loaded: sorted.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_overrides() {
        let c = Config::parse(
            Path::new("t.toml"),
            "[runtime]\ndeadline = \"2s\"\n[plugins.hello]\nmemory_limit_mib = 16\n",
        )
        .unwrap();
        let o = c.runtime_options(Path::new("/d"));
        assert_eq!(o.deadline, Duration::from_secs(2));
        assert_eq!(o.overrides["hello"].memory_limit, Some(16 << 20));
        assert_eq!(o.cache_dir.as_deref(), Some(Path::new("/d/cache")));
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let e = Config::parse(Path::new("t.toml"), "[runtime]\ndeadlin = \"2s\"\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("t.toml: "), "{msg}");
        assert!(msg.contains("deadlin"), "{msg}");
        let e = Config::parse(Path::new("t.toml"), "[plugins.x]\nmemory_limit_mib = 0\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "t.toml: plugins.x.memory_limit_mib: must be between 1 and 4096"
        );
        for (text, field) in [
            (
                "[pipeline]\ndedup_window = \"1m\"\n",
                "pipeline.dedup_window",
            ),
            (
                "[pipeline]\ndedup_window = \"5m\"\n",
                "pipeline.dedup_window",
            ),
            (
                "[pipeline]\ndedup_window = \"1h\"\n[sources.forms]\ntolerance = \"1h\"\n",
                "pipeline.dedup_window",
            ),
            ("[server]\nidle_timeout = \"0s\"\n", "server.idle_timeout"),
            ("[pipeline]\nworkers = 200\n", "pipeline.workers"),
            ("[pipeline]\nmax_attempts = 0\n", "pipeline.max_attempts"),
            ("[plugins.x]\ncron = \"* * * *\"\n", "plugins.x.schedule"),
            (
                "[plugins.x]\ncron = \"* * * * * *\"\ntimezone = \"Nowhere\"\n",
                "plugins.x.timezone",
            ),
        ] {
            let e = Config::parse(Path::new("t.toml"), text)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(&format!("t.toml: {field}: ")), "{e}");
        }
    }

    #[test]
    fn zero_counts_are_refused_by_type_naming_the_field() {
        for (text, field) in [
            ("[pipeline]\nworkers = 0\n", "pipeline.workers"),
            ("[pipeline]\nper_plugin = 0\n", "pipeline.per_plugin"),
            ("[pipeline]\nmax_attempts = 0\n", "pipeline.max_attempts"),
            ("[pipeline]\nmax_deferrals = 0\n", "pipeline.max_deferrals"),
            ("[runtime]\nmax_instances = 0\n", "runtime.max_instances"),
            ("[runtime]\nlog_lines = 0\n", "runtime.log_lines"),
            ("[runtime]\nlog_bytes = 0\n", "runtime.log_bytes"),
            ("[runtime]\nkv_max_keys = 0\n", "runtime.kv_max_keys"),
            ("[runtime]\nkv_max_bytes = 0\n", "runtime.kv_max_bytes"),
            ("[plugins.x]\nconcurrency = 0\n", "plugins.x.concurrency"),
            ("[plugins.x]\nkv_max_keys = 0\n", "plugins.x.kv_max_keys"),
            ("[plugins.x]\nkv_max_bytes = 0\n", "plugins.x.kv_max_bytes"),
            ("[server]\nmax_body_bytes = 0\n", "server.max_body_bytes"),
            ("[server]\nmax_connections = 0\n", "server.max_connections"),
            // Dotted keys and inline tables are named the same way.
            ("pipeline.workers = 0\n", "pipeline.workers"),
            (
                "plugins = { x = { concurrency = 0 } }\n",
                "plugins.x.concurrency",
            ),
        ] {
            let e = Config::parse(Path::new("t.toml"), text)
                .unwrap_err()
                .to_string();
            assert_eq!(e, format!("t.toml: {field}: must be more than 0"), "{text}");
        }
        let e = Config::parse(Path::new("t.toml"), "[runtime]\nmemory_limit_mib = 4097\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "t.toml: runtime.memory_limit_mib: must be between 1 and 4096"
        );
        let e = Config::parse(Path::new("t.toml"), "[pipeline]\nworkers = -1\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.toml: pipeline.workers: "), "{e}");
        let e = Config::parse(
            Path::new("t.toml"),
            "[runtime]\nmax_instances = 4294967296\n",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(e, "t.toml: runtime.max_instances: 4294967296 is too large");
        // 0 still means something where it always did.
        let c = Config::parse(
            Path::new("t.toml"),
            "[runtime]\nslow_lane = 0\nhost_log_lines = 0\n[pipeline]\nworkers = 2\nmax_attempts = 3\n[plugins.x]\nconcurrency = 1\n",
        )
        .unwrap();
        assert_eq!(c.runtime_options(Path::new("/d")).slow_lane, 0);
        let o = c.pipeline_options();
        assert_eq!((o.workers, o.max_attempts, o.concurrency("x")), (2, 3, 1));
        // What is not TOML keeps the parser's account of where.
        let e = Config::parse(Path::new("t.toml"), "[pipeline\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.toml: TOML parse error at line 1"), "{e}");
        let e = Config::parse(Path::new("t.toml"), "[server]\nlisten = 5\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.toml: server.listen: invalid type"), "{e}");
    }

    #[test]
    fn cron_is_off_or_a_schedule() {
        let c = Config::parse(
            Path::new("t.toml"),
            "[plugins.a]\ncron = \"off\"\n[plugins.b]\ncron = \"*/30 * * * * *\"\ntimezone = \"America/Denver\"\n",
        )
        .unwrap();
        assert_eq!(c.plugins["a"].cron, Some(CronSetting::Off));
        assert_eq!(
            c.plugins["b"].cron,
            Some(CronSetting::Schedule("*/30 * * * * *".into()))
        );
        let o = c.pipeline_options();
        assert_eq!(o.cron_overrides["a"], CronOverride::Off);
        assert_eq!(
            o.cron_overrides["b"],
            CronOverride::Schedule {
                expr: "*/30 * * * * *".into(),
                timezone: Some("America/Denver".into()),
            }
        );
        for (text, field) in [
            (
                "[plugins.x]\ncron = \"every minute\"\n",
                "plugins.x.schedule",
            ),
            (
                "[plugins.x]\ncron = \"61 * * * * *\"\n",
                "plugins.x.schedule",
            ),
            // Only "off" turns it off: anything else is a schedule, and checked as one.
            ("[plugins.x]\ncron = \"OFF\"\n", "plugins.x.schedule"),
            ("[plugins.x]\ncron = 5\n", "plugins.x.cron"),
            ("[plugins.x]\ntimezone = \"UTC\"\n", "plugins.x.timezone"),
        ] {
            let e = Config::parse(Path::new("t.toml"), text)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(&format!("t.toml: {field}: ")), "{text}: {e}");
        }
    }

    #[test]
    fn plugin_sections_naming_no_loaded_recipe_are_found() {
        let c = Config::parse(
            Path::new("t.toml"),
            "[plugins.helo]\ndeadline = \"1s\"\n[plugins.hello]\nconcurrency = 1\n[plugins.old]\n",
        )
        .unwrap();
        let loaded = ["lead-router".to_string(), "hello".to_string()];
        let unknown = unknown_plugins(c.plugins.keys(), &loaded);
        let said: Vec<String> = unknown.iter().map(ToString::to_string).collect();
        assert_eq!(
            said,
            [
                "[plugins.helo] names no loaded recipe (loaded: hello, lead-router)",
                "[plugins.old] names no loaded recipe (loaded: hello, lead-router)",
            ]
        );
        assert_eq!(unknown[0].name, "helo");
        assert!(
            unknown_plugins(
                c.plugins.keys(),
                &["helo".into(), "hello".into(), "old".into()]
            )
            .is_empty()
        );
        let none = unknown_plugins(c.plugins.keys(), &[]);
        assert_eq!(
            none.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
            ["hello", "helo", "old"]
        );
        assert_eq!(
            none[1].to_string(),
            "[plugins.helo] names no loaded recipe (loaded: none)"
        );
        assert!(unknown_plugins(Config::default().plugins.keys(), &loaded).is_empty());
    }
}
