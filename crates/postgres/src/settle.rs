//! Settling runs in batches: the settles a host's worker slots make while its previous batch
//! is being written go together (group commit, as accepts); a lone settle is a batch of one
//! and waits for no timer. Settles that end their runs — nearly all — are one statement:
//! [`ENDED`] for a batch, whose parts each write the whole batch, [`ENDED_ONE`] alone; the
//! others (a run due again, a claim under the claim lock) are one call of
//! `settle_claim_many` (migration 7), or of `settle_claim` (migration 6) alone.
//!
//! Each settle keeps its own answer: a refused lease fails only its own settle, and if a
//! batch's call fails, each of its settles is tried alone.

use crate::batches::{self, Batches};
use crate::rows::db;
use crate::{STALE, claim_limits, clamp};
use sqlx::PgPool;
use sqlx::Row;
use sqlx::postgres::PgRow;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use switchboard_model::RunRecord;
use switchboard_pipeline::backend::{BackendError, BackendResult, ClaimRequest, Ms};

/// Settles one call writes at most.
const MAX_BATCH: usize = 32;
/// Batches written at once: one, so the settles made while it writes all go in the next
/// (docs/benchmarks.md, run 17: two writers halved the batches and cost more statements per
/// event, most with several hosts, than they saved in waiting).
const WRITERS: usize = 1;

/// One settle, as `settle_claim` takes it.
pub(crate) struct Item {
    /// The run as the settlement leaves it.
    pub run: RunRecord,
    /// When it is due again (`None`: finished).
    pub due: Option<Ms>,
    pub now: Ms,
    pub token: i64,
    pub holder: String,
    /// Its attempt's log lines (JSON), kept instead of the last attempt's.
    pub logs: Option<String>,
    /// Remove the last attempt's log lines when there are none (not when letting go).
    pub clear_logs: bool,
    /// Its attempt's record (JSON) for the run's timeline.
    pub attempt: Option<String>,
    /// What to claim in the same call.
    pub next: Option<Next>,
}

/// A claim made with a settle: [`ClaimRequest`], owned, and whether the run's room goes to
/// its recipe's next run.
pub(crate) struct Next {
    pub now: Ms,
    pub expires: Ms,
    pub max: i32,
    pub default: i32,
    pub plugins: Vec<String>,
    pub limits: Vec<i32>,
    pub handover: bool,
    /// The lease still held when the run ended: its room is its to hand over.
    pub live: bool,
}

impl Next {
    pub(crate) fn of(req: &ClaimRequest<'_>, handover: bool, live: bool) -> Next {
        let (plugins, limits) = claim_limits(req);
        Next {
            now: req.now_ms,
            expires: req.now_ms + req.lease_ms,
            max: clamp(req.max),
            default: clamp(req.concurrency.default),
            plugins: plugins.into_iter().map(str::to_string).collect(),
            limits,
            handover,
            live,
        }
    }
}

/// A written settle's run (as settled) and the rows of the runs claimed for it.
pub(crate) type Settled = BackendResult<(RunRecord, Vec<PgRow>)>;

/// A settle waiting to be written, and who waits for its answer.
type Pending = batches::Pending<Item, (RunRecord, Vec<PgRow>)>;

/// Answer `p` with `rows` (its settle's own answer from a call), handing its run back.
fn answer(p: Pending, rows: BackendResult<Vec<PgRow>>) {
    let batches::Pending { request, reply } = p;
    let _ = reply.send(rows.map(|rows| (request.run, rows)));
}

/// Calls made and settles written, so far.
#[derive(Default)]
pub(crate) struct Stats {
    pub calls: AtomicU64,
    pub settles: AtomicU64,
    /// Batch calls that failed (their settles were then written one by one).
    pub failed: AtomicU64,
    /// Calls of the functions `settle_claim`/`settle_claim_many` (the rest: the plain
    /// statements [`ENDED_ONE`] and [`ENDED`]).
    pub functions: AtomicU64,
}

/// Hands settles to the writer tasks.
pub(crate) struct Settler {
    batches: Batches<Item, (RunRecord, Vec<PgRow>)>,
    pub stats: Arc<Stats>,
}

