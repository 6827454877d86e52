//! The pipeline's store, as operations: the seam between the pipeline's logic (retries,
//! deferrals, the dispatcher, cron) and where its records live. sled implements it for one
//! host (crate `switchboard-sled`), PostgreSQL for several (crate `switchboard-postgres`);
//! each proves itself by passing the same conformance suite ([`crate::conformance`]).
//!
//! Every operation that moves a run takes `now_ms` from the caller, so the semantics (due
//! times, lease expiry, retention) can be tested without waiting.
//!
//! Leases: a claimed run is held by one host until its lease expires. Each claim gets a new
//! fencing token; [`Backend::extend`] and [`Backend::settle`] with a token that is not the
//! run's current one are refused ([`BackendError::Stale`]), so a run taken over after its
//! holder vanished can never be finished twice.

use async_trait::async_trait;
use serde::Serialize;
use std::sync::Arc;
pub use switchboard_model::Lease;
use switchboard_model::effect::Effect;
use switchboard_model::{
    AttemptRecord, Event, LogLine, Outcome, RunError, RunRecord, RunStatus, StoredEvent,
    Unconfirmed, VendorCall, rfc3339,
};
use switchboard_runtime::store::RecipeStore;
use switchboard_vendors::Counters;

/// Unix milliseconds.
pub type Ms = i64;

/// Why a backend operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// The lease is not the run's current one: another holder took the run over.
    #[error("run {run}: the lease with token {token} is no longer the run's (taken over)")]
    Stale { run: String, token: u64 },
    #[error("no run {0}")]
    NoRun(String),
    #[error("run {id} is {status}; only finished runs can be replayed")]
    NotFinished { id: String, status: &'static str },
    /// The store could not be read or written (a full disk, a lost connection).
    #[error("the store failed: {0}")]
    Io(String),
    /// A record the backend cannot read.
    #[error("corrupt record {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

/// `Result` of backend operations.
pub type BackendResult<T> = Result<T, BackendError>;

/// An event to accept, with a run for each recipe it goes to.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event: Event,
    /// The sender's delivery id (dedup key within `window_ms`), scoped to the event's source.
    pub delivery_id: String,
    pub received_ms: Ms,
    /// How long a delivery id is remembered.
    pub window_ms: Ms,
    pub runs: Vec<NewRun>,
}

/// One run of a new event.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub plugin: String,
    /// Runs of one recipe with the same key run one at a time, in acceptance order.
    pub order_key: Option<String>,
}

/// What [`Backend::accept`] did.
#[derive(Debug, Clone)]
pub enum Accepted {
    /// Stored, durably, with these runs queued.
    New { runs: Vec<RunRecord> },
    /// The same delivery was accepted before (within the window), as this event.
    Duplicate { event_id: String },
}

/// What a host asks for when it claims runs.
pub struct ClaimRequest<'a> {
    pub holder: &'a str,
    pub now_ms: Ms,
    /// How long the lease lasts unless extended.
    pub lease_ms: Ms,
    /// Runs this host can take now (its free worker slots).
    pub max: usize,
    /// Runs of a recipe in flight at once, over every host.
    pub concurrency: Concurrency<'a>,
}

/// How many runs of each recipe may be in flight at once, over every host.
#[derive(Debug, Clone, Copy)]
pub struct Concurrency<'a> {
    /// Recipes `per_recipe` does not name.
    pub default: usize,
    pub per_recipe: &'a std::collections::HashMap<String, usize>,
}

impl Concurrency<'_> {
    /// The limit of `recipe`.
    pub fn of(&self, recipe: &str) -> usize {
        self.per_recipe.get(recipe).copied().unwrap_or(self.default)
    }
}

/// No recipe named: every recipe gets the default.
pub static NO_OVERRIDES: std::sync::LazyLock<std::collections::HashMap<String, usize>> =
    std::sync::LazyLock::new(std::collections::HashMap::new);

impl Concurrency<'static> {
    /// `limit` for every recipe.
    pub fn each(limit: usize) -> Self {
        Concurrency {
            default: limit,
            per_recipe: &NO_OVERRIDES,
        }
    }
}

