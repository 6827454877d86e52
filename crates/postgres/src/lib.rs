//! The pipeline's store on PostgreSQL, for several hosts on one database: the second
//! implementation of [`Backend`], held to the same conformance suite as sled.
//!
//! - Accepting events is one statement (delivery marks, events, runs) for every webhook that
//!   arrived while the previous batch was written, committed synchronously before any of them
//!   is acknowledged (group commit, [`accept`]); a delivery id seen within its window is a
//!   duplicate (a unique key on (source, delivery id)).
//! - Claims are one call of the `claim_runs` function (migration 2): under a
//!   transaction-scoped advisory lock, claimers (on any host) decide one at a time, so
//!   per-recipe concurrency and per-key order hold over every host; the lock is held only
//!   while the server works (no client round trip inside it); due runs are taken with
//!   `FOR UPDATE SKIP LOCKED`, so rows a settle or replay holds are skipped. A recipe's runs
//!   go first to the host holding the most of them in flight; the others take them no
//!   earlier than `claim_affinity_ms()` after they fell due, at their next wake-up or poll
//!   (migration 10), so one host's batches carry a recipe's settles as with one host. A
//!   claim gives the run a lease (expiry and a fencing token from a sequence); settles and
//!   extensions name the token and the holder and are refused once another claim took it.
//!   A host settles the runs it claimed from the record it claimed, in one statement that
//!   also claims the freed worker slot's next run; the settles its slots make while one is
//!   written go together in the next (`settle`: a run that ends is a plain statement, a
//!   run due again or a claim under the lock a call of `settle_claim`/`settle_claim_many`,
//!   migrations 6 and 7). Settles (and the accepts' room checks) have two connections of
//!   their own, whose sessions plan a statement once (`force_generic_plan`) instead of at
//!   every call.
//! - Settles, claims, extensions and kv writes commit asynchronously (pools with
//!   `synchronous_commit = off`): they reach the disk with the next synchronous commit (an
//!   accept, an effect intent) or within PostgreSQL's WAL writer delay, like sled's state
//!   writes between flushes. Lost in a database crash, a run goes back to its previous
//!   state and runs again; the effect journal keeps a re-run from repeating a vendor call.
//! - Wake-ups: `NOTIFY` (debounced) after accepts, replays and runs let go at shutdown,
//!   `LISTEN` on every host; a settle wakes only its own host (which has the slot it freed).
//!   The dispatcher also polls, so a pooler that drops notifications only slows it.
//!
//! Migrations are embedded ([`migrations`]) and applied at open, in the configured schema.

mod accept;
mod batches;
mod recipe;
mod rows;
mod settle;

use async_trait::async_trait;
use recipe::{PgCounters, PgEffects, PgRecipeStore};
use rows::{EVENT, RUN, db};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{Executor, Postgres, QueryBuilder, Row};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_model::effect::Effect;
use switchboard_model::{AttemptRecord, LogLine, RunRecord, RunStatus, StoredEvent, rfc3339};
use switchboard_pipeline::backend::{
    Accepted, AttemptReport, Backend, BackendError, BackendResult, ClaimRequest, Claimed, Lease,
    Ms, NewEvent, QueueCounts, Replayed, Retention, RunPage, RunQuery, Settlement, Swept, TickFire,
    cursor, parse_cursor, replay_all, replay_query, settled,
};
use switchboard_pipeline::transfer::{MovedRun, Snapshot};
use switchboard_runtime::store::RecipeStore;
use switchboard_vendors::Counters;

pub mod cluster;
pub mod testing;

/// Event ids per block taken from the database.
const ID_BLOCK: i64 = 1024;

/// How long a count of unfinished runs is answered again ([`Backend::counts`]).
const COUNTS_FRESH: Duration = Duration::from_secs(1);

/// The SQLSTATE `settle_claim` refuses a settle with: the lease is no longer the run's.
const STALE: &str = "SBL01";

/// A count as an `integer` argument.
fn clamp(n: usize) -> i32 {
    n.min(i32::MAX as usize) as i32
}

/// A claim's per-recipe limits as the two arrays `claim_runs` takes.
fn claim_limits<'a>(req: &ClaimRequest<'a>) -> (Vec<&'a str>, Vec<i32>) {
    req.concurrency
        .per_recipe
        .iter()
        .map(|(p, n)| (p.as_str(), clamp(*n)))
        .unzip()
}

/// How a backend's settles have been written ([`PgBackend::settle_calls`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettleCalls {
    /// Calls made (a batch, or one settle alone).
    pub calls: u64,
    /// Runs settled by them.
    pub settles: u64,
    /// Batch calls that failed (their settles were then written one by one).
    pub failed: u64,
    /// Calls of the functions `settle_claim`/`settle_claim_many` (runs due again, claims
    /// under the claim lock); the rest were plain statements.
    pub functions: u64,
}

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// `postgres://user:password@host:port/database?...`
    pub url: String,
    /// The schema Switchboard's tables live in (created if missing).
    pub schema: String,
    /// Connections per pool (the host keeps two pools of this size, synchronous and
    /// asynchronous commits, plus two connections for settles and one to `LISTEN`).
    pub pool_size: u32,
}

impl PgConfig {
    pub const DEFAULT_SCHEMA: &'static str = "switchboard";
    pub const DEFAULT_POOL_SIZE: u32 = 8;
}

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("the database URL is not valid: {0}")]
    Url(String),
    #[error("schema name '{0}' is not valid (letters, digits and '_', not starting with a digit)")]
    Schema(String),
    #[error("cannot connect to the database: {0}")]
    Connect(sqlx::Error),
    #[error("migrating the database failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the database failed: {0}")]
    Db(#[from] sqlx::Error),
    #[error(
        "schema '{0}' already holds events, runs or kv: a copy goes into an empty schema (name another with --schema, or drop it)"
    )]
    NotEmpty(String),
}

/// The two pools: `durable` commits synchronously (acknowledged accepts, effect intents,
/// cron ticks, quota units), `fast` asynchronously (run states, kv, effect outcomes).
#[derive(Clone)]
pub(crate) struct Pools {
    pub durable: PgPool,
    pub fast: PgPool,
}

