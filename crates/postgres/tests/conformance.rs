//! PostgreSQL under the backend conformance suite sled passes: the same checks, unchanged.

use async_trait::async_trait;
use futures_util::future::join_all;
use std::collections::HashMap;
use std::sync::Arc;
use switchboard_model::{Event, Outcome, RunStatus};
use switchboard_pipeline::backend::{
    AttemptReport, Backend, BackendError, ClaimRequest, Claimed, Concurrency, NewEvent, NewRun,
    Settlement,
};
use switchboard_pipeline::conformance::{self, Harness};
use switchboard_postgres::{PgBackend, testing};

/// A schema per check in the test database.
struct Pg;

#[async_trait]
impl Harness for Pg {
    type Backend = PgBackend;

    async fn fresh(&self) -> Arc<PgBackend> {
        PgBackend::open(&testing::fresh_config("conformance"))
            .await
            .expect("open a fresh schema")
    }

    async fn crash(&self, backend: Arc<PgBackend>) -> Arc<PgBackend> {
        // The host is gone: its connections close with nothing more said.
        let config = backend.config().clone();
        drop(backend);
        PgBackend::open(&config).await.expect("open again")
    }

    async fn torn_accept(&self, backend: &PgBackend, event: NewEvent) {
        backend
            .accept_uncommitted(&event)
            .await
            .expect("an uncommitted accept");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_backend_conformance_suite() {
    conformance::run_all(&Pg).await;
}

/// Events `evt_<i>` for each i of `ids`, at `t`, each with a run of recipe `a` (event i's
/// of key `key(i)`, if any).
async fn accept_runs(
    b: &PgBackend,
    t: i64,
    ids: std::ops::Range<usize>,
    key: impl Fn(usize) -> Option<String>,
) {
    for i in ids {
        b.accept(event(i, t, "a", key(i))).await.unwrap();
    }
}

/// Event `evt_<i>` at `t`, with a run of `recipe` (of `key`, if any).
fn event(i: usize, t: i64, recipe: &str, key: Option<String>) -> NewEvent {
    let id = format!("evt_{i:04}");
    NewEvent {
        event: Event::new(
            &id,
            "forms",
            "thing.happened",
            switchboard_model::rfc3339(t),
            &serde_json::json!({ "n": i }),
        ),
        delivery_id: id.clone(),
        received_ms: t,
        window_ms: 60_000,
        runs: vec![NewRun {
            plugin: recipe.into(),
            order_key: key,
        }],
    }
}

/// A claim by `holder` at `now_ms` of up to `max` runs, twelve of a recipe at once.
fn request<'a>(
    holder: &'a str,
    now_ms: i64,
    max: usize,
    limits: &'a HashMap<String, usize>,
) -> ClaimRequest<'a> {
    ClaimRequest {
        holder,
        now_ms,
        lease_ms: 1_000,
        max,
        concurrency: Concurrency {
            default: 12,
            per_recipe: limits,
        },
    }
}

/// A fresh store with `n` runs of `a`, run i of key i mod 12, the first of each key claimed
/// by h1 (leases of a second), and the moment they were accepted.
async fn twelve_claimed(n: usize) -> (Arc<PgBackend>, i64, Vec<Claimed>) {
    let b = Pg.fresh().await;
    let t = switchboard_model::now_ms();
    accept_runs(&b, t, 0..n, |i| Some(format!("k{}", i % 12))).await;
    let first = b
        .claim(request("h1", t + 1, 12, &HashMap::new()))
        .await
        .unwrap();
    assert_eq!(first.len(), 12);
    (b, t, first)
}

/// Another host (h2, the backend returned) takes over two of the runs whose leases (from
/// `twelve_claimed` at `t`) expired; their ids.
async fn two_taken_over(b: &PgBackend, t: i64) -> (Arc<PgBackend>, Vec<String>) {
    let other = PgBackend::open(b.config()).await.unwrap();
    let taken = other
        .claim(request("h2", t + 5_000, 2, &HashMap::new()))
        .await
        .unwrap();
    assert_eq!(taken.len(), 2, "two expired leases taken over");
    let ids = taken.into_iter().map(|c| c.run.id).collect();
    (other, ids)
}

