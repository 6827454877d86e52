//! The backend conformance suite: the semantics every [`Backend`] must have, as checks generic
//! over the backend. Each backend proves itself by running [`run_all`] over its own
//! [`Harness`]: sled in its unit tests, PostgreSQL in `crates/postgres/tests/conformance.rs`.
//!
//! Each check panics, naming what broke, when the backend gets it wrong. Time is passed in
//! (`now_ms`), starting from the real clock, so no check waits.

use crate::backend::{
    Accepted, AttemptReport, Backend, BackendError, BackendResult, ClaimRequest, Claimed,
    Concurrency, Lease, NewEvent, NewRun, QueueCounts, Retention, RunQuery, Settlement, TickFire,
};
use async_trait::async_trait;
use std::sync::Arc;
use switchboard_model::effect::{CallKey, Effect, EffectState};
use switchboard_model::kv::{KvError, KvQuota, KvUsage};
use switchboard_model::{
    Event, Level, LogLine, Outcome, RecipeError, RunError, RunRecord, RunStatus, VendorCall,
};

/// What the suite needs of a backend under test.
#[async_trait]
pub trait Harness: Send + Sync {
    type Backend: Backend;

    /// A backend over a new, empty store.
    async fn fresh(&self) -> Arc<Self::Backend>;

    /// The host dies: `backend` is gone without a clean shutdown; returns the backend opened
    /// again over the same store (it recovers what it must).
    async fn crash(&self, backend: Arc<Self::Backend>) -> Arc<Self::Backend>;

    /// Leave behind what a delivery of `event` leaves when the host dies before it is
    /// acknowledged (whatever of it the backend can have written).
    async fn torn_accept(&self, backend: &Self::Backend, event: NewEvent);
}

/// Every check, each on a fresh store.
pub async fn run_all<H: Harness>(h: &H) {
    accept_is_durable_and_deduplicated(h).await;
    deliveries_accepted_at_once_are_each_new_once(h).await;
    a_delivery_that_died_before_its_ack_leaves_nothing_to_run(h).await;
    claims_are_due_first_within_concurrency(h).await;
    a_settle_claims_the_slots_next_run(h).await;
    settles_made_at_once_each_keep_their_answer_and_claim_their_own_run(h).await;
    a_lease_expires_and_the_run_is_taken_over_and_stale_settles_are_refused(h).await;
    runs_with_one_key_go_one_at_a_time_in_acceptance_order(h).await;
    settlements_move_runs_as_the_pipeline_says(h).await;
    a_crash_leaves_every_unfinished_run_to_run_again(h).await;
    each_cron_tick_fires_once(h).await;
    retention_removes_what_expired_and_keeps_the_rest(h).await;
    queries_filter_page_and_replay(h).await;
    recipe_kv_is_private_atomic_and_bounded(h).await;
    kv_counters_add_atomically_within_the_quota(h).await;
    paused_recipes_are_kept_across_a_crash(h).await;
    the_effect_journal_outlives_a_crash_until_forgotten(h).await;
}

const HOUR: i64 = 3_600_000;

fn now() -> i64 {
    switchboard_model::now_ms()
}

/// A new event `id` from `source` with delivery id `delivery`, for `runs` (recipe, key).
fn event(
    id: &str,
    source: &str,
    delivery: &str,
    at: i64,
    runs: &[(&str, Option<&str>)],
) -> NewEvent {
    NewEvent {
        event: Event::new(
            id,
            source,
            "thing.happened",
            switchboard_model::rfc3339(at),
            &serde_json::json!({"n": id}),
        ),
        delivery_id: delivery.into(),
        received_ms: at,
        window_ms: HOUR,
        runs: runs
            .iter()
            .map(|(plugin, key)| NewRun {
                plugin: plugin.to_string(),
                order_key: key.map(str::to_string),
            })
            .collect(),
    }
}

/// 100 runs of every recipe at once.
fn any() -> Concurrency<'static> {
    Concurrency::each(100)
}

async fn claim(
    b: &impl Backend,
    holder: &str,
    now: i64,
    max: usize,
    limit: Concurrency<'_>,
) -> Vec<Claimed> {
    b.claim(ClaimRequest {
        holder,
        now_ms: now,
        lease_ms: 30_000,
        max,
        concurrency: limit,
    })
    .await
    .expect("claim")
}

fn ids(claimed: &[Claimed]) -> Vec<String> {
    let mut ids: Vec<String> = claimed.iter().map(|c| c.run.id.clone()).collect();
    ids.sort();
    ids
}

async fn succeed(b: &impl Backend, lease: &Lease, now: i64) {
    b.settle(
        lease,
        now,
        Settlement::Succeeded(Outcome::Done("ok".into())),
        AttemptReport::default(),
    )
    .await
    .expect("settle");
}

async fn accept_is_durable_and_deduplicated<H: Harness>(h: &H) {
    let b = h.fresh().await;
    let t = now();
    let Accepted::New { runs } = b
        .accept(event(
            "evt_0001",
            "forms",
            "d1",
            t,
            &[("a", None), ("b", None)],
        ))
        .await
        .unwrap()
    else {
        panic!("accept: a new delivery must be New")
    };
    assert_eq!(runs.len(), 2, "accept: one run per recipe");
    assert!(runs.iter().all(|r| r.status == RunStatus::Queued));
    // The same delivery within its window is a duplicate of the first event...
    match b
        .accept(event("evt_0002", "forms", "d1", t + 1000, &[("a", None)]))
        .await
        .unwrap()
    {
        Accepted::Duplicate { event_id } => {
            assert_eq!(event_id, "evt_0001", "dedup: names the first event")
        }
        other => {
            panic!("dedup: a delivery id within the window must be a duplicate, got {other:?}")
        }
    }
    // ...the same id from another source is not...
    assert!(
        matches!(
            b.accept(event("evt_0003", "other", "d1", t + 1000, &[("a", None)]))
                .await
                .unwrap(),
            Accepted::New { .. }
        ),
        "dedup: delivery ids are per source"
    );
    // ...and after the window it is new again.
    assert!(
        matches!(
            b.accept(event(
                "evt_0004",
                "forms",
                "d1",
                t + HOUR + 1,
                &[("a", None)]
            ))
            .await
            .unwrap(),
            Accepted::New { .. }
        ),
        "dedup: after the window a delivery id is new"
    );
    // Durable: a crash right after loses none of it.
    let b = h.crash(b).await;
    let claimed = claim(&*b, "h1", t + 2 * HOUR, 10, any()).await;
    assert_eq!(
        ids(&claimed),
        vec!["evt_0001.a", "evt_0001.b", "evt_0003.a", "evt_0004.a"],
        "accept: every accepted run survives a crash"
    );
    assert!(
        claimed.iter().all(|c| c.event.is_some()),
        "claim: carries the event"
    );
}