/// A claimed run: its record (now `running`, the attempt counted), its event (`None` if it
/// was never written whole), its lease.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub run: RunRecord,
    pub event: Option<StoredEvent>,
    pub lease: Lease,
}

/// Unfinished runs at one moment, for health and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Queued and due (including runs waiting behind their key's earlier run).
    pub due: usize,
    /// Queued for later: a retry's backoff or a recipe's deferral.
    pub later: usize,
    /// Held by a host under a lease.
    pub running: usize,
    /// The due time of the longest-waiting due run.
    pub oldest_due_ms: Option<Ms>,
}

impl QueueCounts {
    /// Every queued run, due or not.
    pub fn queued(&self) -> usize {
        self.due + self.later
    }
}

/// How an attempt ended, as the pipeline decided from its report.
#[derive(Debug, Clone)]
pub enum Settlement {
    Succeeded(Outcome),
    /// Held by its recipe until `due_ms`: queued again, a deferral, not an attempt.
    Deferred {
        outcome: Outcome,
        due_ms: Ms,
    },
    /// A retryable failure: queued again for `due_ms`.
    Retry {
        error: RunError,
        due_ms: Ms,
    },
    /// A failure retrying cannot fix; replayable.
    Failed(RunError),
    /// Retryable, but out of attempts; replayable.
    Dead(RunError),
    /// Interrupted by the host (shutdown): queued again now, the attempt not counted.
    Released,
}

/// What an attempt produced, kept with the run.
#[derive(Debug, Clone, Default)]
pub struct AttemptReport {
    pub duration_us: Option<u64>,
    pub plugin_version: Option<String>,
    pub logs: Vec<LogLine>,
    pub logs_dropped: usize,
    pub unconfirmed: Vec<Unconfirmed>,
    /// The attempt's trace, when the host exports traces.
    pub trace_id: Option<String>,
    /// The requests it sent to vendors (the first [`switchboard_model::run::MAX_VENDOR_CALLS`]),
    /// and how many more.
    pub calls: Vec<VendorCall>,
    pub calls_dropped: u32,
}

/// What firing a cron tick did.
#[derive(Debug, Clone)]
pub enum TickFire {
    /// This host fired it: the event and its run are accepted.
    Fired(Accepted),
    /// Fired before (by this host or another).
    AlreadyFired,
    /// The recipe's previous scheduled run is not finished: the tick is skipped (and
    /// recorded, so it is not fired later).
    Busy { run: String },
}

/// Runs to find, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunQuery {
    /// Any of these statuses; empty: any.
    pub statuses: Vec<RunStatus>,
    pub plugin: Option<String>,
    pub source: Option<String>,
    pub event_id: Option<String>,
    /// The sender's delivery id of the run's event.
    pub delivery_id: Option<String>,
    /// Created at or after (Unix ms).
    pub since_ms: Option<Ms>,
    /// Created before (Unix ms).
    pub until_ms: Option<Ms>,
    /// Only runs with (true) or without (false) unconfirmed calls.
    pub unconfirmed: Option<bool>,
    /// At most this many (0: the default, 100).
    pub limit: usize,
    /// Where the previous page ended ([`RunPage::next`]).
    pub cursor: Option<String>,
}

/// A page of runs, newest first.
#[derive(Debug, Clone, Default)]
pub struct RunPage {
    pub runs: Vec<RunRecord>,
    /// The cursor of the next (older) page, if there may be one.
    pub next: Option<String>,
}

/// How long finished runs are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Succeeded runs, from when they finished.
    pub keep_succeeded_ms: Ms,
    /// Failed and dead runs not replayed since, from when they finished.
    pub keep_failed_ms: Ms,
    /// Delivery ids, from when they arrived (the dedup window).
    pub dedup_window_ms: Ms,
}

/// What a sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Swept {
    pub runs: u64,
    pub events: u64,
    pub deliveries: u64,
    pub effects: u64,
}