fn done() -> Settlement {
    Settlement::Succeeded(Outcome::Done("ok".into()))
}

/// The conformance suite's settles made at once may each be written alone; here they must
/// share calls — `ENDED` in settle.rs when each hands its room over, `settle_claim_many`
/// when each claims under the claim lock — and each still get its own answer and run: its
/// key's next (the run settled in the same call does not hold it back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settles_made_at_once_share_calls() {
    for handover in [true, false] {
        let (b, t, first) = twelve_claimed(24).await;
        let limits = HashMap::new();
        let before = b.settle_calls();
        let answers = join_all(first.iter().map(|c| {
            b.settle_then_claim(
                &c.lease,
                t + 2,
                done(),
                AttemptReport::default(),
                request("h1", t + 2, 1, &limits),
                handover,
            )
        }))
        .await;
        let after = b.settle_calls();
        assert_eq!(
            after.failed, before.failed,
            "a batch failed (handover {handover})"
        );
        let (calls, settles) = (after.calls - before.calls, after.settles - before.settles);
        assert_eq!(settles, 12);
        assert!(
            calls < settles,
            "12 settles at once took {calls} calls: not batched (handover {handover})"
        );
        // Hand-overs are plain statements; claims under the lock, function calls.
        let functions = after.functions - before.functions;
        assert_eq!(
            functions,
            if handover { 0 } else { calls },
            "handover {handover}"
        );
        let mut events = Vec::new();
        for answer in answers {
            let (run, claimed) = answer.expect("settle");
            assert_eq!(run.status, RunStatus::Succeeded);
            assert_eq!(
                claimed.len(),
                1,
                "each settle takes a run (handover {handover})"
            );
            events.extend(claimed.into_iter().map(|c| c.run.event_id));
        }
        events.sort();
        let expected: Vec<String> = (12..24).map(|i| format!("evt_{i:04}")).collect();
        assert_eq!(
            events, expected,
            "each its key's next (handover {handover})"
        );
        assert_eq!(b.counts(t + 3).await.unwrap().running, 12);
    }
}

/// Runs another host took over after their leases expired, settled in a batch by the host
/// that lost them (its claimed records still name its leases, so only the database can
/// tell): those settles alone are refused, the rest of the batch is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refuses_only_its_stale_settles() {
    let (b, t, first) = twelve_claimed(12).await;
    let (_other, taken) = two_taken_over(&b, t).await;
    let taken: Vec<&str> = taken.iter().map(String::as_str).collect();
    let before = b.settle_calls();
    // The lost ones last: settles made after others are in a batch with them.
    let mut order: Vec<&Claimed> = first.iter().collect();
    order.sort_by_key(|c| taken.contains(&c.run.id.as_str()));
    let answers = join_all(
        order
            .iter()
            .map(|c| b.settle(&c.lease, t + 2, done(), AttemptReport::default())),
    )
    .await;
    let after = b.settle_calls();
    assert!(
        after.calls - before.calls < after.settles - before.settles,
        "not batched"
    );
    assert_eq!(after.failed, before.failed, "a batch failed");
    assert_eq!(after.functions, before.functions, "plain statements only");
    for (c, answer) in order.iter().zip(answers) {
        let stored = b.run(&c.run.id).await.unwrap().unwrap();
        if taken.contains(&c.run.id.as_str()) {
            assert!(
                matches!(answer, Err(BackendError::Stale { .. })),
                "{}: a settle of a lease taken over is refused",
                c.run.id
            );
            assert_eq!(stored.status, RunStatus::Running);
            assert_eq!(stored.lease.map(|l| l.holder), Some("h2".to_string()));
            assert!(
                b.attempts(&c.run.id).await.unwrap().is_empty(),
                "{}: a refused settle writes no attempt",
                c.run.id
            );
        } else {
            assert_eq!(answer.expect("settle").status, RunStatus::Succeeded);
            assert_eq!(stored.status, RunStatus::Succeeded);
        }
    }
}