/// Many deliveries at once (a backend may write them together): each delivery id is new
/// exactly once, every other copy is a duplicate naming that event, and every new event's
/// runs are claimable.
async fn deliveries_accepted_at_once_are_each_new_once<H: Harness>(h: &H) {
    let b = h.fresh().await;
    let t = now();
    let accepts = (0..60).map(|n| {
        let b = b.clone();
        // 20 deliveries, each sent three times; the copies differ in event id.
        let (delivery, copy) = (n % 20, n / 20);
        async move {
            let id = format!("evt_{delivery:02}_{copy}");
            let accepted = b
                .accept(event(
                    &id,
                    "forms",
                    &format!("d{delivery}"),
                    t,
                    &[("a", None)],
                ))
                .await
                .expect("accept");
            (delivery, id, accepted)
        }
    });
    let answers = futures_util::future::join_all(accepts).await;
    let mut new: std::collections::HashMap<usize, String> = Default::default();
    for (delivery, id, accepted) in &answers {
        if let Accepted::New { runs } = accepted {
            assert_eq!(runs.len(), 1, "accept at once: one run for the recipe");
            assert!(
                new.insert(*delivery, id.clone()).is_none(),
                "accept at once: delivery d{delivery} was new twice"
            );
        }
    }
    assert_eq!(new.len(), 20, "accept at once: every delivery is new once");
    for (delivery, _, accepted) in &answers {
        if let Accepted::Duplicate { event_id } = accepted {
            assert_eq!(
                event_id, &new[delivery],
                "accept at once: a duplicate names the event its delivery was accepted as"
            );
        }
    }
    let claimed = claim(&*b, "h", t, 100, any()).await;
    let mut events: Vec<String> = claimed.iter().map(|c| c.run.event_id.clone()).collect();
    events.sort();
    let mut expected: Vec<String> = new.into_values().collect();
    expected.sort();
    assert_eq!(
        events, expected,
        "accept at once: each new event's run is claimable, once"
    );
    assert!(
        claimed.iter().all(|c| c.event.is_some()),
        "accept at once: each claimed run comes with its event"
    );
}

async fn a_delivery_that_died_before_its_ack_leaves_nothing_to_run<H: Harness>(h: &H) {
    let b = h.fresh().await;
    let t = now();
    h.torn_accept(&b, event("evt_0010", "forms", "torn", t, &[("a", None)]))
        .await;
    let b = h.crash(b).await;
    assert!(
        claim(&*b, "h1", t + 10, 10, any()).await.is_empty(),
        "torn accept: a delivery never acknowledged leaves nothing to run"
    );
    // The sender was never told it arrived: its next delivery is new.
    assert!(
        matches!(
            b.accept(event("evt_0011", "forms", "torn", t + 20, &[("a", None)]))
                .await
                .unwrap(),
            Accepted::New { .. }
        ),
        "torn accept: the delivery id is not taken"
    );
}

async fn claims_are_due_first_within_concurrency<H: Harness>(h: &H) {
    let b = h.fresh().await;
    let t = now();
    for (i, d) in [(1, 5), (2, 1), (3, 3)] {
        b.accept(event(
            &format!("evt_002{i}"),
            "forms",
            &format!("c{i}"),
            t + d,
            &[("a", None)],
        ))
        .await
        .unwrap();
    }
    b.accept(event("evt_0024", "forms", "c4", t + 9, &[("b", None)]))
        .await
        .unwrap();
    assert!(
        claim(&*b, "h1", t, 10, any()).await.is_empty(),
        "claim: nothing before it is due"
    );
    let a_one_at_a_time = std::collections::HashMap::from([("a".to_string(), 1)]);
    let one = Concurrency {
        default: 100,
        per_recipe: &a_one_at_a_time,
    };
    let first = claim(&*b, "h1", t + 10, 10, one).await;
    assert_eq!(
        ids(&first),
        vec!["evt_0022.a", "evt_0024.b"],
        "claim: earliest due first, at most `concurrency` of a recipe"
    );
    let a = first.iter().find(|c| c.run.plugin == "a").unwrap();
    assert_eq!(a.run.status, RunStatus::Running);
    assert_eq!(a.run.attempts, 1, "claim: counts the attempt");
    assert!(
        claim(&*b, "h2", t + 10, 10, one).await.is_empty(),
        "concurrency: holds over every holder"
    );
    succeed(&*b, &a.lease, t + 11).await;
    let next = claim(&*b, "h2", t + 12, 1, one).await;
    assert_eq!(ids(&next), vec!["evt_0023.a"], "claim: then the next due");
    let counts = b.counts(t + 12).await.unwrap();
    assert_eq!(
        counts,
        QueueCounts {
            due: 1,
            later: 0,
            running: 2,
            oldest_due_ms: Some(t + 5)
        },
        "counts: evt_0021.a due since t+5; two running"
    );
    let earlier = b.counts(t + 4).await.unwrap();
    assert_eq!(
        (earlier.due, earlier.later, earlier.oldest_due_ms),
        (0, 1, None),
        "counts: before its due time, a queued run waits for later"
    );
}

async fn a_settle_claims_the_slots_next_run<H: Harness>(h: &H) {
    let b = h.fresh().await;
    let t = now();
    for (i, key) in [
        (1, None),
        (2, Some("k")),
        (3, Some("k")),
        (4, None),
        (5, None),
    ] {
        b.accept(event(
            &format!("evt_005{i}"),
            "forms",
            &format!("n{i}"),
            t + i,
            &[("a", key)],
        ))
        .await
        .unwrap();
    }
    let limits = |n: usize| std::collections::HashMap::from([("a".to_string(), n)]);
    let (two, none) = (limits(2), limits(0));
    let next = |now_ms, per_recipe| ClaimRequest {
        holder: "h1",
        now_ms,
        lease_ms: 30_000,
        max: 1,
        concurrency: Concurrency {
            default: 100,
            per_recipe,
        },
    };
    let first = claim(&*b, "h1", t + 10, 10, next(t, &two).concurrency).await;
    assert_eq!(ids(&first), vec!["evt_0051.a", "evt_0052.a"]);
    let done = Settlement::Succeeded(Outcome::Done("ok".into()));
    let settle = |lease: Lease, now_ms, next, handover| {
        let (b, done) = (b.clone(), done.clone());
        async move {
            b.settle_then_claim(
                &lease,
                now_ms,
                done,
                AttemptReport::default(),
                next,
                handover,
            )
            .await
        }
    };
    // evt_0053 waits behind evt_0052 (its key's earlier run, running).
    let (run, claimed) = settle(first[0].lease.clone(), t + 11, next(t + 11, &two), true)
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(
        ids(&claimed),
        vec!["evt_0054.a"],
        "settle then claim: the room the settle freed goes to the next due run its key allows"
    );
    assert_eq!(claimed[0].lease.holder, "h1");
    assert_eq!(
        claimed[0].event.as_ref().map(|e| e.event.id.as_str()),
        Some("evt_0054"),
        "settle then claim: the run comes with its event"
    );
    let fourth = claimed[0].lease.clone();
    assert!(
        claim(&*b, "h2", t + 11, 10, next(t, &two).concurrency)
            .await
            .is_empty(),
        "settle then claim: the recipe's runs in flight are as many as before"
    );
    let (_, claimed) = settle(first[1].lease.clone(), t + 12, next(t + 12, &two), false)
        .await
        .unwrap();
    assert_eq!(
        ids(&claimed),
        vec!["evt_0053.a"],
        "settle then claim: a key's next run once its earlier one is done"
    );
    let third = claimed[0].lease.clone();
    assert!(
        matches!(
            settle(first[0].lease.clone(), t + 13, next(t + 13, &two), true).await,
            Err(BackendError::Stale { .. })
        ),
        "settle then claim: refused with a lease that is no longer the run's"
    );
    assert_eq!(
        b.run("evt_0055.a").await.unwrap().unwrap().status,
        RunStatus::Queued,
        "settle then claim: a refused settle claims nothing"
    );
    for handover in [true, false] {
        let lease = if handover { &fourth } else { &third };
        let (run, claimed) = settle(lease.clone(), t + 14, next(t + 14, &none), handover)
            .await
            .unwrap();
        assert_eq!(run.status, RunStatus::Succeeded);
        assert!(
            claimed.is_empty(),
            "settle then claim: nothing for a recipe with no room (paused), handover {handover}"
        );
    }
    assert_eq!(
        ids(&claim(&*b, "h2", t + 15, 10, next(t, &two).concurrency).await),
        vec!["evt_0055.a"],
        "the last run is left to any claim"
    );
}

