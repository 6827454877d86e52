//! The sled backend's in-memory view of what can run: queued runs by due time, one heap per
//! recipe; running runs with their leases; runs waiting behind an earlier run with the same
//! ordering key. sled allows one process per store, so this view is the whole truth about
//! who holds what; the durable records are rebuilt into it at open.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use switchboard_model::{Lease, RunRecord};

type Ms = i64;

/// A run's place in the ordering of its key: (recipe, key).
type KeyOf = (String, String);

#[derive(Default)]
pub(super) struct Ready {
    /// Queued runs that may run once due (not waiting behind their key), per recipe.
    heaps: HashMap<String, BinaryHeap<Reverse<(Ms, String)>>>,
    /// The due time of every run in a heap (a run is in at most one heap once).
    due: HashMap<String, (String, Ms)>,
    /// Running runs: their recipe and lease.
    running: HashMap<String, (String, Lease)>,
    /// Running runs as claimed (what a settle starts from).
    held: HashMap<String, RunRecord>,
    running_per_plugin: HashMap<String, usize>,
    /// Unfinished runs with an ordering key, in acceptance order (run ids sort so).
    keys: HashMap<KeyOf, BTreeSet<String>>,
    keyed: HashMap<String, KeyOf>,
    /// Keyed runs queued behind their key's head: their recipe and due time, until they
    /// are the head.
    parked: HashMap<String, (String, Ms)>,
}

impl Ready {
    /// Add an unfinished keyed run to its key's order (at open, or when accepted).
    pub fn key(&mut self, run: &str, plugin: &str, key: &str) {
        let k = (plugin.to_string(), key.to_string());
        self.keys
            .entry(k.clone())
            .or_default()
            .insert(run.to_string());
        self.keyed.insert(run.to_string(), k);
    }

    /// The run ahead of `run` in its key's order, if it waits for one.
    pub fn ahead_of(&self, run: &str) -> Option<&str> {
        let k = self.keyed.get(run)?;
        let first = self.keys.get(k)?.iter().next()?;
        (first != run).then_some(first.as_str())
    }

    /// Queue `run` of `plugin`, due at `due`: runnable once due, unless it waits behind its
    /// key (then parked until it is the key's head). An earlier due time wins.
    pub fn queue(&mut self, run: &str, plugin: &str, due: Ms) {
        if self.ahead_of(run).is_some() {
            let slot = self
                .parked
                .entry(run.to_string())
                .or_insert((plugin.to_string(), due));
            slot.1 = slot.1.min(due);
            return;
        }
        if let Some((_, current)) = self.due.get(run)
            && *current <= due
        {
            return;
        }
        self.due.insert(run.to_string(), (plugin.to_string(), due));
        self.heaps
            .entry(plugin.to_string())
            .or_default()
            .push(Reverse((due, run.to_string())));
    }

    /// `run` is no longer queued (settled, or taken by a claim elsewhere in this process).
    fn unqueue(&mut self, run: &str) {
        self.due.remove(run);
        self.parked.remove(run);
        // Heap entries without a `due` are skipped when popped.
    }

    /// `run` finished for good: leave its key's order, and let the next one in.
    pub fn finish(&mut self, run: &str) {
        self.unqueue(run);
        self.release(run);
        if let Some(k) = self.keyed.remove(run) {
            let next = match self.keys.get_mut(&k) {
                Some(set) => {
                    set.remove(run);
                    let next = set.iter().next().cloned();
                    if set.is_empty() {
                        self.keys.remove(&k);
                    }
                    next
                }
                None => None,
            };
            if let Some(next) = next
                && let Some((plugin, due)) = self.parked.remove(&next)
            {
                self.queue(&next, &plugin, due);
            }
        }
    }

    /// `run` holds `lease` now; `record` is the run as claimed.
    pub fn hold(&mut self, run: &str, plugin: &str, lease: Lease, record: RunRecord) {
        self.unqueue(run);
        self.held.insert(run.to_string(), record);
        if self
            .running
            .insert(run.to_string(), (plugin.to_string(), lease))
            .is_none()
        {
            *self
                .running_per_plugin
                .entry(plugin.to_string())
                .or_default() += 1;
        }
    }

