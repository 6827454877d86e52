//! The embedded backend: one sled database, for one host (sled allows one process per
//! store). Its records are laid out in [`keys`]; what may run is kept in memory too
//! ([`ready`]), rebuilt from the records at open.
//!
//! Durability: an accepted event, its runs and its delivery mark are on disk before
//! [`Backend::accept`] returns (group commit, shared with concurrent accepts and with the
//! effect journal). A run's later states are written without a flush of their own (sled
//! flushes within half a second, and at shutdown): a crash may run a recipe again on an
//! event it just finished, which is why delivery to recipes is at least once, and why calls
//! that change vendors go through the effect journal.

mod keys;
mod ready;

use crate::backend::{
    Accepted, AttemptReport, Backend, BackendError, BackendResult, ClaimRequest, Claimed, Lease,
    Ms, NewEvent, REPLAYABLE, Replayed, Retention, RunPage, RunQuery, Settlement, Swept, TickFire,
};
use crate::store::{Store, StoreError};
use async_trait::async_trait;
use ready::Ready;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::{Arc, Mutex};
use switchboard_model::effect::Effect;
use switchboard_model::{
    DeliveryMark, LogLine, RunRecord, RunStatus, StoredEvent, parse_ms, rfc3339,
};
use switchboard_runtime::store::RecipeStore;
use switchboard_vendors::Counters;
use tokio::sync::Notify;

const STRIPES: usize = 64;

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
}

fn stripe(key: &[u8]) -> usize {
    let mut h = std::hash::DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() as usize) % STRIPES
}

/// A run's creation time, for index keys.
fn created_ms(run: &RunRecord) -> i64 {
    parse_ms(&run.created_at).unwrap_or(0)
}