impl Settler {
    /// Start the writers on `pool`: while they write, the next batch gathers.
    pub(crate) fn start(pool: PgPool) -> (Settler, Vec<tokio::task::JoinHandle<()>>) {
        let stats = Arc::new(Stats::default());
        let (batches, tasks) = Batches::start(WRITERS, MAX_BATCH, {
            let stats = stats.clone();
            move |batch| {
                let (pool, stats) = (pool.clone(), stats.clone());
                async move {
                    for group in groups(batch) {
                        stats.calls.fetch_add(1, Ordering::Relaxed);
                        stats
                            .settles
                            .fetch_add(group.len() as u64, Ordering::Relaxed);
                        write(&pool, &stats, group).await;
                    }
                }
            }
        });
        (Settler { batches, stats }, tasks)
    }

    /// Settle `item` in the next batch.
    pub(crate) async fn settle(&self, item: Item) -> Settled {
        self.batches.ask(item).await
    }
}

/// Split a batch, in order, into groups one call can write: one holder each, no run twice.
fn groups(batch: Vec<Pending>) -> Vec<Vec<Pending>> {
    let mut groups: Vec<Vec<Pending>> = Vec::new();
    let mut runs: HashSet<String> = HashSet::new();
    for p in batch {
        let fits = groups.last().is_some_and(|g| {
            g[0].request.holder == p.request.holder && !runs.contains(&p.request.run.id)
        });
        if !fits {
            groups.push(Vec::new());
            runs.clear();
        }
        runs.insert(p.request.run.id.clone());
        groups.last_mut().expect("a group").push(p);
    }
    groups
}

/// Why a batch's call failed.
#[derive(Debug)]
enum Failed {
    /// The database refused or garbled the call: each settle may still go alone.
    Refused(BackendError),
    /// The database could not be reached (no connection within the pool's timeout, a lost
    /// one): none would go alone either, and trying each would make the writer, and every
    /// settle of its host, wait that long again per settle.
    Unreachable(BackendError),
}

impl From<sqlx::Error> for Failed {
    fn from(e: sqlx::Error) -> Failed {
        use sqlx::Error::*;
        match e {
            PoolTimedOut | PoolClosed | Io(_) | Tls(_) | WorkerCrashed => {
                Failed::Unreachable(db(e))
            }
            e => Failed::Refused(db(e)),
        }
    }
}

/// Write `group` and answer each settle: one call for all, or each alone if the database
/// refused that call.
async fn write(pool: &PgPool, stats: &Stats, group: Vec<Pending>) {
    if group.len() == 1 {
        let p = group.into_iter().next().expect("one");
        let rows = one(pool, stats, &p.request).await;
        answer(p, rows);
        return;
    }
    match many(pool, stats, &group).await {
        Ok(mut answers) => {
            for (p, rows) in group.into_iter().zip(answers.drain(..)) {
                answer(p, rows);
            }
        }
        Err(Failed::Refused(error)) => {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                settles = group.len(),
                "a batch of settles failed ({error}); settling each alone"
            );
            for p in group {
                let rows = one(pool, stats, &p.request).await;
                answer(p, rows);
            }
        }
        Err(Failed::Unreachable(error)) => {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(settles = group.len(), "a batch of settles failed ({error})");
            for p in group {
                answer(p, Err(error.clone()));
            }
        }
    }
}

/// The refusal of `item`'s settle: its lease is no longer the run's.
fn stale(item: &Item) -> BackendError {
    BackendError::Stale {
        run: item.run.id.clone(),
        token: item.token as u64,
    }
}

// The statements settles that end their runs are written with, no function call: the runs
// settled (if their leases are still theirs) with their logs and attempts, and each room
// handed over claimed by the recipe's next due run — as `settle_claim`/`settle_claim_many`
// (migrations 6, 7) do after their settle, but read from the statement's one snapshot: the
// runs it settles, still running there, are left out of their recipe's count and their
// key's order. A refusal (nothing of that settle written) is a row with no id.
//
// A run's lease is matched by token and holder alone: only a claim sets a token (a fresh
// one, from a sequence) and every write that ends or requeues a run clears it, so a token
// names a running run; with `status = 'running'` too, plans read the settled runs from the
// index of every run in flight (seen: 0.3 ms with 500 in flight) instead of by key.

/// A due run `r` is free to start unless an earlier run of its key is unfinished, or one is
/// running under a lease live at `now` — the runs `settled` (an expression true of `o.id` for
/// any other run) aside.
fn key_free(now: &str, settled: &str) -> String {
    format!(
        "(r.order_key IS NULL OR NOT EXISTS ( \
           SELECT 1 FROM runs o WHERE o.plugin = r.plugin AND o.order_key = r.order_key \
             AND o.due_ms IS NOT NULL AND o.id <> r.id AND {settled} \
             AND (o.seq < r.seq OR (o.status = 'running' AND o.due_ms > {now}))))"
    )
}