/// A host's worker slots finishing together (PostgreSQL writes their settles in one call):
/// each settle keeps its own answer (a refused lease fails only itself, a run settled twice
/// at once is settled once) and each claims its own next run, under the same concurrency
/// and key order as one at a time.
async fn settles_made_at_once_each_keep_their_answer_and_claim_their_own_run<H: Harness>(h: &H) {
    let b = h.fresh().await;
    let t = now();
    for i in 0..10 {
        b.accept(event(
            &format!("evt_006{i}"),
            "forms",
            &format!("m{i}"),
            t + i,
            &[("a", None)],
        ))
        .await
        .unwrap();
    }
    for i in 0..2 {
        b.accept(event(
            &format!("evt_007{i}"),
            "forms",
            &format!("k{i}"),
            t + 20 + i,
            &[("b", Some("k"))],
        ))
        .await
        .unwrap();
    }
    let limits = std::collections::HashMap::from([("a".to_string(), 4), ("b".to_string(), 1)]);
    let request = |now_ms| ClaimRequest {
        holder: "h1",
        now_ms,
        lease_ms: 30_000,
        max: 1,
        concurrency: Concurrency {
            default: 100,
            per_recipe: &limits,
        },
    };
    let first = claim(&*b, "h1", t + 30, 10, request(t).concurrency).await;
    assert_eq!(
        ids(&first),
        vec![
            "evt_0060.a",
            "evt_0061.a",
            "evt_0062.a",
            "evt_0063.a",
            "evt_0070.b"
        ]
    );
    let lease = |id: &str| {
        first
            .iter()
            .find(|c| c.run.id == id)
            .map(|c| c.lease.clone())
            .unwrap()
    };
    let never = Lease {
        run: "evt_0069.a".into(),
        token: u64::MAX / 2,
        holder: "h1".into(),
        expires_ms: t + 60_000,
    };
    // (lease, hand over): evt_0063 twice at once; a lease never given.
    let settles = [
        (lease("evt_0060.a"), true),
        (lease("evt_0061.a"), true),
        (lease("evt_0062.a"), false),
        (lease("evt_0063.a"), false),
        (lease("evt_0063.a"), true),
        (lease("evt_0070.b"), true),
        (never, true),
    ];
    let answers = futures_util::future::join_all(settles.iter().map(|(lease, handover)| {
        b.settle_then_claim(
            lease,
            t + 31,
            Settlement::Succeeded(Outcome::Done("ok".into())),
            AttemptReport::default(),
            request(t + 31),
            *handover,
        )
    }))
    .await;
    let refused =
        |a: &BackendResult<(RunRecord, Vec<Claimed>)>| matches!(a, Err(BackendError::Stale { .. }));
    assert!(
        refused(&answers[6]),
        "settles at once: a lease never given is refused: {:?}",
        answers[6].as_ref().map(|(r, _)| &r.id)
    );
    assert_eq!(
        answers[3..5].iter().filter(|a| refused(a)).count(),
        1,
        "settles at once: a run settled twice at once is settled once, the other refused"
    );
    let mut claimed = Vec::new();
    for answer in answers.into_iter().filter(|a| !refused(a)) {
        let (run, next) = answer.expect("settle");
        assert_eq!(run.status, RunStatus::Succeeded);
        assert!(next.len() <= 1, "settles at once: one run per slot");
        claimed.extend(next);
    }
    for c in &claimed {
        assert_eq!(c.lease.holder, "h1");
        assert_eq!(
            c.event
                .as_ref()
                .map(|e| format!("{}.{}", e.event.id, c.run.plugin)),
            Some(c.run.id.clone()),
            "settles at once: each run comes with its own event"
        );
    }
    // Settles written at once may each skip a run another one holds (SKIP LOCKED): a place
    // left empty stays for the next claim, never taken twice or past a limit.
    let taken = ids(&claimed);
    let rest = claim(&*b, "h2", t + 32, 10, request(t).concurrency).await;
    let mut all = [taken.clone(), ids(&rest)].concat();
    all.sort();
    assert_eq!(
        all,
        vec![
            "evt_0064.a",
            "evt_0065.a",
            "evt_0066.a",
            "evt_0067.a",
            "evt_0071.b"
        ],
        "settles at once: each freed place taken once, by its recipe's next runs (the key's \
         too); the settles took {taken:?}"
    );
    assert!(
        taken.len() >= 3,
        "settles at once: most places handed over in the same call: {taken:?}"
    );
    for id in ["evt_0060.a", "evt_0063.a", "evt_0070.b"] {
        assert_eq!(
            b.run(id).await.unwrap().unwrap().status,
            RunStatus::Succeeded
        );
    }
    assert_eq!(
        b.run("evt_0069.a").await.unwrap().unwrap().status,
        RunStatus::Queued,
        "settles at once: a refused settle writes nothing"
    );
    assert!(
        claim(&*b, "h2", t + 33, 10, request(t).concurrency)
            .await
            .is_empty(),
        "settles at once: the recipes' runs in flight are at their limits, not above"
    );
    assert_eq!(b.counts(t + 32).await.unwrap().running, 5);
}

async fn a_lease_expires_and_the_run_is_taken_over_and_stale_settles_are_refused<H: Harness>(
    h: &H,
) {
    let b = h.fresh().await;
    let t = now();
    b.accept(event("evt_0030", "forms", "l1", t, &[("a", None)]))
        .await
        .unwrap();
    let first = b
        .claim(ClaimRequest {
            holder: "h1",
            now_ms: t + 1,
            lease_ms: 100,
            max: 10,
            concurrency: any(),
        })
        .await
        .unwrap();
    let old = first[0].lease.clone();
    assert_eq!(old.holder, "h1");
    assert_eq!(old.expires_ms, t + 101);
    assert!(
        claim(&*b, "h2", t + 50, 10, any()).await.is_empty(),
        "lease: held until it expires"
    );
    let extended = b.extend(&old, t + 60, 100).await.unwrap();
    assert_eq!(extended.expires_ms, t + 160, "extend: moves the expiry");
    assert!(
        claim(&*b, "h2", t + 150, 10, any()).await.is_empty(),
        "extend: holds it longer"
    );
    let taken = claim(&*b, "h2", t + 200, 10, any()).await;
    assert_eq!(
        ids(&taken),
        vec!["evt_0030.a"],
        "lease: expired, the run is taken over"
    );
    let new = taken[0].lease.clone();
    assert_ne!(new.token, old.token, "takeover: a new fencing token");
    assert_eq!(new.holder, "h2");
    assert_eq!(
        taken[0].run.attempts, 2,
        "takeover: the vanished attempt counts"
    );
    assert!(
        matches!(
            b.settle(
                &old,
                t + 210,
                Settlement::Succeeded(Outcome::Done("late".into())),
                AttemptReport::default()
            )
            .await,
            Err(BackendError::Stale { .. })
        ),
        "settle: refused with a lease taken over"
    );
    assert!(
        matches!(
            b.extend(&old, t + 210, 100).await,
            Err(BackendError::Stale { .. })
        ),
        "extend: refused with a stale lease"
    );
    succeed(&*b, &new, t + 220).await;
    let run = b.run("evt_0030.a").await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(
        run.outcome,
        Some(Outcome::Done("ok".into())),
        "settle: the current holder's result stands"
    );
    assert!(
        matches!(
            b.settle(
                &new,
                t + 230,
                Settlement::Failed(RunError::Timeout { deadline_ms: 1 }),
                AttemptReport::default()
            )
            .await,
            Err(BackendError::Stale { .. })
        ),
        "settle: a finished run cannot be finished twice"
    );
}

