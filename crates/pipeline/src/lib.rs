//! The durable event pipeline: accepted events are stored durably before they are
//! acknowledged, fanned out to one run per subscribed recipe, and executed by a bounded
//! worker pool with leases, retries, deferrals, dead runs and replay.
//!
//! - [`backend`]: the store, as pipeline operations (accept, claim with a lease, settle,
//!   query, sweep); [`sled`] implements it for one host, [`conformance`] pins its semantics;
//! - [`dispatch`]: the workers: claim due runs, run them, settle them (retry policy);
//! - [`registry`]: the plugins folder, hot reloaded;
//! - [`cron`]: scheduled triggers, each tick fired once.
//!
//! Crash safety: an event is acknowledged only once it and its runs are durable; a host that
//! dies leaves its runs leased, and they run again when their lease expires (sled: at the
//! next start). A run's later states are written without a flush of their own, so a crash
//! may run a recipe again on an event it just finished: delivery to recipes is at least once,
//! the record of each (event, recipe) is exactly one, and calls that change vendors are
//! journaled so that a re-run never repeats them.

pub mod backend;
pub mod conformance;
pub mod cron;
pub mod dispatch;
pub mod registry;
pub mod sled;
pub mod store;
pub use switchboard_model::schedule;

use backend::{Accepted, Backend, BackendError, NewEvent, NewRun, Replayed, RunPage, RunQuery};
use registry::Registry;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_model::effect::Effect;
use switchboard_model::{Event, LogLine, RunRecord, StoredEvent, Trigger};
use switchboard_runtime::Runtime;
use tokio::sync::broadcast;

pub use switchboard_model::{now_ms, rfc3339};

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

/// Why the pipeline could not take or find something.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("no run {0}")]
    NoRun(String),
    #[error("no recipe named '{0}' is loaded")]
    NoPlugin(String),
    #[error("the host is shutting down")]
    ShuttingDown,
}

impl PipelineError {
    /// Whether the store failed to read or write (a full disk, a lost connection).
    pub fn is_store_io(&self) -> bool {
        matches!(self, PipelineError::Backend(BackendError::Io(_)))
    }
}

/// An event on its way in, before it has an id.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The event's id, when the caller took one already.
    pub event_id: Option<String>,
    pub source: String,
    pub kind: String,
    /// The sender's delivery id; repeated ids are deduplicated. `None`: never a duplicate.
    pub delivery_id: Option<String>,
    pub payload: Box<serde_json::value::RawValue>,
}

/// The answer to an accepted event.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Ack {
    pub event_id: String,
    /// True when this delivery was accepted before (nothing new is run).
    pub duplicate: bool,
    /// The runs queued for it.
    pub runs: Vec<String>,
}

/// Counters the admin API reports.
#[derive(Debug, Default, Serialize)]
pub struct Counters {
    pub accepted: std::sync::atomic::AtomicU64,
    pub duplicates: std::sync::atomic::AtomicU64,
    pub succeeded: std::sync::atomic::AtomicU64,
    pub failed: std::sync::atomic::AtomicU64,
    pub dead: std::sync::atomic::AtomicU64,
    pub retried: std::sync::atomic::AtomicU64,
    /// Runs a recipe deferred (held until a later time, not counted as attempts).
    pub deferred: std::sync::atomic::AtomicU64,
}

/// A run with its log lines, as one view shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RunDetail {
    #[serde(flatten)]
    pub run: RunRecord,
    pub logs: Vec<LogLine>,
}

/// The pipeline.
pub struct Pipeline {
    backend: Arc<dyn Backend>,
    registry: Arc<Registry>,
    runtime: Arc<Runtime>,
    options: PipelineOptions,
    /// This host, as lease holder.
    holder: String,
    /// Runs this host holds now, with their leases.
    held: Mutex<HashMap<String, backend::Lease>>,
    /// Runs reaching a final state, or deferred, as they do.
    finished: broadcast::Sender<RunRecord>,
    stopping: AtomicBool,
    /// Wakes the dispatcher when a worker slot frees.
    slot_freed: tokio::sync::Notify,
    pub counters: Counters,
}