/// A lone settle is one statement when it ends its run (`ENDED_ONE` in settle.rs), read from one
/// snapshot: the run it ends, still running there, must neither hold its key's next run back
/// nor count against its recipe's limit; a paused recipe (limit 0) gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_settle_hands_its_room_to_its_keys_next_run_within_the_limit() {
    let b = Pg.fresh().await;
    let t = switchboard_model::now_ms();
    accept_runs(&b, t, 0..4, |_| Some("k".into())).await;
    let none = HashMap::new();
    let first = b.claim(request("h1", t + 1, 12, &none)).await.unwrap();
    assert_eq!(first.len(), 1, "a key's runs one at a time");
    let mut lease = first[0].lease.clone();
    for (limit, expected) in [
        (None, Some("evt_0001")),
        (Some(1), Some("evt_0002")),
        (Some(0), None),
    ] {
        let limits: HashMap<String, usize> =
            limit.map(|l| ("a".to_string(), l)).into_iter().collect();
        let (run, claimed) = b
            .settle_then_claim(
                &lease,
                t + 2,
                done(),
                AttemptReport::default(),
                request("h1", t + 2, 1, &limits),
                true,
            )
            .await
            .expect("settle");
        assert_eq!(run.status, RunStatus::Succeeded);
        let next: Vec<&str> = claimed.iter().map(|c| c.run.event_id.as_str()).collect();
        assert_eq!(
            next,
            expected.into_iter().collect::<Vec<_>>(),
            "limit {limit:?}"
        );
        match claimed.into_iter().next() {
            Some(c) => lease = c.lease,
            None => break,
        }
    }
    let counts = b.counts(t + 3).await.unwrap();
    assert_eq!(
        (counts.running, counts.due),
        (0, 1),
        "the paused recipe's run waits"
    );
}

/// A lone settle of a run another host took over is refused by the database (the host's
/// own record still names its lease), with or without a hand-over, and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_settle_of_a_run_taken_over_is_refused() {
    let (b, t, first) = twelve_claimed(24).await;
    let none = HashMap::new();
    let (_other, taken) = two_taken_over(&b, t).await;
    // Each key's second run waits behind its first, and now one run of no key is free to
    // take: a hand-over would take it.
    accept_runs(&b, t, 24..25, |_| None).await;
    let lost: Vec<&Claimed> = first.iter().filter(|c| taken.contains(&c.run.id)).collect();
    let report = || AttemptReport {
        logs: vec![switchboard_model::LogLine {
            level: switchboard_model::Level::Info,
            message: "late".into(),
            fields: Vec::new(),
        }],
        ..AttemptReport::default()
    };
    let alone = b.settle(&lost[0].lease, t + 2, done(), report()).await;
    let handing = b
        .settle_then_claim(
            &lost[1].lease,
            t + 2,
            done(),
            report(),
            request("h1", t + 2, 1, &none),
            true,
        )
        .await
        .map(|(run, _)| run);
    for (c, answer) in lost.iter().zip([alone, handing]) {
        assert!(
            matches!(answer, Err(BackendError::Stale { .. })),
            "{}: a settle of a lease taken over is refused: {answer:?}",
            c.run.id
        );
        let stored = b.run(&c.run.id).await.unwrap().unwrap();
        assert_eq!(stored.status, RunStatus::Running);
        assert_eq!(stored.lease.map(|l| l.holder), Some("h2".to_string()));
        assert!(
            b.logs(&c.run.id).await.unwrap().is_empty(),
            "no log written"
        );
        assert!(
            b.attempts(&c.run.id).await.unwrap().is_empty(),
            "no attempt written"
        );
    }
    let counts = b.counts(t + 3).await.unwrap();
    assert_eq!(
        (counts.running, counts.due),
        (12, 13),
        "nothing handed over: the free run and every key's second run still wait"
    );
}

/// Whether `values` (each increment's answer, with its amount) can be the increments of a
/// counter from `start` made one after another in some order: each starts where another
/// ended, or at `start`, and one of them ends at `end`. (As multisets: the start and every
/// value equal every value before an increment and the end.)
fn one_after_another(start: i64, end: i64, values: &[(i64, i64)]) -> bool {
    let mut ends: Vec<i64> = values.iter().map(|(v, _)| *v).chain([start]).collect();
    let mut starts: Vec<i64> = values.iter().map(|(v, by)| v - by).chain([end]).collect();
    ends.sort_unstable();
    starts.sort_unstable();
    ends == starts
}