async fn runs_with_one_key_go_one_at_a_time_in_acceptance_order<H: Harness>(h: &H) {
    let b = h.fresh().await;
    let t = now();
    b.accept(event("evt_0040", "forms", "k1", t, &[("a", Some("cus_1"))]))
        .await
        .unwrap();
    b.accept(event("evt_0041", "forms", "k2", t, &[("a", Some("cus_1"))]))
        .await
        .unwrap();
    b.accept(event("evt_0042", "forms", "k3", t, &[("a", Some("cus_2"))]))
        .await
        .unwrap();
    b.accept(event("evt_0043", "forms", "k4", t, &[("a", None)]))
        .await
        .unwrap();
    let first = claim(&*b, "h1", t + 1, 10, any()).await;
    assert_eq!(
        ids(&first),
        vec!["evt_0040.a", "evt_0042.a", "evt_0043.a"],
        "order: one run per key at a time; other keys and unkeyed runs in parallel"
    );
    let waiting = b.run("evt_0041.a").await.unwrap().unwrap();
    assert_eq!(
        waiting.waiting_for.as_deref(),
        Some("evt_0040.a"),
        "order: a waiting run says for whom"
    );
    // A retry keeps its place: the next run of the key still waits.
    let head = first.iter().find(|c| c.run.id == "evt_0040.a").unwrap();
    b.settle(
        &head.lease,
        t + 2,
        Settlement::Retry {
            error: RunError::Timeout { deadline_ms: 1 },
            due_ms: t + 1000,
        },
        AttemptReport::default(),
    )
    .await
    .unwrap();
    assert!(
        claim(&*b, "h1", t + 10, 10, any()).await.is_empty(),
        "order: waits behind a retrying run"
    );
    let again = claim(&*b, "h1", t + 1000, 10, any()).await;
    assert_eq!(ids(&again), vec!["evt_0040.a"]);
    succeed(&*b, &again[0].lease, t + 1001).await;
    let next = claim(&*b, "h1", t + 1002, 10, any()).await;
    assert_eq!(
        ids(&next),
        vec!["evt_0041.a"],
        "order: the next run of the key once the first finished"
    );
    assert_eq!(
        b.run("evt_0041.a").await.unwrap().unwrap().waiting_for,
        None
    );
}

async fn settlements_move_runs_as_the_pipeline_says<H: Harness>(h: &H) {
    let b = h.fresh().await;
    let t = now();
    b.accept(event("evt_0050", "forms", "s1", t, &[("a", None)]))
        .await
        .unwrap();
    let c = claim(&*b, "h1", t + 1, 10, any()).await.remove(0);
    // Deferred: queued for later, a deferral, not an attempt.
    let deferral = Outcome::Deferred {
        until: switchboard_model::rfc3339(t + 5000),
        reason: "quiet hours".into(),
    };
    let report = AttemptReport {
        duration_us: Some(42),
        plugin_version: Some("1.0.0".into()),
        logs: vec![LogLine {
            level: Level::Info,
            message: "hello".into(),
            fields: vec![],
        }],
        logs_dropped: 3,
        unconfirmed: vec![],
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        calls: vec![VendorCall {
            operation: "contacts.upsert".into(),
            connection: "ghl".into(),
            vendor: "gohighlevel".into(),
            method: "POST".into(),
            status: Some(201),
            error: None,
            retry: 0,
            duration_ms: 12,
        }],
        calls_dropped: 2,
    };
    let run = b
        .settle(
            &c.lease,
            t + 2,
            Settlement::Deferred {
                outcome: deferral.clone(),
                due_ms: t + 5000,
            },
            report,
        )
        .await
        .unwrap();
    assert_eq!(
        (run.status, run.attempts, run.deferrals),
        (RunStatus::Queued, 0, 1),
        "defer: not an attempt"
    );
    assert!(run.is_deferred());
    assert_eq!(run.logs_dropped, 3);
    let stored = b.run("evt_0050.a").await.unwrap().unwrap();
    assert_eq!(
        stored.trace_id.as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        "the attempt's trace id is kept with the run"
    );
    assert_eq!(
        b.logs("evt_0050.a").await.unwrap().len(),
        1,
        "logs: kept apart from the record"
    );
    assert!(
        claim(&*b, "h1", t + 10, 10, any()).await.is_empty(),
        "defer: held until its time"
    );
    // Replaying a deferred run runs it now.
    b.replay("evt_0050.a", t + 20, false).await.unwrap();
    let c = claim(&*b, "h1", t + 20, 10, any()).await.remove(0);
    // Released (a shutdown): queued at once, the attempt not counted.
    let run = b
        .settle(
            &c.lease,
            t + 21,
            Settlement::Released,
            AttemptReport::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        (run.status, run.attempts),
        (RunStatus::Queued, 0),
        "release: the attempt does not count"
    );
    let c = claim(&*b, "h1", t + 22, 10, any()).await.remove(0);
    let run = b
        .settle(
            &c.lease,
            t + 23,
            Settlement::Dead(RunError::Recipe {
                error: RecipeError::Timeout,
            }),
            AttemptReport::default(),
        )
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Dead);
    assert!(
        run.finished_at.is_some() && run.reason.is_some(),
        "dead: finished, with its reason"
    );
    assert!(matches!(
        b.replay("nope", t, false).await,
        Err(BackendError::NoRun(_))
    ));
    let replayed = b.replay("evt_0050.a", t + 30, false).await.unwrap();
    assert_eq!(
        (replayed.status, replayed.attempts, replayed.replays),
        (RunStatus::Queued, 0, 1),
        "replay: from its first attempt"
    );
    let c = claim(&*b, "h1", t + 31, 10, any()).await;
    assert_eq!(ids(&c), vec!["evt_0050.a"], "replay: runnable again");
    assert!(
        matches!(
            b.replay("evt_0050.a", t + 32, false).await,
            Err(BackendError::NotFinished { .. })
        ),
        "replay: not while it runs"
    );
    succeed(&*b, &c[0].lease, t + 33).await;
    // The timeline: every attempt as it ended, across the replays; a release is none.
    let timeline = b.attempts("evt_0050.a").await.unwrap();
    let seen: Vec<(&str, u32, String)> = timeline
        .iter()
        .map(|a| (a.outcome.as_str(), a.attempt, a.finished_at.clone()))
        .collect();
    let at = |ms| switchboard_model::rfc3339(t + ms);
    assert_eq!(
        seen,
        vec![
            ("deferred", 1, at(2)),
            ("dead", 1, at(23)),
            ("succeeded", 1, at(33))
        ],
        "timeline: {timeline:#?}"
    );
    assert_eq!(timeline[0].duration_us, Some(42));
    assert_eq!(timeline[0].plugin_version.as_deref(), Some("1.0.0"));
    assert_eq!(
        timeline[0].trace_id.as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(timeline[0].started_at, Some(at(1)));
    assert_eq!(
        (timeline[0].calls.len(), timeline[0].calls_dropped),
        (1, 2),
        "timeline: an attempt's vendor calls"
    );
    assert_eq!(timeline[0].calls[0].status, Some(201));
    assert_eq!(timeline[0].calls[0].operation, "contacts.upsert");
    assert!(timeline[1].calls.is_empty());
    assert!(
        timeline[1].reason.as_deref().is_some_and(|r| !r.is_empty()),
        "timeline: the dead attempt says why: {timeline:#?}"
    );
    assert_eq!(timeline[2].reason, None);
    assert!(b.attempts("nope").await.unwrap().is_empty());
}