/// Runs of `plugin` in flight under a lease live at `now`, the runs `settled` (an expression
/// true of `b.id` for any other run) aside.
pub(crate) fn in_flight(plugin: &str, now: &str, settled: &str) -> String {
    format!(
        "(SELECT count(*) FROM runs b WHERE b.plugin = {plugin} AND b.status = 'running' \
           AND b.due_ms > {now} AND {settled})"
    )
}

/// The limit of runs of `plugin` in flight: its own in the arrays `plugins` and `limits` (as
/// [`crate::claim_limits`] binds them), else `default`.
pub(crate) fn limit_of(plugin: &str, plugins: &str, limits: &str, default: &str) -> String {
    format!(
        "coalesce((SELECT lim.l FROM unnest({plugins}::text[], {limits}::int[]) AS lim(plugin, l) \
                   WHERE lim.plugin = {plugin} LIMIT 1), {default})"
    )
}

/// Claim the runs `which` selects for `holder`, at `now`, leases until `expires`.
fn claim(now: &str, expires: &str, holder: &str, which: &str) -> String {
    format!(
        "UPDATE runs SET status = 'running', attempts = attempts + 1, started_ms = {now}, \
           updated_ms = {now}, next_attempt_ms = NULL, due_ms = {expires}, \
           lease_token = nextval('lease_tokens'), lease_holder = {holder} \
         WHERE {which} RETURNING *"
    )
}

/// A claimed run `r`'s columns and its event's (`e`), as `rows::run` reads them.
static CLAIMED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "r.id, r.event_id, r.plugin, r.source, r.kind, r.status, r.order_key, r.attempts, \
         r.replays, r.deferrals, r.created_ms, r.updated_ms, r.next_attempt_ms, r.started_ms, \
         r.due_ms, r.finished_ms, r.lease_token, r.lease_holder, r.detail, \
         NULL::text AS waiting_for, {}",
        crate::rows::EVENT
    )
});

/// One settle that ends its run: the usual lone settle (cheaper than [`ENDED`] with one
/// item: docs/benchmarks.md, run 15). `$1`–`$17` as `settle_claim` takes them
/// ([`settle_params`]); if its slot hands its room over (`$18`), the recipe (`$20`)'s next
/// due run takes it under the recipe's limit (`$19`), its lease until `$21`.
pub(crate) static ENDED_ONE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH u AS ( \
           UPDATE runs SET status = $2, attempts = $3, replays = $4, deferrals = $5, \
             updated_ms = $6, next_attempt_ms = $7, started_ms = $8, finished_ms = $9, \
             due_ms = $10, lease_token = NULL, lease_holder = NULL, unconfirmed = $11, \
             detail = $12 \
           WHERE id = $1 AND lease_token = $13 AND lease_holder = $14 \
           RETURNING id \
         ), put AS ( \
           INSERT INTO run_logs (run_id, lines) SELECT u.id, $15 FROM u WHERE $15 IS NOT NULL \
           ON CONFLICT (run_id) DO UPDATE SET lines = EXCLUDED.lines \
         ), gone AS ( \
           DELETE FROM run_logs WHERE $16 AND $15 IS NULL AND run_id = $1 \
             AND EXISTS (SELECT 1 FROM u) \
         ), attempt AS ( \
           INSERT INTO run_attempts (run_id, record) SELECT u.id, $17 FROM u \
           WHERE $17 IS NOT NULL \
         ), next AS ( \
           SELECT r.id FROM runs r \
           WHERE $18 AND EXISTS (SELECT 1 FROM u) \
             AND $19::bigint > {room} \
             AND r.plugin = $20 AND r.due_ms IS NOT NULL AND r.due_ms <= $6 AND r.id <> $1 \
             AND {key_free} \
           ORDER BY r.plugin, r.due_ms, r.seq \
           LIMIT 1 \
           FOR UPDATE SKIP LOCKED \
         ), claimed AS ( {claim} ) \
         SELECT {claimed} FROM claimed r LEFT JOIN events e ON e.id = r.event_id \
         UNION ALL \
         SELECT {nulls} WHERE NOT EXISTS (SELECT 1 FROM u)",
        room = in_flight("$20", "$6", "b.id <> $1"),
        key_free = key_free("$6", "o.id <> $1"),
        claim = claim("$6", "$21", "$14", "id = (SELECT next.id FROM next)"),
        claimed = *CLAIMED,
        nulls = ["NULL"; 28].join(", "),
    )
});