/// What `n` increments of `key` by one, made at once, answered, in order.
async fn ones_at_once(
    kv: &dyn switchboard_runtime::store::KvSpace,
    key: &str,
    n: usize,
) -> Vec<i64> {
    let mut sums: Vec<i64> = join_all((0..n).map(|_| kv.increment(key, 1)))
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    sums.sort_unstable();
    sums
}

/// The conformance suite checks that increments made at once each land once; here they
/// must share statements, each still get a value of its own — with amounts of both signs,
/// and when the sums grow a digit (those are added one by one, under the quota).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_made_at_once_share_statements() {
    use switchboard_model::kv::{KvError, KvQuota};
    let b = Pg.fresh().await;
    let store = b.recipe_store();
    let kv = store.kv("counter", KvQuota::default()).unwrap();
    kv.set("c", b"1000").await.unwrap();
    assert_eq!(
        ones_at_once(&*kv, "c", 200).await,
        (1001..=1200).collect::<Vec<i64>>(),
        "each its own sum"
    );
    let (statements, increments) = b.counter_additions();
    assert_eq!(increments, 200, "every increment went to a statement");
    assert!(
        statements <= 10,
        "200 increments at once took {statements} statements"
    );

    kv.set("mixed", b"5000").await.unwrap();
    let before = b.counter_additions().0;
    let amounts: Vec<i64> = (0..100).map(|i| if i % 2 == 0 { 3 } else { -2 }).collect();
    let values: Vec<(i64, i64)> = join_all(amounts.iter().map(|by| kv.increment("mixed", *by)))
        .await
        .into_iter()
        .zip(&amounts)
        .map(|(r, by)| (r.unwrap(), *by))
        .collect();
    assert_eq!(
        kv.get("mixed").await.unwrap().as_deref(),
        Some(&b"5050"[..])
    );
    assert!(
        one_after_another(5000, 5050, &values),
        "increments of both signs: {values:?}"
    );
    let mixed = b.counter_additions().0 - before;
    assert!(
        mixed <= 20,
        "100 increments of both signs took {mixed} statements"
    );

    // From 9990, twenty more reach five digits: those sums are not added in place.
    kv.set("grows", b"9990").await.unwrap();
    assert_eq!(
        ones_at_once(&*kv, "grows", 20).await,
        (9991..=10010).collect::<Vec<i64>>()
    );
    assert_eq!(
        kv.get("grows").await.unwrap().as_deref(),
        Some(&b"10010"[..])
    );

    // A full quota: from 9998, +5 is refused (five digits do not fit) whenever it comes
    // before the -5s have brought the counter down, so no +5 may answer 10003 — as it
    // would if +5s and -5s were added together.
    let full = store
        .kv(
            "full",
            KvQuota {
                max_keys: 1,
                max_bytes: 5,
            },
        )
        .unwrap();
    full.increment("q", 9998).await.unwrap();
    let amounts: Vec<i64> = (0..40).map(|i| if i % 2 == 0 { 5 } else { -5 }).collect();
    let answers = join_all(amounts.iter().map(|by| full.increment("q", *by))).await;
    let mut values = Vec::new();
    for (answer, by) in answers.into_iter().zip(&amounts) {
        match answer {
            Ok(v) => values.push((v, *by)),
            Err(KvError::QuotaExceeded { .. }) if *by == 5 => {}
            Err(e) => panic!("{by:+}: {e}"),
        }
    }
    let end: i64 = std::str::from_utf8(&full.get("q").await.unwrap().unwrap())
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        values.iter().all(|(v, _)| *v < 10_000),
        "within the quota: {values:?}"
    );
    assert!(one_after_another(9998, end, &values), "{values:?}");

    // A run that stops waiting (its deadline) strands none of the increments behind it.
    kv.set("left", b"100").await.unwrap();
    let mut first = Box::pin(kv.increment("left", 1));
    let _ = tokio::time::timeout(std::time::Duration::ZERO, &mut first).await;
    let rest = join_all((0..10).map(|_| kv.increment("left", 1)));
    drop(first);
    let rest = tokio::time::timeout(std::time::Duration::from_secs(30), rest)
        .await
        .expect("the increments behind a dropped one are answered");
    assert!(rest.iter().all(|r| r.is_ok()), "{rest:?}");
    assert_eq!(
        kv.get("left").await.unwrap().as_deref(),
        Some(&b"111"[..]),
        "the dropped one's increment was queued: it is added with the others"
    );
}