/// What a bulk replay found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Replayed {
    /// Runs the query matched that can be replayed.
    pub matched: usize,
    /// Runs queued again (none for a dry run).
    pub queued: Vec<String>,
}

/// The pipeline's store.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// `sled`, `postgres`.
    fn name(&self) -> &'static str;

    /// The store's failure (an I/O error), if it has failed.
    fn failure(&self) -> Option<String>;

    /// Wait until the store fails; returns the failure.
    async fn failed(&self) -> String;

    /// A new, unique event id; ids sort by creation.
    async fn next_event_id(&self) -> BackendResult<String>;

    /// Store an event with its runs and its delivery mark, durably (on disk when this
    /// returns), unless the same delivery (source and delivery id) was accepted within its
    /// window: then [`Accepted::Duplicate`].
    async fn accept(&self, new: NewEvent) -> BackendResult<Accepted>;

    /// Claim up to `req.max` due runs, oldest due first, honouring each recipe's concurrency
    /// (over every host) and per-key order; a running run whose lease expired is due again.
    async fn claim(&self, req: ClaimRequest<'_>) -> BackendResult<Vec<Claimed>>;

    /// Extend a lease to `now_ms + lease_ms`.
    async fn extend(&self, lease: &Lease, now_ms: Ms, lease_ms: Ms) -> BackendResult<Lease>;

    /// Record how an attempt ended; refused with a lease that is no longer the run's.
    async fn settle(
        &self,
        lease: &Lease,
        now_ms: Ms,
        settlement: Settlement,
        report: AttemptReport,
    ) -> BackendResult<RunRecord>;

    /// The earliest time a claim could find work (a due time or a lease expiry), if any.
    async fn next_due(&self) -> BackendResult<Option<Ms>>;

    /// How many runs wait, are due or run at `now_ms`, and since when the oldest due one waits.
    async fn counts(&self, now_ms: Ms) -> BackendResult<QueueCounts>;

    /// [`settle`](Self::settle), then, once the settle is recorded, [`claim`](Self::claim)
    /// for `next`: a worker slot taking its next run as it gives one back. A backend whose
    /// calls cost a round trip does both in one (PostgreSQL); the default calls one after
    /// the other. A failed claim after a recorded settle is logged and claims nothing: the
    /// settle stands, and the dispatcher fills the slot later.
    ///
    /// With `handover` (the host has other free worker slots, whose claims serve the other
    /// recipes), a backend may give the room the run held in its recipe's concurrency to
    /// that recipe's next due run rather than to the oldest due run of any recipe, within
    /// the same limits and per-key order (PostgreSQL: without its claim lock).
    async fn settle_then_claim(
        &self,
        lease: &Lease,
        now_ms: Ms,
        settlement: Settlement,
        report: AttemptReport,
        next: ClaimRequest<'_>,
        handover: bool,
    ) -> BackendResult<(RunRecord, Vec<Claimed>)> {
        let _ = handover;
        let run = self.settle(lease, now_ms, settlement, report).await?;
        let claimed = self.claim(next).await.unwrap_or_else(|e| {
            tracing::error!("claiming runs failed: {e}");
            Vec::new()
        });
        Ok((run, claimed))
    }

    /// Wait until something may have become claimable (an accept, a settle, a replay), or
    /// `timeout` passes.
    async fn wait_for_work(&self, timeout: std::time::Duration);

    /// Queue a finished run again from its first attempt, or run a deferred run now. With
    /// `resend_unconfirmed`, its unconfirmed effects are forgotten first (finished runs only).
    async fn replay(
        &self,
        id: &str,
        now_ms: Ms,
        resend_unconfirmed: bool,
    ) -> BackendResult<RunRecord>;

    /// Replay every finished run `query` matches (statuses default to failed and dead); with
    /// `dry_run`, only count them.
    async fn replay_matching(
        &self,
        query: &RunQuery,
        now_ms: Ms,
        dry_run: bool,
    ) -> BackendResult<Replayed>;

    /// A run (without its logs).
    async fn run(&self, id: &str) -> BackendResult<Option<RunRecord>>;

    /// A run's log lines.
    async fn logs(&self, id: &str) -> BackendResult<Vec<LogLine>>;

    /// A run's attempts as they ended, oldest first (kept with the run, across replays).
    async fn attempts(&self, id: &str) -> BackendResult<Vec<AttemptRecord>>;

    /// An event.
    async fn event(&self, id: &str) -> BackendResult<Option<StoredEvent>>;

    /// A run's journaled effects, in the order they were sent.
    async fn effects(&self, run: &str) -> BackendResult<Vec<Effect>>;

    /// Runs `query` matches, newest first.
    async fn runs(&self, query: &RunQuery) -> BackendResult<RunPage>;

    /// Fire cron tick `tick_ms` of `plugin`'s trigger `trigger` with `event` (its run for
    /// `plugin` alone), once over every host: whoever asks first fires it.
    async fn fire_tick(
        &self,
        plugin: &str,
        trigger: usize,
        tick_ms: Ms,
        event: NewEvent,
    ) -> BackendResult<TickFire>;

    /// The last tick of a trigger that was fired or skipped.
    async fn last_tick(&self, plugin: &str, trigger: usize) -> BackendResult<Option<Ms>>;

    /// Remove what `policy` no longer keeps: finished runs (with their logs and effects),
    /// events left with no run, delivery ids past the window. Queued, running and deferred
    /// runs are always kept.
    async fn sweep(&self, now_ms: Ms, policy: &Retention) -> BackendResult<Swept>;

    /// Pause a recipe (`paused`) or resume it, for every host on this store and across
    /// restarts; whether that changed it. Durable when it returns.
    async fn set_paused(&self, recipe: &str, paused: bool) -> BackendResult<bool>;

    /// The recipes paused on this store.
    async fn paused(&self) -> BackendResult<std::collections::BTreeSet<String>>;

    /// Write everything to disk.
    async fn flush(&self) -> BackendResult<()>;

    /// What recipes' runs use: kv and the effect journal.
    fn recipe_store(&self) -> Arc<dyn RecipeStore>;

    /// Counters for vendor quotas.
    fn counters(&self) -> Arc<dyn Counters>;
}

