//! The in-memory run queue: one heap per plugin, ordered by due time, with a global and a
//! per-plugin limit on runs in flight. The durable truth is the journal's pending index;
//! this is rebuilt from it at start.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Mutex;
use tokio::sync::Notify;

#[derive(Default)]
struct State {
    heaps: HashMap<String, BinaryHeap<Reverse<(i64, String)>>>,
    running: HashMap<String, usize>,
    total_running: usize,
    /// Runs queued or running, so a run is never queued twice.
    present: HashSet<String>,
    running_ids: HashSet<String>,
    /// Runs queued again (replayed) while still running: queued when they finish.
    again: HashMap<String, (String, i64)>,
}

/// What the scheduler should do next.
pub enum Next {
    /// Run this (plugin, run id) now; its slot is taken.
    Run(String, String),
    /// Nothing is due for this many milliseconds (or until woken).
    Wait(Option<i64>),
}

pub struct Queue {
    state: Mutex<State>,
    workers: usize,
    per_plugin: usize,
    limits: HashMap<String, usize>,
    pub(crate) wake: Notify,
    pub(crate) idle: Notify,
}

impl Queue {
    pub fn new(workers: usize, per_plugin: usize, limits: HashMap<String, usize>) -> Self {
        Queue {
            state: Mutex::new(State::default()),
            workers: workers.max(1),
            per_plugin: per_plugin.max(1),
            limits,
            wake: Notify::new(),
            idle: Notify::new(),
        }
    }

    fn limit(&self, plugin: &str) -> usize {
        self.limits.get(plugin).copied().unwrap_or(self.per_plugin)
    }

    /// Queue a run due at `due_ms`. A run that is running now (its final state may be
    /// written already) is queued again when it finishes; a run queued already is only
    /// brought forward (a replay of a deferred run), never put back: false when unchanged.
    pub fn push(&self, plugin: &str, run_id: &str, due_ms: i64) -> bool {
        let mut s = self.state.lock().unwrap();
        if s.running_ids.contains(run_id) {
            s.again
                .insert(run_id.to_string(), (plugin.to_string(), due_ms));
            return true;
        }
        if !s.present.insert(run_id.to_string()) {
            let heap = s.heaps.entry(plugin.to_string()).or_default();
            if !heap
                .iter()
                .any(|Reverse((due, id))| id == run_id && *due > due_ms)
            {
                return false;
            }
            heap.retain(|Reverse((_, id))| id != run_id);
            heap.push(Reverse((due_ms, run_id.to_string())));
            drop(s);
            self.wake.notify_one();
            return true;
        }
        s.heaps
            .entry(plugin.to_string())
            .or_default()
            .push(Reverse((due_ms, run_id.to_string())));
        drop(s);
        self.wake.notify_one();
        true
    }

    /// Take the earliest due run whose plugin has a free slot.
    pub fn next(&self, now_ms: i64) -> Next {
        let mut s = self.state.lock().unwrap();
        if s.total_running >= self.workers {
            return Next::Wait(None);
        }
        let mut best: Option<(i64, &str)> = None;
        for (plugin, heap) in &s.heaps {
            let Some(Reverse((due, _))) = heap.peek() else {
                continue;
            };
            if s.running.get(plugin).copied().unwrap_or(0) >= self.limit(plugin) {
                continue;
            }
            if best.is_none_or(|(d, _)| *due < d) {
                best = Some((*due, plugin));
            }
        }
        let Some((due, plugin)) = best else {
            return Next::Wait(None);
        };
        if due > now_ms {
            return Next::Wait(Some(due - now_ms));
        }
        let plugin = plugin.to_string();
        let Reverse((_, run_id)) = s.heaps.get_mut(&plugin).unwrap().pop().unwrap();
        *s.running.entry(plugin.clone()).or_default() += 1;
        s.total_running += 1;
        s.running_ids.insert(run_id.clone());
        Next::Run(plugin, run_id)
    }

    /// A run taken with [`Queue::next`] is over (done, or queued again with `push`).
    pub fn finish(&self, plugin: &str, run_id: &str) {
        let mut s = self.state.lock().unwrap();
        if let Some(n) = s.running.get_mut(plugin) {
            *n = n.saturating_sub(1);
        }
        s.total_running = s.total_running.saturating_sub(1);
        s.running_ids.remove(run_id);
        s.present.remove(run_id);
        if let Some((plugin, due)) = s.again.remove(run_id) {
            s.present.insert(run_id.to_string());
            s.heaps
                .entry(plugin)
                .or_default()
                .push(Reverse((due, run_id.to_string())));
        }
        let idle = s.total_running == 0;
        drop(s);
        self.wake.notify_one();
        if idle {
            self.idle.notify_waiters();
        }
    }

    /// Runs executing now.
    pub fn running(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .running_ids
            .iter()
            .cloned()
            .collect()
    }

    /// (queued, running) counts.
    pub fn counts(&self) -> (usize, usize) {
        let s = self.state.lock().unwrap();
        let running = s.total_running;
        (s.present.len() - running, running)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_order() {
        let q = Queue::new(2, 1, HashMap::new());
        assert!(q.push("a", "a1", 5));
        assert!(q.push("a", "a2", 1));
        assert!(!q.push("a", "a2", 1), "queued twice");
        assert!(q.push("b", "b1", 3));
        assert!(matches!(q.next(0), Next::Wait(Some(1))));
        let Next::Run(p, id) = q.next(10) else {
            panic!()
        };
        assert_eq!((p.as_str(), id.as_str()), ("a", "a2"));
        // `a` is at its limit of 1, so `b` goes next although `a1` is older.
        let Next::Run(_, id) = q.next(10) else {
            panic!()
        };
        assert_eq!(id, "b1");
        assert!(matches!(q.next(10), Next::Wait(None)), "global limit 2");
        q.finish("a", "a2");
        let Next::Run(_, id) = q.next(10) else {
            panic!()
        };
        assert_eq!(id, "a1");
        // Replayed while running: queued again once it finishes.
        assert!(q.push("a", "a1", 20));
        q.finish("a", "a1");
        let Next::Run(_, id) = q.next(20) else {
            panic!()
        };
        assert_eq!(id, "a1");
        assert_eq!(q.counts(), (0, 2));
    }

    #[test]
    fn a_queued_run_is_only_ever_brought_forward() {
        let q = Queue::new(2, 2, HashMap::new());
        assert!(q.push("a", "held", 1_000));
        assert!(!q.push("a", "held", 2_000), "not put back");
        assert!(matches!(q.next(0), Next::Wait(Some(1_000))));
        assert!(q.push("a", "held", 5), "brought forward");
        assert_eq!(q.counts(), (1, 0), "still queued once");
        let Next::Run(_, id) = q.next(5) else {
            panic!()
        };
        assert_eq!(id, "held");
        assert!(matches!(q.next(5), Next::Wait(None)), "no second copy");
    }
}