/// Whether `b` is woken for work within `within`.
async fn woken(b: &PgBackend, within: std::time::Duration) -> bool {
    let started = std::time::Instant::now();
    b.wait_for_work(within).await;
    started.elapsed() < within
}

/// An accept wakes the claimers (its host's dispatcher, the other hosts) only when a recipe
/// of its runs has room: a run of a recipe at its limit starts when a settle hands it the
/// room, and waking every host for it had each one claim for nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepts_wake_claimers_only_when_their_recipes_have_room() {
    use std::time::Duration;
    let b = Pg.fresh().await;
    let other = PgBackend::open(b.config()).await.unwrap();
    let t = switchboard_model::now_ms();
    b.accept(event(0, t, "a", None)).await.unwrap();
    let limits = HashMap::from([("a".to_string(), 1)]);
    let claim = ClaimRequest {
        holder: "h1",
        now_ms: t,
        lease_ms: 600_000,
        max: 4,
        concurrency: Concurrency {
            default: 12,
            per_recipe: &limits,
        },
    };
    assert_eq!(b.claim(claim).await.unwrap().len(), 1, "a is at its limit");
    for host in [&b, &other] {
        while woken(host, Duration::from_millis(300)).await {}
    }
    b.accept(event(1, t, "a", None)).await.unwrap();
    for host in [&b, &other] {
        assert!(
            !woken(host, Duration::from_secs(1)).await,
            "a run of a recipe at its limit wakes nobody"
        );
    }
    b.accept(event(2, t, "b", None)).await.unwrap();
    for host in [&b, &other] {
        assert!(
            woken(host, Duration::from_secs(20)).await,
            "a run of a recipe with room wakes every host"
        );
    }
    assert!(
        !woken(&b, Duration::from_secs(1)).await,
        "a host's own notification does not wake it again"
    );
}

