//! The durable event pipeline: accepted events are journaled and flushed before they are
//! acknowledged, fanned out to one run per subscribed plugin, and executed by a bounded
//! worker pool with retries, dead-lettering and replay.
//!
//! - [`journal`]: the records in sled (events, delivery ids, runs, the pending index);
//! - [`queue`]: the in-memory schedule of pending runs and the concurrency limits;
//! - [`registry`]: the plugins folder, hot reloaded;
//! - [`cron`] and [`schedule`]: scheduled triggers.
//!
//! Crash safety: an event is acknowledged only after its runs are on disk in the pending
//! index; at start every pending run is queued again (one that was running when the host
//! died is retried, its attempt counted). A run's final state is written without a flush
//! of its own (sled flushes within 500 ms, and at shutdown), so a crash may run a recipe
//! again on an event it just finished: delivery to recipes is at least once, and the
//! record of each (event, plugin) is always exactly one.

pub mod cron;
pub mod journal;
pub mod queue;
pub mod registry;
pub mod store;
pub use switchboard_model::schedule;

use crate::store::commit::CommitError;
use crate::store::effects::{Effect, Effects};
use futures_util::FutureExt;
use journal::{Accepted, Journal, JournalError, RunRecord, RunStatus, StoredEvent};
use queue::{Next, Queue};
use registry::Registry;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_model::{Event, Outcome, RecipeError, Trigger};
use switchboard_runtime::{RunError, Runtime};
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
    /// Runs in flight at once, over all plugins.
    pub workers: usize,
    /// Runs in flight at once for one plugin, unless `plugin_concurrency` says otherwise.
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
        }
    }
}

/// Why the pipeline could not take or find something.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error("no run {0}")]
    NoRun(String),
    #[error("no recipe named '{0}' is loaded")]
    NoPlugin(String),
    #[error("run {id} is {status}; only finished runs can be replayed")]
    NotFinished { id: String, status: &'static str },
    #[error("the host is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl PipelineError {
    /// Whether the store failed to read or write (a full disk, a read-only remount).
    pub fn is_store_io(&self) -> bool {
        use crate::store::StoreError;
        matches!(
            self,
            PipelineError::Commit(_)
                | PipelineError::Journal(JournalError::Sled(sled::Error::Io(_)))
                | PipelineError::Store(
                    StoreError::Commit(_) | StoreError::Sled(sled::Error::Io(_))
                )
        )
    }
}

/// An event on its way in, before it has an id.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The event's id, when the caller took one already (`Journal::next_event_id`).
    pub event_id: Option<String>,
    pub source: String,
    pub kind: String,
    /// The sender's delivery id; repeated ids are deduplicated. `None`: never a duplicate.
    pub delivery_id: Option<String>,
    pub payload: Box<serde_json::value::RawValue>,
}

/// The answer to an accepted event.
#[derive(Debug, Clone, Serialize)]
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

/// Filters for listing runs.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub plugin: Option<String>,
    pub status: Option<Vec<RunStatus>>,
    pub event_id: Option<String>,
    /// RFC 3339 bounds on `created_at`.
    pub since: Option<String>,
    pub until: Option<String>,
    /// Only runs with (true) or without (false) unconfirmed calls.
    pub unconfirmed: Option<bool>,
    pub limit: usize,
}

/// The pipeline.
pub struct Pipeline {
    store: crate::store::Store,
    journal: Journal,
    effects: Effects,
    registry: Arc<Registry>,
    runtime: Arc<Runtime>,
    options: PipelineOptions,
    queue: Queue,
    /// Plugins with a scheduled run not finished yet, and that run's id.
    cron_active: Mutex<HashMap<String, String>>,
    finished: broadcast::Sender<RunRecord>,
    stopping: AtomicBool,
    pub counters: Counters,
}

