//! The pipeline's durable records, in one sled tree so that an event, its delivery id and
//! its runs are written by one atomic transaction:
//!
//! | key                      | value                                   |
//! |--------------------------|-----------------------------------------|
//! | `e/<event id>`           | [`StoredEvent`] (JSON)                  |
//! | `d/<source>\n<delivery>` | [`DeliveryMark`]: which event, when     |
//! | `r/<run id>`             | [`RunRecord`] (JSON)                    |
//! | `p/<run id>`             | due time (Unix ms, big-endian): pending |
//! | `c/<plugin>/<trigger>`   | last cron fire (Unix ms, big-endian)    |
//!
//! Run ids are `<event id>.<plugin>`: one run per (event, plugin), by construction.

use serde::{Deserialize, Serialize};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

pub use switchboard_model::run::{DeliveryMark, RunRecord, RunStatus, StoredEvent};
pub use switchboard_model::run_id;

pub(crate) fn event_key(id: &str) -> Vec<u8> {
    format!("e/{id}").into_bytes()
}
pub(crate) fn run_key(id: &str) -> Vec<u8> {
    format!("r/{id}").into_bytes()
}
pub(crate) fn pending_key(id: &str) -> Vec<u8> {
    format!("p/{id}").into_bytes()
}
pub(crate) fn delivery_key(source: &str, delivery: &str) -> Vec<u8> {
    format!("d/{source}\n{delivery}").into_bytes()
}
pub(crate) fn cron_key(plugin: &str, trigger: usize) -> Vec<u8> {
    format!("c/{plugin}/{trigger}").into_bytes()
}

/// Failure of the pipeline's store.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("store error: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt record {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

fn decode<T: for<'de> Deserialize<'de>>(key: &[u8], bytes: &[u8]) -> Result<T, JournalError> {
    serde_json::from_slice(bytes).map_err(|e| JournalError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records always serialize")
}

/// What [`Journal::accept`] did with an event.
#[derive(Debug)]
pub enum Accepted {
    /// Stored, with these runs queued.
    New { runs: Vec<RunRecord> },
    /// The same delivery was accepted before, as this event.
    Duplicate { event_id: String },
}

/// The pipeline's view of the store.
#[derive(Clone)]
pub struct Journal {
    pub(crate) tree: sled::Tree,
    db: sled::Db,
    locks: Arc<[Mutex<()>]>,
}

const STRIPES: usize = 64;

fn stripe(key: &[u8]) -> usize {
    let mut h = std::hash::DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() as usize) % STRIPES
}

impl Journal {
    pub fn new(db: sled::Db) -> Result<Self, JournalError> {
        Ok(Journal {
            tree: db.open_tree("pipeline")?,
            db,
            locks: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        })
    }

    /// A new event id; ids sort in creation order, across restarts.
    pub fn next_event_id(&self) -> Result<String, JournalError> {
        Ok(format!("evt_{:016x}", self.db.generate_id()?))
    }

    /// Flush everything written so far to disk.
    pub fn flush(&self) -> Result<(), JournalError> {
        self.db.flush()?;
        Ok(())
    }

    /// Store an event and its queued runs atomically, unless the same delivery (source and
    /// delivery id) was accepted less than `window_ms` ago.
    pub fn accept(
        &self,
        stored: &StoredEvent,
        plugins: &[String],
        now_ms: i64,
        window_ms: i64,
    ) -> Result<Accepted, JournalError> {
        let event = &stored.event;
        let dkey = delivery_key(&event.source, &stored.delivery_id);
        let mark = encode(&DeliveryMark {
            event_id: event.id.clone(),
            at_ms: now_ms,
        });
        let runs: Vec<RunRecord> = plugins
            .iter()
            .map(|p| RunRecord::queued(event, p, &stored.received_at))
            .collect();
        let encoded_runs: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = runs
            .iter()
            .map(|r| (run_key(&r.id), encode(r), pending_key(&r.id)))
            .collect();
        let event_bytes = encode(stored);
        let due = now_ms.to_be_bytes();
        // Check-then-write under a lock on the delivery key (sled lets one process at a
        // time open the store, so an in-process lock makes the pair atomic). Plain inserts,
        // not a sled batch: a batch makes the following flush several times slower. The
        // delivery mark goes last, and recovery drops runs whose event has no mark (it was
        // never acknowledged), so a crash mid-way leaves nothing that would run.
        let _guard = self.locks[stripe(&dkey)].lock().unwrap();
        if let Some(existing) = self.tree.get(&dkey)? {
            let seen: DeliveryMark = decode(&dkey, &existing)?;
            if now_ms - seen.at_ms < window_ms {
                return Ok(Accepted::Duplicate {
                    event_id: seen.event_id,
                });
            }
        }
        self.tree.insert(event_key(&event.id), event_bytes)?;
        for (rkey, record, pkey) in encoded_runs {
            self.tree.insert(pkey, &due[..])?;
            self.tree.insert(rkey, record)?;
        }
        self.tree.insert(dkey, mark)?;
        Ok(Accepted::New { runs })
    }