/// A count of unfinished runs is made once a second over all hosts: a host asked within a
/// second of another's count, for a moment in the same second, answers that one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_share_a_count_of_unfinished_runs() {
    let b = Pg.fresh().await;
    let other = PgBackend::open(b.config()).await.unwrap();
    let t = switchboard_model::now_ms();
    accept_runs(&b, t, 0..3, |_| None).await;
    let counts = b.counts(t + 10).await.unwrap();
    assert_eq!((counts.due, b.recounts()), (3, 1), "counted");
    assert_eq!(
        other.counts(t + 20).await.unwrap(),
        counts,
        "the other host answers the count of the same second"
    );
    assert_eq!(other.recounts(), 0, "without counting");
    accept_runs(&b, t, 3..5, |_| None).await;
    let later = other.counts(t + 2_000).await.unwrap();
    assert_eq!(
        (later.due, other.recounts()),
        (5, 1),
        "for a moment a second on, it counts again"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let again = b.counts(t + 2_000).await.unwrap();
    assert_eq!(
        (again.due, b.recounts()),
        (5, 2),
        "a count older than a second is made again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settles_hand_over_from_their_recipes_own_due_runs_whatever_the_statistics_saw() {
    let b = Pg.fresh().await;
    let config = b.config();
    // Recipe a has a backlog of 5,000 due runs when the statistics are taken; recipe b comes
    // later, with one run in flight and one due.
    testing::execute_in(
        config,
        "INSERT INTO runs (id, event_id, plugin, source, kind, status, seq, created_ms, \
                           updated_ms, due_ms) \
         SELECT 'q' || g, 'e' || g, 'a', 's', 'k', 'queued', g, g, g, g \
         FROM generate_series(1, 5000) g; \
         ANALYZE runs; \
         INSERT INTO runs (id, event_id, plugin, source, kind, status, seq, created_ms, \
                           updated_ms, due_ms, lease_token, lease_holder) \
         VALUES ('b1', 'eb1', 'b', 's', 'k', 'running', 10001, 1, 1, 99999999, 1, 'h'); \
         INSERT INTO runs (id, event_id, plugin, source, kind, status, seq, created_ms, \
                           updated_ms, due_ms) \
         VALUES ('b2', 'eb2', 'b', 's', 'k', 'queued', 10002, 6000, 6000, 6000);",
    )
    .await;
    for plan in testing::settle_plans(config, "b1", "b", 7000).await {
        assert!(
            plan.contains("runs_plugin_due") && !plan.contains("using runs_due"),
            "the hand-over must read recipe b's own due runs, not every due run in order \
             (walking a's backlog):\n{plan}"
        );
    }
}

/// A recipe's runs go first to the host holding the most of its runs in flight (migration
/// 10): another host takes them once they have been due for the affinity delay (100 ms),
/// a host holding as many as any other at once, and anyone at once when nobody holds any.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipes_runs_go_first_to_the_host_that_holds_the_most_of_them() {
    let b = Pg.fresh().await;
    let t = switchboard_model::now_ms();
    accept_runs(&b, t, 0..4, |_| None).await;
    let none = HashMap::new();
    let ids = |c: Vec<Claimed>| c.into_iter().map(|c| c.run.id).collect::<Vec<_>>();
    let claim = |holder, at, max| b.claim(request(holder, at, max, &none));
    assert_eq!(
        ids(claim("h1", t + 1, 1).await.unwrap()),
        ["evt_0000.a"],
        "nobody holds a run of a: the first claimer takes one at once"
    );
    assert!(
        claim("h2", t + 1, 4).await.unwrap().is_empty(),
        "h1 holds more of a's runs than h2: a's runs due for 1 ms are h1's"
    );
    assert_eq!(
        ids(claim("h1", t + 2, 1).await.unwrap()),
        ["evt_0001.a"],
        "h1 holds the most: it takes a's next run at once"
    );
    assert!(
        claim("h2", t + 99, 4).await.unwrap().is_empty(),
        "a's runs due for 99 ms are still h1's"
    );
    assert_eq!(
        ids(claim("h2", t + 100, 2).await.unwrap()),
        ["evt_0002.a", "evt_0003.a"],
        "due for 100 ms, they are anyone's"
    );
    accept_runs(&b, t + 101, 4..8, |_| None).await;
    assert_eq!(
        ids(claim("h2", t + 102, 1).await.unwrap()),
        ["evt_0004.a"],
        "h2 holds as many as h1 (two): it takes the oldest due run at once"
    );
    assert!(
        claim("h1", t + 102, 4).await.unwrap().is_empty(),
        "h2 holds three now, h1 two: a's runs due for 1 ms are h2's"
    );
    assert_eq!(
        ids(claim("h1", t + 201, 1).await.unwrap()),
        ["evt_0005.a"],
        "due for 100 ms, they are anyone's"
    );
}

/// Runs whose leases expired count for no host: their holder (dead, say) is no longer the
/// host a recipe's new runs are left to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_whose_leases_expired_is_not_left_its_recipes_runs() {
    let b = Pg.fresh().await;
    let t = switchboard_model::now_ms();
    accept_runs(&b, t, 0..2, |_| None).await;
    let none = HashMap::new();
    let first = b.claim(request("h1", t + 1, 1, &none)).await.unwrap();
    assert_eq!(first.len(), 1, "h1 takes one, its lease until t + 1001");
    accept_runs(&b, t + 1_002, 2..3, |_| None).await;
    let taken = b.claim(request("h2", t + 1_002, 3, &none)).await.unwrap();
    let mut ids: Vec<String> = taken.into_iter().map(|c| c.run.id).collect();
    ids.sort();
    assert_eq!(
        ids,
        ["evt_0000.a", "evt_0001.a", "evt_0002.a"],
        "h1's lease expired: h2 takes its run, the waiting one and the one due now, at once"
    );
}
