//! Accepting events in batches: webhooks that arrive together are written by one statement
//! and one synchronous commit (group commit), so a burst costs the database a round trip and
//! a WAL flush per batch, not per event. A lone webhook is a batch of one and waits for no
//! timer: a batch is whatever queued while the previous one was being written, and what
//! came during a few turns of the scheduler after ([`crate::batches`]).

use crate::batches::{self, Batches};
use crate::rows::db;
use sqlx::PgPool;
use sqlx::postgres::PgConnection;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use switchboard_model::RunRecord;
use switchboard_pipeline::backend::{Accepted, BackendResult, Ms, NewEvent, accepted};

/// Events one statement writes at most.
const MAX_BATCH: usize = 64;
/// Batches written at once: one, so the webhooks that arrive while it writes (and waits for
/// its commit) all go in the next (docs/benchmarks.md, run 17).
const WRITERS: usize = 1;

/// An event waiting to be written, and who waits for the answer.
type Pending = batches::Pending<NewEvent, Accepted>;

/// Hands events to the writer tasks.
pub(crate) struct Batcher {
    batches: Batches<NewEvent, Accepted>,
}

impl Batcher {
    /// Start the writers on `pool`; `written` is called after a batch stored new events,
    /// with the recipes of their runs (once each).
    pub(crate) fn start(
        pool: PgPool,
        written: Arc<dyn Fn(Vec<String>) + Send + Sync>,
    ) -> (Batcher, Vec<tokio::task::JoinHandle<()>>) {
        let (batches, tasks) = Batches::start(WRITERS, MAX_BATCH, move |batch| {
            let (pool, written) = (pool.clone(), written.clone());
            async move {
                let recipes = write(&pool, batch).await;
                if !recipes.is_empty() {
                    written(recipes.into_iter().collect());
                }
            }
        });
        (Batcher { batches }, tasks)
    }

    /// Accept `new` in the next batch.
    pub(crate) async fn accept(&self, new: NewEvent) -> BackendResult<Accepted> {
        self.batches.ask(new).await
    }
}

/// Write `batch` and answer each event's waiter; the recipes of the runs stored. Events a
/// statement cannot take together (the same delivery twice, different windows) go in
/// statements of their own, in order; if a batch fails, each of its events is tried alone,
/// so one bad event fails only itself.
async fn write(pool: &PgPool, batch: Vec<Pending>) -> HashSet<String> {
    let mut stored = HashSet::new();
    let mut conn = match pool.acquire().await {
        Ok(conn) => conn,
        Err(e) => {
            let error = db(e);
            for p in batch {
                p.answer(Err(error.clone()));
            }
            return stored;
        }
    };
    for group in groups(batch) {
        let news: Vec<&NewEvent> = group.iter().map(|p| &p.request).collect();
        match insert(&mut conn, &news).await {
            Ok(answers) => {
                for (p, answer) in group.into_iter().zip(answers) {
                    note(&mut stored, &answer);
                    p.answer(answer);
                }
            }
            Err(error) if group.len() == 1 => {
                if let Some(p) = group.into_iter().next() {
                    p.answer(Err(error));
                }
            }
            // Nothing of the batch was written: each event alone.
            Err(error) => {
                tracing::warn!(
                    events = group.len(),
                    "a batch of accepts failed ({error}); accepting each alone"
                );
                for p in group {
                    let answer = match insert(&mut conn, &[&p.request]).await {
                        Ok(mut answers) => answers.remove(0),
                        Err(e) => Err(e),
                    };
                    note(&mut stored, &answer);
                    p.answer(answer);
                }
            }
        }
    }
    stored
}

/// Add the recipes of the runs `answer` stored to `stored`.
fn note(stored: &mut HashSet<String>, answer: &BackendResult<Accepted>) {
    if let Ok(Accepted::New { runs }) = answer {
        stored.extend(runs.iter().map(|r| r.plugin.clone()));
    }
}