/// A batch of settles that end their runs: `$1`–`$17` as `settle_claim_many` takes them
/// ([`batch_params`]), `$18` which hand their room over, `$19`–`$23` the claims' moment,
/// lease and limits ([`claim_params`]). Each recipe's settled runs that hand their room
/// over give it to the recipe's next due runs (fewer if its limit is below its other runs in
/// flight plus theirs), dealt out in item order; each row names its item (1-based). Joins to
/// `events` and to the claimed ids are index probes whatever the plan's estimates (a
/// hand-over's `LIMIT` is not a constant: migration 7 saw a hash join read every event).
pub(crate) static ENDED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let settled = |alias: &str| format!("{alias}.id <> ALL (ARRAY(SELECT u.id FROM u))");
    format!(
        "WITH i AS ( \
           SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::int[], $5::int[], \
                                $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], \
                                $10::bigint[], $11::bool[], $12::text[], $13::bigint[], \
                                $15::text[], $16::bool[], $17::text[], $18::bool[]) \
             WITH ORDINALITY AS t(id, status, attempts, replays, deferrals, now, next_attempt, \
                                  started, finished, due, unconfirmed, detail, token, logs, \
                                  clear_logs, attempt, hand, n) \
         ), u AS ( \
           UPDATE runs SET status = i.status, attempts = i.attempts, replays = i.replays, \
             deferrals = i.deferrals, updated_ms = i.now, next_attempt_ms = i.next_attempt, \
             started_ms = i.started, finished_ms = i.finished, due_ms = i.due, \
             lease_token = NULL, lease_holder = NULL, unconfirmed = i.unconfirmed, \
             detail = i.detail \
           FROM i \
           WHERE runs.id = i.id AND runs.lease_token = i.token AND runs.lease_holder = $14 \
           RETURNING i.n, runs.id, runs.plugin, i.logs, i.clear_logs, i.attempt, i.hand \
         ), put AS ( \
           INSERT INTO run_logs (run_id, lines) SELECT u.id, u.logs FROM u \
           WHERE u.logs IS NOT NULL \
           ON CONFLICT (run_id) DO UPDATE SET lines = EXCLUDED.lines \
         ), gone AS ( \
           DELETE FROM run_logs WHERE run_id = ANY (ARRAY( \
             SELECT u.id FROM u WHERE u.clear_logs AND u.logs IS NULL)) \
         ), attempt AS ( \
           INSERT INTO run_attempts (run_id, record) \
           SELECT u.id, u.attempt FROM u WHERE u.attempt IS NOT NULL \
         ), h AS ( \
           SELECT u.plugin, array_agg(u.n ORDER BY u.n) AS items FROM u WHERE u.hand \
           GROUP BY u.plugin \
         ), next AS ( \
           SELECT h.items, x.id, \
             row_number() OVER (PARTITION BY h.plugin ORDER BY x.due_ms, x.seq) AS rank \
           FROM h CROSS JOIN LATERAL ( \
             SELECT r.id, r.due_ms, r.seq FROM runs r \
             WHERE r.plugin = h.plugin AND r.due_ms IS NOT NULL AND r.due_ms <= $19 \
               AND r.id <> ALL ($1::text[]) AND {key_free} \
             ORDER BY r.plugin, r.due_ms, r.seq \
             LIMIT greatest(0, least(cardinality(h.items), {limit} - {room})) \
             FOR UPDATE OF r SKIP LOCKED \
           ) x \
         ), claimed AS ( {claim} ) \
         SELECT next.items[next.rank]::integer AS item, {claimed} \
         FROM claimed r JOIN next ON next.id = r.id \
         LEFT JOIN LATERAL (SELECT * FROM events WHERE events.id = r.event_id OFFSET 0) e \
           ON true \
         UNION ALL \
         SELECT i.n::integer, {nulls} FROM i WHERE NOT EXISTS (SELECT 1 FROM u WHERE u.n = i.n)",
        key_free = key_free("$19", &settled("o")),
        room = in_flight("h.plugin", "$19", &settled("b")),
        limit = limit_of("h.plugin", "$22", "$23", "$21"),
        claim = claim(
            "$19",
            "$20",
            "$14",
            "runs.id = ANY (ARRAY(SELECT next.id FROM next))"
        ),
        claimed = *CLAIMED,
        nulls = ["NULL"; 28].join(", "),
    )
});