impl SledBackend {
    /// Open (or create) the store in `dir`, and recover: unfinished runs are queued again (a
    /// run that was running when the host died runs again, its attempt counted), runs of
    /// events never acknowledged are dropped.
    pub fn open(dir: &Path) -> Result<Arc<Self>, StoreError> {
        let store = Store::open(dir)?;
        let tree = store.db().open_tree("pipeline")?;
        let backend = SledBackend {
            path: dir.to_owned(),
            store,
            tree,
            ready: Mutex::new(Ready::default()),
            cron_active: Mutex::new(HashMap::new()),
            ticks: tokio::sync::Mutex::new(()),
            locks: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            work: Notify::new(),
        };
        backend.migrate()?;
        let resumed = backend.recover().map_err(|e| StoreError::Corrupt {
            key: "pipeline".into(),
            reason: e.to_string(),
        })?;
        if resumed > 0 {
            tracing::info!(runs = resumed, "resuming unfinished runs");
        }
        Ok(Arc::new(backend))
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

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Index every run of a store written by an older layout.
    fn migrate(&self) -> Result<(), StoreError> {
        let current = self.tree.get(keys::SCHEMA_KEY)?;
        if current.as_deref() == Some(&[keys::SCHEMA][..]) {
            return Ok(());
        }
        let mut n = 0;
        for item in self.tree.scan_prefix(b"r/") {
            let (key, value) = item?;
            let Ok(run) = keys::decode::<RunRecord>(&key, &value) else {
                continue;
            };
            let created = created_ms(&run);
            for k in keys::indexes(&run, created) {
                self.tree.insert(k, &[][..])?;
            }
            if run.status.is_terminal() {
                let finished = run.finished_at.as_deref().and_then(parse_ms).unwrap_or(0);
                self.tree
                    .insert(keys::finished(finished, &run.id), &[][..])?;
            }
            n += 1;
        }
        self.tree.insert(keys::SCHEMA_KEY, &[keys::SCHEMA][..])?;
        if n > 0 {
            tracing::info!(runs = n, "indexed the run history for this version");
        }
        Ok(())
    }

    fn recover(&self) -> BackendResult<usize> {
        let now = switchboard_model::now_ms();
        let mut ready = Self::lock(&self.ready);
        let mut resumed = 0;
        let pending: Vec<(String, i64)> = self
            .tree
            .scan_prefix(b"p/")
            .map(|item| {
                let (k, v) = self.sled(item)?;
                let id = String::from_utf8_lossy(&k[2..]).into_owned();
                Ok((id, keys::be_i64(&v).unwrap_or(0)))
            })
            .collect::<BackendResult<_>>()?;
        let mut recovered = Vec::new();
        for (id, due) in pending {
            let Some(mut run) = self.read_run(&id)? else {
                self.sled(self.tree.remove(keys::pending(&id)))?;
                continue;
            };
            if run.status.is_terminal() {
                self.sled(self.tree.remove(keys::pending(&id)))?;
                continue;
            }
            if run.attempts == 0 && run.replays == 0 && !self.acknowledged(&run, now)? {
                // Written by a delivery that died before its answer: the sender was never
                // told it arrived, and will deliver it again.
                tracing::info!(run = %id, "dropping a run of an unacknowledged event");
                self.delete_run(&run)?;
                self.sled(self.tree.remove(keys::event(&run.event_id)))?;
                continue;
            }
            let due = if run.status == RunStatus::Running {
                // Its holder died with the host: run it again now, the attempt counted.
                let before = run.clone();
                run.status = RunStatus::Queued;
                run.lease = None;
                run.updated_at = rfc3339(now);
                self.write_run(Some(&before), &run, Some(now))?;
                now
            } else {
                due
            };
            if let Some(key) = &run.order_key {
                ready.key(&run.id, &run.plugin, key);
            }
            if run.source == crate::cron::SOURCE {
                Self::lock(&self.cron_active).insert(run.plugin.clone(), run.id.clone());
            }
            recovered.push((run.id, run.plugin, due));
        }
        // Every key is known now, so each run waits behind the right head.
        for (id, plugin, due) in &recovered {
            ready.queue(id, plugin, *due);
        }
        resumed += recovered.len();
        Ok(resumed)
    }

    /// Whether `run`'s event was acknowledged: its delivery mark is written last, so a mark
    /// naming it says yes; one naming a later event, or none, says yes for an event older
    /// than the window.
    fn acknowledged(&self, run: &RunRecord, now: Ms) -> BackendResult<bool> {
        let Some(event) = self.read_event(&run.event_id)? else {
            return Ok(false);
        };
        let key = keys::delivery(&event.event.source, &event.delivery_id);
        let window = self.window_of(&event);
        Ok(match self.sled(self.tree.get(&key))? {
            Some(v) => {
                let mark: DeliveryMark = keys::decode(&key, &v)?;
                mark.event_id == event.event.id || mark.at_ms - event.received_ms >= window
            }
            None => now - event.received_ms >= window,
        })
    }

    /// The dedup window an event was accepted under (kept with it).
    fn window_of(&self, event: &StoredEvent) -> Ms {
        event.window_ms.unwrap_or(7 * 24 * 3_600_000)
    }

    fn read_run(&self, id: &str) -> BackendResult<Option<RunRecord>> {
        let key = keys::run(id);
        self.sled(self.tree.get(&key))?
            .map(|v| keys::decode(&key, &v))
            .transpose()
    }

    fn read_event(&self, id: &str) -> BackendResult<Option<StoredEvent>> {
        let key = keys::event(id);
        self.sled(self.tree.get(&key))?
            .map(|v| keys::decode(&key, &v))
            .transpose()
    }

    /// Write `after` over `before` (`None`: a new run): the record, its indexes, and
    /// whether it is pending (due at `due`) or finished.
    fn write_run(
        &self,
        before: Option<&RunRecord>,
        after: &RunRecord,
        due: Option<Ms>,
    ) -> BackendResult<()> {
        let created = created_ms(after);
        let mut stored = after.clone();
        stored.waiting_for = None;
        if let Some(before) = before
            && before.status != after.status
        {
            for k in keys::indexes(before, created) {
                self.sled(self.tree.remove(k))?;
            }
        }
        if before.is_none_or(|b| b.status != after.status) {
            for k in keys::indexes(after, created) {
                self.sled(self.tree.insert(k, &[][..]))?;
            }
        }
        if let Some(before) = before
            && before.status.is_terminal()
            && !after.status.is_terminal()
        {
            let finished = before
                .finished_at
                .as_deref()
                .and_then(parse_ms)
                .unwrap_or(0);
            self.sled(self.tree.remove(keys::finished(finished, &before.id)))?;
        }
        if after.status.is_terminal() {
            self.sled(
                self.tree
                    .insert(keys::run(&after.id), keys::encode(&stored)),
            )?;
            self.sled(self.tree.remove(keys::pending(&after.id)))?;
            let finished = after.finished_at.as_deref().and_then(parse_ms).unwrap_or(0);
            self.sled(
                self.tree
                    .insert(keys::finished(finished, &after.id), &[][..]),
            )?;
        } else {
            // Pending first: a crash between the two leaves a pending entry that recovery
            // reads against the record.
            let due = due.unwrap_or(0);
            self.sled(
                self.tree
                    .insert(keys::pending(&after.id), &due.to_be_bytes()[..]),
            )?;
            self.sled(
                self.tree
                    .insert(keys::run(&after.id), keys::encode(&stored)),
            )?;
        }
        Ok(())
    }

    /// Remove a run and all that belongs to it (not its event).
    fn delete_run(&self, run: &RunRecord) -> BackendResult<u64> {
        let created = created_ms(run);
        for k in keys::indexes(run, created) {
            self.sled(self.tree.remove(k))?;
        }
        if run.status.is_terminal() {
            let finished = run.finished_at.as_deref().and_then(parse_ms).unwrap_or(0);
            self.sled(self.tree.remove(keys::finished(finished, &run.id)))?;
        }
        self.sled(self.tree.remove(keys::pending(&run.id)))?;
        self.sled(self.tree.remove(keys::logs(&run.id)))?;
        self.sled(self.tree.remove(keys::run(&run.id)))?;
        let effects = self
            .store
            .effects()
            .forget_run(&run.id)
            .map_err(|e| BackendError::Io(e.to_string()))?;
        Ok(effects as u64)
    }

    /// Write the event, its runs and its delivery mark (last), unless the delivery is a
    /// duplicate; not yet durable.
    fn write_accept(&self, new: &NewEvent) -> BackendResult<Accepted> {
        let event = &new.event;
        let dkey = keys::delivery(&event.source, &new.delivery_id);
        let received = rfc3339(new.received_ms);
        let runs: Vec<RunRecord> = new
            .runs
            .iter()
            .map(|r| {
                let mut run = RunRecord::queued(event, &r.plugin, &received);
                run.order_key = r.order_key.clone();
                run
            })
            .collect();
        let stored = StoredEvent {
            event: event.clone(),
            delivery_id: new.delivery_id.clone(),
            received_at: received.clone(),
            received_ms: new.received_ms,
            window_ms: Some(new.window_ms),
        };
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
        self.sled(
            self.tree
                .insert(keys::event(&event.id), keys::encode(&stored)),
        )?;
        let mut xd = keys::by_delivery(&new.delivery_id);
        xd.extend_from_slice(event.id.as_bytes());
        self.sled(self.tree.insert(xd, &[][..]))?;
        for run in &runs {
            self.write_run(None, run, Some(new.received_ms))?;
        }
        let mark = DeliveryMark {
            event_id: event.id.clone(),
            at_ms: new.received_ms,
        };
        self.sled(self.tree.insert(dkey, keys::encode(&mark)))?;
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

    /// The run with what only the live view knows (whom it waits for).
    fn shown(&self, mut run: RunRecord) -> RunRecord {
        if run.status == RunStatus::Queued {
            run.waiting_for = Self::lock(&self.ready)
                .ahead_of(&run.id)
                .map(str::to_string);
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

    /// Every run id the query's most selective index yields, newest first, in pages of
    /// `batch`, filtered by the rest of the query.
    fn scan(&self, q: &RunQuery, limit: usize) -> BackendResult<(Vec<RunRecord>, bool)> {
        let cursor = q.cursor.as_deref().map(keys::parse_cursor).transpose()?;
        // Candidates come from one or more index ranges, merged newest first.
        let prefixes: Vec<Vec<u8>> = match (&q.plugin, q.statuses.as_slice(), &q.source) {
            (Some(p), [], _) => vec![keys::by_plugin(p)],
            (Some(p), statuses, _) => statuses
                .iter()
                .map(|s| keys::by_plugin_status(p, *s))
                .collect(),
            (None, [], Some(src)) => vec![keys::by_source(src)],
            (None, [], None) => vec![b"r/".to_vec()],
            (None, statuses, _) => statuses.iter().map(|s| keys::by_status(*s)).collect(),
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
            let mut candidates: Vec<(Ms, String)> = Vec::new();
            if prefixes[0] == b"r/" {
                candidates = self.all_runs(q.since_ms, q.until_ms, position.as_ref(), batch)?;
            } else {
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
                candidates.truncate(batch);
            }
            let exhausted = candidates.len() < batch;
            for (created, id) in candidates {
                position = Some((created, id.clone()));
                if let Some(run) = self.read_run(&id)?
                    && matches(&run)
                {
                    out.push(self.shown(run));
                    if out.len() >= limit {
                        return Ok((out, true));
                    }
                }
            }
            if exhausted {
                return Ok((out, false));
            }
        }
    }

    /// Runs with no index to narrow them: the whole `r/` space, newest first.
    fn all_runs(
        &self,
        since: Option<Ms>,
        until: Option<Ms>,
        cursor: Option<&(Ms, String)>,
        limit: usize,
    ) -> BackendResult<Vec<(Ms, String)>> {
        let end = match cursor {
            Some((_, id)) => keys::run(id),
            None => b"r0".to_vec(),
        };
        let mut out = Vec::new();
        for item in self.tree.range(b"r/".to_vec()..end).rev() {
            if out.len() >= limit {
                break;
            }
            let (k, v) = self.sled(item)?;
            let run: RunRecord = keys::decode(&k, &v)?;
            let created = created_ms(&run);
            if since.is_some_and(|s| created < s) || until.is_some_and(|u| created >= u) {
                continue;
            }
            out.push((created, run.id));
        }
        Ok(out)
    }

    fn settled(
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
        Ok(format!(
            "evt_{:016x}",
            self.sled(self.store.db().generate_id())?
        ))
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
        let taken = ready.take(req.now_ms, req.max, req.concurrency);
        let mut claimed = Vec::new();
        for (id, plugin) in taken {
            let Some(before) = self.read_run(&id)? else {
                ready.finish(&id);
                continue;
            };
            if before.status.is_terminal() {
                ready.finish(&id);
                continue;
            }
            let event = self.read_event(&before.event_id)?;
            let token = self.sled(self.store.db().generate_id())? + 1;
            let lease = Lease {
                run: id.clone(),
                token,
                holder: req.holder.to_string(),
                expires_ms: req.now_ms + req.lease_ms,
            };
            let mut run = before.clone();
            let now = rfc3339(req.now_ms);
            run.status = RunStatus::Running;
            run.attempts += 1;
            run.started_at = Some(now.clone());
            run.updated_at = now;
            run.next_attempt_at = None;
            run.lease = Some(lease.clone());
            self.write_run(Some(&before), &run, Some(req.now_ms))?;
            ready.hold(&id, &plugin, lease.clone());
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
        if let Some(before) = self.read_run(&lease.run)? {
            let mut run = before.clone();
            run.lease = Some(extended.clone());
            self.write_run(Some(&before), &run, Some(now_ms))?;
        }
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
        let before = self
            .read_run(&lease.run)?
            .ok_or_else(|| BackendError::NoRun(lease.run.clone()))?;
        let logs = report.logs.clone();
        let released = matches!(settlement, Settlement::Released);
        let (run, due) = Self::settled(before.clone(), now_ms, settlement, report);
        self.write_run(Some(&before), &run, due)?;
        if !released {
            self.sled(self.tree.insert(keys::logs(&run.id), keys::encode(&logs)))?;
        }
        if run.status.is_terminal() {
            ready.finish(&run.id);
            if run.source == crate::cron::SOURCE {
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

    async fn counts(&self) -> BackendResult<(usize, usize)> {
        Ok(Self::lock(&self.ready).counts())
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
        let before = self
            .read_run(id)?
            .ok_or_else(|| BackendError::NoRun(id.to_string()))?;
        let mut run = before.clone();
        run.updated_at = rfc3339(now_ms);
        if run.is_deferred() && !resend_unconfirmed {
            // Held by its recipe: run it now instead (the recipe decides again).
            run.next_attempt_at = None;
            self.write_run(Some(&before), &run, Some(now_ms))?;
            Self::lock(&self.ready).queue(&run.id, &run.plugin, now_ms);
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
        self.write_run(Some(&before), &run, Some(now_ms))?;
        let mut ready = Self::lock(&self.ready);
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
        let mut query = query.clone();
        if query.statuses.is_empty() {
            query.statuses = REPLAYABLE.to_vec();
        }
        query.statuses.retain(|s| s.is_terminal());
        query.cursor = None;
        let (matched, _) = self.scan(&query, usize::MAX)?;
        let mut replayed = Replayed {
            matched: matched.len(),
            queued: Vec::new(),
        };
        if dry_run {
            return Ok(replayed);
        }
        for run in matched {
            match self.replay(&run.id, now_ms, false).await {
                Ok(run) => replayed.queued.push(run.id),
                // Replayed meanwhile by someone else: already on its way.
                Err(BackendError::NotFinished { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(replayed)
    }

    async fn run(&self, id: &str) -> BackendResult<Option<RunRecord>> {
        Ok(self.read_run(id)?.map(|r| self.shown(r)))
    }

    async fn logs(&self, id: &str) -> BackendResult<Vec<LogLine>> {
        let key = keys::logs(id);
        Ok(self
            .sled(self.tree.get(&key))?
            .map(|v| keys::decode(&key, &v))
            .transpose()?
            .unwrap_or_default())
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
            runs.last().map(|r| keys::cursor(created_ms(r), &r.id))
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
        let shortest = policy.keep_succeeded_ms.min(policy.keep_failed_ms);
        let end = keys::finished(now_ms - shortest, "");
        let expired: Vec<(Ms, String)> = self
            .tree
            .range(b"f/".to_vec()..end)
            .keys()
            .map(|k| {
                let k = self.sled(k)?;
                Ok(keys::split_timed(&k, 2).unwrap_or((0, String::new())))
            })
            .collect::<BackendResult<_>>()?;
        for (finished, id) in expired {
            let Some(run) = self.read_run(&id)? else {
                self.sled(self.tree.remove(keys::finished(finished, &id)))?;
                continue;
            };
            let keep = match run.status {
                RunStatus::Succeeded => policy.keep_succeeded_ms,
                RunStatus::Failed | RunStatus::Dead => policy.keep_failed_ms,
                // Not finished (replayed since): kept, and not in this index any more.
                RunStatus::Queued | RunStatus::Running => {
                    self.sled(self.tree.remove(keys::finished(finished, &id)))?;
                    continue;
                }
            };
            if now_ms - finished < keep {
                continue;
            }
            swept.effects += self.delete_run(&run)?;
            swept.runs += 1;
            // The event goes with its last run.
            let siblings = self
                .tree
                .scan_prefix(keys::run(&format!("{}.", run.event_id)))
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
    use crate::conformance::{self, Harness};

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
            // The last handles close as their tasks end; then the store opens again.
            for _ in 0..200 {
                match SledBackend::open(&path) {
                    Ok(b) => return b,
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
                }
            }
            panic!("the store did not open again after the crash");
        }

        async fn torn_accept(&self, backend: &SledBackend, new: NewEvent) {
            // Everything but the delivery mark, which goes last: the host died before it.
            let event = &new.event;
            let received = rfc3339(new.received_ms);
            let stored = StoredEvent {
                event: event.clone(),
                delivery_id: new.delivery_id.clone(),
                received_at: received.clone(),
                received_ms: new.received_ms,
                window_ms: Some(new.window_ms),
            };
            backend
                .tree
                .insert(keys::event(&event.id), keys::encode(&stored))
                .unwrap();
            for r in &new.runs {
                let run = RunRecord::queued(event, &r.plugin, &received);
                backend
                    .write_run(None, &run, Some(new.received_ms))
                    .unwrap();
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sled_passes_the_backend_conformance_suite() {
        conformance::run_all(&Sled::default()).await;
    }
}