/// The embedded migrations, in order.
pub fn migrations() -> Vec<sqlx::migrate::Migration> {
    use sqlx::migrate::{Migration, MigrationType};
    [
        (
            1,
            "pipeline",
            include_str!("../migrations/0001_pipeline.sql"),
        ),
        (
            2,
            "claims, kv writes, list indexes, vacuum",
            include_str!("../migrations/0002_claims_kv_vacuum.sql"),
        ),
        (
            3,
            "run timelines",
            include_str!("../migrations/0003_timeline.sql"),
        ),
        (
            4,
            "kv counters",
            include_str!("../migrations/0004_kv_increment.sql"),
        ),
        (
            5,
            "paused recipes",
            include_str!("../migrations/0005_paused.sql"),
        ),
        (
            6,
            "settle and claim in one call",
            include_str!("../migrations/0006_settle_claim.sql"),
        ),
        (
            7,
            "settles in batches",
            include_str!("../migrations/0007_settle_many.sql"),
        ),
        (
            8,
            "queue counts shared by the hosts",
            include_str!("../migrations/0008_queue_counts.sql"),
        ),
        (
            9,
            "recipe estimates for generic plans",
            include_str!("../migrations/0009_recipe_estimates.sql"),
        ),
        (
            10,
            "a recipe's runs gather on one host",
            include_str!("../migrations/0010_affinity.sql"),
        ),
    ]
    .into_iter()
    .map(|(version, description, sql)| {
        Migration::new(
            version,
            description.into(),
            MigrationType::Simple,
            sql.into(),
            false,
        )
    })
    .collect()
}

/// The migrations as a source for sqlx's migrator.
#[derive(Debug)]
struct Embedded;

impl<'s> sqlx::migrate::MigrationSource<'s> for Embedded {
    fn resolve(
        self,
    ) -> futures_core::future::BoxFuture<
        's,
        Result<Vec<sqlx::migrate::Migration>, sqlx::error::BoxDynError>,
    > {
        Box::pin(async { Ok(migrations()) })
    }
}

fn options(config: &PgConfig) -> Result<PgConnectOptions, PgError> {
    let schema = &config.schema;
    let valid = !schema.is_empty()
        && schema.len() <= 63
        && !schema.starts_with(|c: char| c.is_ascii_digit())
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(PgError::Schema(schema.clone()));
    }
    Ok(PgConnectOptions::from_str(&config.url)
        .map_err(|e| PgError::Url(e.to_string()))?
        .application_name("switchboard")
        // JIT compiling costs tens of milliseconds a statement; ours are short, and the
        // planner's estimates for the claim function's statements would trigger it.
        .options([("search_path", schema.as_str()), ("jit", "off")]))
}

/// Create the schema if it is missing and apply every migration not yet applied. Safe to
/// run from several hosts at once (sqlx's migrator takes an advisory lock). Returns the
/// versions applied now.
pub async fn migrate(config: &PgConfig) -> Result<Vec<i64>, PgError> {
    let options = options(config)?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(PgError::Connect)?;
    pool.execute(format!("CREATE SCHEMA IF NOT EXISTS {}", config.schema).as_str())
        .await?;
    // Versions applied before (none on a new schema, where the table is missing).
    let applied: Vec<i64> =
        sqlx::query_scalar::<_, i64>("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
    let migrator = sqlx::migrate::Migrator::new(Embedded).await?;
    migrator.run(&pool).await?;
    pool.close().await;
    Ok(migrations()
        .iter()
        .map(|m| m.version)
        .filter(|v| !applied.contains(v))
        .collect())
}

/// Each recipe's limit of runs in flight, as a claim asks ([`claim_limits`]).
struct Limits {
    default: i32,
    plugins: Vec<String>,
    limits: Vec<i32>,
}

impl Limits {
    /// Whether `req` asks for these limits.
    fn asked_by(&self, req: &ClaimRequest<'_>) -> bool {
        let asked = &req.concurrency.per_recipe;
        self.default == clamp(req.concurrency.default)
            && self.plugins.len() == asked.len()
            && (self.plugins.iter().zip(&self.limits))
                .all(|(p, n)| asked.get(p).map(|l| clamp(*l)) == Some(*n))
    }

    fn of(req: &ClaimRequest<'_>) -> Limits {
        let (plugins, limits) = claim_limits(req);
        Limits {
            default: clamp(req.concurrency.default),
            plugins: plugins.into_iter().map(str::to_string).collect(),
            limits,
        }
    }
}

/// Whether a claim now could start a run of one of `recipes`: one has fewer runs in flight
/// (leases live now) than its limit in `limits` (this host's, as its last claim or settle
/// asked: give every host the same limits) — or the limits are not known yet, or the count
/// failed. Asked after new runs are committed: a settle that frees room and commits after
/// this count started either hands the room to the next due run, seeing these, or leaves
/// its slot free, which wakes its host's dispatcher to claim after it. A room no woken
/// dispatcher can take (its host has no free slot, or is stopping) is taken at the next
/// poll of a host that has one (within a second), as before this check.
async fn room(pool: &PgPool, limits: Option<&Limits>, recipes: &[String]) -> bool {
    static ROOM: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT EXISTS (SELECT 1 FROM unnest($1::text[]) AS a(plugin) WHERE {} < {})",
            settle::in_flight("a.plugin", "$2", "true"),
            settle::limit_of("a.plugin", "$3", "$4", "$5"),
        )
    });
    let Some(limits) = limits else {
        return true;
    };
    sqlx::query_scalar(&ROOM)
        .bind(recipes)
        .bind(switchboard_model::now_ms())
        .bind(&limits.plugins)
        .bind(&limits.limits)
        .bind(limits.default)
        .fetch_one(pool)
        .await
        .unwrap_or(true)
}

/// Wake this host's dispatcher now, and other hosts' soon (the notifier task).
fn wake(work: &tokio::sync::Notify, to_notify: &(AtomicBool, tokio::sync::Notify)) {
    work.notify_one();
    to_notify.0.store(true, Ordering::Release);
    to_notify.1.notify_one();
}

/// The pipeline's store on PostgreSQL.
pub struct PgBackend {
    config: PgConfig,
    pools: Pools,
    recipes: Arc<PgRecipeStore>,
    /// Event ids left in the block this host took: (next, end).
    ids: tokio::sync::Mutex<(i64, i64)>,
    /// Wakes this host's dispatcher: a local change, or a notification from another host.
    work: Arc<tokio::sync::Notify>,
    /// Something changed that other hosts should hear of.
    to_notify: Arc<(AtomicBool, tokio::sync::Notify)>,
    /// The recipes' limits of runs in flight as this host's last claim asked for them.
    limits: Arc<Mutex<Option<Arc<Limits>>>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Runs this host claimed and has not settled, as claimed.
    held: Mutex<HashMap<String, RunRecord>>,
    /// The last count of unfinished runs: when it was made, for which moment, what it was.
    counted: tokio::sync::Mutex<Option<(std::time::Instant, Ms, QueueCounts)>>,
    /// Counts of unfinished runs this host made (not read from another's).
    recounts: AtomicU64,
    /// Accepts, written in batches.
    batcher: accept::Batcher,
    /// Settles, written in batches.
    settler: settle::Settler,
}