/// A query whose parameters are being bound.
type Params<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// One settle's own parameters bound as `$1`–`$17` (as `settle_claim` and [`ENDED_ONE`]
/// take them).
fn settle_params<'q>(query: Params<'q>, item: &'q Item) -> Params<'q> {
    let run = &item.run;
    let ms = crate::rows::ms_of;
    query
        .bind(&run.id)
        .bind(run.status.as_str())
        .bind(run.attempts as i32)
        .bind(run.replays as i32)
        .bind(run.deferrals as i32)
        .bind(item.now)
        .bind(ms(&run.next_attempt_at))
        .bind(ms(&run.started_at))
        .bind(ms(&run.finished_at))
        .bind(item.due)
        .bind(!run.unconfirmed.is_empty())
        .bind(crate::rows::Detail::of(run))
        .bind(item.token)
        .bind(&item.holder)
        .bind(&item.logs)
        .bind(item.clear_logs)
        .bind(&item.attempt)
}

/// A batch's settles bound as `$1`–`$17`, one array per column (as `settle_claim_many` and
/// [`ENDED`] take them); one holder for all.
fn batch_params<'q>(query: Params<'q>, items: &[&'q Item]) -> Params<'q> {
    let ms = crate::rows::ms_of;
    query
        .bind(column(items, |i| i.run.id.as_str()))
        .bind(column(items, |i| i.run.status.as_str()))
        .bind(column(items, |i| i.run.attempts as i32))
        .bind(column(items, |i| i.run.replays as i32))
        .bind(column(items, |i| i.run.deferrals as i32))
        .bind(column(items, |i| i.now))
        .bind(column(items, |i| ms(&i.run.next_attempt_at)))
        .bind(column(items, |i| ms(&i.run.started_at)))
        .bind(column(items, |i| ms(&i.run.finished_at)))
        .bind(column(items, |i| i.due))
        .bind(column(items, |i| !i.run.unconfirmed.is_empty()))
        .bind(column(items, |i| crate::rows::Detail::of(&i.run)))
        .bind(column(items, |i| i.token))
        .bind(&items[0].holder)
        .bind(column(items, |i| i.logs.as_deref()))
        .bind(column(items, |i| i.clear_logs))
        .bind(column(items, |i| i.attempt.as_deref()))
}

/// A batch's claims bound: their moment, lease expiry, default limit and per-recipe limits
/// (the latest settle's; none: nothing is claimed).
fn claim_params<'q>(query: Params<'q>, latest: Option<&'q Next>) -> Params<'q> {
    query
        .bind(latest.map_or(0, |n| n.now))
        .bind(latest.map_or(0, |n| n.expires))
        .bind(latest.map_or(0, |n| n.default))
        .bind(latest.map(|n| n.plugins.as_slice()).unwrap_or_default())
        .bind(latest.map(|n| n.limits.as_slice()).unwrap_or_default())
}

/// One settle: [`ENDED_ONE`] when it ends its run and claims nothing or hands its room
/// over; else one call of `settle_claim`.
async fn one(pool: &PgPool, stats: &Stats, item: &Item) -> BackendResult<Vec<PgRow>> {
    if let Some(handover) = ends(item) {
        return ended(pool, item, handover).await;
    }
    stats.functions.fetch_add(1, Ordering::Relaxed);
    let next = item.next.as_ref();
    settle_params(
        sqlx::query(
            "SELECT * FROM settle_claim($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
             $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)",
        ),
        item,
    )
    .bind(next.map_or(item.now, |n| n.expires))
    .bind(next.map_or(0, |n| n.max))
    .bind(next.map_or(0, |n| n.default))
    .bind(next.map(|n| n.plugins.as_slice()).unwrap_or_default())
    .bind(next.map(|n| n.limits.as_slice()).unwrap_or_default())
    .bind(next.is_some_and(|n| n.handover))
    .bind(next.is_some_and(|n| n.live))
    .fetch_all(pool)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.code().as_deref() == Some(STALE) => stale(item),
        _ => db(e),
    })
}

/// Whether `item` can be written by [`ENDED_ONE`] or in [`ENDED`]: it ends its run, and
/// claims nothing or hands its room over (`Some(Some(next))`) while its lease holds. A run
/// due again, or a claim under the claim lock, is `settle_claim`'s (`None`).
fn ends(item: &Item) -> Option<Option<&Next>> {
    let handover = item.next.as_ref().filter(|n| n.max > 0);
    (item.due.is_none() && handover.is_none_or(|n| n.handover && n.live)).then_some(handover)
}