    /// The lease `run` is held under, if it is running.
    pub fn lease(&self, run: &str) -> Option<&Lease> {
        self.running.get(run).map(|(_, l)| l)
    }

    pub fn set_lease(&mut self, lease: Lease) {
        if let Some(record) = self.held.get_mut(&lease.run) {
            record.lease = Some(lease.clone());
        }
        if let Some((_, l)) = self.running.get_mut(&lease.run) {
            *l = lease;
        }
    }

    /// The run as claimed, while it is held.
    pub fn held(&self, run: &str) -> Option<&RunRecord> {
        self.held.get(run)
    }

    /// Unfinished runs: queued ones (waiting behind their key included) and/or running
    /// ones, of `plugin` or all.
    pub fn unfinished(&self, queued: bool, running: bool, plugin: Option<&str>) -> Vec<String> {
        let of = |p: &String| plugin.is_none_or(|want| want == p);
        let mut out = Vec::new();
        if queued {
            out.extend(
                self.due
                    .iter()
                    .chain(self.parked.iter())
                    .filter(|(_, (p, _))| of(p))
                    .map(|(run, _)| run.clone()),
            );
        }
        if running {
            out.extend(
                self.running
                    .iter()
                    .filter(|(_, (p, _))| of(p))
                    .map(|(run, _)| run.clone()),
            );
        }
        out
    }

    /// `run` is not running any more.
    pub fn release(&mut self, run: &str) {
        self.held.remove(run);
        if let Some((plugin, _)) = self.running.remove(run)
            && let Some(n) = self.running_per_plugin.get_mut(&plugin)
        {
            *n = n.saturating_sub(1);
        }
    }

    /// Runs whose lease has expired by `now`: their holder is gone; they may be taken over.
    pub fn expired(&self, now: Ms) -> Vec<(String, String)> {
        self.running
            .iter()
            .filter(|(_, (_, l))| l.expires_ms <= now)
            .map(|(run, (plugin, _))| (run.clone(), plugin.clone()))
            .collect()
    }

    /// Take up to `max` runs due by `now`, earliest first, while their recipe has fewer than
    /// `limit(recipe)` running. Taken runs leave the queue; the caller holds them.
    pub fn take(
        &mut self,
        now: Ms,
        max: usize,
        limit: &(dyn Fn(&str) -> usize + Sync),
    ) -> Vec<(String, String)> {
        let mut taken = Vec::new();
        while taken.len() < max {
            let mut best: Option<(Ms, &str)> = None;
            for (plugin, heap) in self.heaps.iter_mut() {
                // Drop stale entries (runs no longer queued, or queued again for earlier).
                while let Some(Reverse((due, run))) = heap.peek() {
                    match self.due.get(run) {
                        Some((_, d)) if d == due => break,
                        _ => {
                            heap.pop();
                        }
                    }
                }
                let Some(Reverse((due, _))) = heap.peek() else {
                    continue;
                };
                let running = self.running_per_plugin.get(plugin).copied().unwrap_or(0);
                if *due > now || running >= limit(plugin) {
                    continue;
                }
                if best.is_none_or(|(d, _)| *due < d) {
                    best = Some((*due, plugin));
                }
            }
            let Some((_, plugin)) = best else {
                break;
            };
            let plugin = plugin.to_string();
            let Some(Reverse((_, run))) = self.heaps.get_mut(&plugin).and_then(BinaryHeap::pop)
            else {
                break;
            };
            self.due.remove(&run);
            // Counted now, so the limit holds within this claim; `hold` keeps the count.
            *self.running_per_plugin.entry(plugin.clone()).or_default() += 1;
            self.running.insert(
                run.clone(),
                (
                    plugin.clone(),
                    Lease {
                        run: run.clone(),
                        token: 0,
                        holder: String::new(),
                        expires_ms: Ms::MAX,
                    },
                ),
            );
            taken.push((run, plugin));
        }
        taken
    }

