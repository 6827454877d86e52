//! The embedded backend: one sled database, for one host (sled allows one process per
//! store). Its records are laid out in [`keys`]; what may run, and who holds what, is kept in
//! memory ([`ready`]), rebuilt from the records at open.
//!
//! Durability: an accepted event, its runs and its delivery mark are on disk before
//! [`Backend::accept`] returns (group commit, shared with concurrent accepts and with the
//! effect journal). A run's later states are written without a flush of their own (sled
//! flushes within half a second, and at shutdown): a crash may run a recipe again on an
//! event it just finished, which is why delivery to recipes is at least once, and why calls
//! that change vendors go through the effect journal.

mod keys;
mod ready;
pub mod store;

use crate::store::{Store, StoreError};
use async_trait::async_trait;
use keys::{EventRow, Pending, RunRow};
use ready::Ready;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::{Arc, Mutex};
use switchboard_model::effect::Effect;
use switchboard_model::{
    AttemptRecord, DeliveryMark, LogLine, RunRecord, RunStatus, StoredEvent, parse_ms, rfc3339,
};
use switchboard_pipeline::backend::{
    Accepted, AttemptReport, Backend, BackendError, BackendResult, ClaimRequest, Claimed, Lease,
    Ms, NewEvent, QueueCounts, Replayed, Retention, RunPage, RunQuery, Settlement, Swept, TickFire,
};
use switchboard_pipeline::transfer::{MovedDelivery, MovedEffect, MovedRun, Snapshot};
use switchboard_runtime::store::RecipeStore;
use switchboard_vendors::Counters;
use tokio::sync::Notify;

const STRIPES: usize = 64;

/// Runs as index entries: creation time (Unix ms) and run id.
type Entries = Vec<(Ms, String)>;

/// The sled backend.
pub struct SledBackend {
    path: std::path::PathBuf,
    store: Store,
    tree: ::sled::Tree,
    ready: Mutex<Ready>,
    /// Recipes with an unfinished scheduled run, and that run.
    cron_active: Mutex<HashMap<String, String>>,
    /// Serialises cron tick decisions.
    ticks: tokio::sync::Mutex<()>,
    /// Check-then-write of delivery marks, striped by key (one process per store).
    locks: Box<[Mutex<()>]>,
    work: Notify,
    /// Added to sled's id generator for event ids: a compacted store starts the generator
    /// again from zero, and carries on from here.
    id_base: u64,
}

/// What a compaction did.
#[derive(Debug, Clone, Copy)]
pub struct Compacted {
    /// Bytes on disk before and after.
    pub before: u64,
    pub after: u64,
}

fn stripe(key: &[u8]) -> usize {
    let mut h = std::hash::DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() as usize) % STRIPES
}

/// Bytes `path` takes on disk (allocated blocks, as `du` counts them), recursively.
pub fn disk_usage(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    #[cfg(unix)]
    let own = std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
    #[cfg(not(unix))]
    let own = meta.len();
    if !meta.is_dir() {
        return own;
    }
    own + std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| disk_usage(&e.path()))
                .sum::<u64>()
        })
        .unwrap_or(0)
}

/// Where event ids go on from in the store's `pipeline` tree (0 until a compaction).
fn id_base(tree: &::sled::Tree) -> Result<u64, StoreError> {
    Ok(tree
        .get(keys::ID_BASE_KEY)?
        .and_then(|v| keys::be_i64(&v))
        .unwrap_or(0) as u64)
}

/// A run's creation time, for index keys.
fn created_ms(run: &RunRecord) -> i64 {
    parse_ms(&run.created_at).unwrap_or(0)
}

fn finished_ms(run: &RunRecord) -> i64 {
    run.finished_at.as_deref().and_then(parse_ms).unwrap_or(0)
}

/// What a run's pending entry says of it.
fn pending_of(run: &RunRecord, due: Ms, started: Ms) -> Pending {
    Pending {
        due,
        attempts: run.attempts,
        started,
        key: run.order_key.clone(),
    }
}

impl SledBackend {
    /// Open (or create) the store in `dir`, and recover: unfinished runs are queued again (a
    /// run that was running when the host died runs again, its attempt counted), runs of
    /// events never acknowledged are dropped.
    pub fn open(dir: &Path) -> Result<Arc<Self>, StoreError> {
        let store = Store::open(dir)?;
        let tree = store.db().open_tree("pipeline")?;
        let id_base = id_base(&tree)?;
        let backend = SledBackend {
            path: dir.to_owned(),
            store,
            tree,
            ready: Mutex::new(Ready::default()),
            cron_active: Mutex::new(HashMap::new()),
            ticks: tokio::sync::Mutex::new(()),
            locks: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            work: Notify::new(),
            id_base,
        };
        let corrupt = |e: BackendError| StoreError::Corrupt {
            key: "pipeline".into(),
            reason: e.to_string(),
        };
        backend.migrate().map_err(corrupt)?;
        let resumed = backend.recover().map_err(corrupt)?;
        if resumed > 0 {
            tracing::info!(runs = resumed, "resuming unfinished runs");
        }
        Ok(Arc::new(backend))
    }

    /// Rewrite the store in `dir` into a fresh one, leaving out the space sled keeps for
    /// records that are gone (it reuses that space, but never gives it back to the system),
    /// then put the fresh one in its place. The store must not be open elsewhere: a host
    /// using it makes this fail (sled's lock) before anything is changed.
    pub fn compact(dir: &Path) -> Result<Compacted, StoreError> {
        let before = disk_usage(dir);
        let fresh = dir.with_extension("compacting");
        let old = dir.with_extension("old");
        let _ = std::fs::remove_dir_all(&fresh);
        {
            let source = Store::open(dir)?;
            let tree = source.db().open_tree("pipeline")?;
            // Every id handed out so far stays taken.
            let next = id_base(&tree)? + source.db().generate_id()? + 1;
            let target = Store::open(&fresh)?;
            for name in source.db().tree_names() {
                let from = source.db().open_tree(&name)?;
                let to = target.db().open_tree(&name)?;
                for item in from.iter() {
                    let (k, v) = item?;
                    to.insert(k, v)?;
                }
            }
            target
                .db()
                .open_tree("pipeline")?
                .insert(keys::ID_BASE_KEY, &(next as i64).to_be_bytes()[..])?;
            target.flush()?;
        }
        let io = |e: std::io::Error| StoreError::Corrupt {
            key: dir.display().to_string(),
            reason: format!("moving the compacted store into place: {e}"),
        };
        std::fs::rename(dir, &old).map_err(io)?;
        std::fs::rename(&fresh, dir).map_err(io)?;
        std::fs::remove_dir_all(&old).map_err(io)?;
        Ok(Compacted {
            before,
            after: disk_usage(dir),
        })
    }