/// The event as stored and its runs, queued, as accepting `new` makes them.
pub fn accepted(new: &NewEvent) -> (StoredEvent, Vec<RunRecord>) {
    let received = rfc3339(new.received_ms);
    let runs = new
        .runs
        .iter()
        .map(|r| {
            let mut run = RunRecord::queued(&new.event, &r.plugin, &received);
            run.order_key = r.order_key.clone();
            run
        })
        .collect();
    let stored = StoredEvent {
        event: new.event.clone(),
        delivery_id: new.delivery_id.clone(),
        received_at: received,
        received_ms: new.received_ms,
        window_ms: Some(new.window_ms),
    };
    (stored, runs)
}

/// The run after an attempt that ended as `settlement`, when it is due again (`None`:
/// finished), and the attempt for the run's timeline (`None` for a release: not attempted).
/// Every backend records a settlement this way.
pub fn settled(
    run: RunRecord,
    now: Ms,
    settlement: Settlement,
    mut report: AttemptReport,
) -> (RunRecord, Option<Ms>, Option<AttemptRecord>) {
    let (attempt, started_at) = (run.attempts, run.started_at.clone());
    let outcome = crate::metrics::outcome(&settlement);
    let calls = std::mem::take(&mut report.calls);
    let calls_dropped = report.calls_dropped;
    let (run, due) = settle_record(run, now, settlement, report);
    let record = outcome.map(|outcome| AttemptRecord {
        attempt,
        started_at,
        finished_at: run.updated_at.clone(),
        outcome: outcome.to_string(),
        reason: run.reason.clone(),
        duration_us: run.duration_us,
        plugin_version: run.plugin_version.clone(),
        trace_id: run.trace_id.clone(),
        calls,
        calls_dropped,
    });
    (run, due, record)
}