async fn a_crash_leaves_every_unfinished_run_to_run_again<H: Harness>(h: &H) {
    let b = h.fresh().await;
    let t = now();
    b.accept(event(
        "evt_0060",
        "forms",
        "r1",
        t,
        &[("a", None), ("b", None)],
    ))
    .await
    .unwrap();
    let c = claim(&*b, "h1", t + 1, 1, any()).await.remove(0);
    let other = if c.run.plugin == "a" {
        "evt_0060.b"
    } else {
        "evt_0060.a"
    };
    let b = h.crash(b).await;
    // After the lease at the latest, both run again: the one that was running, its attempt
    // counted, and the one still queued.
    let again = claim(&*b, "h2", t + 60_000, 10, any()).await;
    assert_eq!(
        ids(&again),
        {
            let mut v = vec![c.run.id.clone(), other.to_string()];
            v.sort();
            v
        },
        "crash: unfinished runs run again"
    );
    let was_running = again.iter().find(|x| x.run.id == c.run.id).unwrap();
    assert_eq!(
        was_running.run.attempts, 2,
        "crash: the interrupted attempt counts"
    );
    assert!(
        matches!(
            b.settle(
                &c.lease,
                t + 60_001,
                Settlement::Succeeded(Outcome::Done("x".into())),
                AttemptReport::default()
            )
            .await,
            Err(BackendError::Stale { .. })
        ),
        "crash: the dead host's late settle is refused"
    );
}

async fn each_cron_tick_fires_once<H: Harness>(h: &H) {
    let b = h.fresh().await;
    let t = now();
    let tick = |n: i64| {
        event(
            &format!("evt_007{n}"),
            "cron",
            &format!("a/0/{n}"),
            t + n,
            &[("a", None)],
        )
    };
    assert!(
        matches!(
            b.fire_tick("a", 0, 1, tick(1)).await.unwrap(),
            TickFire::Fired(Accepted::New { .. })
        ),
        "tick: fired once"
    );
    assert!(
        matches!(
            b.fire_tick("a", 0, 1, tick(1)).await.unwrap(),
            TickFire::AlreadyFired
        ),
        "tick: not twice"
    );
    assert!(
        matches!(
            b.fire_tick("a", 0, 2, tick(2)).await.unwrap(),
            TickFire::Busy { .. }
        ),
        "tick: skipped while the last scheduled run is unfinished"
    );
    assert_eq!(
        b.last_tick("a", 0).await.unwrap(),
        Some(2),
        "tick: a skipped tick counts as handled"
    );
    let c = claim(&*b, "h1", t + 10, 10, any()).await;
    assert_eq!(ids(&c), vec!["evt_0071.a"]);
    succeed(&*b, &c[0].lease, t + 11).await;
    assert!(
        matches!(
            b.fire_tick("a", 0, 3, tick(3)).await.unwrap(),
            TickFire::Fired(_)
        ),
        "tick: fires again once the run finished"
    );
    assert!(
        matches!(
            b.fire_tick("a", 1, 3, tick(4)).await.unwrap(),
            TickFire::Busy { .. }
        ),
        "tick: a recipe's scheduled runs never overlap, whichever trigger fires"
    );
}

async fn retention_removes_what_expired_and_keeps_the_rest<H: Harness>(h: &H) {
    let b = h.fresh().await;
    let t = now();
    let policy = Retention {
        keep_succeeded_ms: HOUR,
        keep_failed_ms: 2 * HOUR,
        dedup_window_ms: HOUR,
    };
    // Old: succeeded (expired), failed (kept: failed runs are kept longer), deferred.
    b.accept(event("evt_0080", "forms", "old1", t, &[("a", None)]))
        .await
        .unwrap();
    b.accept(event("evt_0081", "forms", "old2", t, &[("b", None)]))
        .await
        .unwrap();
    b.accept(event("evt_0082", "forms", "old3", t, &[("c", None)]))
        .await
        .unwrap();
    b.accept(event("evt_0083", "forms", "old4", t, &[("d", None)]))
        .await
        .unwrap();
    for c in claim(&*b, "h1", t + 1, 10, any()).await {
        let settlement = match c.run.plugin.as_str() {
            "a" => Settlement::Succeeded(Outcome::Done("ok".into())),
            "b" => Settlement::Failed(RunError::Timeout { deadline_ms: 1 }),
            "c" => Settlement::Deferred {
                outcome: Outcome::Deferred {
                    until: switchboard_model::rfc3339(t + 10 * HOUR),
                    reason: "later".into(),
                },
                due_ms: t + 10 * HOUR,
            },
            // Its effect journal goes with it.
            _ => {
                let effect = Effect {
                    call: "messages.send".into(),
                    connection: "hb".into(),
                    request: "r".into(),
                    position: 0,
                    state: EffectState::Done {
                        result: serde_json::json!({}),
                    },
                    sent_at: switchboard_model::rfc3339(t),
                    settled_at: None,
                };
                let journal = b.recipe_store().effects();
                let key = CallKey {
                    run: &c.run.id,
                    fingerprint: &[1; 32],
                    occurrence: 0,
                };
                journal.begin(key, &effect).await.unwrap();
                Settlement::Succeeded(Outcome::Done("ok".into()))
            }
        };
        let report = AttemptReport {
            logs: vec![LogLine {
                level: Level::Info,
                message: "kept with the run".into(),
                fields: Vec::new(),
            }],
            ..AttemptReport::default()
        };
        b.settle(&c.lease, t + 2, settlement, report).await.unwrap();
    }
    // New: succeeded, within its time.
    b.accept(event(
        "evt_0084",
        "forms",
        "new1",
        t + 90 * 60_000,
        &[("a", None)],
    ))
    .await
    .unwrap();
    let c = claim(&*b, "h1", t + 90 * 60_000 + 1, 10, any())
        .await
        .remove(0);
    succeed(&*b, &c.lease, t + 90 * 60_000 + 2).await;
    // Old, and still queued: never claimed (its recipe is busy, say).
    b.accept(event("evt_0086", "forms", "old5", t, &[("e", None)]))
        .await
        .unwrap();

    let swept = b.sweep(t + 100 * 60_000, &policy).await.unwrap();
    assert_eq!(
        swept.runs, 2,
        "retention: the expired succeeded runs: {swept:?}"
    );
    assert_eq!(swept.events, 2, "retention: their events, left with no run");
    assert_eq!(swept.effects, 1, "retention: their effect journal");
    assert!(
        swept.deliveries >= 4,
        "retention: delivery ids past the window: {swept:?}"
    );
    assert!(b.run("evt_0080.a").await.unwrap().is_none());
    assert!(b.event("evt_0080").await.unwrap().is_none());
    assert!(
        b.logs("evt_0080.a").await.unwrap().is_empty(),
        "retention: a run's logs go with it"
    );
    assert!(
        b.attempts("evt_0080.a").await.unwrap().is_empty(),
        "retention: and its timeline"
    );
    assert_eq!(
        b.attempts("evt_0084.a").await.unwrap().len(),
        1,
        "retention: a kept run keeps its timeline"
    );
    assert_eq!(
        b.logs("evt_0081.b").await.unwrap().len(),
        1,
        "retention: a kept run keeps its logs"
    );
    assert!(
        b.run("evt_0086.e").await.unwrap().is_some()
            && b.event("evt_0086").await.unwrap().is_some(),
        "retention: a queued run and its event are kept, however old"
    );
    assert!(b.effects("evt_0083.d").await.unwrap().is_empty());
    assert!(
        b.run("evt_0081.b").await.unwrap().is_some(),
        "retention: failed runs kept longer"
    );
    assert!(
        b.run("evt_0082.c").await.unwrap().is_some(),
        "retention: a deferred run is kept"
    );
    assert!(
        b.run("evt_0084.a").await.unwrap().is_some(),
        "retention: a run within its time is kept"
    );
    // A delivery id within its window is still a duplicate.
    assert!(
        matches!(
            b.accept(event(
                "evt_0087",
                "forms",
                "new1",
                t + 100 * 60_000,
                &[("a", None)]
            ))
            .await
            .unwrap(),
            Accepted::Duplicate { .. }
        ),
        "retention: a delivery mark within its window is kept"
    );
    // Past the failed runs' time, they go too; the deferred run never does.
    let swept = b.sweep(t + 3 * HOUR, &policy).await.unwrap();
    assert_eq!(
        swept.runs, 2,
        "retention: then the failed one and the newer success"
    );
    assert!(
        b.run("evt_0082.c").await.unwrap().is_some(),
        "retention: unfinished runs are always kept"
    );
    assert!(b.run("evt_0086.e").await.unwrap().is_some());
    assert_eq!(
        ids(&claim(&*b, "h1", t + 11 * HOUR, 10, any()).await),
        ["evt_0082.c", "evt_0086.e"],
        "retention: what was kept still runs"
    );
    // A delivery id past the window may come again as a new delivery.
    assert!(matches!(
        b.accept(event(
            "evt_0085",
            "forms",
            "old1",
            t + 3 * HOUR,
            &[("a", None)]
        ))
        .await
        .unwrap(),
        Accepted::New { .. }
    ));
}