impl Pipeline {
    /// Start the pipeline over `backend`: the workers and the retention sweeper.
    pub fn start(
        runtime: Arc<Runtime>,
        registry: Arc<Registry>,
        backend: Arc<dyn Backend>,
        options: PipelineOptions,
    ) -> Arc<Self> {
        let holder = format!(
            "{}:{}:{:08x}",
            hostname(),
            std::process::id(),
            fastrand::u32(..)
        );
        let pipeline = Arc::new(Pipeline {
            backend,
            registry,
            runtime,
            options,
            holder,
            held: Mutex::new(HashMap::new()),
            finished: broadcast::channel(4096).0,
            stopping: AtomicBool::new(false),
            slot_freed: tokio::sync::Notify::new(),
            counters: Counters::default(),
        });
        tokio::spawn(dispatch::run(pipeline.clone()));
        let sweeper = pipeline.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(sweeper.options.sweep_interval).await;
                if sweeper.is_stopping() {
                    break;
                }
                sweeper.sweep().await;
            }
        });
        pipeline
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn options(&self) -> &PipelineOptions {
        &self.options
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// This host's name as a lease holder.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Runs reaching a final state, or deferred by their recipe (held, `queued`), as they do.
    pub fn subscribe(&self) -> broadcast::Receiver<RunRecord> {
        self.finished.subscribe()
    }

    /// (queued, running) runs now.
    pub async fn load(&self) -> (usize, usize) {
        self.backend.counts().await.unwrap_or((0, 0))
    }

    /// The store's I/O failure, if it has failed.
    pub fn store_failure(&self) -> Option<String> {
        self.backend.failure()
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// The recipes subscribed to an event of `source` and `kind`.
    pub fn subscribers(&self, source: &str, kind: &str) -> Vec<String> {
        self.registry
            .current()
            .iter()
            .filter(|p| {
                p.manifest.triggers.iter().any(|t| match t {
                    Trigger::Webhook { source: s, kind: k } => {
                        (s == "*" || s == source) && glob(k, kind)
                    }
                    Trigger::Cron { .. } => false,
                })
            })
            .map(|p| p.name.to_string())
            .collect()
    }

    /// The runs of `event`: one per recipe, each with its ordering key when the recipe
    /// declares one.
    fn runs_of(&self, event: &Event, plugins: Vec<String>) -> Vec<NewRun> {
        let current = self.registry.current();
        plugins
            .into_iter()
            .map(|plugin| {
                let order_key = current
                    .get(&plugin)
                    .and_then(|p| p.manifest.ordering_key.as_deref())
                    .and_then(|pointer| order_key(event, pointer));
                NewRun { plugin, order_key }
            })
            .collect()
    }

    /// The event an incoming delivery becomes, with its runs (for every subscribed recipe,
    /// or only `only`).
    async fn new_event(
        &self,
        incoming: Incoming,
        only: Option<&str>,
    ) -> Result<NewEvent, PipelineError> {
        let plugins = match only {
            Some(name) => {
                if self.registry.current().get(name).is_none() {
                    return Err(PipelineError::NoPlugin(name.to_string()));
                }
                vec![name.to_string()]
            }
            None => self.subscribers(&incoming.source, &incoming.kind),
        };
        let now = now_ms();
        let id = match incoming.event_id {
            Some(id) => id,
            None => self.backend.next_event_id().await?,
        };
        let event = Event {
            id,
            source: incoming.source,
            kind: incoming.kind,
            time: rfc3339(now),
            payload: incoming.payload,
        };
        let runs = self.runs_of(&event, plugins);
        Ok(NewEvent {
            delivery_id: incoming.delivery_id.unwrap_or_else(|| event.id.clone()),
            received_ms: now,
            window_ms: self.options.dedup_window.as_millis() as i64,
            runs,
            event,
        })
    }

    /// Store an event with a run for each recipe subscribed to it (or only for `only`), and
    /// return once it is durable.
    pub async fn ingest(
        &self,
        incoming: Incoming,
        only: Option<&str>,
    ) -> Result<Ack, PipelineError> {
        if self.is_stopping() {
            return Err(PipelineError::ShuttingDown);
        }
        let new = self.new_event(incoming, only).await?;
        let (source, delivery, event_id) = (
            new.event.source.clone(),
            new.delivery_id.clone(),
            new.event.id.clone(),
        );
        Ok(match self.backend.accept(new).await? {
            Accepted::Duplicate { event_id } => {
                self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                tracing::info!(source = %source.escape_debug(), delivery = %delivery.escape_debug(), event = %event_id, "duplicate delivery acknowledged");
                Ack {
                    event_id,
                    duplicate: true,
                    runs: Vec::new(),
                }
            }
            Accepted::New { runs } => {
                self.counters.accepted.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(event = %event_id, runs = runs.len(), "event accepted");
                Ack {
                    event_id,
                    duplicate: false,
                    runs: runs.into_iter().map(|r| r.id).collect(),
                }
            }
        })
    }

    /// Fire a cron tick (see [`cron`]).
    pub(crate) async fn fire_tick(
        &self,
        plugin: &str,
        trigger: usize,
        tick_ms: i64,
        incoming: Incoming,
    ) -> Result<backend::TickFire, PipelineError> {
        let new = self.new_event(incoming, Some(plugin)).await?;
        Ok(self
            .backend
            .fire_tick(plugin, trigger, tick_ms, new)
            .await?)
    }

    /// Runs `query` matches, newest first, a page at a time.
    pub async fn runs(&self, query: &RunQuery) -> Result<RunPage, PipelineError> {
        Ok(self.backend.runs(query).await?)
    }

    /// A run, without its logs.
    pub async fn run(&self, id: &str) -> Result<RunRecord, PipelineError> {
        self.backend
            .run(id)
            .await?
            .ok_or_else(|| PipelineError::NoRun(id.to_string()))
    }

    /// A run with its logs.
    pub async fn run_detail(&self, id: &str) -> Result<RunDetail, PipelineError> {
        let run = self.run(id).await?;
        let logs = self.backend.logs(id).await?;
        Ok(RunDetail { run, logs })
    }

    pub async fn event(&self, id: &str) -> Result<Option<StoredEvent>, PipelineError> {
        Ok(self.backend.event(id).await?)
    }

    /// The effect journal of a run: every call that may change a vendor, in order.
    pub async fn effects(&self, run: &str) -> Result<Vec<Effect>, PipelineError> {
        Ok(self.backend.effects(run).await?)
    }

    /// Queue a finished run again, from its first attempt; a deferred run, now. Calls the run
    /// made that took effect are answered from the effect journal, not sent again; with
    /// `resend_unconfirmed`, calls whose outcome is unknown are forgotten first and sent
    /// again (an operator checked that they did not take effect).
    pub async fn replay(
        &self,
        id: &str,
        resend_unconfirmed: bool,
    ) -> Result<RunRecord, PipelineError> {
        if self.is_stopping() {
            return Err(PipelineError::ShuttingDown);
        }
        Ok(self
            .backend
            .replay(id, now_ms(), resend_unconfirmed)
            .await?)
    }

    /// Replay every finished run `query` matches (failed and dead by default); with
    /// `dry_run`, only count them. Replays run on the recipe's current version.
    pub async fn replay_matching(
        &self,
        query: &RunQuery,
        dry_run: bool,
    ) -> Result<Replayed, PipelineError> {
        if self.is_stopping() && !dry_run {
            return Err(PipelineError::ShuttingDown);
        }
        Ok(self
            .backend
            .replay_matching(query, now_ms(), dry_run)
            .await?)
    }

    /// Apply retention now.
    pub async fn sweep(&self) {
        match self
            .backend
            .sweep(now_ms(), &self.options.retention())
            .await
        {
            Ok(swept) if swept != backend::Swept::default() => {
                tracing::info!(
                    runs = swept.runs,
                    events = swept.events,
                    deliveries = swept.deliveries,
                    effects = swept.effects,
                    "retention: removed what is no longer kept"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("retention sweep failed: {e}"),
        }
    }

    /// Stop accepting events and starting runs: the first step of a shutdown.
    pub fn stop_accepting(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.slot_freed.notify_one();
    }

    /// Stop taking work, give runs in flight `grace` to finish, and release the rest (queued
    /// again, the attempt not counted) for the next start or another host.
    pub async fn shutdown(&self) {
        self.stop_accepting();
        let deadline = tokio::time::Instant::now() + self.options.grace;
        while !self.held().is_empty() && tokio::time::Instant::now() < deadline {
            let _ = tokio::time::timeout_at(deadline, self.slot_freed.notified()).await;
        }
        for lease in self.held() {
            match self
                .backend
                .settle(
                    &lease,
                    now_ms(),
                    backend::Settlement::Released,
                    backend::AttemptReport::default(),
                )
                .await
            {
                Ok(_) => {
                    tracing::warn!(run = %lease.run, "run interrupted by shutdown; queued for the next start")
                }
                // It finished meanwhile, and keeps its result.
                Err(BackendError::Stale { .. }) => {}
                Err(e) => {
                    tracing::error!(run = %lease.run, "could not release an interrupted run: {e}")
                }
            }
        }
        if let Err(e) = self.backend.flush().await {
            tracing::error!("flushing the store at shutdown failed: {e}");
        }
    }

    fn held(&self) -> Vec<backend::Lease> {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

/// The ordering key an event gives a recipe that orders by the JSON pointer `pointer`: the
/// value there, as text (a string as it is, anything else as JSON). `None` when the event has
/// nothing there: such runs are not ordered.
pub fn order_key(event: &Event, pointer: &str) -> Option<String> {
    let payload: serde_json::Value = serde_json::from_str(event.payload.get()).ok()?;
    match payload.pointer(pointer)? {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// This machine's name, for lease holders (`HOSTNAME`, else `/etc/hostname`).
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into())
}

/// `pattern` with `*` matching any run of characters (and `?` any one character).
pub fn glob(pattern: &str, text: &str) -> bool {
    wildmatch::WildMatch::new(pattern).matches(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("*", "customer.updated"));
        assert!(glob("customer.*", "customer.updated"));
        assert!(!glob("customer.*", "job.created"));
        assert!(glob("*.created", "lead.created"));
        assert!(glob("job.*.started", "job.appointment.started"));
        assert!(!glob("job.*.started", "job.started"));
        assert!(glob("ContactUpdate", "ContactUpdate"));
        assert!(!glob("Contact", "ContactUpdate"));
        // Non-ASCII text and patterns (a hand-written matcher once sliced inside a character).
        assert!(!glob("é*é", "éa"));
        assert!(glob("*é", "caféé"));
        assert!(!glob("ab*cd", "abé"));
    }

    #[test]
    fn order_keys_come_from_the_payload() {
        let event = |payload: serde_json::Value| Event::new("e", "s", "k", "t", &payload);
        let e = event(serde_json::json!({"customer": {"id": "cus_1", "n": 7}}));
        assert_eq!(order_key(&e, "/customer/id"), Some("cus_1".into()));
        assert_eq!(order_key(&e, "/customer/n"), Some("7".into()));
        assert_eq!(order_key(&e, "/customer/missing"), None);
        assert_eq!(
            order_key(&event(serde_json::json!({"id": null})), "/id"),
            None
        );
    }
}