impl Pipeline {
    /// Open the pipeline over `store`, queue every pending run, and start the workers.
    pub fn start(
        runtime: Arc<Runtime>,
        registry: Arc<Registry>,
        store: crate::store::Store,
        options: PipelineOptions,
    ) -> Result<Arc<Self>, PipelineError> {
        let db = store.db();
        let journal = Journal::new(db.clone())?;
        let effects = store.effects();
        let queue = Queue::new(
            options.workers,
            options.per_plugin,
            options.plugin_concurrency.clone(),
        );
        let pipeline = Arc::new(Pipeline {
            store,
            journal,
            effects,
            registry,
            runtime,
            options,
            queue,
            cron_active: Mutex::new(HashMap::new()),
            finished: broadcast::channel(4096).0,
            stopping: AtomicBool::new(false),
            counters: Counters::default(),
        });
        let now = now_ms();
        let mut resumed = 0;
        let window = pipeline.options.dedup_window.as_millis() as i64;
        for (mut run, due) in pipeline.journal.pending(now, window)? {
            if run.status == RunStatus::Running {
                // The host stopped mid-run: run it again now.
                run.status = RunStatus::Queued;
                run.updated_at = rfc3339(now);
                pipeline.journal.put_run(&run, Some(now))?;
            }
            if run.source == cron::SOURCE {
                pipeline
                    .cron_active
                    .lock()
                    .unwrap()
                    .insert(run.plugin.clone(), run.id.clone());
            }
            pipeline
                .queue
                .push(&run.plugin, &run.id, due.min(now.max(due)));
            resumed += 1;
        }
        if resumed > 0 {
            tracing::info!(runs = resumed, "resuming pending runs");
        }
        let scheduler = pipeline.clone();
        tokio::spawn(async move { scheduler.schedule().await });
        let sweeper = pipeline.clone();
        tokio::spawn(async move {
            let window = sweeper.options.dedup_window.as_millis() as i64;
            loop {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                if sweeper.stopping.load(Ordering::Relaxed) {
                    break;
                }
                match sweeper.journal.sweep_deliveries(now_ms(), window) {
                    Ok(n) if n > 0 => tracing::info!(removed = n, "forgot old delivery ids"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!("sweeping delivery ids failed: {e}"),
                }
            }
        });
        Ok(pipeline)
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn options(&self) -> &PipelineOptions {
        &self.options
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Runs reaching a final state, or deferred by their recipe (held, `queued`), as they do.
    pub fn subscribe(&self) -> broadcast::Receiver<RunRecord> {
        self.finished.subscribe()
    }

    /// (queued, running) right now.
    pub fn load(&self) -> (usize, usize) {
        self.queue.counts()
    }

    /// Report a store I/O error behind a journal error (readiness answers from it).
    fn note(&self, e: &JournalError) {
        if let JournalError::Sled(e) = e {
            self.store.failures().report(e);
        }
    }

    /// The store's I/O failure, if it has failed.
    pub fn store_failure(&self) -> Option<String> {
        self.store.failure()
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// The plugins subscribed to an event of `source` and `kind`.
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

    /// Journal an event with a run for each plugin subscribed to it (or only for `only`),
    /// and return once it is on disk.
    pub async fn ingest(
        &self,
        incoming: Incoming,
        only: Option<&str>,
    ) -> Result<Ack, PipelineError> {
        if self.is_stopping() {
            return Err(PipelineError::ShuttingDown);
        }
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
            None => self.journal.next_event_id()?,
        };
        let stored = StoredEvent {
            delivery_id: incoming.delivery_id.unwrap_or_else(|| id.clone()),
            received_at: rfc3339(now),
            received_ms: now,
            event: Event {
                id,
                source: incoming.source,
                kind: incoming.kind,
                time: rfc3339(now),
                payload: incoming.payload,
            },
        };
        let window = self.options.dedup_window.as_millis() as i64;
        let accepted = self
            .journal
            .accept(&stored, &plugins, now, window)
            .inspect_err(|e| self.note(e))?;
        // Flush and queue in a task of its own: if the caller goes away (a client that
        // disconnects), the runs it journaled are still queued.
        let queued: Vec<(String, String)> = match &accepted {
            Accepted::New { runs } => runs
                .iter()
                .map(|r| (r.plugin.clone(), r.id.clone()))
                .collect(),
            Accepted::Duplicate { .. } => Vec::new(),
        };
        self.commit_then_queue(queued, now).await?;
        Ok(match accepted {
            Accepted::Duplicate { event_id } => {
                self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                tracing::info!(source = %stored.event.source, delivery = %stored.delivery_id, event = %event_id, "duplicate delivery acknowledged");
                Ack {
                    event_id,
                    duplicate: true,
                    runs: Vec::new(),
                }
            }
            Accepted::New { runs } => {
                self.counters.accepted.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(event = %stored.event.id, kind = %stored.event.kind, runs = runs.len(), "event accepted");
                Ack {
                    event_id: stored.event.id,
                    duplicate: false,
                    runs: runs.into_iter().map(|r| r.id).collect(),
                }
            }
        })
    }

    /// The effect journal of a run: every call that may change a vendor, in order.
    pub fn effects(&self, run: &str) -> Result<Vec<Effect>, PipelineError> {
        Ok(self.effects.of_run(run)?)
    }

    /// Runs matching `filter`, newest first.
    pub fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, PipelineError> {
        let limit = if filter.limit == 0 { 100 } else { filter.limit };
        Ok(self.journal.runs(
            |r| {
                filter.plugin.as_ref().is_none_or(|p| &r.plugin == p)
                    && filter.status.as_ref().is_none_or(|s| s.contains(&r.status))
                    && filter.event_id.as_ref().is_none_or(|e| &r.event_id == e)
                    && filter.since.as_ref().is_none_or(|t| &r.created_at >= t)
                    && filter.until.as_ref().is_none_or(|t| &r.created_at < t)
                    && filter
                        .unconfirmed
                        .is_none_or(|u| u != r.unconfirmed.is_empty())
            },
            limit,
        )?)
    }

    pub fn run(&self, id: &str) -> Result<RunRecord, PipelineError> {
        self.journal
            .run(id)?
            .ok_or_else(|| PipelineError::NoRun(id.to_string()))
    }

    pub fn event(&self, id: &str) -> Result<Option<StoredEvent>, PipelineError> {
        Ok(self.journal.event(id)?)
    }

    /// Wait for a flush, then queue `runs` (plugin, run id) due at `due`. The flush runs in
    /// a task of its own and the runs are queued even if the caller is dropped meanwhile,
    /// or the flush fails (they are in the store; the caller hears of the failure).
    async fn commit_then_queue(
        &self,
        runs: Vec<(String, String)>,
        due: i64,
    ) -> Result<(), PipelineError> {
        struct QueueOnDrop<'a>(&'a Queue, Vec<(String, String)>, i64);
        impl Drop for QueueOnDrop<'_> {
            fn drop(&mut self) {
                for (plugin, id) in &self.1 {
                    self.0.push(plugin, id, self.2);
                }
            }
        }
        let _queue = QueueOnDrop(&self.queue, runs, due);
        let store = self.store.clone();
        tokio::spawn(async move { store.commit().await })
            .await
            .unwrap_or_else(|e| Err(CommitError(e.to_string())))?;
        Ok(())
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
        if resend_unconfirmed {
            // Only a finished run: its calls are settled, none is on its way.
            let run = self.run(id)?;
            if !run.status.is_terminal() {
                return Err(PipelineError::NotFinished {
                    id: id.to_string(),
                    status: run.status.as_str(),
                });
            }
            let forgotten = self.effects.forget_unconfirmed(id)?;
            tracing::info!(run = %id, calls = forgotten, "unconfirmed calls forgotten: the replay sends them again");
        }
        let run = self.requeue(id)?;
        self.commit_then_queue(vec![(run.plugin.clone(), run.id.clone())], now_ms())
            .await?;
        Ok(run)
    }

    /// Replay every run of `plugin` whose status is in `statuses`; returns their ids.
    pub async fn replay_all(
        &self,
        plugin: &str,
        statuses: &[RunStatus],
    ) -> Result<Vec<String>, PipelineError> {
        let runs = self.journal.runs(
            |r| r.plugin == plugin && statuses.contains(&r.status),
            usize::MAX,
        )?;
        let mut ids = Vec::with_capacity(runs.len());
        let mut failure = None;
        for run in runs {
            match self.requeue(&run.id) {
                Ok(run) => ids.push(run.id),
                // Replayed meanwhile by someone else: already on its way.
                Err(PipelineError::NotFinished { .. }) => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let queued = ids
            .iter()
            .map(|id| (plugin.to_string(), id.clone()))
            .collect();
        self.commit_then_queue(queued, now_ms()).await?;
        match failure {
            Some(e) => Err(e),
            None => Ok(ids),
        }
    }

    fn requeue(&self, id: &str) -> Result<RunRecord, PipelineError> {
        if self.is_stopping() {
            return Err(PipelineError::ShuttingDown);
        }
        let mut run = self.run(id)?;
        let now = now_ms();
        if run.is_deferred() {
            // Held by its recipe: run it now instead (the recipe decides again).
            run.next_attempt_at = None;
            run.updated_at = rfc3339(now);
            self.journal.put_run(&run, Some(now))?;
            tracing::info!(run = %run.id, "deferred run released by a replay");
            return Ok(run);
        }
        if !run.status.is_terminal() {
            return Err(PipelineError::NotFinished {
                id: id.to_string(),
                status: run.status.as_str(),
            });
        }
        run.status = RunStatus::Queued;
        run.attempts = 0;
        run.replays += 1;
        run.updated_at = rfc3339(now);
        run.next_attempt_at = None;
        self.journal.put_run(&run, Some(now))?;
        tracing::info!(run = %run.id, "run queued for replay");
        Ok(run)
    }

    /// Stop accepting events and starting runs: the first step of a shutdown.
    pub fn stop_accepting(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.queue.wake.notify_one();
    }

    /// Stop taking work, give runs in flight `grace` to finish, and put the rest back in
    /// the queue for the next start.
    pub async fn shutdown(&self) {
        self.stop_accepting();
        let deadline = tokio::time::Instant::now() + self.options.grace;
        loop {
            let idle = self.queue.idle.notified();
            if self.queue.running().is_empty() {
                break;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                break;
            }
        }
        let now = now_ms();
        for id in self.queue.running() {
            // Interrupted by us, not by the recipe: the attempt does not count. Only if it
            // is still running: a run that just finished keeps its result.
            match self.journal.requeue_interrupted(&id, &rfc3339(now)) {
                Ok(true) => {
                    tracing::warn!(run = %id, "run interrupted by shutdown; queued for the next start")
                }
                Ok(false) => {}
                Err(e) => tracing::error!(run = %id, "could not re-queue an interrupted run: {e}"),
            }
        }
        if let Err(e) = self.journal.flush() {
            tracing::error!("flushing the store at shutdown failed: {e}");
        }
    }

    async fn schedule(self: Arc<Self>) {
        loop {
            if self.is_stopping() {
                break;
            }
            match self.queue.next(now_ms()) {
                Next::Run(plugin, run_id) => {
                    let pipeline = self.clone();
                    tokio::spawn(async move {
                        let attempt = pipeline.execute(&run_id);
                        pipeline.guarded(&plugin, &run_id, attempt).await;
                    });
                }
                Next::Wait(ms) => {
                    let wait = ms.map_or(Duration::from_secs(3600), |ms| {
                        Duration::from_millis(ms.max(1) as u64)
                    });
                    let _ = tokio::time::timeout(wait, self.queue.wake.notified()).await;
                }
            }
        }
    }

    /// Run one attempt (`attempt` returns the due time of its retry, if any) holding its
    /// worker slot, which is given back however the attempt ends: a panic in host code fails
    /// the run with the panic's message, and the slot still goes back.
    async fn guarded(
        &self,
        plugin: &str,
        run_id: &str,
        attempt: impl Future<Output = Option<i64>>,
    ) {
        let slot = Slot {
            queue: &self.queue,
            plugin,
            run_id,
        };
        let retry = match std::panic::AssertUnwindSafe(attempt).catch_unwind().await {
            Ok(retry) => retry,
            Err(panic) => {
                self.fail_after_panic(run_id, &*panic);
                None
            }
        };
        drop(slot);
        if let Some(due) = retry
            && !self.is_stopping()
        {
            self.queue.push(plugin, run_id, due);
        }
    }

    /// A finished cron run frees its plugin for the next fire (only the scheduled run
    /// itself does).
    fn release_cron(&self, run: &RunRecord) {
        if run.source == cron::SOURCE {
            let mut active = self.cron_active.lock().unwrap();
            if active.get(&run.plugin) == Some(&run.id) {
                active.remove(&run.plugin);
            }
        }
    }

    /// End a run whose attempt panicked in host code: failed, with the panic's message.
    fn fail_after_panic(&self, run_id: &str, panic: &(dyn std::any::Any + Send)) {
        let mut message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic without a message".into());
        switchboard_model::bound_text(&mut message, 4096);
        tracing::error!(run = %run_id, panic = %message.escape_debug(), "host code panicked during a run");
        let recorded = self.journal.run(run_id).map(|run| {
            let mut run = run?;
            let now = rfc3339(now_ms());
            let error = RunError::HostPanic { message };
            run.status = RunStatus::Failed;
            run.reason = Some(error.to_string());
            run.error = Some(error);
            run.outcome = None;
            run.finished_at = Some(now.clone());
            run.updated_at = now;
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
            self.release_cron(&run);
            Some(run)
        });
        match recorded {
            Ok(Some(run)) => {
                if let Err(e) = self.journal.put_run(&run, None) {
                    tracing::error!(run = %run_id, "recording the panicked run failed: {e}");
                }
                let _ = self.finished.send(run);
            }
            Ok(None) => {}
            Err(e) => tracing::error!(run = %run_id, "reading the panicked run failed: {e}"),
        }
    }

    /// One attempt of one run; returns the due time of its retry, if it has one.
    async fn execute(&self, run_id: &str) -> Option<i64> {
        match self.attempt(run_id).await {
            Ok(retry) => retry,
            Err(e) => {
                tracing::error!(run = %run_id, "run could not be recorded: {e}");
                if let PipelineError::Journal(e) = &e {
                    self.note(e);
                }
                None
            }
        }
    }

    async fn attempt(&self, run_id: &str) -> Result<Option<i64>, PipelineError> {
        let Some(mut run) = self.journal.run(run_id)? else {
            return Ok(None);
        };
        if run.status.is_terminal() {
            return Ok(None);
        }
        let started = now_ms();
        run.status = RunStatus::Running;
        run.attempts += 1;
        run.started_at = Some(rfc3339(started));
        run.updated_at = rfc3339(started);
        run.next_attempt_at = None;
        self.journal.put_run(&run, Some(started))?;

        let event = self.journal.event(&run.event_id)?;
        let plugin = self.registry.current().get(&run.plugin).cloned();
        let result = match (event, plugin) {
            (None, _) => Err(RunError::Trap {
                message: format!("event {} is missing from the store", run.event_id),
                panic: None,
            }),
            (Some(_), None) => Err(RunError::NotLoaded {
                recipe: run.plugin.clone(),
            }),
            (Some(stored), Some(plugin)) => {
                let report = self.runtime.run(&plugin, &stored.event).await;
                run.plugin_version = Some(plugin.manifest.version.clone());
                run.duration_us = Some(report.duration_us);
                run.logs = report.logs;
                run.logs_dropped = report.logs_dropped;
                run.unconfirmed = report.unconfirmed;
                match (report.outcome, report.error) {
                    (Some(o), _) => Ok(o),
                    (None, Some(e)) => Err(e),
                    (None, None) => unreachable!("a run report has an outcome or an error"),
                }
            }
        };
        let now = now_ms();
        run.updated_at = rfc3339(now);
        let mut retry = None;
        let mut deferred = false;
        let (deferrals, max_deferrals) = (run.deferrals, self.options.max_deferrals);
        let result = result.and_then(|outcome| match outcome {
            Outcome::Deferred { .. } if deferrals >= max_deferrals => Err(RunError::Recipe {
                error: RecipeError::Other {
                    message: format!("deferred {deferrals} times; not held any longer"),
                },
            }),
            Outcome::Deferred { until, reason } => match deferral_due(&until, now) {
                Ok(due) => Ok(Err((due, until, reason))),
                Err(reason) => Err(RunError::Recipe {
                    error: RecipeError::invalid("deferral.until", reason),
                }),
            },
            outcome => Ok(Ok(outcome)),
        });
        match result {
            Ok(Err((due, until, reason))) => {
                // Not an attempt: the recipe asked to run later (quiet hours, a daily quota).
                run.attempts -= 1;
                run.deferrals += 1;
                run.status = RunStatus::Queued;
                run.next_attempt_at = Some(rfc3339(due));
                run.error = None;
                run.reason = None;
                tracing::info!(run = %run.id, %until, %reason, "run deferred");
                run.outcome = Some(Outcome::Deferred { until, reason });
                retry = Some(due);
                deferred = true;
                self.counters.deferred.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Ok(outcome)) => {
                run.status = RunStatus::Succeeded;
                run.outcome = Some(outcome);
                run.error = None;
                run.reason = None;
                self.counters.succeeded.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                run.reason = Some(error.to_string());
                run.outcome = None;
                if error.is_retryable() && run.attempts < self.options.max_attempts {
                    let due = now + self.backoff(run.attempts, retry_after(&error));
                    run.status = RunStatus::Queued;
                    run.next_attempt_at = Some(rfc3339(due));
                    retry = Some(due);
                    self.counters.retried.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(run = %run.id, attempt = run.attempts, %error, next = %rfc3339(due), "run will be retried");
                } else if error.is_retryable() {
                    run.status = RunStatus::Dead;
                    self.counters.dead.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(run = %run.id, attempts = run.attempts, %error, "run is dead: out of attempts");
                } else {
                    run.status = RunStatus::Failed;
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
                }
                run.error = Some(error);
            }
        }
        if run.status.is_terminal() {
            run.finished_at = Some(rfc3339(now));
            self.release_cron(&run);
        }
        self.journal.put_run(&run, retry)?;
        if run.status.is_terminal() || deferred {
            let _ = self.finished.send(run);
        }
        Ok(retry)
    }

    /// The delay before retry number `attempt` (1-based): exponential with equal jitter,
    /// never sooner than the vendor's retry-after.
    fn backoff(&self, attempt: u32, retry_after_ms: Option<u64>) -> i64 {
        let base = self.options.retry_base.as_millis() as u64;
        let max = self.options.retry_max.as_millis() as u64;
        let exp = base
            .saturating_mul(1u64 << attempt.saturating_sub(1).min(32))
            .min(max);
        let jittered = exp / 2 + fastrand::u64(0..=exp / 2);
        jittered.max(retry_after_ms.unwrap_or(0)) as i64
    }
}

/// A run's worker slot, given back to the queue when dropped.
struct Slot<'a> {
    queue: &'a Queue,
    plugin: &'a str,
    run_id: &'a str,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.queue.finish(self.plugin, self.run_id);
    }
}

/// Deferrals are held at least a second (no busy loop on a past instant) and at most 31 days.
const DEFER_MIN_MS: i64 = 1_000;
const DEFER_MAX_MS: i64 = 31 * 24 * 3_600_000;

/// When a run deferred until `until` (RFC 3339) runs again, as unix milliseconds.
fn deferral_due(until: &str, now: i64) -> Result<i64, String> {
    let at = time::OffsetDateTime::parse(until, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("'{until}' is not an RFC 3339 instant: {e}"))?;
    let at = (at.unix_timestamp_nanos() / 1_000_000) as i64;
    if at > now + DEFER_MAX_MS {
        return Err(format!("'{until}' is more than 31 days away"));
    }
    Ok(at.max(now + DEFER_MIN_MS))
}

fn retry_after(error: &RunError) -> Option<u64> {
    match error {
        RunError::Recipe {
            error: switchboard_model::RecipeError::RateLimited { retry_after_ms },
        } => *retry_after_ms,
        _ => None,
    }
}

/// `pattern` with `*` matching any run of characters (and `?` any one character).
pub fn glob(pattern: &str, text: &str) -> bool {
    wildmatch::WildMatch::new(pattern).matches(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_in_an_attempt_fails_the_run_and_gives_its_slot_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("store")).unwrap();
        let runtime = Arc::new(
            Runtime::new(
                switchboard_runtime::RuntimeOptions::default(),
                Arc::new(store.clone()),
                switchboard_vendors::Connections::default(),
            )
            .unwrap(),
        );
        let plugins = dir.path().join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        let registry = Registry::open(runtime.clone(), plugins).await;
        let options = PipelineOptions {
            workers: 1,
            per_plugin: 1,
            ..PipelineOptions::default()
        };
        let pipeline = Pipeline::start(runtime, registry, store, options).unwrap();
        // A cron run of `a`, held as the plugin's active scheduled run, taken by a worker.
        let event = Event::new("e1", cron::SOURCE, "tick", "t", &serde_json::json!({}));
        let stored = StoredEvent {
            event,
            delivery_id: "e1".into(),
            received_at: rfc3339(0),
            received_ms: 0,
        };
        let Accepted::New { runs } = pipeline
            .journal
            .accept(&stored, &["a".to_string()], 0, 1000)
            .unwrap()
        else {
            panic!("not new")
        };
        let id = runs[0].id.clone();
        pipeline
            .cron_active
            .lock()
            .unwrap()
            .insert("a".into(), id.clone());
        pipeline.queue.push("a", &id, 0);
        assert!(matches!(pipeline.queue.next(now_ms()), Next::Run(..)));
        let mut finished = pipeline.subscribe();
        pipeline
            .guarded("a", &id, async { panic!("a bug in host code") })
            .await;
        let run = pipeline.run(&id).unwrap();
        assert_eq!(run.status, RunStatus::Failed);
        assert_eq!(
            run.reason.as_deref(),
            Some("host panic: a bug in host code")
        );
        assert_eq!(finished.recv().await.unwrap().id, id);
        assert_eq!(pipeline.load(), (0, 0), "the slot is free again");
        assert!(
            pipeline.cron_active.lock().unwrap().is_empty(),
            "cron released"
        );
    }

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
}