async fn queries_filter_page_and_replay<H: Harness>(h: &H) {
    let b = h.fresh().await;
    let t = now();
    for i in 0..6 {
        let plugin = if i % 2 == 0 { "a" } else { "b" };
        b.accept(event(
            &format!("evt_009{i}"),
            if i < 3 { "forms" } else { "leads" },
            &format!("q{i}"),
            t + i,
            &[(plugin, None)],
        ))
        .await
        .unwrap();
    }
    for c in claim(&*b, "h1", t + 10, 10, any()).await {
        let n: i64 = c.run.event_id[7..].parse().unwrap();
        let settlement = if n % 3 == 0 {
            Settlement::Dead(RunError::Timeout { deadline_ms: 1 })
        } else {
            Settlement::Succeeded(Outcome::Done("ok".into()))
        };
        b.settle(&c.lease, t + 20 + n, settlement, AttemptReport::default())
            .await
            .unwrap();
    }
    let q = |f: &dyn Fn(&mut RunQuery)| {
        let mut q = RunQuery::default();
        f(&mut q);
        q
    };
    let page_ids =
        |p: &crate::backend::RunPage| p.runs.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
    let all = b.runs(&RunQuery::default()).await.unwrap();
    assert_eq!(
        page_ids(&all),
        vec![
            "evt_0095.b",
            "evt_0094.a",
            "evt_0093.b",
            "evt_0092.a",
            "evt_0091.b",
            "evt_0090.a"
        ],
        "query: newest first"
    );
    let dead = b
        .runs(&q(&|q| q.statuses = vec![RunStatus::Dead]))
        .await
        .unwrap();
    assert_eq!(
        page_ids(&dead),
        vec!["evt_0093.b", "evt_0090.a"],
        "query: by status"
    );
    let a_dead = b
        .runs(&q(&|q| {
            q.statuses = vec![RunStatus::Dead];
            q.plugin = Some("b".into());
        }))
        .await
        .unwrap();
    assert_eq!(
        page_ids(&a_dead),
        vec!["evt_0093.b"],
        "query: by status and recipe"
    );
    let leads = b
        .runs(&q(&|q| q.source = Some("leads".into())))
        .await
        .unwrap();
    assert_eq!(
        page_ids(&leads),
        vec!["evt_0095.b", "evt_0094.a", "evt_0093.b"],
        "query: by source"
    );
    let by_delivery = b
        .runs(&q(&|q| q.delivery_id = Some("q4".into())))
        .await
        .unwrap();
    assert_eq!(
        page_ids(&by_delivery),
        vec!["evt_0094.a"],
        "query: by delivery id"
    );
    let since = b
        .runs(&q(&|q| {
            q.since_ms = Some(t + 2);
            q.until_ms = Some(t + 4);
        }))
        .await
        .unwrap();
    assert_eq!(
        page_ids(&since),
        vec!["evt_0093.b", "evt_0092.a"],
        "query: by time range"
    );
    // Pages: a cursor goes on where the last page ended.
    let first = b.runs(&q(&|q| q.limit = 4)).await.unwrap();
    assert_eq!(first.runs.len(), 4);
    let second = b
        .runs(&q(&|q| {
            q.limit = 4;
            q.cursor = first.next.clone();
        }))
        .await
        .unwrap();
    assert_eq!(
        page_ids(&second),
        vec!["evt_0091.b", "evt_0090.a"],
        "query: the next page"
    );
    assert!(second.next.is_none(), "query: no page after the last");
    // Bulk replay by filter: a dry run counts, a replay queues.
    let dry = b
        .replay_matching(&q(&|q| q.plugin = Some("a".into())), t + 100, true)
        .await
        .unwrap();
    assert_eq!(
        (dry.matched, dry.queued.len()),
        (1, 0),
        "replay: a dry run only counts"
    );
    let done = b
        .replay_matching(&RunQuery::default(), t + 100, false)
        .await
        .unwrap();
    assert_eq!(
        (done.matched, done.queued.len()),
        (2, 2),
        "replay: every failed and dead run"
    );
    assert_eq!(
        b.runs(&q(&|q| q.statuses = vec![RunStatus::Dead]))
            .await
            .unwrap()
            .runs
            .len(),
        0
    );
    assert_eq!(
        ids(&claim(&*b, "h1", t + 101, 10, any()).await),
        vec!["evt_0090.a", "evt_0093.b"]
    );
    // Unfinished runs are in every query that would match them, in their place.
    b.accept(event("evt_0096", "leads", "q6", t + 6, &[("a", None)]))
        .await
        .unwrap();
    let shown = |p: &crate::backend::RunPage| {
        p.runs
            .iter()
            .map(|r| format!("{} {}", r.id, r.status.as_str()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        shown(&b.runs(&RunQuery::default()).await.unwrap()),
        vec![
            "evt_0096.a queued",
            "evt_0095.b succeeded",
            "evt_0094.a succeeded",
            "evt_0093.b running",
            "evt_0092.a succeeded",
            "evt_0091.b succeeded",
            "evt_0090.a running"
        ],
        "query: queued and running runs among the finished ones"
    );
    assert_eq!(
        page_ids(&b.runs(&q(&|q| q.plugin = Some("a".into()))).await.unwrap()),
        vec!["evt_0096.a", "evt_0094.a", "evt_0092.a", "evt_0090.a"],
        "query: a recipe's runs, unfinished ones included"
    );
    assert_eq!(
        page_ids(
            &b.runs(&q(&|q| q.source = Some("leads".into())))
                .await
                .unwrap()
        ),
        vec!["evt_0096.a", "evt_0095.b", "evt_0094.a", "evt_0093.b"],
        "query: a source's runs, unfinished ones included"
    );
    assert_eq!(
        page_ids(
            &b.runs(&q(
                &|q| q.statuses = vec![RunStatus::Running, RunStatus::Queued]
            ))
            .await
            .unwrap()
        ),
        vec!["evt_0096.a", "evt_0093.b", "evt_0090.a"],
        "query: by unfinished statuses"
    );
    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let page = b
            .runs(&q(&|q| {
                q.limit = 3;
                q.cursor = cursor.clone();
            }))
            .await
            .unwrap();
        pages.push(page_ids(&page));
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(
        pages,
        vec![
            vec!["evt_0096.a", "evt_0095.b", "evt_0094.a"],
            vec!["evt_0093.b", "evt_0092.a", "evt_0091.b"],
            vec!["evt_0090.a"],
        ],
        "query: pages run through unfinished and finished runs alike"
    );
}

async fn recipe_kv_is_private_atomic_and_bounded<H: Harness>(h: &H) {
    let b = h.fresh().await;
    let store = b.recipe_store();
    let a = store.kv("a", KvQuota::default()).unwrap();
    let other = store.kv("b", KvQuota::default()).unwrap();
    assert_eq!(a.get("k").await.unwrap(), None, "kv: a new space is empty");
    a.set("k", b"1").await.unwrap();
    assert_eq!(a.get("k").await.unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(
        other.get("k").await.unwrap(),
        None,
        "kv: one recipe never sees another's keys"
    );
    // Create-if-absent and compare-and-swap.
    assert!(!a.set_if_absent("k", b"2").await.unwrap(), "kv: k exists");
    assert!(a.set_if_absent("n", b"2").await.unwrap());
    assert!(
        !a.compare_and_swap("k", Some(b"0"), Some(b"3"))
            .await
            .unwrap(),
        "kv: a swap from the wrong value changes nothing"
    );
    assert_eq!(a.get("k").await.unwrap().as_deref(), Some(&b"1"[..]));
    assert!(
        a.compare_and_swap("k", Some(b"1"), Some(b"3"))
            .await
            .unwrap()
    );
    assert!(a.compare_and_swap("k", Some(b"3"), None).await.unwrap());
    assert_eq!(
        a.get("k").await.unwrap(),
        None,
        "kv: a swap to nothing deletes"
    );
    assert!(!a.compare_and_swap("k", Some(b"3"), None).await.unwrap());
    // Concurrent swaps of one key: exactly one wins.
    a.set("c", b"0").await.unwrap();
    let tries = (0..8).map(|i| {
        let a = a.clone();
        async move {
            a.compare_and_swap("c", Some(b"0"), Some(format!("v{i}").as_bytes()))
                .await
                .unwrap()
        }
    });
    let won = futures_util::future::join_all(tries).await;
    assert_eq!(
        won.iter().filter(|w| **w).count(),
        1,
        "kv: one of concurrent swaps from one value wins"
    );
    // Delete, and prefix scans in byte order with a limit.
    assert!(a.delete("n").await.unwrap());
    assert!(
        !a.delete("n").await.unwrap(),
        "kv: deleting nothing says so"
    );
    for key in ["p/2", "p/10", "p/1", "q/1"] {
        a.set(key, b"x").await.unwrap();
    }
    assert_eq!(
        a.list_keys("p/", None).await.unwrap(),
        ["p/1", "p/10", "p/2"],
        "kv: a prefix scan lists in byte order"
    );
    assert_eq!(a.list_keys("p/", Some(2)).await.unwrap(), ["p/1", "p/10"]);
    // Limits and the quota.
    assert_eq!(a.set("", b"x").await, Err(KvError::EmptyKey));
    let long = "k".repeat(switchboard_model::kv::MAX_KEY_BYTES + 1);
    assert!(matches!(
        a.set(&long, b"x").await,
        Err(KvError::KeyTooLarge { .. })
    ));
    let small = store
        .kv(
            "small",
            KvQuota {
                max_keys: 2,
                max_bytes: 1_000,
            },
        )
        .unwrap();
    small.set("one", b"1").await.unwrap();
    small.set("two", b"2").await.unwrap();
    assert!(
        matches!(
            small.set("three", b"3").await,
            Err(KvError::QuotaExceeded {
                keys: 3,
                max_keys: 2,
                ..
            })
        ),
        "kv: a third key is past a two-key quota"
    );
    assert!(
        !small.set_if_absent("one", b"9").await.unwrap(),
        "kv: at the quota, a create of a taken key is a plain no"
    );
    small.set("one", b"11").await.unwrap();
    assert!(matches!(
        small.set("two", &[0; 1_000]).await,
        Err(KvError::QuotaExceeded {
            max_bytes: 1_000,
            ..
        })
    ));
    assert_eq!(
        small.usage(),
        KvUsage {
            keys: 2,
            bytes: 3 + 2 + 3 + 1
        },
        "kv: usage counts keys and the bytes of keys and values"
    );
    small.delete("two").await.unwrap();
    small.set("three", b"3").await.unwrap();
    // The quota holds for writers at once: 20 new keys into room for 5.
    let crowd = store
        .kv(
            "crowd",
            KvQuota {
                max_keys: 5,
                max_bytes: 1_000,
            },
        )
        .unwrap();
    let sets = (0..20).map(|n| {
        let crowd = crowd.clone();
        async move { crowd.set(&format!("k{n:02}"), b"v").await }
    });
    let results = futures_util::future::join_all(sets).await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        5,
        "kv: writers at once fill a 5-key quota and no more: {results:?}"
    );
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(()) | Err(KvError::QuotaExceeded { .. }))),
        "kv: the others are refused by the quota: {results:?}"
    );
    assert_eq!(crowd.list_keys("", None).await.unwrap().len(), 5);
    drop(crowd);
    // Durable: what was written is there after a crash (once flushed), usage included.
    b.flush().await.unwrap();
    drop((a, other, small, store));
    let b = h.crash(b).await;
    let store = b.recipe_store();
    let a = store.kv("a", KvQuota::default()).unwrap();
    assert_eq!(
        a.list_keys("", None).await.unwrap(),
        ["c", "p/1", "p/10", "p/2", "q/1"]
    );
    let small = store
        .kv(
            "small",
            KvQuota {
                max_keys: 2,
                max_bytes: 1_000,
            },
        )
        .unwrap();
    assert_eq!(
        small.usage(),
        KvUsage { keys: 2, bytes: 11 },
        "kv: usage is counted again after a restart"
    );
}