    /// The earliest due time of a runnable run, or lease expiry.
    pub fn next_due(&self) -> Option<Ms> {
        // The heads of the heaps (a stale head only wakes the dispatcher early).
        let queued = self
            .heaps
            .values()
            .filter_map(|h| h.peek().map(|Reverse((d, _))| *d))
            .min();
        let expiry = self.running.values().map(|(_, l)| l.expires_ms).min();
        match (queued, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Queued runs due at `now` and later, running runs, and the oldest due time.
    pub fn counts(&self, now: Ms) -> switchboard_pipeline::backend::QueueCounts {
        let mut counts = switchboard_pipeline::backend::QueueCounts {
            running: self.running.len(),
            ..Default::default()
        };
        for (_, due) in self.due.values().chain(self.parked.values()) {
            if *due <= now {
                counts.due += 1;
                counts.oldest_due_ms = Some(counts.oldest_due_ms.map_or(*due, |o| o.min(*due)));
            } else {
                counts.later += 1;
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(run: &str) -> RunRecord {
        let (event, plugin) = run.split_once('.').unwrap();
        let event = switchboard_model::Event::new(event, "s", "k", "t", &serde_json::json!({}));
        RunRecord::queued(&event, plugin, "t")
    }

    fn lease(run: &str, expires_ms: Ms) -> Lease {
        Lease {
            run: run.into(),
            token: 1,
            holder: "h".into(),
            expires_ms,
        }
    }

    #[test]
    fn limits_order_and_keys() {
        let mut r = Ready::default();
        let one = |_: &str| 1;
        r.queue("e1.a", "a", 5);
        r.queue("e2.a", "a", 1);
        r.queue("e3.b", "b", 3);
        assert!(r.take(0, 10, &one).is_empty(), "nothing due");
        let taken = r.take(10, 10, &one);
        // `a` may run one at a time: its earliest, then `b`.
        assert_eq!(
            taken,
            vec![("e2.a".into(), "a".into()), ("e3.b".into(), "b".into())]
        );
        r.hold("e2.a", "a", lease("e2.a", 100), record("e2.a"));
        r.finish("e2.a");
        assert_eq!(r.take(10, 10, &one), vec![("e1.a".into(), "a".into())]);

        // Keyed: e5 waits behind e4 (same key), e6 (another key) does not.
        let mut r = Ready::default();
        let many = |_: &str| 10;
        for (run, key) in [("e4.a", "k"), ("e5.a", "k"), ("e6.a", "j")] {
            r.key(run, "a", key);
            r.queue(run, "a", 0);
        }
        assert_eq!(r.ahead_of("e5.a"), Some("e4.a"));
        let taken: Vec<String> = r.take(1, 10, &many).into_iter().map(|(r, _)| r).collect();
        assert_eq!(taken, vec!["e4.a", "e6.a"]);
        r.hold("e4.a", "a", lease("e4.a", 100), record("e4.a"));
        // A retry keeps it the head: e5 still waits.
        r.release("e4.a");
        r.queue("e4.a", "a", 50);
        assert!(r.take(10, 10, &many).is_empty());
        let taken = r.take(60, 10, &many);
        assert_eq!(taken[0].0, "e4.a");
        r.hold("e4.a", "a", lease("e4.a", 100), record("e4.a"));
        r.finish("e4.a");
        assert_eq!(r.take(60, 10, &many)[0].0, "e5.a");
    }

    #[test]
    fn expired_leases_and_next_due() {
        let mut r = Ready::default();
        r.queue("e1.a", "a", 30);
        r.hold("e2.a", "a", lease("e2.a", 20), record("e2.a"));
        assert_eq!(r.next_due(), Some(20));
        assert_eq!(r.expired(19), vec![]);
        assert_eq!(r.expired(20), vec![("e2.a".to_string(), "a".to_string())]);
        let counts = r.counts(29);
        assert_eq!((counts.due, counts.later, counts.running), (0, 1, 1));
        assert_eq!(r.counts(31).oldest_due_ms, Some(30));
    }
}