    /// Where the store is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The store underneath (kv, effects, counters), for the runtime and tools.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn io(&self, e: ::sled::Error) -> BackendError {
        self.store.failures().report(&e);
        BackendError::Io(e.to_string())
    }

    fn sled<T>(&self, r: Result<T, ::sled::Error>) -> BackendResult<T> {
        r.map_err(|e| self.io(e))
    }

    fn put(&self, key: impl AsRef<[u8]>, value: impl Into<::sled::IVec>) -> BackendResult<()> {
        self.sled(self.tree.insert(key.as_ref(), value)).map(drop)
    }

    fn del(&self, key: impl AsRef<[u8]>) -> BackendResult<()> {
        self.sled(self.tree.remove(key.as_ref())).map(drop)
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Rewrite a store written by an older layout into this one: run records in their
    /// short form, a pending entry with attempts for every unfinished run, status indexes
    /// for finished runs only, and the index of every run.
    fn migrate(&self) -> BackendResult<()> {
        let current = self.sled(self.tree.get(keys::SCHEMA_KEY))?;
        if current.as_deref() == Some(&[keys::SCHEMA][..]) {
            return Ok(());
        }
        // Indexes are rebuilt from the records.
        for prefix in keys::INDEX_PREFIXES {
            for key in self.tree.scan_prefix(prefix).keys() {
                self.del(self.sled(key)?)?;
            }
        }
        let mut n = 0;
        let now = switchboard_model::now_ms();
        for item in self.tree.scan_prefix(b"r/") {
            let (key, value) = self.sled(item)?;
            let id = String::from_utf8_lossy(&key[2..]).into_owned();
            let Ok(run) = keys::decode_run(&key, &id, &value) else {
                continue;
            };
            // The first layout kept the last attempt's logs in the record.
            #[derive(serde::Deserialize)]
            struct Logs {
                #[serde(default)]
                logs: Vec<LogLine>,
            }
            if let Ok(Logs { logs }) = serde_json::from_slice::<Logs>(&value)
                && !logs.is_empty()
            {
                self.put(keys::logs(&run.id), keys::encode(&logs))?;
            }
            if run.status.is_terminal() {
                self.put_indexes(&run)?;
                self.del(keys::pending(&run.id))?;
            } else {
                let pkey = keys::pending(&run.id);
                let due = match self.sled(self.tree.get(&pkey))? {
                    Some(v) => Pending::decode(&pkey, &v)?.due,
                    None => now,
                };
                let started = match run.status {
                    RunStatus::Running => {
                        run.started_at.as_deref().and_then(parse_ms).unwrap_or(now)
                    }
                    _ => 0,
                };
                self.put(&pkey, pending_of(&run, due, started).encode())?;
            }
            // An unfinished run's stored status is read as queued (see `load`).
            self.put(&key, keys::encode(&RunRow::of(&run)))?;
            n += 1;
        }
        self.put(keys::SCHEMA_KEY, &[keys::SCHEMA][..])?;
        if n > 0 {
            tracing::info!(runs = n, "rewrote the run history in this version's layout");
        }
        Ok(())
    }

    fn recover(&self) -> BackendResult<usize> {
        let now = switchboard_model::now_ms();
        let mut ready = Self::lock(&self.ready);
        let pending: Vec<(String, Pending)> = self
            .tree
            .scan_prefix(b"p/")
            .map(|item| {
                let (k, v) = self.sled(item)?;
                let id = String::from_utf8_lossy(&k[2..]).into_owned();
                Ok((id, Pending::decode(&k, &v)?))
            })
            .collect::<BackendResult<_>>()?;
        let mut recovered = Vec::new();
        for (id, mut pending) in pending {
            let Some(run) = self.load_run(&id, Some(&pending))? else {
                self.del(keys::pending(&id))?;
                continue;
            };
            if run.status.is_terminal() {
                // Settled, and the host died before the pending entry went.
                self.del(keys::pending(&id))?;
                continue;
            }
            if run.attempts == 0 && run.replays == 0 && !self.acknowledged(&run, now)? {
                // Written by a delivery that died before its answer: the sender was never
                // told it arrived, and will deliver it again.
                tracing::info!(run = %id, "dropping a run of an unacknowledged event");
                self.delete_run(&run)?;
                self.del(keys::event(&run.event_id))?;
                continue;
            }
            if pending.started != 0 {
                // Its holder died with the host: run it again now, the attempt counted.
                pending.started = 0;
                pending.due = now;
                self.put(keys::pending(&id), pending.encode())?;
            }
            if let Some(key) = &run.order_key {
                ready.key(&run.id, &run.plugin, key);
            }
            if run.source == switchboard_pipeline::cron::SOURCE {
                Self::lock(&self.cron_active).insert(run.plugin.clone(), run.id.clone());
            }
            recovered.push((run.id, run.plugin, pending.due));
        }
        // Every key is known now, so each run waits behind the right head.
        for (id, plugin, due) in &recovered {
            ready.queue(id, plugin, *due);
        }
        Ok(recovered.len())
    }

    /// Whether `run`'s event was acknowledged: its delivery mark is written last, so a mark
    /// naming it says yes; one naming a later event, or none, says yes for an event older
    /// than the window.
    fn acknowledged(&self, run: &RunRecord, now: Ms) -> BackendResult<bool> {
        let Some(event) = self.read_event(&run.event_id)? else {
            return Ok(false);
        };
        let key = keys::delivery(&event.event.source, &event.delivery_id);
        let window = event.window_ms.unwrap_or(keys::DEFAULT_WINDOW_MS);
        Ok(match self.sled(self.tree.get(&key))? {
            Some(v) => {
                let mark: DeliveryMark = keys::decode(&key, &v)?;
                mark.event_id == event.event.id || mark.at_ms - event.received_ms >= window
            }
            None => now - event.received_ms >= window,
        })
    }

    fn read_event(&self, id: &str) -> BackendResult<Option<StoredEvent>> {
        let key = keys::event(id);
        self.sled(self.tree.get(&key))?
            .map(|v| keys::decode_event(&key, id, &v))
            .transpose()
    }

    fn read_pending(&self, id: &str) -> BackendResult<Option<Pending>> {
        let key = keys::pending(id);
        self.sled(self.tree.get(&key))?
            .map(|v| Pending::decode(&key, &v))
            .transpose()
    }

    /// The event a never-settled run belongs to, and the run's recipe: run ids are
    /// `<event id>.<recipe>`, and the event is the one that exists.
    fn event_of(&self, id: &str) -> BackendResult<Option<(StoredEvent, String)>> {
        for (i, _) in id.match_indices('.') {
            if let Some(event) = self.read_event(&id[..i])? {
                return Ok(Some((event, id[i + 1..].to_string())));
            }
        }
        Ok(None)
    }

    /// The run as stored: its record as last settled, or (never settled) made from its event,
    /// with what its pending entry adds (attempts begun). `pending` when already read.
    fn load_run(&self, id: &str, pending: Option<&Pending>) -> BackendResult<Option<RunRecord>> {
        Ok(self.load(id, pending)?.map(|(run, _)| run))
    }

    /// [`Self::load_run`], with the run's event when it had to be read.
    fn load(
        &self,
        id: &str,
        pending: Option<&Pending>,
    ) -> BackendResult<Option<(RunRecord, Option<StoredEvent>)>> {
        let key = keys::run(id);
        let stored = self
            .sled(self.tree.get(&key))?
            .map(|v| keys::decode_run(&key, id, &v))
            .transpose()?;
        let pending = match pending {
            Some(p) => Some(p.clone()),
            None if stored.as_ref().is_some_and(|r| r.status.is_terminal()) => None,
            None => self.read_pending(id)?,
        };
        let (mut run, event) = match stored {
            Some(run) => (run, None),
            None => {
                let Some(pending) = &pending else {
                    return Ok(None);
                };
                let Some((event, plugin)) = self.event_of(id)? else {
                    return Ok(None);
                };
                let mut run = RunRecord::queued(&event.event, &plugin, &event.received_at);
                run.order_key = pending.key.clone();
                (run, Some(event))
            }
        };
        if !run.status.is_terminal() {
            // Running is what the live view says (a record of an older layout may say so).
            run.status = RunStatus::Queued;
            run.lease = None;
        }
        if let Some(p) = pending
            && !run.status.is_terminal()
        {
            run.attempts = run.attempts.max(p.attempts);
            if p.started != 0 {
                run.started_at = Some(rfc3339(p.started));
            }
        }
        Ok(Some((run, event)))
    }

    /// Write the run as settled, in one batch ([`Self::settled_into`]).
    fn write_settled(&self, run: &RunRecord, due: Option<Ms>) -> BackendResult<()> {
        let mut batch = ::sled::Batch::default();
        Self::settled_into(&mut batch, run, due);
        self.apply(batch)
    }

    /// What recording `run` as settled (or queued again, due at `due`) writes: its record,
    /// and its indexes (finished) or its pending entry (not). Applied as one batch, so a
    /// crash never leaves a finished record outside the indexes (invisible to lists) or a
    /// record and its pending entry disagreeing.
    fn settled_into(batch: &mut ::sled::Batch, run: &RunRecord, due: Option<Ms>) {
        batch.insert(keys::run(&run.id), keys::encode(&RunRow::of(run)));
        if run.status.is_terminal() {
            for k in Self::index_keys(run) {
                batch.insert(k, &[][..]);
            }
            batch.remove(keys::pending(&run.id));
        } else {
            let due = due.unwrap_or(0);
            batch.insert(keys::pending(&run.id), pending_of(run, due, 0).encode());
        }
    }

    /// Write `batch` atomically (all of it or, after a crash, none).
    fn apply(&self, batch: ::sled::Batch) -> BackendResult<()> {
        self.sled(self.tree.apply_batch(batch))
    }

    fn index_keys(run: &RunRecord) -> [Vec<u8>; 3] {
        keys::indexes(
            &run.id,
            &run.plugin,
            &run.source,
            run.status,
            created_ms(run),
        )
    }

    /// A finished run enters the indexes.
    fn put_indexes(&self, run: &RunRecord) -> BackendResult<()> {
        for k in Self::index_keys(run) {
            self.put(k, &[][..])?;
        }
        Ok(())
    }

    /// A finished run leaves the indexes (replayed, or swept).
    fn unfinish(&self, run: &RunRecord) -> BackendResult<()> {
        for k in Self::index_keys(run) {
            self.del(k)?;
        }
        Ok(())
    }

    /// Remove a run and all that belongs to it (not its event).
    fn delete_run(&self, run: &RunRecord) -> BackendResult<u64> {
        if run.status.is_terminal() {
            self.unfinish(run)?;
        }
        self.del(keys::pending(&run.id))?;
        self.del(keys::logs(&run.id))?;
        for key in self.tree.scan_prefix(keys::timeline(&run.id)).keys() {
            self.del(self.sled(key)?)?;
        }
        self.del(keys::run(&run.id))?;
        let effects = self
            .store
            .effects()
            .forget_run(&run.id)
            .map_err(|e| BackendError::Io(e.to_string()))?;
        Ok(effects as u64)
    }

    /// Write an accepted event and its runs (not the delivery mark).
    fn write_event(&self, stored: &StoredEvent, runs: &[RunRecord]) -> BackendResult<()> {
        let id = &stored.event.id;
        self.put(keys::event(id), keys::encode(&EventRow::of(stored)))?;
        let mut xd = keys::by_delivery(&stored.delivery_id);
        xd.extend_from_slice(id.as_bytes());
        self.put(xd, &[][..])?;
        for run in runs {
            self.put(
                keys::pending(&run.id),
                pending_of(run, stored.received_ms, 0).encode(),
            )?;
        }
        Ok(())
    }

    /// Write the event, its runs and its delivery mark (last), unless the delivery is a
    /// duplicate; not yet durable. An event no recipe runs on leaves only its mark.
    fn write_accept(&self, new: &NewEvent) -> BackendResult<Accepted> {
        let event = &new.event;
        let dkey = keys::delivery(&event.source, &new.delivery_id);
        let (stored, runs) = switchboard_pipeline::backend::accepted(new);
        let _guard = Self::lock(&self.locks[stripe(&dkey)]);
        if let Some(existing) = self.sled(self.tree.get(&dkey))? {
            let seen: DeliveryMark = keys::decode(&dkey, &existing)?;
            if new.received_ms - seen.at_ms < new.window_ms {
                return Ok(Accepted::Duplicate {
                    event_id: seen.event_id,
                });
            }
        }
        // Plain inserts, not a sled batch (a batch makes the following flush several times
        // slower); the delivery mark last, so recovery can tell an acknowledged event.
        if !runs.is_empty() {
            self.write_event(&stored, &runs)?;
        }
        let mark = DeliveryMark {
            event_id: event.id.clone(),
            at_ms: new.received_ms,
        };
        self.put(dkey, keys::encode(&mark))?;
        Ok(Accepted::New { runs })
    }

    /// Make written runs runnable.
    fn enqueue(&self, runs: &[RunRecord], due: Ms) {
        let mut ready = Self::lock(&self.ready);
        for run in runs {
            if let Some(key) = &run.order_key {
                ready.key(&run.id, &run.plugin, key);
            }
            ready.queue(&run.id, &run.plugin, due);
        }
        drop(ready);
        self.work.notify_one();
    }

    /// The run as it is now: running (with its lease) when held, or whom it waits for.
    fn shown(&self, run: RunRecord) -> RunRecord {
        let ready = Self::lock(&self.ready);
        Self::shown_in(&ready, run)
    }

    fn shown_in(ready: &Ready, mut run: RunRecord) -> RunRecord {
        if let Some(held) = ready.held(&run.id) {
            return held.clone();
        }
        if run.status == RunStatus::Queued {
            run.waiting_for = ready.ahead_of(&run.id).map(str::to_string);
        }
        run
    }

    /// Run ids an index range holds, newest first, created in [since, until) and before the
    /// cursor, at most `limit`.
    fn index_range(
        &self,
        prefix: &[u8],
        since: Option<Ms>,
        until: Option<Ms>,
        cursor: Option<&(Ms, String)>,
        limit: usize,
    ) -> BackendResult<Vec<(Ms, String)>> {
        let from = [prefix, &since.unwrap_or(0).max(0).to_be_bytes()].concat();
        // The lower of the two ends: `until`, and where the previous page stopped.
        let until_end = [prefix, &until.unwrap_or(i64::MAX).to_be_bytes()].concat();
        let cursor_end = cursor.map(|(c, id)| [prefix, &c.to_be_bytes(), id.as_bytes()].concat());
        let to = match cursor_end {
            Some(c) if c < until_end => c,
            _ => until_end,
        };
        let mut out = Vec::new();
        for item in self.tree.range(from..to).rev() {
            if out.len() >= limit {
                break;
            }
            let (k, _) = self.sled(item)?;
            if let Some(entry) = keys::split_timed(&k, prefix.len()) {
                out.push(entry);
            }
        }
        Ok(out)
    }

    /// Unfinished runs in `statuses` (of `plugin`), from the live view: they have no status
    /// index. Newest first, created in [since, until) and before the cursor; and the runs
    /// themselves, read to learn when they were created.
    fn live_candidates(
        &self,
        statuses: &[RunStatus],
        plugin: Option<&str>,
        since: Option<Ms>,
        until: Option<Ms>,
        cursor: Option<&(Ms, String)>,
    ) -> BackendResult<(Entries, HashMap<String, RunRecord>)> {
        let ids = Self::lock(&self.ready).unfinished(
            statuses.contains(&RunStatus::Queued),
            statuses.contains(&RunStatus::Running),
            plugin,
        );
        let mut out = Vec::new();
        let mut runs = HashMap::new();
        for id in ids {
            let Some(run) = self.load_run(&id, None)? else {
                continue;
            };
            let entry = (created_ms(&run), id);
            if since.is_some_and(|s| entry.0 < s)
                || until.is_some_and(|u| entry.0 >= u)
                || cursor.is_some_and(|c| &entry >= c)
            {
                continue;
            }
            runs.insert(entry.1.clone(), run);
            out.push(entry);
        }
        out.sort_by(|a, b| b.cmp(a));
        Ok((out, runs))
    }

    /// The runs matching the query, newest first, at most `limit`; and whether there may be
    /// more. Candidates come from the query's most selective index (merged when it names
    /// several statuses), read in batches and filtered by the rest of the query.
    fn scan(&self, q: &RunQuery, limit: usize) -> BackendResult<(Vec<RunRecord>, bool)> {
        let cursor = q
            .cursor
            .as_deref()
            .map(switchboard_pipeline::backend::parse_cursor)
            .transpose()?;
        // Finished runs come from an index range per status (all three when the query names
        // none); unfinished ones from the live view.
        let statuses = if q.statuses.is_empty() {
            vec![
                RunStatus::Queued,
                RunStatus::Running,
                RunStatus::Succeeded,
                RunStatus::Failed,
                RunStatus::Dead,
            ]
        } else {
            q.statuses.clone()
        };
        let (finished, unfinished): (Vec<RunStatus>, Vec<RunStatus>) =
            statuses.iter().partition(|s| s.is_terminal());
        let prefixes: Vec<Vec<u8>> = finished
            .iter()
            .map(|s| match (&q.plugin, &q.source) {
                (Some(p), _) => keys::by_plugin_status(p, *s),
                (None, Some(src)) if q.statuses.is_empty() => keys::by_source(src),
                _ => keys::by_status(*s),
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let (live, mut live_runs) = if unfinished.is_empty() {
            (Vec::new(), HashMap::new())
        } else {
            self.live_candidates(
                &unfinished,
                q.plugin.as_deref(),
                q.since_ms,
                q.until_ms,
                cursor.as_ref(),
            )?
        };
        let by_event = q.event_id.clone();
        let by_delivery = match &q.delivery_id {
            Some(d) => {
                let prefix = keys::by_delivery(d);
                let mut events = Vec::new();
                for item in self.tree.scan_prefix(&prefix).keys() {
                    let k = self.sled(item)?;
                    events.push(String::from_utf8_lossy(&k[prefix.len()..]).into_owned());
                }
                Some(events)
            }
            None => None,
        };
        let matches = |run: &RunRecord| {
            (q.statuses.is_empty() || q.statuses.contains(&run.status))
                && q.plugin.as_ref().is_none_or(|p| &run.plugin == p)
                && q.source.as_ref().is_none_or(|s| &run.source == s)
                && by_event.as_ref().is_none_or(|e| &run.event_id == e)
                && by_delivery
                    .as_ref()
                    .is_none_or(|ds| ds.contains(&run.event_id))
                && q.unconfirmed
                    .is_none_or(|u| u != run.unconfirmed.is_empty())
        };
        let mut out = Vec::new();
        let mut position = cursor.clone();
        let batch = limit.saturating_mul(2).clamp(16, 1000);
        loop {
            let mut candidates: Vec<(Ms, String)> = live
                .iter()
                .filter(|c| position.as_ref().is_none_or(|p| *c < p))
                .take(batch)
                .cloned()
                .collect();
            for prefix in &prefixes {
                candidates.extend(self.index_range(
                    prefix,
                    q.since_ms,
                    q.until_ms,
                    position.as_ref(),
                    batch,
                )?);
            }
            candidates.sort_by(|a, b| b.cmp(a));
            candidates.dedup();
            candidates.truncate(batch);
            let exhausted = candidates.len() < batch;
            for (created, id) in candidates {
                position = Some((created, id.clone()));
                let run = match live_runs.remove(&id) {
                    Some(run) => Some(run),
                    None => self.load_run(&id, None)?,
                };
                if let Some(run) = run {
                    let run = self.shown(run);
                    if matches(&run) {
                        out.push(run);
                        if out.len() >= limit {
                            return Ok((out, true));
                        }
                    }
                }
            }
            if exhausted {
                return Ok((out, false));
            }
        }
    }
}

impl SledBackend {
    /// Everything a move to another backend keeps (see [`Snapshot`]): every run kept, its
    /// event, log and journal; delivery ids seen within `window_ms` of `now_ms`; recipe kv;
    /// cron ticks; quota counters; paused recipes.
    pub async fn export(&self, now_ms: Ms, window_ms: Ms) -> BackendResult<Snapshot> {
        let mut snapshot = Snapshot::default();
        let mut events = std::collections::BTreeSet::new();
        let mut cursor = None;
        loop {
            let page = self
                .runs(&RunQuery {
                    limit: 1000,
                    cursor: cursor.take(),
                    ..RunQuery::default()
                })
                .await?;
            for mut run in page.runs {
                let due_ms = if run.status.is_terminal() {
                    None
                } else {
                    // Unfinished: queued again where it was due (a host is not running on
                    // this store, so nothing holds it).
                    run.status = RunStatus::Queued;
                    run.lease = None;
                    run.waiting_for = None;
                    Some(self.read_pending(&run.id)?.map_or(now_ms, |p| p.due))
                };
                if events.insert(run.event_id.clone())
                    && let Some(event) = self.read_event(&run.event_id)?
                {
                    snapshot.events.push(event);
                }
                let logs = self.logs(&run.id).await?;
                snapshot.runs.push(MovedRun { run, due_ms, logs });
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        for item in self.tree.scan_prefix(b"d/") {
            let (key, value) = self.sled(item)?;
            let mark: DeliveryMark = keys::decode(&key, &value)?;
            if now_ms - mark.at_ms >= window_ms {
                continue;
            }
            let text = String::from_utf8_lossy(&key[2..]).into_owned();
            let Some((source, delivery_id)) = text.split_once('\n') else {
                continue;
            };
            snapshot.deliveries.push(MovedDelivery {
                source: source.to_string(),
                delivery_id: delivery_id.to_string(),
                event_id: mark.event_id,
                at_ms: mark.at_ms,
            });
        }
        for item in self.tree.scan_prefix(b"c/") {
            let (key, value) = self.sled(item)?;
            let text = String::from_utf8_lossy(&key[2..]).into_owned();
            if let Some((plugin, trigger)) = text.rsplit_once('/')
                && let (Ok(trigger), Some(last)) = (trigger.parse(), keys::be_i64(&value))
            {
                snapshot.ticks.push((plugin.to_string(), trigger, last));
            }
        }
        snapshot.paused = self.paused().await?.into_iter().collect();
        let db = self.store.db();
        let effects = self.sled(db.open_tree("effects"))?;
        for item in effects.iter() {
            let (key, value) = self.sled(item)?;
            let Some(zero) = key.iter().position(|b| *b == 0) else {
                continue;
            };
            let rest = &key[zero + 1..];
            if rest.len() != 36 {
                continue;
            }
            let effect = keys::decode(&key, &value)?;
            snapshot.effects.push(MovedEffect {
                run: String::from_utf8_lossy(&key[..zero]).into_owned(),
                fingerprint: rest[..32].to_vec(),
                occurrence: u32::from_be_bytes(rest[32..].try_into().expect("4 bytes")),
                effect,
            });
        }
        for name in db.tree_names() {
            let Some(recipe) = name.strip_prefix(b"kv/") else {
                continue;
            };
            let recipe = String::from_utf8_lossy(recipe).into_owned();
            for item in self.sled(db.open_tree(&name))?.iter() {
                let (key, value) = self.sled(item)?;
                snapshot.kv.push((
                    recipe.clone(),
                    String::from_utf8_lossy(&key).into_owned(),
                    value.to_vec(),
                ));
            }
        }
        for item in self.sled(db.open_tree("quota"))?.iter() {
            let (key, value) = self.sled(item)?;
            let used = value
                .as_ref()
                .try_into()
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            snapshot
                .counters
                .push((String::from_utf8_lossy(&key).into_owned(), used));
        }
        Ok(snapshot)
    }
}

#[async_trait]
impl Backend for SledBackend {
    fn name(&self) -> &'static str {
        "sled"
    }

    fn failure(&self) -> Option<String> {
        self.store.failure()
    }

    async fn failed(&self) -> String {
        self.store.failures().wait().await
    }

    async fn next_event_id(&self) -> BackendResult<String> {
        let n = self.sled(self.store.db().generate_id())?;
        Ok(format!("evt_{:016x}", self.id_base + n))
    }

    async fn accept(&self, new: NewEvent) -> BackendResult<Accepted> {
        let accepted = self.write_accept(&new)?;
        if let Accepted::New { runs } = &accepted {
            // Flush, then queue, in a task of its own: a caller that goes away (a client
            // that disconnects) leaves its runs queued all the same once they are on disk.
            let (store, runs, due) = (self.store.clone(), runs.clone(), new.received_ms);
            let flushed = tokio::spawn(async move { store.commit().await })
                .await
                .map_err(|e| BackendError::Io(e.to_string()))?;
            flushed.map_err(|e| BackendError::Io(e.to_string()))?;
            self.enqueue(&runs, due);
        }
        Ok(accepted)
    }

    async fn claim(&self, req: ClaimRequest<'_>) -> BackendResult<Vec<Claimed>> {
        let mut ready = Self::lock(&self.ready);
        for (run, plugin) in ready.expired(req.now_ms) {
            // Its holder vanished: the run may be taken over.
            ready.release(&run);
            ready.queue(&run, &plugin, req.now_ms);
        }
        let limit = |recipe: &str| req.concurrency.of(recipe);
        let taken = ready.take(req.now_ms, req.max, &limit);
        let mut claimed = Vec::new();
        for (id, plugin) in taken {
            let (before, event) = match self.load(&id, None) {
                Ok(Some((run, event))) if !run.status.is_terminal() => (run, event),
                Ok(_) => {
                    ready.finish(&id);
                    continue;
                }
                Err(e) => {
                    ready.release(&id);
                    ready.queue(&id, &plugin, req.now_ms);
                    return Err(e);
                }
            };
            let event = match event {
                Some(event) => Some(event),
                None => self.read_event(&before.event_id)?,
            };
            let token = self.sled(self.store.db().generate_id())? + 1;
            let lease = Lease {
                run: id.clone(),
                token,
                holder: req.holder.to_string(),
                expires_ms: req.now_ms + req.lease_ms,
            };
            let mut run = before;
            let now = rfc3339(req.now_ms);
            run.status = RunStatus::Running;
            run.attempts += 1;
            run.started_at = Some(now.clone());
            run.updated_at = now;
            run.next_attempt_at = None;
            run.lease = Some(lease.clone());
            // The attempt is counted on disk before it starts; the lease lives in memory.
            self.put(
                keys::pending(&id),
                pending_of(&run, req.now_ms, req.now_ms).encode(),
            )?;
            ready.hold(&id, &plugin, lease.clone(), run.clone());
            claimed.push(Claimed { run, event, lease });
        }
        Ok(claimed)
    }

    async fn extend(&self, lease: &Lease, now_ms: Ms, lease_ms: Ms) -> BackendResult<Lease> {
        let mut ready = Self::lock(&self.ready);
        if ready
            .lease(&lease.run)
            .is_none_or(|l| l.token != lease.token)
        {
            return Err(BackendError::Stale {
                run: lease.run.clone(),
                token: lease.token,
            });
        }
        let extended = Lease {
            expires_ms: now_ms + lease_ms,
            ..lease.clone()
        };
        ready.set_lease(extended.clone());
        Ok(extended)
    }

    async fn settle(
        &self,
        lease: &Lease,
        now_ms: Ms,
        settlement: Settlement,
        report: AttemptReport,
    ) -> BackendResult<RunRecord> {
        let mut ready = Self::lock(&self.ready);
        if ready
            .lease(&lease.run)
            .is_none_or(|l| l.token != lease.token)
        {
            return Err(BackendError::Stale {
                run: lease.run.clone(),
                token: lease.token,
            });
        }
        let before = match ready.held(&lease.run) {
            Some(held) => held.clone(),
            None => self
                .load_run(&lease.run, None)?
                .ok_or_else(|| BackendError::NoRun(lease.run.clone()))?,
        };
        let logs = report.logs.clone();
        let (run, due, attempt) =
            switchboard_pipeline::backend::settled(before, now_ms, settlement.clone(), report);
        if matches!(settlement, Settlement::Released) {
            // Given back unrun: only its pending entry changes (the attempt uncounted).
            self.put(
                keys::pending(&run.id),
                pending_of(&run, due.unwrap_or(now_ms), 0).encode(),
            )?;
        } else {
            let mut batch = ::sled::Batch::default();
            Self::settled_into(&mut batch, &run, due);
            if logs.is_empty() {
                batch.remove(keys::logs(&run.id));
            } else {
                batch.insert(keys::logs(&run.id), keys::encode(&logs));
            }
            if let Some(a) = &attempt {
                let n = self.sled(self.store.db().generate_id())?;
                batch.insert(keys::attempt(&run.id, n), keys::encode(a));
            }
            self.apply(batch)?;
        }
        if run.status.is_terminal() {
            ready.finish(&run.id);
            if run.source == switchboard_pipeline::cron::SOURCE {
                let mut active = Self::lock(&self.cron_active);
                if active.get(&run.plugin) == Some(&run.id) {
                    active.remove(&run.plugin);
                }
            }
        } else {
            ready.release(&run.id);
            ready.queue(&run.id, &run.plugin, due.unwrap_or(now_ms));
        }
        drop(ready);
        self.work.notify_one();
        Ok(run)
    }

    async fn next_due(&self) -> BackendResult<Option<Ms>> {
        Ok(Self::lock(&self.ready).next_due())
    }

    async fn counts(&self, now_ms: Ms) -> BackendResult<QueueCounts> {
        Ok(Self::lock(&self.ready).counts(now_ms))
    }

    async fn wait_for_work(&self, timeout: std::time::Duration) {
        let _ = tokio::time::timeout(timeout, self.work.notified()).await;
    }

    async fn replay(
        &self,
        id: &str,
        now_ms: Ms,
        resend_unconfirmed: bool,
    ) -> BackendResult<RunRecord> {
        // Under the live view's lock from read to write, like claims, settles and sweeps:
        // a run is never claimed, settled or swept halfway through its replay.
        let mut ready = Self::lock(&self.ready);
        let before = self
            .load_run(id, None)?
            .ok_or_else(|| BackendError::NoRun(id.to_string()))?;
        let before = Self::shown_in(&ready, before);
        let mut run = before.clone();
        run.updated_at = rfc3339(now_ms);
        if run.is_deferred() && !resend_unconfirmed {
            // Held by its recipe: run it now instead (the recipe decides again).
            run.next_attempt_at = None;
            self.write_settled(&run, Some(now_ms))?;
            ready.queue(&run.id, &run.plugin, now_ms);
            drop(ready);
            self.work.notify_one();
            tracing::info!(run = %run.id, "deferred run released by a replay");
            return Ok(self.shown(run));
        }
        if !run.status.is_terminal() {
            return Err(BackendError::NotFinished {
                id: id.to_string(),
                status: run.status.as_str(),
            });
        }
        if resend_unconfirmed {
            let forgotten = self
                .store
                .effects()
                .forget_unconfirmed(id)
                .map_err(|e| BackendError::Io(e.to_string()))?;
            tracing::info!(run = %id, calls = forgotten, "unconfirmed calls forgotten: the replay sends them again");
        }
        run.status = RunStatus::Queued;
        run.attempts = 0;
        run.replays += 1;
        run.next_attempt_at = None;
        // Out of the finished runs' indexes and queued, in one batch.
        let mut batch = ::sled::Batch::default();
        for k in Self::index_keys(&before) {
            batch.remove(k);
        }
        Self::settled_into(&mut batch, &run, Some(now_ms));
        self.apply(batch)?;
        if let Some(key) = &run.order_key {
            ready.key(&run.id, &run.plugin, key);
        }
        ready.queue(&run.id, &run.plugin, now_ms);
        drop(ready);
        self.work.notify_one();
        tracing::info!(run = %run.id, "run queued for replay");
        Ok(self.shown(run))
    }

    async fn replay_matching(
        &self,
        query: &RunQuery,
        now_ms: Ms,
        dry_run: bool,
    ) -> BackendResult<Replayed> {
        let Some(query) = switchboard_pipeline::backend::replay_query(query) else {
            return Ok(Replayed::default());
        };
        let (matched, _) = self.scan(&query, usize::MAX)?;
        switchboard_pipeline::backend::replay_all(self, matched, now_ms, dry_run).await
    }

    async fn run(&self, id: &str) -> BackendResult<Option<RunRecord>> {
        Ok(self.load_run(id, None)?.map(|r| self.shown(r)))
    }

    async fn logs(&self, id: &str) -> BackendResult<Vec<LogLine>> {
        let key = keys::logs(id);
        Ok(self
            .sled(self.tree.get(&key))?
            .map(|v| keys::decode(&key, &v))
            .transpose()?
            .unwrap_or_default())
    }

    async fn attempts(&self, id: &str) -> BackendResult<Vec<AttemptRecord>> {
        self.tree
            .scan_prefix(keys::timeline(id))
            .map(|item| {
                let (key, value) = self.sled(item)?;
                keys::decode(&key, &value)
            })
            .collect()
    }

    async fn event(&self, id: &str) -> BackendResult<Option<StoredEvent>> {
        self.read_event(id)
    }

    async fn effects(&self, run: &str) -> BackendResult<Vec<Effect>> {
        self.store
            .effects()
            .of_run(run)
            .map_err(|e| BackendError::Io(e.to_string()))
    }

    async fn runs(&self, query: &RunQuery) -> BackendResult<RunPage> {
        let limit = if query.limit == 0 { 100 } else { query.limit };
        let (runs, more) = self.scan(query, limit)?;
        let next = if more {
            runs.last()
                .map(|r| switchboard_pipeline::backend::cursor(created_ms(r), &r.id))
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
        let _one = self.ticks.lock().await;
        let key = keys::tick(plugin, trigger);
        let last = self
            .sled(self.tree.get(&key))?
            .and_then(|v| keys::be_i64(&v));
        if last.is_some_and(|l| l >= tick_ms) {
            return Ok(TickFire::AlreadyFired);
        }
        let busy = Self::lock(&self.cron_active).get(plugin).cloned();
        if let Some(run) = busy {
            self.sled(self.tree.insert(&key, &tick_ms.to_be_bytes()[..]))?;
            return Ok(TickFire::Busy { run });
        }
        let accepted = self.accept(event).await?;
        if let Accepted::New { runs } = &accepted
            && let Some(run) = runs.first()
        {
            Self::lock(&self.cron_active).insert(plugin.to_string(), run.id.clone());
        }
        self.sled(self.tree.insert(&key, &tick_ms.to_be_bytes()[..]))?;
        Ok(TickFire::Fired(accepted))
    }

    async fn last_tick(&self, plugin: &str, trigger: usize) -> BackendResult<Option<Ms>> {
        Ok(self
            .sled(self.tree.get(keys::tick(plugin, trigger)))?
            .and_then(|v| keys::be_i64(&v)))
    }

    async fn sweep(&self, now_ms: Ms, policy: &Retention) -> BackendResult<Swept> {
        let mut swept = Swept::default();
        // A run created after the cut finished after it too: only older ones may be due.
        let mut expired = Vec::new();
        for status in keys::FINISHED {
            let keep = match status {
                RunStatus::Succeeded => policy.keep_succeeded_ms,
                _ => policy.keep_failed_ms,
            };
            let prefix = keys::by_status(status);
            let cut = now_ms.saturating_sub(keep);
            expired.extend(self.index_range(&prefix, None, Some(cut), None, usize::MAX)?);
        }
        for (_, id) in expired {
            // Checked and removed under the live view's lock: a replay cannot come between.
            let _ready = Self::lock(&self.ready);
            let Some(run) = self.load_run(&id, None)? else {
                continue;
            };
            let keep = match run.status {
                RunStatus::Succeeded => policy.keep_succeeded_ms,
                RunStatus::Failed | RunStatus::Dead => policy.keep_failed_ms,
                RunStatus::Queued | RunStatus::Running => continue,
            };
            if now_ms - finished_ms(&run) < keep {
                continue;
            }
            swept.effects += self.delete_run(&run)?;
            swept.runs += 1;
            // The event goes with its last run.
            let prefix = format!("{}.", run.event_id);
            let siblings = self
                .tree
                .scan_prefix(keys::run(&prefix))
                .keys()
                .next()
                .is_some()
                || self
                    .tree
                    .scan_prefix(keys::pending(&prefix))
                    .keys()
                    .next()
                    .is_some();
            if !siblings && let Some(event) = self.read_event(&run.event_id)? {
                let mut xd = keys::by_delivery(&event.delivery_id);
                xd.extend_from_slice(event.event.id.as_bytes());
                self.sled(self.tree.remove(xd))?;
                self.sled(self.tree.remove(keys::event(&run.event_id)))?;
                swept.events += 1;
            }
        }
        // Delivery ids past the window may arrive again as new deliveries.
        for item in self.tree.scan_prefix(b"d/") {
            let (key, value) = self.sled(item)?;
            let old = keys::decode::<DeliveryMark>(&key, &value)
                .map(|m| now_ms - m.at_ms >= policy.dedup_window_ms)
                .unwrap_or(true);
            // Compare-and-swap: a mark rewritten meanwhile (the id reused) stays.
            if old
                && self
                    .sled(
                        self.tree
                            .compare_and_swap(&key, Some(value), None as Option<&[u8]>),
                    )?
                    .is_ok()
            {
                swept.deliveries += 1;
            }
        }
        Ok(swept)
    }

    async fn set_paused(&self, recipe: &str, paused: bool) -> BackendResult<bool> {
        let key = keys::paused(recipe);
        let before = if paused {
            self.sled(self.tree.insert(&key, &[][..]))?
        } else {
            self.sled(self.tree.remove(&key))?
        };
        self.flush().await?;
        Ok(before.is_some() != paused)
    }

    async fn paused(&self) -> BackendResult<std::collections::BTreeSet<String>> {
        self.tree
            .scan_prefix(keys::PAUSED)
            .keys()
            .map(|k| {
                let k = self.sled(k)?;
                Ok(String::from_utf8_lossy(&k[keys::PAUSED.len()..]).into_owned())
            })
            .collect()
    }

    async fn flush(&self) -> BackendResult<()> {
        self.store
            .flush()
            .map_err(|e| BackendError::Io(e.to_string()))
    }

    fn recipe_store(&self) -> Arc<dyn RecipeStore> {
        Arc::new(self.store.clone())
    }

    fn counters(&self) -> Arc<dyn Counters> {
        Arc::new(
            self.store
                .quota()
                .expect("the quota tree opens with the store"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_pipeline::backend::Concurrency;
    use switchboard_pipeline::conformance::{self, Harness};

    /// sled under the conformance suite: a store per check in a temporary folder.
    #[derive(Default)]
    struct Sled {
        dirs: Mutex<Vec<tempfile::TempDir>>,
    }

    #[async_trait]
    impl Harness for Sled {
        type Backend = SledBackend;

        async fn fresh(&self) -> Arc<SledBackend> {
            let dir = tempfile::tempdir().unwrap();
            let backend = SledBackend::open(&dir.path().join("store")).unwrap();
            self.dirs.lock().unwrap().push(dir);
            backend
        }

        async fn crash(&self, backend: Arc<SledBackend>) -> Arc<SledBackend> {
            let path = backend.path().to_owned();
            drop(backend);
            open_again(&path).await
        }

        async fn torn_accept(&self, backend: &SledBackend, new: NewEvent) {
            // Everything but the delivery mark, which goes last: the host died before it.
            let (stored, runs) = switchboard_pipeline::backend::accepted(&new);
            backend.write_event(&stored, &runs).unwrap();
        }
    }

    /// The store at `path` opened again once the last handles let go (their tasks end, and
    /// sled's flusher holds the file lock a moment after).
    async fn open_again(path: &std::path::Path) -> Arc<SledBackend> {
        for _ in 0..300 {
            match SledBackend::open(path) {
                Ok(b) => return b,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
        panic!("the store did not open again");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn compaction_gives_back_what_a_sweep_freed_and_keeps_the_rest() {
        use switchboard_model::{Event, Outcome};
        use switchboard_pipeline::backend::NewRun;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let b = SledBackend::open(&path).unwrap();
        let t = switchboard_model::now_ms();
        let payload = serde_json::json!({"text": "x".repeat(2000)});
        let mut last_id = String::new();
        for i in 0..3000 {
            let id = b.next_event_id().await.unwrap();
            last_id = id.clone();
            let new = NewEvent {
                event: Event::new(id, "forms", "thing", rfc3339(t), &payload),
                delivery_id: format!("d{i}"),
                received_ms: t + i,
                window_ms: 1000,
                runs: vec![NewRun {
                    plugin: "a".into(),
                    order_key: None,
                }],
            };
            b.accept(new).await.unwrap();
        }
        loop {
            let claimed = b
                .claim(ClaimRequest {
                    holder: "h",
                    now_ms: t + 5000,
                    lease_ms: 30_000,
                    max: 100,
                    concurrency: Concurrency::each(100),
                })
                .await
                .unwrap();
            if claimed.is_empty() {
                break;
            }
            for c in claimed {
                b.settle(
                    &c.lease,
                    t + 5000,
                    Settlement::Succeeded(Outcome::Done("ok".into())),
                    AttemptReport::default(),
                )
                .await
                .unwrap();
            }
        }
        // One more event, kept: only the first 3000 runs are old enough to go.
        let kept = b.next_event_id().await.unwrap();
        let new = NewEvent {
            event: Event::new(kept.clone(), "forms", "thing", rfc3339(t), &payload),
            delivery_id: "kept".into(),
            received_ms: t + 100_000,
            window_ms: 1000,
            runs: vec![NewRun {
                plugin: "a".into(),
                order_key: None,
            }],
        };
        b.accept(new).await.unwrap();
        let policy = Retention {
            keep_succeeded_ms: 1,
            keep_failed_ms: 1,
            dedup_window_ms: 1,
        };
        let swept = b.sweep(t + 50_000, &policy).await.unwrap();
        assert_eq!(swept.runs, 3000);
        b.flush().await.unwrap();
        drop(b);
        let mut compacted = None;
        for _ in 0..200 {
            match SledBackend::compact(&path) {
                Ok(c) => {
                    compacted = Some(c);
                    break;
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
        let compacted = compacted.expect("the store compacts once closed");
        assert!(
            compacted.after * 4 < compacted.before,
            "compaction gives the space back: {compacted:?}"
        );
        let b = open_again(&path).await;
        let run = b.run(&format!("{kept}.a")).await.unwrap().expect("kept");
        assert_eq!(
            run.status,
            RunStatus::Queued,
            "the queued run is still there"
        );
        let counts = b.counts(i64::MAX).await.unwrap();
        assert_eq!(
            (counts.queued(), counts.running),
            (1, 0),
            "and queued again"
        );
        let next = b.next_event_id().await.unwrap();
        assert!(
            next > kept && next > last_id,
            "event ids go on after the compaction: {next} after {kept}"
        );
        // A live host's store is refused, untouched.
        assert!(SledBackend::compact(&path).is_err());
        assert!(b.run(&format!("{kept}.a")).await.unwrap().is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_of_the_previous_layout_opens_with_its_runs_indexed_and_queued() {
        use switchboard_model::{Event, Outcome};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let t = switchboard_model::now_ms() - 60_000;
        {
            // Layout 2: whole records as JSON, an 8-byte pending entry, indexes for every
            // status (the old queued entry must go).
            let store = Store::open(&path).unwrap();
            let tree = store.db().open_tree("pipeline").unwrap();
            let event = Event::new(
                "evt_01",
                "forms",
                "lead.created",
                rfc3339(t),
                &serde_json::json!({"n": 1}),
            );
            let stored = StoredEvent {
                event: event.clone(),
                delivery_id: "d1".into(),
                received_at: rfc3339(t),
                received_ms: t,
                window_ms: Some(3_600_000),
            };
            tree.insert(keys::event("evt_01"), keys::encode(&stored))
                .unwrap();
            let mut done = RunRecord::queued(&event, "a", &rfc3339(t));
            done.status = RunStatus::Succeeded;
            done.attempts = 1;
            done.finished_at = Some(rfc3339(t + 10));
            done.outcome = Some(Outcome::Done("ok".into()));
            let waiting = RunRecord::queued(&event, "b", &rfc3339(t));
            let mut running = RunRecord::queued(&event, "c", &rfc3339(t));
            running.status = RunStatus::Running;
            running.attempts = 2;
            running.started_at = Some(rfc3339(t + 5));
            for run in [&done, &waiting, &running] {
                let mut json = serde_json::to_value(run).unwrap();
                // The first layout kept the logs in the record.
                if run.id == done.id {
                    json["logs"] = serde_json::json!([{"level": "info", "message": "did it"}]);
                }
                tree.insert(keys::run(&run.id), serde_json::to_vec(&json).unwrap())
                    .unwrap();
                tree.insert(
                    [
                        &keys::by_status(run.status)[..],
                        &t.to_be_bytes(),
                        run.id.as_bytes(),
                    ]
                    .concat(),
                    &[][..],
                )
                .unwrap();
            }
            for run in [&waiting, &running] {
                tree.insert(keys::pending(&run.id), &t.to_be_bytes()[..])
                    .unwrap();
            }
            let mark = DeliveryMark {
                event_id: "evt_01".into(),
                at_ms: t,
            };
            tree.insert(keys::delivery("forms", "d1"), keys::encode(&mark))
                .unwrap();
            tree.insert(keys::SCHEMA_KEY, &[2u8][..]).unwrap();
            store.flush().unwrap();
        }
        let b = open_again(&path).await;
        let page = b.runs(&RunQuery::default()).await.unwrap();
        let mut shown: Vec<String> = page
            .runs
            .iter()
            .map(|r| format!("{} {} {}", r.id, r.status.as_str(), r.attempts))
            .collect();
        shown.sort();
        assert_eq!(
            shown,
            vec![
                "evt_01.a succeeded 1",
                "evt_01.b queued 0",
                "evt_01.c queued 2",
            ],
            "every run, the one running at the crash queued again with its attempts"
        );
        let succeeded = b
            .runs(&RunQuery {
                statuses: vec![RunStatus::Succeeded],
                ..RunQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(succeeded.runs.len(), 1, "finished runs are indexed");
        assert_eq!(succeeded.runs[0].outcome, Some(Outcome::Done("ok".into())));
        let logs = b.logs("evt_01.a").await.unwrap();
        assert_eq!(logs.len(), 1, "logs moved out of the record");
        assert_eq!(logs[0].message, "did it");
        let counts = b.counts(i64::MAX).await.unwrap();
        assert_eq!((counts.queued(), counts.running), (2, 0), "two runs to run");
        let claimed = b
            .claim(ClaimRequest {
                holder: "h",
                now_ms: switchboard_model::now_ms(),
                lease_ms: 30_000,
                max: 10,
                concurrency: Concurrency::each(10),
            })
            .await
            .unwrap();
        let mut ids: Vec<(String, u32)> = claimed
            .iter()
            .map(|c| (c.run.id.clone(), c.run.attempts))
            .collect();
        ids.sort();
        assert_eq!(
            ids,
            vec![("evt_01.b".to_string(), 1), ("evt_01.c".to_string(), 3)]
        );
        assert!(
            claimed.iter().all(|c| c.event.is_some()),
            "events still read"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sled_passes_the_backend_conformance_suite() {
        conformance::run_all(&Sled::default()).await;
    }
}