/// [`ENDED_ONE`] for `item`, handing its room over if `handover`.
async fn ended(pool: &PgPool, item: &Item, handover: Option<&Next>) -> BackendResult<Vec<PgRow>> {
    let run = &item.run;
    let limit = handover.map_or(0, |n| {
        n.plugins
            .iter()
            .position(|p| *p == run.plugin)
            .map_or(n.default, |i| n.limits[i])
    });
    let rows = settle_params(sqlx::query(&ENDED_ONE), item)
        .bind(handover.is_some())
        .bind(i64::from(limit))
        .bind(&run.plugin)
        .bind(handover.map_or(item.now, |n| n.expires))
        .fetch_all(pool)
        .await
        .map_err(db)?;
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        if row
            .try_get::<Option<String>, _>("id")
            .map_err(db)?
            .is_none()
        {
            return Err(stale(item));
        }
        claimed.push(row);
    }
    Ok(claimed)
}

/// Several settles, one call of `settle_claim_many` (or one [`ENDED`] when each of them
/// [`ends`]): each one's answer, in order. Claims are made with the latest settle's moment,
/// lease and limits (one host's settings).
async fn many(
    pool: &PgPool,
    stats: &Stats,
    group: &[Pending],
) -> Result<Vec<BackendResult<Vec<PgRow>>>, Failed> {
    let items: Vec<&Item> = group.iter().map(|p| &p.request).collect();
    let latest = items
        .iter()
        .filter_map(|i| i.next.as_ref())
        .max_by_key(|n| n.now);
    let rows = if items.iter().all(|i| ends(i).is_some()) {
        let query = batch_params(sqlx::query(&ENDED), &items)
            .bind(column(&items, |i| ends(i).flatten().is_some()));
        claim_params(query, latest).fetch_all(pool).await
    } else {
        stats.functions.fetch_add(1, Ordering::Relaxed);
        let query = batch_params(
            sqlx::query(
                "SELECT * FROM settle_claim_many($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
                 $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25)",
            ),
            &items,
        )
        .bind(column(&items, |i| i.next.as_ref().map_or(0, |n| n.max)))
        .bind(column(&items, |i| {
            i.next.as_ref().is_some_and(|n| n.handover)
        }))
        .bind(column(&items, |i| i.next.as_ref().is_some_and(|n| n.live)));
        claim_params(query, latest).fetch_all(pool).await
    }?;
    answers(&items, rows).map_err(Failed::Refused)
}

/// One array per column: `f` of every settle, in order.
fn column<'a, T>(items: &[&'a Item], f: impl Fn(&'a Item) -> T) -> Vec<T> {
    items.iter().map(|i| f(i)).collect()
}

/// Each settle's answer from a batch's rows, each naming its item: the runs claimed for it,
/// or its refusal.
fn answers(items: &[&Item], rows: Vec<PgRow>) -> BackendResult<Vec<BackendResult<Vec<PgRow>>>> {
    let mut answers: Vec<BackendResult<Vec<PgRow>>> =
        items.iter().map(|_| Ok(Vec::new())).collect();
    for row in rows {
        let n: i32 = row.try_get("item").map_err(db)?;
        let answer = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|n| answers.get_mut(n))
            .ok_or_else(|| BackendError::Corrupt {
                key: "settle batch".into(),
                reason: format!("a row for settle {n} of {}", items.len()),
            })?;
        let id: Option<String> = row.try_get("id").map_err(db)?;
        match (id, answer) {
            (None, answer) => *answer = Err(stale(items[n as usize - 1])),
            (Some(_), Ok(rows)) => rows.push(row),
            (Some(_), Err(_)) => {}
        }
    }
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_goes_settle_by_settle_only_when_the_database_refused_it() {
        let unreachable = [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
            sqlx::Error::WorkerCrashed,
        ];
        for e in unreachable {
            let shown = e.to_string();
            assert!(
                matches!(Failed::from(e), Failed::Unreachable(_)),
                "{shown}: no settle alone would reach the database either"
            );
        }
        for e in [
            sqlx::Error::RowNotFound,
            sqlx::Error::ColumnNotFound("item".into()),
            sqlx::Error::Protocol("unexpected message".into()),
        ] {
            let shown = e.to_string();
            assert!(
                matches!(Failed::from(e), Failed::Refused(_)),
                "{shown}: the batch's call failed, a settle alone may not"
            );
        }
    }
}
