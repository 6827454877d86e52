//! The durable event pipeline: accepted events are stored durably before they are
//! acknowledged, fanned out to one run per subscribed recipe, and executed by a bounded
//! worker pool with leases, retries, deferrals, dead runs and replay.
//!
//! - [`backend`]: the store, as pipeline operations (accept, claim with a lease, settle,
//!   query, sweep), implemented by the sled backend (crate `switchboard-sled`, one host) and
//!   the PostgreSQL backend (crate `switchboard-postgres`, several hosts); [`conformance`]
//!   pins its semantics;
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
mod intake;
pub mod metrics;
mod options;
pub mod registry;
pub mod transfer;
pub use intake::{Ack, Incoming, glob, order_key};
pub use options::{CatchUp, CronOverride, PipelineOptions};
pub use switchboard_model::schedule;

use backend::{Backend, BackendError, BackendResult, QueueCounts, Replayed, RunPage, RunQuery};
use registry::Registry;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_model::effect::Effect;
use switchboard_model::{AttemptRecord, LogLine, RunRecord, StoredEvent};
use switchboard_runtime::Runtime;
use tokio::sync::broadcast;

/// How long a host trusts its last read of the paused recipes (another host may pause or
/// resume one).
pub const PAUSED_FRESH: Duration = Duration::from_secs(1);

/// The paused recipes as this host last read them from the store, and when; `generation`
/// counts this host's own pauses and resumes, so a read that began before one is not kept.
#[derive(Default)]
struct PausedCache {
    set: BTreeSet<String>,
    read_at: Option<Instant>,
    generation: u64,
}

impl PausedCache {
    fn changed(&mut self, change: impl FnOnce(&mut BTreeSet<String>) -> bool) {
        change(&mut self.set);
        self.generation += 1;
    }
}

pub use switchboard_model::{now_ms, rfc3339};

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
    /// Each attempt as it ended, oldest first.
    pub timeline: Vec<AttemptRecord>,
}

/// What the host's trace export adds to the pipeline's spans (the pipeline itself knows no
/// exporter).
pub trait Traces: Send + Sync {
    /// Whether to trace what arrives now (a webhook, a cron fire): decided before any span
    /// is made, so that an event not traced costs no span at all.
    fn sample(&self) -> bool;
    /// The event `event_id` was accepted within the current span (a webhook's, a cron
    /// fire's), which is traced or not: its runs follow.
    fn accepted(&self, event_id: &str, traced: bool);
    /// Whether an attempt at a run of `event_id` is traced: as its event was, when this
    /// host accepted it; else as [`Traces::sample`] says.
    fn wanted(&self, event_id: &str) -> bool;
    /// `span`, not yet entered, is a traced attempt at a run of the event `event_id`: make
    /// it part of the trace that accepted the event, when that is known; its trace id.
    fn attempt(&self, span: &tracing::Span, event_id: &str) -> Option<String>;
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
    /// The host's trace export, once it is set.
    traces: std::sync::OnceLock<Arc<dyn Traces>>,
    /// The recipes paused on the store (no run of theirs starts; they wait, queued).
    paused: Mutex<PausedCache>,
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
        let pipeline = Self::new(runtime, registry, backend, options);
        pipeline.clone().go();
        pipeline
    }

    /// The pipeline over `backend`, not running yet: what must see every run from the first
    /// one on (the trace export, subscribers to finished runs) is set up before
    /// [`go`](Self::go).
    pub fn new(
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
        Arc::new(Pipeline {
            backend,
            registry,
            runtime,
            options,
            holder,
            held: Mutex::new(HashMap::new()),
            finished: broadcast::channel(4096).0,
            stopping: AtomicBool::new(false),
            slot_freed: tokio::sync::Notify::new(),
            traces: std::sync::OnceLock::new(),
            paused: Mutex::new(PausedCache::default()),
            counters: Counters::default(),
        })
    }

    /// Start the workers (runs already due, such as those left by a restart, begin now)
    /// and the retention sweeper.
    pub fn go(self: Arc<Self>) {
        tokio::spawn(dispatch::run(self.clone()));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(self.options.sweep_interval).await;
                if self.is_stopping() {
                    break;
                }
                self.sweep().await;
            }
        });
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Join each attempt's span to its event's trace through `traces` (once; later calls
    /// change nothing).
    pub fn set_traces(&self, traces: Arc<dyn Traces>) {
        let _ = self.traces.set(traces);
    }

    /// Stop starting runs of `recipe` on every host of the store (runs in flight finish;
    /// new ones are accepted and wait, queued) until [`Pipeline::resume`], across restarts;
    /// whether it was running.
    pub async fn pause(&self, recipe: &str) -> BackendResult<bool> {
        let changed = self.backend.set_paused(recipe, true).await?;
        self.lock_paused()
            .changed(|set| set.insert(recipe.to_string()));
        if changed {
            tracing::info!(recipe, "recipe paused");
        }
        Ok(changed)
    }

    /// Start runs of `recipe` again; whether it was paused.
    pub async fn resume(&self, recipe: &str) -> BackendResult<bool> {
        let changed = self.backend.set_paused(recipe, false).await?;
        self.lock_paused().changed(|set| set.remove(recipe));
        if changed {
            tracing::info!(recipe, "recipe resumed");
            self.slot_freed.notify_one();
        }
        Ok(changed)
    }

    /// The recipes paused on the store: read again when the last read is older than
    /// [`PAUSED_FRESH`] (another host may have paused or resumed one); the last one read
    /// when the store cannot be read (tried again after [`PAUSED_FRESH`]).
    pub async fn paused(&self) -> BTreeSet<String> {
        let generation = {
            let cache = self.lock_paused();
            if cache.read_at.is_some_and(|at| at.elapsed() < PAUSED_FRESH) {
                return cache.set.clone();
            }
            cache.generation
        };
        let read = self.backend.paused().await;
        let mut cache = self.lock_paused();
        match read {
            // A pause or resume of this host since the read began is not in it: keep the
            // cache, and read again next time.
            Ok(_) if cache.generation != generation => {}
            Ok(now) => {
                cache.set = now;
                cache.read_at = Some(Instant::now());
            }
            Err(e) => {
                tracing::warn!("reading the paused recipes failed: {e}; using the last read");
                cache.read_at = Some(Instant::now());
            }
        }
        cache.set.clone()
    }

    fn lock_paused(&self) -> std::sync::MutexGuard<'_, PausedCache> {
        self.paused.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Note that `event_id` was accepted within the current span (see [`Traces::accepted`]).
    pub fn traced(&self, event_id: &str, traced: bool) {
        if let Some(traces) = self.traces.get() {
            traces.accepted(event_id, traced);
        }
    }

    /// Whether to trace an event arriving now: `None` when no traces are exported (spans
    /// are made as ever, for the logs), else the sampling decision.
    pub fn sample_trace(&self) -> Option<bool> {
        self.traces.get().map(|t| t.sample())
    }

    /// The runtime recipes run in (and its vendor connections).
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
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

    /// Unfinished runs now: due, queued for later, running.
    pub async fn load(&self) -> Result<QueueCounts, PipelineError> {
        Ok(self.backend.counts(now_ms()).await?)
    }

    /// The store's I/O failure, if it has failed.
    pub fn store_failure(&self) -> Option<String> {
        self.backend.failure()
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
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
        let timeline = self.backend.attempts(id).await?;
        Ok(RunDetail {
            run,
            logs,
            timeline,
        })
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

/// This machine's name, for lease holders (`HOSTNAME`, else `/etc/hostname`).
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into())
}