/// Split a batch, in order, into groups one statement can write: one window each, no
/// delivery twice.
fn groups(batch: Vec<Pending>) -> Vec<Vec<Pending>> {
    let mut groups: Vec<Vec<Pending>> = Vec::new();
    let mut keys: Vec<HashSet<(String, String)>> = Vec::new();
    for p in batch {
        let key = (
            p.request.event.source.clone(),
            p.request.delivery_id.clone(),
        );
        let fits = groups
            .last()
            .is_some_and(|g| g[0].request.window_ms == p.request.window_ms)
            && !keys.last().is_some_and(|k| k.contains(&key));
        if !fits {
            groups.push(Vec::new());
            keys.push(HashSet::new());
        }
        keys.last_mut().expect("a group").insert(key);
        groups.last_mut().expect("a group").push(p);
    }
    groups
}

/// Insert `news` (one window, distinct deliveries): each one's delivery mark, and for each
/// whose delivery is not a duplicate, its event and runs; as one statement on `conn`.
/// `Err`: that statement failed (nothing was written). Otherwise each event's answer, in
/// the order given: a duplicate's is an error if the event it duplicates could not be
/// read (the new ones were written whatever happens to that read).
pub(crate) async fn insert(
    conn: &mut PgConnection,
    news: &[&NewEvent],
) -> BackendResult<Vec<BackendResult<Accepted>>> {
    let window: Ms = news.first().map_or(0, |n| n.window_ms);
    let prepared: Vec<(&NewEvent, Vec<RunRecord>)> =
        news.iter().map(|n| (*n, accepted(n).1)).collect();
    let mut sources = Vec::new();
    let mut deliveries = Vec::new();
    let mut event_ids = Vec::new();
    let mut received = Vec::new();
    let mut kinds = Vec::new();
    let mut times = Vec::new();
    let mut payloads = Vec::new();
    let mut with_runs = Vec::new();
    let (mut run_ids, mut run_events, mut plugins, mut keys) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (new, runs) in &prepared {
        let event = &new.event;
        sources.push(event.source.as_str());
        deliveries.push(new.delivery_id.as_str());
        event_ids.push(event.id.as_str());
        received.push(new.received_ms);
        kinds.push(event.kind.as_str());
        times.push(event.time.as_str());
        payloads.push(event.payload.get());
        with_runs.push(!runs.is_empty());
        for run in runs {
            run_ids.push(run.id.as_str());
            run_events.push(event.id.as_str());
            plugins.push(run.plugin.as_str());
            keys.push(run.order_key.as_deref());
        }
    }
    // Marks in key order, so two batches holding the same deliveries never wait on each
    // other crosswise; runs numbered (`seq`) in the order their events came.
    let marked: Vec<String> = sqlx::query_scalar(
        "WITH input AS ( \
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], \
                                $6::text[], $7::text[], $8::boolean[]) \
             AS i(source, delivery_id, event_id, received_ms, kind, time, payload, with_runs) \
         ), mark AS ( \
           INSERT INTO deliveries (source, delivery_id, event_id, at_ms) \
           SELECT source, delivery_id, event_id, received_ms FROM input \
           ORDER BY source, delivery_id \
           ON CONFLICT (source, delivery_id) DO UPDATE \
             SET event_id = EXCLUDED.event_id, at_ms = EXCLUDED.at_ms \
             WHERE deliveries.at_ms <= EXCLUDED.at_ms - $9 \
           RETURNING event_id \
         ), ev AS ( \
           INSERT INTO events (id, source, kind, time, payload, delivery_id, received_ms, window_ms) \
           SELECT i.event_id, i.source, i.kind, i.time, i.payload, i.delivery_id, i.received_ms, $9 \
           FROM input i WHERE i.with_runs AND i.event_id IN (SELECT event_id FROM mark) \
         ), rn AS ( \
           INSERT INTO runs (id, event_id, plugin, source, kind, status, seq, order_key, \
                             created_ms, updated_ms, due_ms) \
           SELECT t.id, t.event_id, t.plugin, i.source, i.kind, 'queued', nextval('run_seq'), \
                  t.key, i.received_ms, i.received_ms, i.received_ms \
           FROM unnest($10::text[], $11::text[], $12::text[], $13::text[]) WITH ORDINALITY \
             AS t(id, event_id, plugin, key, n) \
           JOIN input i ON i.event_id = t.event_id \
           WHERE t.event_id IN (SELECT event_id FROM mark) \
           ORDER BY t.n \
         ) \
         SELECT event_id FROM mark",
    )
    .bind(&sources)
    .bind(&deliveries)
    .bind(&event_ids)
    .bind(&received)
    .bind(&kinds)
    .bind(&times)
    .bind(&payloads)
    .bind(&with_runs)
    .bind(window)
    .bind(&run_ids)
    .bind(&run_events)
    .bind(&plugins)
    .bind(&keys)
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    let marked: HashSet<String> = marked.into_iter().collect();
    // Duplicates: the event each was accepted as, read in a statement of its own (the
    // one above may have waited for a concurrent first delivery's commit, which its
    // snapshot does not show).
    let duplicates: Vec<usize> = (0..news.len())
        .filter(|&i| !marked.contains(event_ids[i]))
        .collect();
    let mut seen: BackendResult<HashMap<(String, String), String>> = Ok(HashMap::new());
    if !duplicates.is_empty() {
        let rows: BackendResult<Vec<(String, String, String)>> = sqlx::query_as(
            "SELECT d.source, d.delivery_id, d.event_id FROM deliveries d \
             JOIN unnest($1::text[], $2::text[]) AS k(source, delivery_id) \
               ON d.source = k.source AND d.delivery_id = k.delivery_id",
        )
        .bind(duplicates.iter().map(|&i| sources[i]).collect::<Vec<_>>())
        .bind(
            duplicates
                .iter()
                .map(|&i| deliveries[i])
                .collect::<Vec<_>>(),
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(db);
        seen = rows.map(|rows| {
            rows.into_iter()
                .map(|(source, delivery, event)| ((source, delivery), event))
                .collect()
        });
    }
    Ok(prepared
        .into_iter()
        .map(|(new, runs)| {
            if marked.contains(&new.event.id) {
                return Ok(Accepted::New { runs });
            }
            let key = (new.event.source.clone(), new.delivery_id.clone());
            match &mut seen {
                Ok(seen) => Ok(Accepted::Duplicate {
                    event_id: seen.remove(&key).unwrap_or_default(),
                }),
                Err(e) => Err(e.clone()),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_model::Event;

    fn pending(source: &str, delivery: &str, window_ms: Ms) -> Pending {
        let new = NewEvent {
            event: Event {
                id: format!("evt_{delivery}"),
                source: source.into(),
                kind: "k".into(),
                time: "2026-12-02T00:00:00Z".into(),
                payload: serde_json::value::RawValue::from_string("{}".into()).unwrap(),
            },
            delivery_id: delivery.into(),
            received_ms: 0,
            window_ms,
            runs: Vec::new(),
        };
        Pending {
            request: new,
            reply: tokio::sync::oneshot::channel().0,
        }
    }

    fn shape(groups: &[Vec<Pending>]) -> Vec<Vec<String>> {
        groups
            .iter()
            .map(|g| g.iter().map(|p| p.request.delivery_id.clone()).collect())
            .collect()
    }

    #[test]
    fn a_batch_splits_where_a_delivery_repeats_or_the_window_changes() {
        let batch = vec![
            pending("a", "1", 10),
            pending("b", "1", 10),
            pending("a", "2", 10),
            pending("a", "1", 10),
            pending("a", "3", 10),
            pending("a", "4", 20),
        ];
        assert_eq!(
            shape(&groups(batch)),
            vec![
                vec!["1".to_string(), "1".into(), "2".into()],
                vec!["1".into(), "3".into()],
                vec!["4".into()],
            ]
        );
    }
}