    /// Whether `event` was acknowledged. Its delivery mark is written last, so a mark that
    /// names it says yes. A mark is only ever replaced or swept once it is older than the
    /// window, so a mark naming a later event, or no mark, says yes for an event older than
    /// the window; no mark for a younger event means its delivery crashed before the mark.
    fn acknowledged(
        &self,
        event: &StoredEvent,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<bool, JournalError> {
        let key = delivery_key(&event.event.source, &event.delivery_id);
        Ok(match self.tree.get(&key)? {
            Some(v) => {
                let mark: DeliveryMark = decode(&key, &v)?;
                mark.event_id == event.event.id || mark.at_ms - event.received_ms >= window_ms
            }
            None => now_ms - event.received_ms >= window_ms,
        })
    }

    pub fn event(&self, id: &str) -> Result<Option<StoredEvent>, JournalError> {
        let key = event_key(id);
        self.tree.get(&key)?.map(|v| decode(&key, &v)).transpose()
    }

    pub fn run(&self, id: &str) -> Result<Option<RunRecord>, JournalError> {
        let key = run_key(id);
        self.tree.get(&key)?.map(|v| decode(&key, &v)).transpose()
    }

    /// Write a run record; pending (with its due time) unless it is terminal. Two plain
    /// writes, ordered so that a crash between them is harmless: recovery reads the run's
    /// status and drops pending entries of finished runs.
    pub fn put_run(&self, run: &RunRecord, due_ms: Option<i64>) -> Result<(), JournalError> {
        match due_ms {
            Some(due) if !run.status.is_terminal() => {
                self.tree
                    .insert(pending_key(&run.id), &due.to_be_bytes()[..])?;
                self.tree.insert(run_key(&run.id), encode(run))?;
            }
            _ => {
                self.tree.insert(run_key(&run.id), encode(run))?;
                self.tree.remove(pending_key(&run.id))?;
            }
        }
        Ok(())
    }

    /// Put a run that is still `running` back to `queued`, its attempt not counted; false
    /// when it is not running any more (it finished meanwhile and keeps its result).
    pub fn requeue_interrupted(&self, id: &str, now: &str) -> Result<bool, JournalError> {
        let key = run_key(id);
        let Some(current) = self.tree.get(&key)? else {
            return Ok(false);
        };
        let mut run: RunRecord = decode(&key, &current)?;
        if run.status != RunStatus::Running {
            return Ok(false);
        }
        run.status = RunStatus::Queued;
        run.attempts = run.attempts.saturating_sub(1);
        run.updated_at = now.to_string();
        // Compare-and-swap: a worker writing the run's result meanwhile wins.
        Ok(self
            .tree
            .compare_and_swap(&key, Some(current), Some(encode(&run)))?
            .is_ok())
    }

    /// Every pending run (queued, or running when the host stopped), with its due time.
    pub fn pending(
        &self,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<Vec<(RunRecord, i64)>, JournalError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(b"p/") {
            let (key, due) = item?;
            let id = String::from_utf8_lossy(&key[2..]).into_owned();
            let due = due.as_ref().try_into().map(i64::from_be_bytes).unwrap_or(0);
            let run = self.run(&id)?;
            let live = match &run {
                Some(run) if run.status.is_terminal() => false,
                Some(run) if run.attempts == 0 && run.replays == 0 => {
                    match self.event(&run.event_id)? {
                        Some(event) if self.acknowledged(&event, now_ms, window_ms)? => true,
                        _ => {
                            // Written by a delivery that crashed before its answer: the
                            // sender was never told it arrived, and will deliver it again.
                            tracing::info!(run = %id, "dropping a run of an unacknowledged event");
                            self.tree.remove(run_key(&id))?;
                            self.tree.remove(event_key(&run.event_id))?;
                            false
                        }
                    }
                }
                Some(_) => true,
                None => false,
            };
            match run {
                Some(run) if live => out.push((run, due)),
                _ => {
                    self.tree.remove(&key)?;
                }
            }
        }
        Ok(out)
    }

    /// Runs, newest first, that `keep` accepts, at most `limit`.
    pub fn runs(
        &self,
        mut keep: impl FnMut(&RunRecord) -> bool,
        limit: usize,
    ) -> Result<Vec<RunRecord>, JournalError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(b"r/").rev() {
            if out.len() >= limit {
                break;
            }
            let (key, value) = item?;
            let run: RunRecord = decode(&key, &value)?;
            if keep(&run) {
                out.push(run);
            }
        }
        Ok(out)
    }