async fn kv_counters_add_atomically_within_the_quota<H: Harness>(h: &H) {
    let b = h.fresh().await;
    let store = b.recipe_store();
    let kv = store.kv("counter", KvQuota::default()).unwrap();
    assert_eq!(
        kv.increment("n", 2).await,
        Ok(2),
        "kv: an absent counter is 0"
    );
    assert_eq!(kv.increment("n", -5).await, Ok(-3));
    assert_eq!(
        kv.get("n").await.unwrap().as_deref(),
        Some(&b"-3"[..]),
        "kv: a counter is kept as a JSON integer"
    );
    kv.set("spaced", b" 7\n").await.unwrap();
    assert_eq!(
        kv.increment("spaced", 1).await,
        Ok(8),
        "kv: a JSON integer with whitespace around it counts"
    );
    for bad in [
        &b"\"7\""[..],
        b"7.5",
        b"1e3",
        b"-0",
        b"x",
        b"\xff7",
        b"99999999999999999999",
    ] {
        kv.set("bad", bad).await.unwrap();
        assert_eq!(
            kv.increment("bad", 1).await,
            Err(KvError::NotAnInteger),
            "kv: {bad:?} is not a counter"
        );
        assert_eq!(
            kv.get("bad").await.unwrap().as_deref(),
            Some(bad),
            "unchanged"
        );
    }
    kv.set("max", i64::MAX.to_string().as_bytes())
        .await
        .unwrap();
    assert_eq!(
        kv.increment("max", 1).await,
        Err(KvError::Overflow {
            current: i64::MAX,
            delta: 1
        }),
        "kv: a sum past i64 is refused"
    );
    // Counting at once: every increment lands, each sees a sum of its own.
    let adds = (0..40).map(|_| kv.increment("c", 1));
    let mut sums: Vec<i64> = futures_util::future::join_all(adds)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    sums.sort_unstable();
    assert_eq!(
        sums,
        (1..=40).collect::<Vec<i64>>(),
        "kv: concurrent increments each add once"
    );
    // Counting while others compare-and-swap the same key: no write is lost either way.
    kv.set("mixed", b"10").await.unwrap();
    let adds = futures_util::future::join_all((0..60).map(|_| kv.increment("mixed", 1)));
    let swaps = futures_util::future::join_all((0..20).map(|_| async {
        loop {
            let current = kv.get("mixed").await.unwrap().unwrap();
            let n: i64 = std::str::from_utf8(&current).unwrap().parse().unwrap();
            let new = (n + 100).to_string();
            if kv
                .compare_and_swap("mixed", Some(&current), Some(new.as_bytes()))
                .await
                .unwrap()
            {
                break;
            }
        }
    }));
    let (added, _) = futures_util::future::join(adds, swaps).await;
    assert!(added.iter().all(|a| a.is_ok()));
    assert_eq!(
        kv.get("mixed").await.unwrap().as_deref(),
        Some(&b"2070"[..]),
        "kv: increments and compare-and-swaps of one key at once each land once"
    );
    // The quota holds: a new counter is a key, a longer sum more bytes.
    let small = store
        .kv(
            "small-counter",
            KvQuota {
                max_keys: 1,
                max_bytes: 3,
            },
        )
        .unwrap();
    assert_eq!(small.increment("a", 9).await, Ok(9));
    assert!(
        matches!(
            small.increment("b", 1).await,
            Err(KvError::QuotaExceeded { max_keys: 1, .. })
        ),
        "kv: a second counter is past a one-key quota"
    );
    assert_eq!(small.increment("a", 1).await, Ok(10), "3 bytes: fits");
    assert!(
        matches!(
            small.increment("a", 90).await,
            Err(KvError::QuotaExceeded { max_bytes: 3, .. })
        ),
        "kv: '100' is past a 3-byte quota"
    );
    assert_eq!(small.usage(), KvUsage { keys: 1, bytes: 3 });
    assert_eq!(small.get("a").await.unwrap().as_deref(), Some(&b"10"[..]));
    b.flush().await.unwrap();
    drop((kv, small, store));
    let b = h.crash(b).await;
    let kv = b.recipe_store().kv("counter", KvQuota::default()).unwrap();
    assert_eq!(
        kv.increment("c", 0).await,
        Ok(40),
        "kv: counters outlive a crash"
    );
}