fn settle_record(
    mut run: RunRecord,
    now: Ms,
    settlement: Settlement,
    report: AttemptReport,
) -> (RunRecord, Option<Ms>) {
    let now_text = rfc3339(now);
    run.updated_at = now_text.clone();
    run.lease = None;
    let released = matches!(settlement, Settlement::Released);
    if !released {
        run.duration_us = report.duration_us;
        run.plugin_version = report.plugin_version.or(run.plugin_version);
        run.logs_dropped = report.logs_dropped;
        run.unconfirmed = report.unconfirmed;
        run.trace_id = report.trace_id;
    }
    let due = match settlement {
        Settlement::Succeeded(outcome) => {
            run.status = RunStatus::Succeeded;
            run.outcome = Some(outcome);
            run.error = None;
            run.reason = None;
            None
        }
        Settlement::Deferred { outcome, due_ms } => {
            run.status = RunStatus::Queued;
            run.attempts = run.attempts.saturating_sub(1);
            run.deferrals += 1;
            run.next_attempt_at = Some(rfc3339(due_ms));
            run.outcome = Some(outcome);
            run.error = None;
            run.reason = None;
            Some(due_ms)
        }
        Settlement::Retry { error, due_ms } => {
            run.status = RunStatus::Queued;
            run.next_attempt_at = Some(rfc3339(due_ms));
            run.reason = Some(error.to_string());
            run.error = Some(error);
            run.outcome = None;
            Some(due_ms)
        }
        Settlement::Failed(error) => {
            run.status = RunStatus::Failed;
            run.reason = Some(error.to_string());
            run.error = Some(error);
            run.outcome = None;
            None
        }
        Settlement::Dead(error) => {
            run.status = RunStatus::Dead;
            run.reason = Some(error.to_string());
            run.error = Some(error);
            run.outcome = None;
            None
        }
        Settlement::Released => {
            run.status = RunStatus::Queued;
            run.attempts = run.attempts.saturating_sub(1);
            Some(now)
        }
    };
    if run.status.is_terminal() {
        run.finished_at = Some(now_text);
        run.next_attempt_at = None;
    }
    (run, due)
}

/// A cursor: where a page of runs ended (exclusive), as text.
pub fn cursor(created: i64, id: &str) -> String {
    format!("{created}:{id}")
}

/// The position a cursor from [`cursor`] names.
pub fn parse_cursor(text: &str) -> Result<(i64, String), BackendError> {
    let bad = || BackendError::Corrupt {
        key: "cursor".into(),
        reason: format!("'{text}' is not a cursor this host gave"),
    };
    let (ms, id) = text.split_once(':').ok_or_else(bad)?;
    Ok((ms.parse().map_err(|_| bad())?, id.to_string()))
}

/// The query a bulk replay selects its runs with: finished statuses only (failed and dead
/// when none are asked for), every page; `None` when the asked statuses hold no finished one.
pub fn replay_query(query: &RunQuery) -> Option<RunQuery> {
    let mut query = query.clone();
    if query.statuses.is_empty() {
        query.statuses = REPLAYABLE.to_vec();
    }
    query.statuses.retain(|s| s.is_terminal());
    query.cursor = None;
    (!query.statuses.is_empty()).then_some(query)
}

/// A bulk replay of `matched` (the runs [`replay_query`] selected): counts them and, unless
/// `dry_run`, replays each; a run replayed meanwhile by someone else is on its way already.
pub async fn replay_all<B: Backend + ?Sized>(
    backend: &B,
    matched: Vec<RunRecord>,
    now_ms: Ms,
    dry_run: bool,
) -> BackendResult<Replayed> {
    let mut replayed = Replayed {
        matched: matched.len(),
        queued: Vec::new(),
    };
    if dry_run {
        return Ok(replayed);
    }
    for run in matched {
        match backend.replay(&run.id, now_ms, false).await {
            Ok(run) => replayed.queued.push(run.id),
            Err(BackendError::NotFinished { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(replayed)
}

/// The statuses a bulk replay takes when none are asked for.
pub const REPLAYABLE: [RunStatus; 2] = [RunStatus::Failed, RunStatus::Dead];