    /// When a cron trigger last fired.
    pub fn cron_last(&self, plugin: &str, trigger: usize) -> Result<Option<i64>, JournalError> {
        Ok(self
            .tree
            .get(cron_key(plugin, trigger))?
            .and_then(|v| v.as_ref().try_into().ok().map(i64::from_be_bytes)))
    }

    pub fn set_cron_last(&self, plugin: &str, trigger: usize, ms: i64) -> Result<(), JournalError> {
        self.tree
            .insert(cron_key(plugin, trigger), &ms.to_be_bytes()[..])?;
        Ok(())
    }

    /// Forget deliveries older than `window_ms` (their ids may then be accepted again).
    pub fn sweep_deliveries(&self, now_ms: i64, window_ms: i64) -> Result<usize, JournalError> {
        let mut removed = 0;
        for item in self.tree.scan_prefix(b"d/") {
            let (key, value) = item?;
            let old = decode::<DeliveryMark>(&key, &value)
                .map(|m| now_ms - m.at_ms >= window_ms)
                .unwrap_or(true);
            // Compare-and-swap: a mark rewritten meanwhile (the id reused) stays.
            if old
                && self
                    .tree
                    .compare_and_swap(&key, Some(value), None as Option<&[u8]>)?
                    .is_ok()
            {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_model::Event;

    fn stored(id: &str, delivery: &str) -> StoredEvent {
        StoredEvent {
            event: Event::new(id, "forms", "lead.created", "t", &serde_json::json!({})),
            delivery_id: delivery.into(),
            received_at: "2026-11-22T00:00:00.000Z".into(),
            received_ms: 1_000,
        }
    }

    #[test]
    fn dedup_window_and_recovery_of_a_crashed_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let j = Journal::new(db).unwrap();
        let plugins = vec!["a".to_string(), "b".to_string()];
        let Accepted::New { runs } = j.accept(&stored("e1", "d1"), &plugins, 1_000, 500).unwrap()
        else {
            panic!("not new")
        };
        assert_eq!(runs.len(), 2);
        // Same delivery inside the window: a duplicate of e1; after it: new again.
        assert!(matches!(
            j.accept(&stored("e2", "d1"), &plugins, 1_400, 500).unwrap(),
            Accepted::Duplicate { event_id } if event_id == "e1"
        ));
        assert!(matches!(
            j.accept(&stored("e3", "d1"), &plugins, 1_600, 500).unwrap(),
            Accepted::New { .. }
        ));
        // A delivery that crashed after writing its runs but before its mark (the sender
        // never got an answer) leaves nothing to run after a restart.
        let mut crashed = stored("e4", "d4");
        crashed.received_ms = 1_500;
        let run = RunRecord::queued(&crashed.event, "a", "now");
        j.tree.insert(event_key("e4"), encode(&crashed)).unwrap();
        j.tree
            .insert(pending_key(&run.id), &0i64.to_be_bytes()[..])
            .unwrap();
        j.tree.insert(run_key(&run.id), encode(&run)).unwrap();
        // A finished run whose pending entry survived a crash is not pending either.
        let mut done = runs[0].clone();
        done.status = RunStatus::Succeeded;
        j.tree.insert(run_key(&done.id), encode(&done)).unwrap();
        let pending: Vec<String> = j
            .pending(1_700, 500)
            .unwrap()
            .into_iter()
            .map(|(r, _)| r.id)
            .collect();
        assert_eq!(pending, vec!["e1.b", "e3.a", "e3.b"]);
        assert!(j.run("e4.a").unwrap().is_none());
        assert!(j.event("e4").unwrap().is_none());
        assert!(j.tree.get(pending_key("e1.a")).unwrap().is_none());
    }
}