async fn paused_recipes_are_kept_across_a_crash<H: Harness>(h: &H) {
    let b = h.fresh().await;
    assert!(b.paused().await.unwrap().is_empty(), "pause: none at first");
    assert!(
        b.set_paused("a", true).await.unwrap(),
        "pause: a was running"
    );
    assert!(
        !b.set_paused("a", true).await.unwrap(),
        "pause: a already paused"
    );
    assert!(b.set_paused("b", true).await.unwrap());
    assert!(
        b.set_paused("b", false).await.unwrap(),
        "resume: b was paused"
    );
    assert!(
        !b.set_paused("b", false).await.unwrap(),
        "resume: b already running"
    );
    assert!(
        !b.set_paused("c", false).await.unwrap(),
        "resume: c never paused"
    );
    let b = h.crash(b).await;
    assert_eq!(
        b.paused().await.unwrap().into_iter().collect::<Vec<_>>(),
        ["a"],
        "pause: kept across a crash"
    );
}

async fn the_effect_journal_outlives_a_crash_until_forgotten<H: Harness>(h: &H) {
    let b = h.fresh().await;
    let journal = b.recipe_store().effects();
    let effect = |state| Effect {
        call: "messages.send".into(),
        connection: "hb".into(),
        request: "ab".repeat(32),
        position: 0,
        state,
        sent_at: switchboard_model::rfc3339(now()),
        settled_at: None,
    };
    let (one, two) = ([1u8; 32], [2u8; 32]);
    let at = |fingerprint, occurrence| CallKey {
        run: "evt_0090.a",
        fingerprint,
        occurrence,
    };
    assert_eq!(journal.get(at(&one, 0)).await.unwrap(), None);
    journal
        .begin(at(&one, 0), &effect(EffectState::Sending))
        .await
        .unwrap();
    journal
        .begin(at(&one, 1), &effect(EffectState::Sending))
        .await
        .unwrap();
    journal
        .begin(at(&two, 0), &effect(EffectState::Sending))
        .await
        .unwrap();
    // begin is durable when it returns: a crash right after it keeps it.
    drop(journal);
    let b = h.crash(b).await;
    let journal = b.recipe_store().effects();
    assert_eq!(
        journal.get(at(&one, 0)).await.unwrap().map(|e| e.state),
        Some(EffectState::Sending),
        "effects: an intent survives a crash"
    );
    let done = effect(EffectState::Done {
        result: serde_json::json!({"id": "m1"}),
    });
    journal.settle(at(&one, 0), &done).await.unwrap();
    journal
        .settle(
            at(&one, 1),
            &effect(EffectState::Unknown {
                reason: "connection reset".into(),
            }),
        )
        .await
        .unwrap();
    journal.forget(at(&two, 0)).await.unwrap();
    b.flush().await.unwrap();
    drop(journal);
    let b = h.crash(b).await;
    let journal = b.recipe_store().effects();
    assert_eq!(journal.get(at(&one, 0)).await.unwrap(), Some(done));
    assert!(
        matches!(
            journal.get(at(&one, 1)).await.unwrap().map(|e| e.state),
            Some(EffectState::Unknown { .. })
        ),
        "effects: each occurrence of one request is its own call"
    );
    assert_eq!(
        journal.get(at(&two, 0)).await.unwrap(),
        None,
        "effects: a forgotten call is gone"
    );
    let listed = b.effects("evt_0090.a").await.unwrap();
    assert_eq!(listed.len(), 2, "effects: a run's journal lists its calls");
    assert!(b.effects("evt_0091.a").await.unwrap().is_empty());
}