impl Drop for PgBackend {
    fn drop(&mut self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}

/// Connections for settles and room checks: the settle writer's, and one for the checks.
const SETTLE_CONNECTIONS: u32 = 2;

/// Pause recipe $1 (at $2), unless it is paused already.
const PAUSE: &str =
    "INSERT INTO paused (recipe, since_ms) VALUES ($1, $2) ON CONFLICT (recipe) DO NOTHING";

/// A run as a replay leaves it: every column a settlement may change.
const WRITE_RUN: &str = "UPDATE runs SET status = $2, attempts = $3, replays = $4, \
     deferrals = $5, updated_ms = $6, next_attempt_ms = $7, started_ms = $8, finished_ms = $9, \
     due_ms = $10, lease_token = NULL, lease_holder = NULL, unconfirmed = $11, detail = $12 \
     WHERE id = $1";

impl PgBackend {
    /// Connect, migrate, and start listening for other hosts' wake-ups.
    pub async fn open(config: &PgConfig) -> Result<Arc<Self>, PgError> {
        migrate(config).await?;
        let options = options(config)?;
        let size = config.pool_size.max(1);
        let pool = |sync: bool, generic: bool, size: u32| {
            let options = options.clone();
            PgPoolOptions::new()
                .max_connections(size)
                .acquire_timeout(Duration::from_secs(10))
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        if !sync {
                            conn.execute("SET synchronous_commit = off").await?;
                        }
                        if generic {
                            conn.execute("SET plan_cache_mode = force_generic_plan")
                                .await?;
                        }
                        Ok(())
                    })
                })
                .connect_with(options)
        };
        let pools = Pools {
            durable: pool(true, false, size).await.map_err(PgError::Connect)?,
            fast: pool(false, false, size).await.map_err(PgError::Connect)?,
        };
        // The settles' statements and the accepts' room check, on connections of their own
        // that plan each statement once: their custom plans (made anew at every call, as the
        // planner prefers for statements of arrays) cost as much planning as running, and
        // their generic plans are the same index probes (docs/benchmarks.md, run 17).
        let settles = pool(false, true, SETTLE_CONNECTIONS)
            .await
            .map_err(PgError::Connect)?;
        let recipes = Arc::new(PgRecipeStore::open(pools.clone()).await?);
        let work = Arc::new(tokio::sync::Notify::new());
        let to_notify = Arc::new((AtomicBool::new(false), tokio::sync::Notify::new()));
        let limits: Arc<Mutex<Option<Arc<Limits>>>> = Arc::default();
        let (batcher, writers) = accept::Batcher::start(pools.durable.clone(), {
            let (work, to_notify) = (work.clone(), to_notify.clone());
            let (pool, limits) = (settles.clone(), limits.clone());
            Arc::new(move |recipes: Vec<String>| {
                let known = limits.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let (work, to_notify, pool) = (work.clone(), to_notify.clone(), pool.clone());
                tokio::spawn(async move {
                    if room(&pool, known.as_deref(), &recipes).await {
                        wake(&work, &to_notify);
                    }
                });
            })
        });
        let (settler, settling) = settle::Settler::start(settles);
        let mut tasks = writers;
        tasks.extend(settling);
        let backend = Arc::new(PgBackend {
            config: config.clone(),
            pools,
            recipes,
            ids: tokio::sync::Mutex::new((0, 0)),
            work,
            to_notify,
            limits,
            tasks: Mutex::new(tasks),
            held: Mutex::new(HashMap::new()),
            counted: tokio::sync::Mutex::new(None),
            recounts: AtomicU64::new(0),
            batcher,
            settler,
        });
        backend.start_wakeups(options).await?;
        Ok(backend)
    }

    /// What it was opened with.
    pub fn config(&self) -> &PgConfig {
        &self.config
    }

    /// How settles have been written since it opened: settles made at once share a call.
    pub fn settle_calls(&self) -> SettleCalls {
        let stats = &self.settler.stats;
        SettleCalls {
            calls: stats.calls.load(Ordering::Relaxed),
            settles: stats.settles.load(Ordering::Relaxed),
            failed: stats.failed.load(Ordering::Relaxed),
            functions: stats.functions.load(Ordering::Relaxed),
        }
    }

    /// Counts of unfinished runs this host made since it opened (the others it answered
    /// were its own or another host's of the last second).
    pub fn recounts(&self) -> u64 {
        self.recounts.load(Ordering::Relaxed)
    }

    /// Statements that added to kv counters in place, and the increments they carried:
    /// increments of one counter made at once share a statement.
    pub fn counter_additions(&self) -> (u64, u64) {
        self.recipes.additions()
    }

    fn channel(&self) -> String {
        format!("switchboard_work_{}", self.config.schema)
    }

    /// Listen for other hosts' notifications, and send ours (at most one per 5 ms).
    async fn start_wakeups(&self, options: PgConnectOptions) -> Result<(), PgError> {
        let channel = self.channel();
        let mut listener = PgListener::connect_with(
            &PgPoolOptions::new()
                .max_connections(1)
                .connect_lazy_with(options),
        )
        .await
        .map_err(PgError::Connect)?;
        listener.listen(&channel).await?;
        // Our own notifications come back too: they name us (a random name: process ids
        // repeat across containers), and are not a wake-up.
        let me = {
            use std::hash::{BuildHasher, Hasher};
            let mut random = std::collections::hash_map::RandomState::new().build_hasher();
            random.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            format!("{}:{:016x}", std::process::id(), random.finish())
        };
        let work = self.work.clone();
        let listening = tokio::spawn({
            let me = me.clone();
            async move {
                loop {
                    match listener.recv().await {
                        Ok(n) if n.payload() == me => {}
                        Ok(_) => work.notify_one(),
                        Err(e) => {
                            // The listener reconnects by itself; polling covers the gap.
                            tracing::warn!("listening for other hosts' wake-ups failed: {e}");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            }
        });
        let (to_notify, pool) = (self.to_notify.clone(), self.pools.fast.clone());
        let notifying = tokio::spawn(async move {
            loop {
                to_notify.1.notified().await;
                if to_notify.0.swap(false, Ordering::AcqRel)
                    && let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
                        .bind(&channel)
                        .bind(&me)
                        .execute(&pool)
                        .await
                {
                    tracing::warn!("waking other hosts failed: {e}");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend([listening, notifying]);
        Ok(())
    }

    /// Something may have become claimable: wake this host now, and the others soon.
    fn wake(&self) {
        wake(&self.work, &self.to_notify);
    }

    /// The effect journal, with what only the backend uses.
    fn journal(&self) -> PgEffects {
        PgEffects::new(self.pools.clone())
    }

    /// What a delivery of `new` leaves when its host dies before the acknowledgement: its
    /// statement ran in a transaction that never committed (the conformance suite's torn
    /// accept).
    pub async fn accept_uncommitted(&self, new: &NewEvent) -> BackendResult<()> {
        let mut tx = self.pools.durable.begin().await.map_err(db)?;
        accept::insert(&mut tx, &[new]).await?.remove(0)?;
        tx.rollback().await.map_err(db)
    }

    /// Write `run` as a settlement or replay left it, due again at `due` (`None`: finished).
    async fn write_run<'e, E>(executor: E, run: &RunRecord, due: Option<Ms>) -> BackendResult<()>
    where
        E: Executor<'e, Database = Postgres>,
    {
        let ms = rows::ms_of;
        sqlx::query(WRITE_RUN)
            .bind(&run.id)
            .bind(run.status.as_str())
            .bind(run.attempts as i32)
            .bind(run.replays as i32)
            .bind(run.deferrals as i32)
            .bind(ms(&Some(run.updated_at.clone())))
            .bind(ms(&run.next_attempt_at))
            .bind(ms(&run.started_at))
            .bind(ms(&run.finished_at))
            .bind(due)
            .bind(!run.unconfirmed.is_empty())
            .bind(rows::Detail::of(run))
            .execute(executor)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// Settle the run `lease` names, from the record as this host claimed it (else as stored
    /// now), refused unless the lease is still the run's, and with `next`, claim in the same
    /// call (and hand the run's room over to its recipe's next run, if asked): the run, its
    /// log and its attempt are written, then the claim made, in one call shared with the
    /// other settles this host makes meanwhile ([`settle`]).
    async fn settle_leased(
        &self,
        lease: &Lease,
        now_ms: Ms,
        settlement: Settlement,
        report: AttemptReport,
        next: Option<(ClaimRequest<'_>, bool)>,
    ) -> BackendResult<(RunRecord, Vec<Claimed>)> {
        let cached = self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&lease.run)
            .filter(|run| run.lease.as_ref().is_some_and(|l| l.token == lease.token));
        let before = match cached {
            // This host claimed it: its record is as claimed (only its holder changes a
            // running run), so the settle is one call, refused if the lease moved on.
            Some(before) => before,
            // Not claimed by this process (a lease from before a restart, say): the run as
            // stored now; the call still refuses it unless the lease is the run's.
            None => self
                .run(&lease.run)
                .await?
                .filter(|run| {
                    run.lease
                        .as_ref()
                        .is_some_and(|l| l.token == lease.token && l.holder == lease.holder)
                })
                .ok_or_else(|| BackendError::Stale {
                    run: lease.run.clone(),
                    token: lease.token,
                })?,
        };
        if let Some((req, _)) = &next {
            self.asked(req);
        }
        let released = matches!(settlement, Settlement::Released);
        let logs = (!released && !report.logs.is_empty())
            .then(|| serde_json::to_string(&report.logs).expect("log lines serialize"));
        let (mut run, due, attempt) = settled(before, now_ms, settlement, report);
        let attempt = attempt.map(|a| serde_json::to_string(&a).expect("attempts serialize"));
        if released {
            run.started_at = None;
        }
        let live = lease.expires_ms > now_ms;
        let (run, rows) = self
            .settler
            .settle(settle::Item {
                due,
                now: now_ms,
                token: lease.token as i64,
                holder: lease.holder.clone(),
                logs,
                clear_logs: !released,
                attempt,
                // The run's room is its to hand over only while its lease holds: once it
                // expired, other claims stopped counting it.
                next: next
                    .as_ref()
                    .map(|(req, handover)| settle::Next::of(req, *handover, live)),
                run,
            })
            .await?;
        let claimed = self.claimed(&rows)?;
        if released {
            // This host is letting go (shutting down): another should take the run.
            self.wake();
        } else if next.is_none() {
            // A settle frees a slot of this host, whose dispatcher takes the next run (of
            // the recipe whose concurrency it freed too). Waking every host would have each
            // one claim for the same slot, all but one for nothing. (A settle that claimed
            // leaves it to the pipeline, which knows whether the slot took the freed room.)
            self.work.notify_one();
        }
        Ok((run, claimed))
    }

    /// Keep `req`'s limits for the accepts' room checks ([`room`]).
    fn asked(&self, req: &ClaimRequest<'_>) {
        let mut known = self.limits.lock().unwrap_or_else(|e| e.into_inner());
        if !known.as_deref().is_some_and(|k| k.asked_by(req)) {
            *known = Some(Arc::new(Limits::of(req)));
        }
    }

    /// Runs a claim returned, with their events; held by this host from now on.
    fn claimed(&self, rows: &[sqlx::postgres::PgRow]) -> BackendResult<Vec<Claimed>> {
        let claimed = rows
            .iter()
            .map(|row| {
                let run = rows::run(row)?;
                let lease = run.lease.clone().ok_or_else(|| BackendError::Corrupt {
                    key: format!("run {}", run.id),
                    reason: "claimed without a lease".into(),
                })?;
                Ok(Claimed {
                    event: rows::event(row)?,
                    run,
                    lease,
                })
            })
            .collect::<BackendResult<Vec<Claimed>>>()?;
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        for c in &claimed {
            held.insert(c.run.id.clone(), c.run.clone());
        }
        Ok(claimed)
    }

    /// A run, locked for the rest of `tx`.
    async fn locked_run(
        tx: &mut sqlx::Transaction<'_, Postgres>,
        id: &str,
    ) -> BackendResult<Option<RunRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {RUN} FROM runs r WHERE r.id = $1 FOR UPDATE"
        ))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?;
        row.as_ref().map(rows::run).transpose()
    }

    /// The query's runs, newest first, at most `limit` (`None`: all).
    async fn select_runs(
        &self,
        q: &RunQuery,
        limit: Option<usize>,
    ) -> BackendResult<Vec<RunRecord>> {
        let mut sql = QueryBuilder::<Postgres>::new(format!("SELECT {RUN} FROM runs r WHERE true"));
        if !q.statuses.is_empty() {
            let statuses: Vec<&str> = q.statuses.iter().map(|s| s.as_str()).collect();
            sql.push(" AND r.status = ANY(")
                .push_bind(statuses)
                .push(")");
            if q.statuses.iter().all(|s| s.is_terminal()) {
                // True of every finished run (the table's check): lets the planner use the
                // indexes of finished runs by status.
                sql.push(" AND r.due_ms IS NULL");
            }
        }
        if let Some(plugin) = &q.plugin {
            sql.push(" AND r.plugin = ").push_bind(plugin.clone());
        }
        if let Some(source) = &q.source {
            sql.push(" AND r.source = ").push_bind(source.clone());
        }
        if let Some(event) = &q.event_id {
            sql.push(" AND r.event_id = ").push_bind(event.clone());
        }
        if let Some(delivery) = &q.delivery_id {
            sql.push(" AND r.event_id IN (SELECT id FROM events WHERE delivery_id = ")
                .push_bind(delivery.clone())
                .push(")");
        }
        if let Some(since) = q.since_ms {
            sql.push(" AND r.created_ms >= ").push_bind(since);
        }
        if let Some(until) = q.until_ms {
            sql.push(" AND r.created_ms < ").push_bind(until);
        }
        if let Some(unconfirmed) = q.unconfirmed {
            sql.push(" AND r.unconfirmed = ").push_bind(unconfirmed);
        }
        if let Some(cursor) = &q.cursor {
            let (ms, id) = parse_cursor(cursor)?;
            sql.push(" AND (r.created_ms, r.id) < (")
                .push_bind(ms)
                .push(", ")
                .push_bind(id)
                .push(")");
        }
        sql.push(" ORDER BY r.created_ms DESC, r.id DESC");
        if let Some(limit) = limit {
            sql.push(" LIMIT ")
                .push_bind(limit.min(i64::MAX as usize) as i64);
        }
        let rows = sql.build().fetch_all(&self.pools.fast).await.map_err(db)?;
        rows.iter().map(rows::run).collect()
    }

    /// Delete up to 1,000 finished runs past their retention, with their logs and effects;
    /// returns (runs, effects, their events).
    async fn sweep_runs(
        &self,
        now_ms: Ms,
        policy: &Retention,
    ) -> BackendResult<(u64, u64, Vec<String>)> {
        let row = sqlx::query(
            "WITH gone AS ( \
               DELETE FROM runs WHERE id IN ( \
                 SELECT id FROM runs WHERE due_ms IS NULL AND finished_ms IS NOT NULL AND \
                   ((status = 'succeeded' AND finished_ms <= $1) \
                    OR (status IN ('failed', 'dead') AND finished_ms <= $2)) \
                 LIMIT 1000) \
               RETURNING id, event_id \
             ), logs AS ( \
               DELETE FROM run_logs WHERE run_id IN (SELECT id FROM gone) \
             ), timeline AS ( \
               DELETE FROM run_attempts WHERE run_id IN (SELECT id FROM gone) \
             ), fx AS ( \
               DELETE FROM effects WHERE run_id IN (SELECT id FROM gone) RETURNING 1 \
             ) \
             SELECT (SELECT count(*) FROM gone) AS runs, (SELECT count(*) FROM fx) AS effects, \
                    array(SELECT DISTINCT event_id FROM gone) AS events",
        )
        .bind(now_ms.saturating_sub(policy.keep_succeeded_ms))
        .bind(now_ms.saturating_sub(policy.keep_failed_ms))
        .fetch_one(&self.pools.fast)
        .await
        .map_err(db)?;
        Ok((
            row.try_get::<i64, _>("runs").map_err(db)? as u64,
            row.try_get::<i64, _>("effects").map_err(db)? as u64,
            row.try_get("events").map_err(db)?,
        ))
    }
}

impl PgBackend {
    /// Write `snapshot` (another store's contents, `switchboard store copy`) into this
    /// schema, in one transaction; refused unless the schema holds no events, runs or kv.
    pub async fn import(&self, snapshot: &Snapshot) -> Result<(), PgError> {
        let mut tx = self.pools.durable.begin().await?;
        let used: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM runs) \
                    + (SELECT count(*) FROM kv)",
        )
        .fetch_one(&mut *tx)
        .await?;
        if used > 0 {
            return Err(PgError::NotEmpty(self.config.schema.clone()));
        }
        for stored in &snapshot.events {
            let e = &stored.event;
            sqlx::query(
                "INSERT INTO events (id, source, kind, time, payload, delivery_id, received_ms, window_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&e.id)
            .bind(&e.source)
            .bind(&e.kind)
            .bind(&e.time)
            .bind(e.payload.get())
            .bind(&stored.delivery_id)
            .bind(stored.received_ms)
            .bind(stored.window_ms)
            .execute(&mut *tx)
            .await?;
        }
        // In acceptance order, so each key's runs keep theirs.
        let mut runs: Vec<&MovedRun> = snapshot.runs.iter().collect();
        runs.sort_by(|a, b| {
            (rows::ms_of(&Some(a.run.created_at.clone())), &a.run.id)
                .cmp(&(rows::ms_of(&Some(b.run.created_at.clone())), &b.run.id))
        });
        for moved in runs {
            let run = &moved.run;
            let ms = rows::ms_of;
            sqlx::query(
                "INSERT INTO runs (id, event_id, plugin, source, kind, status, seq, order_key, \
                   attempts, replays, deferrals, created_ms, updated_ms, next_attempt_ms, \
                   started_ms, finished_ms, due_ms, unconfirmed, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6, nextval('run_seq'), $7, $8, $9, $10, $11, $12, \
                   $13, $14, $15, $16, $17, $18)",
            )
            .bind(&run.id)
            .bind(&run.event_id)
            .bind(&run.plugin)
            .bind(&run.source)
            .bind(&run.kind)
            .bind(run.status.as_str())
            .bind(&run.order_key)
            .bind(run.attempts as i32)
            .bind(run.replays as i32)
            .bind(run.deferrals as i32)
            .bind(ms(&Some(run.created_at.clone())).unwrap_or_default())
            .bind(ms(&Some(run.updated_at.clone())).unwrap_or_default())
            .bind(ms(&run.next_attempt_at))
            .bind(ms(&run.started_at))
            .bind(if run.status.is_terminal() {
                ms(&run.finished_at)
            } else {
                None
            })
            .bind(moved.due_ms.filter(|_| !run.status.is_terminal()))
            .bind(!run.unconfirmed.is_empty())
            .bind(rows::Detail::of(run))
            .execute(&mut *tx)
            .await?;
            if !moved.logs.is_empty() {
                sqlx::query("INSERT INTO run_logs (run_id, lines) VALUES ($1, $2)")
                    .bind(&run.id)
                    .bind(serde_json::to_string(&moved.logs).expect("log lines serialize"))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        for d in &snapshot.deliveries {
            sqlx::query(
                "INSERT INTO deliveries (source, delivery_id, event_id, at_ms) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(&d.source)
            .bind(&d.delivery_id)
            .bind(&d.event_id)
            .bind(d.at_ms)
            .execute(&mut *tx)
            .await?;
        }
        for e in &snapshot.effects {
            sqlx::query(
                "INSERT INTO effects (run_id, fingerprint, occurrence, effect) VALUES ($1, $2, $3, $4)",
            )
            .bind(&e.run)
            .bind(&e.fingerprint)
            .bind(e.occurrence as i32)
            .bind(serde_json::to_string(&e.effect).expect("effects serialize"))
            .execute(&mut *tx)
            .await?;
        }
        for (recipe, key, value) in &snapshot.kv {
            sqlx::query("INSERT INTO kv (recipe, key, value) VALUES ($1, $2, $3)")
                .bind(recipe)
                .bind(key)
                .bind(value)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO kv_usage (recipe, keys, bytes) \
             SELECT recipe, count(*), sum(octet_length(key) + octet_length(value)) FROM kv \
             GROUP BY recipe",
        )
        .execute(&mut *tx)
        .await?;
        for (plugin, trigger, last) in &snapshot.ticks {
            sqlx::query("INSERT INTO ticks (plugin, trigger, last_ms) VALUES ($1, $2, $3)")
                .bind(plugin)
                .bind(*trigger as i32)
                .bind(last)
                .execute(&mut *tx)
                .await?;
        }
        for (key, used) in &snapshot.counters {
            sqlx::query("INSERT INTO counters (key, used) VALUES ($1, $2)")
                .bind(key)
                .bind((*used).min(i64::MAX as u64) as i64)
                .execute(&mut *tx)
                .await?;
        }
        for recipe in &snapshot.paused {
            sqlx::query(PAUSE)
                .bind(recipe)
                .bind(switchboard_model::now_ms())
                .execute(&mut *tx)
                .await?;
        }
        // New event ids continue after the copied ones.
        let highest = snapshot
            .events
            .iter()
            .filter_map(|e| e.event.id.strip_prefix("evt_"))
            .filter_map(|hex| i64::from_str_radix(hex, 16).ok())
            .max();
        if let Some(highest) = highest {
            sqlx::query("SELECT setval('event_id_blocks', $1, false)")
                .bind(highest / ID_BLOCK + 1)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.wake();
        Ok(())
    }
}

#[async_trait]
impl Backend for PgBackend {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn failure(&self) -> Option<String> {
        // A lost connection is not a failed store: the pools reconnect, and operations fail
        // (webhooks get 503) meanwhile.
        None
    }

    async fn failed(&self) -> String {
        std::future::pending().await
    }

    async fn next_event_id(&self) -> BackendResult<String> {
        let mut ids = self.ids.lock().await;
        if ids.0 >= ids.1 {
            let block: i64 = sqlx::query_scalar("SELECT nextval('event_id_blocks')")
                .fetch_one(&self.pools.fast)
                .await
                .map_err(db)?;
            *ids = (block * ID_BLOCK, (block + 1) * ID_BLOCK);
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(format!("evt_{id:016x}"))
    }

    async fn accept(&self, new: NewEvent) -> BackendResult<Accepted> {
        // Written with whatever else arrives meanwhile; the batch wakes the claimers.
        self.batcher.accept(new).await
    }

    async fn claim(&self, req: ClaimRequest<'_>) -> BackendResult<Vec<Claimed>> {
        if req.max == 0 {
            return Ok(Vec::new());
        }
        self.asked(&req);
        let (plugins, limits) = claim_limits(&req);
        // The claimed runs come with their events (read by the claiming statement).
        let rows = sqlx::query("SELECT * FROM claim_runs($1, $2, $3, $4, $5, $6, $7)")
            .bind(req.holder)
            .bind(req.now_ms)
            .bind(req.now_ms + req.lease_ms)
            .bind(clamp(req.max))
            .bind(clamp(req.concurrency.default))
            .bind(&plugins)
            .bind(&limits)
            .fetch_all(&self.pools.fast)
            .await
            .map_err(db)?;
        self.claimed(&rows)
    }

    async fn extend(&self, lease: &Lease, now_ms: Ms, lease_ms: Ms) -> BackendResult<Lease> {
        let expires = now_ms + lease_ms;
        let done = sqlx::query(
            "UPDATE runs SET due_ms = $4 WHERE id = $1 AND status = 'running' \
             AND lease_token = $2 AND lease_holder = $3",
        )
        .bind(&lease.run)
        .bind(lease.token as i64)
        .bind(&lease.holder)
        .bind(expires)
        .execute(&self.pools.fast)
        .await
        .map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(BackendError::Stale {
                run: lease.run.clone(),
                token: lease.token,
            });
        }
        Ok(Lease {
            expires_ms: expires,
            ..lease.clone()
        })
    }

    async fn settle(
        &self,
        lease: &Lease,
        now_ms: Ms,
        settlement: Settlement,
        report: AttemptReport,
    ) -> BackendResult<RunRecord> {
        let (run, _) = self
            .settle_leased(lease, now_ms, settlement, report, None)
            .await?;
        Ok(run)
    }

    async fn settle_then_claim(
        &self,
        lease: &Lease,
        now_ms: Ms,
        settlement: Settlement,
        report: AttemptReport,
        next: ClaimRequest<'_>,
        handover: bool,
    ) -> BackendResult<(RunRecord, Vec<Claimed>)> {
        self.settle_leased(lease, now_ms, settlement, report, Some((next, handover)))
            .await
    }

    async fn next_due(&self) -> BackendResult<Option<Ms>> {
        // Runs due now that a claim left are waiting for room (a recipe at its concurrency,
        // a key's earlier run): a settle wakes the dispatcher for those. Runs it left to the
        // host holding their recipe's runs (migration 10) are not waited for here: another
        // wake-up or the dispatcher's poll (within a second) takes them if that host did not.
        // The earlier moment they become this host's is not asked for on purpose (with a
        // backlog at its recipe's limit, idle hosts claimed every few milliseconds).
        sqlx::query_scalar("SELECT min(due_ms) FROM runs WHERE due_ms > $1")
            .bind(switchboard_model::now_ms())
            .fetch_one(&self.pools.fast)
            .await
            .map_err(db)
    }

    async fn counts(&self, now_ms: Ms) -> BackendResult<QueueCounts> {
        // Counting reads every unfinished run (20-45 ms a count with 20,000 queued,
        // measured), and health checks and scrapes of every host ask for it: about one
        // count a second over all hosts (two may count at once; hosts whose clocks are a
        // second apart share none), which callers meanwhile share.
        let mut counted = self.counted.lock().await;
        if let Some((at, asked, counts)) = *counted
            && at.elapsed() < COUNTS_FRESH
            && (asked..asked + COUNTS_FRESH.as_millis() as i64).contains(&now_ms)
        {
            return Ok(counts);
        }
        // Another host's count of the last second, for a moment in the same second, is
        // read instead of counting again (migration 8); otherwise this count is kept for
        // the others.
        type Row = (i64, i64, i64, Option<i64>, i64, i64, bool);
        let (due, later, running, oldest, asked, age, here): Row = sqlx::query_as(
            "WITH fresh AS ( \
                   SELECT due, later, running, oldest_due_ms, asked_ms, \
                     (extract(epoch FROM clock_timestamp() - counted_at) * 1000)::bigint AS age \
                   FROM queue_counts \
                   WHERE clock_timestamp() - counted_at < make_interval(secs => $2::float8 / 1000) \
                     AND $1 >= asked_ms AND $1 < asked_ms + $2 \
                 ), counted AS ( \
                   SELECT count(*) FILTER (WHERE status = 'queued' AND due_ms <= $1) AS due, \
                          count(*) FILTER (WHERE status = 'queued' AND due_ms > $1) AS later, \
                          count(*) FILTER (WHERE status = 'running') AS running, \
                          min(due_ms) FILTER (WHERE status = 'queued' AND due_ms <= $1) \
                            AS oldest_due_ms \
                   FROM runs WHERE due_ms IS NOT NULL \
                   HAVING NOT EXISTS (SELECT 1 FROM fresh) \
                 ), kept AS ( \
                   INSERT INTO queue_counts \
                     (one, asked_ms, counted_at, due, later, running, oldest_due_ms) \
                   SELECT true, $1, clock_timestamp(), due, later, running, oldest_due_ms \
                   FROM counted \
                   ON CONFLICT (one) DO UPDATE SET asked_ms = EXCLUDED.asked_ms, \
                     counted_at = EXCLUDED.counted_at, due = EXCLUDED.due, \
                     later = EXCLUDED.later, running = EXCLUDED.running, \
                     oldest_due_ms = EXCLUDED.oldest_due_ms \
                 ) \
                 SELECT due, later, running, oldest_due_ms, asked_ms, age, false FROM fresh \
                 UNION ALL \
                 SELECT due, later, running, oldest_due_ms, $1, 0, true FROM counted",
        )
        .bind(now_ms)
        .bind(COUNTS_FRESH.as_millis() as i64)
        .fetch_one(&self.pools.fast)
        .await
        .map_err(db)?;
        // Made here, or another's of `age` ms ago, for the moment `asked`.
        if here {
            self.recounts.fetch_add(1, Ordering::Relaxed);
        }
        let made = std::time::Instant::now()
            .checked_sub(Duration::from_millis(age.max(0) as u64))
            .unwrap_or_else(std::time::Instant::now);
        let counts = QueueCounts {
            due: due as usize,
            later: later as usize,
            running: running as usize,
            oldest_due_ms: oldest,
        };
        *counted = Some((made, asked, counts));
        Ok(counts)
    }

    async fn wait_for_work(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.work.notified()).await;
    }

    async fn replay(
        &self,
        id: &str,
        now_ms: Ms,
        resend_unconfirmed: bool,
    ) -> BackendResult<RunRecord> {
        let mut tx = self.pools.fast.begin().await.map_err(db)?;
        let before = Self::locked_run(&mut tx, id)
            .await?
            .ok_or_else(|| BackendError::NoRun(id.to_string()))?;
        let mut run = before.clone();
        run.updated_at = rfc3339(now_ms);
        if run.is_deferred() && !resend_unconfirmed {
            // Held by its recipe: run it now instead (the recipe decides again).
            run.next_attempt_at = None;
            Self::write_run(&mut *tx, &run, Some(now_ms)).await?;
            tx.commit().await.map_err(db)?;
            self.wake();
            tracing::info!(run = %run.id, "deferred run released by a replay");
            return Ok(run);
        }
        if !run.status.is_terminal() {
            return Err(BackendError::NotFinished {
                id: id.to_string(),
                status: run.status.as_str(),
            });
        }
        if resend_unconfirmed {
            let forgotten = self
                .journal()
                .forget_unconfirmed(id)
                .await
                .map_err(|e| BackendError::Io(e.to_string()))?;
            tracing::info!(run = %id, calls = forgotten, "unconfirmed calls forgotten: the replay sends them again");
        }
        run.status = RunStatus::Queued;
        run.attempts = 0;
        run.replays += 1;
        run.next_attempt_at = None;
        Self::write_run(&mut *tx, &run, Some(now_ms)).await?;
        // At the back of its key's order, as if it had just arrived.
        sqlx::query("UPDATE runs SET seq = nextval('run_seq') WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        self.wake();
        tracing::info!(run = %run.id, "run queued for replay");
        Ok(self.run(id).await?.unwrap_or(run))
    }

    async fn replay_matching(
        &self,
        query: &RunQuery,
        now_ms: Ms,
        dry_run: bool,
    ) -> BackendResult<Replayed> {
        let Some(query) = replay_query(query) else {
            return Ok(Replayed::default());
        };
        let matched = self.select_runs(&query, None).await?;
        replay_all(self, matched, now_ms, dry_run).await
    }

    async fn run(&self, id: &str) -> BackendResult<Option<RunRecord>> {
        let row = sqlx::query(&format!("SELECT {RUN} FROM runs r WHERE r.id = $1"))
            .bind(id)
            .fetch_optional(&self.pools.fast)
            .await
            .map_err(db)?;
        row.as_ref().map(rows::run).transpose()
    }

    async fn logs(&self, id: &str) -> BackendResult<Vec<LogLine>> {
        let lines: Option<String> =
            sqlx::query_scalar("SELECT lines FROM run_logs WHERE run_id = $1")
                .bind(id)
                .fetch_optional(&self.pools.fast)
                .await
                .map_err(db)?;
        lines
            .map(|text| rows::json(&format!("logs of run {id}"), &text))
            .transpose()
            .map(Option::unwrap_or_default)
    }

    async fn attempts(&self, id: &str) -> BackendResult<Vec<AttemptRecord>> {
        let records: Vec<String> =
            sqlx::query_scalar("SELECT record FROM run_attempts WHERE run_id = $1 ORDER BY seq")
                .bind(id)
                .fetch_all(&self.pools.fast)
                .await
                .map_err(db)?;
        records
            .iter()
            .map(|r| rows::json(&format!("attempt of run {id}"), r))
            .collect()
    }

    async fn event(&self, id: &str) -> BackendResult<Option<StoredEvent>> {
        let row = sqlx::query(&format!("SELECT {EVENT} FROM events e WHERE e.id = $1"))
            .bind(id)
            .fetch_optional(&self.pools.fast)
            .await
            .map_err(db)?;
        Ok(match row {
            Some(row) => rows::event(&row)?,
            None => None,
        })
    }

    async fn effects(&self, run: &str) -> BackendResult<Vec<Effect>> {
        Ok(self
            .journal()
            .of_run(run)
            .await
            .map_err(|e| BackendError::Io(e.to_string()))?
            .into_iter()
            .map(|(_, _, effect)| effect)
            .collect())
    }

    async fn runs(&self, query: &RunQuery) -> BackendResult<RunPage> {
        let limit = if query.limit == 0 { 100 } else { query.limit };
        let mut runs = self.select_runs(query, Some(limit + 1)).await?;
        let more = runs.len() > limit;
        runs.truncate(limit);
        let next = if more {
            runs.last().map(|r| {
                cursor(
                    switchboard_model::parse_ms(&r.created_at).unwrap_or_default(),
                    &r.id,
                )
            })
        } else {
            None
        };
        Ok(RunPage { runs, next })
    }

    async fn fire_tick(
        &self,
        plugin: &str,
        trigger: usize,
        tick_ms: Ms,
        event: NewEvent,
    ) -> BackendResult<TickFire> {
        let mut tx = self.pools.durable.begin().await.map_err(db)?;
        // One decision per recipe at a time, over every host.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('switchboard tick ' || $1))")
            .bind(plugin)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let last: Option<i64> =
            sqlx::query_scalar("SELECT last_ms FROM ticks WHERE plugin = $1 AND trigger = $2")
                .bind(plugin)
                .bind(trigger as i32)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        if last.is_some_and(|l| l >= tick_ms) {
            return Ok(TickFire::AlreadyFired);
        }
        let busy: Option<String> = sqlx::query_scalar(
            "SELECT id FROM runs WHERE plugin = $1 AND source = $2 \
             AND status IN ('queued', 'running') LIMIT 1",
        )
        .bind(plugin)
        .bind(switchboard_pipeline::cron::SOURCE)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let fire = match busy {
            Some(run) => TickFire::Busy { run },
            None => TickFire::Fired(accept::insert(&mut tx, &[&event]).await?.remove(0)?),
        };
        sqlx::query(
            "INSERT INTO ticks (plugin, trigger, last_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (plugin, trigger) DO UPDATE SET last_ms = EXCLUDED.last_ms",
        )
        .bind(plugin)
        .bind(trigger as i32)
        .bind(tick_ms)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        if matches!(fire, TickFire::Fired(Accepted::New { .. })) {
            self.wake();
        }
        Ok(fire)
    }

    async fn last_tick(&self, plugin: &str, trigger: usize) -> BackendResult<Option<Ms>> {
        sqlx::query_scalar("SELECT last_ms FROM ticks WHERE plugin = $1 AND trigger = $2")
            .bind(plugin)
            .bind(trigger as i32)
            .fetch_optional(&self.pools.fast)
            .await
            .map_err(db)
    }

    async fn sweep(&self, now_ms: Ms, policy: &Retention) -> BackendResult<Swept> {
        let mut swept = Swept::default();
        loop {
            let (runs, effects, events) = self.sweep_runs(now_ms, policy).await?;
            swept.runs += runs;
            swept.effects += effects;
            if !events.is_empty() {
                // The event goes with its last run (a separate statement: it must see the
                // runs deleted above).
                let gone = sqlx::query(
                    "DELETE FROM events e WHERE e.id = ANY($1) \
                     AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.event_id = e.id)",
                )
                .bind(&events)
                .execute(&self.pools.fast)
                .await
                .map_err(db)?;
                swept.events += gone.rows_affected();
            }
            if runs < 1000 {
                break;
            }
        }
        // Delivery ids past the window may arrive again as new deliveries.
        loop {
            let gone = sqlx::query(
                // Locked in key order, as accepts lock marks, and skipping the ones an
                // accept holds: a sweep and a batch never wait on each other crosswise.
                "DELETE FROM deliveries WHERE ctid IN ( \
                   SELECT ctid FROM deliveries WHERE at_ms <= $1 \
                   ORDER BY source, delivery_id LIMIT 5000 FOR UPDATE SKIP LOCKED)",
            )
            .bind(now_ms.saturating_sub(policy.dedup_window_ms))
            .execute(&self.pools.fast)
            .await
            .map_err(db)?;
            swept.deliveries += gone.rows_affected();
            if gone.rows_affected() < 5000 {
                break;
            }
        }
        Ok(swept)
    }

    async fn set_paused(&self, recipe: &str, paused: bool) -> BackendResult<bool> {
        let changed = if paused {
            sqlx::query(PAUSE)
                .bind(recipe)
                .bind(switchboard_model::now_ms())
                .execute(&self.pools.durable)
                .await
        } else {
            sqlx::query("DELETE FROM paused WHERE recipe = $1")
                .bind(recipe)
                .execute(&self.pools.durable)
                .await
        }
        .map_err(db)?
        .rows_affected()
            > 0;
        if changed && !paused {
            // Every host may start its runs now.
            self.wake();
        }
        Ok(changed)
    }

    async fn paused(&self) -> BackendResult<std::collections::BTreeSet<String>> {
        let names: Vec<String> = sqlx::query_scalar("SELECT recipe FROM paused")
            .fetch_all(&self.pools.fast)
            .await
            .map_err(db)?;
        Ok(names.into_iter().collect())
    }

    async fn flush(&self) -> BackendResult<()> {
        // A synchronous commit makes every earlier asynchronous one durable too.
        sqlx::query("UPDATE flushes SET at = $1 WHERE id = 1")
            .bind(switchboard_model::now_ms())
            .execute(&self.pools.durable)
            .await
            .map_err(db)?;
        Ok(())
    }

    fn recipe_store(&self) -> Arc<dyn RecipeStore> {
        self.recipes.clone()
    }

    fn counters(&self) -> Arc<dyn Counters> {
        Arc::new(PgCounters {
            pools: self.pools.clone(),
        })
    }
}
