//! Moving a store to another backend (`switchboard store copy`): what one backend exports
//! and another imports, in neither's terms.

use crate::backend::Ms;
use switchboard_model::effect::Effect;
use switchboard_model::{LogLine, RunRecord, StoredEvent};

/// A run as it moves: its record, when it is due (unfinished runs), its log.
#[derive(Debug, Clone)]
pub struct MovedRun {
    pub run: RunRecord,
    /// Unfinished runs: when they may run (a deferral's or retry's time, or now).
    pub due_ms: Option<Ms>,
    pub logs: Vec<LogLine>,
}

/// A delivery id seen, remembered for dedup.
#[derive(Debug, Clone)]
pub struct MovedDelivery {
    pub source: String,
    pub delivery_id: String,
    pub event_id: String,
    pub at_ms: Ms,
}

/// One journaled call.
#[derive(Debug, Clone)]
pub struct MovedEffect {
    pub run: String,
    pub fingerprint: Vec<u8>,
    pub occurrence: u32,
    pub effect: Effect,
}

/// Everything a store holds that a move keeps: runs (unfinished and the history kept) with
/// their events, logs and effect journal, delivery ids within the dedup window, recipe kv,
/// cron ticks, vendor quota counters, paused recipes.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub events: Vec<StoredEvent>,
    pub runs: Vec<MovedRun>,
    pub deliveries: Vec<MovedDelivery>,
    pub effects: Vec<MovedEffect>,
    /// (recipe, key, value)
    pub kv: Vec<(String, String, Vec<u8>)>,
    /// (recipe, trigger, last tick)
    pub ticks: Vec<(String, usize, Ms)>,
    /// (key, units used)
    pub counters: Vec<(String, u64)>,
    /// Recipes paused by an operator.
    pub paused: Vec<String>,
}

impl Snapshot {
    /// What it holds, as one line.
    pub fn summary(&self) -> String {
        let unfinished = self
            .runs
            .iter()
            .filter(|r| !r.run.status.is_terminal())
            .count();
        format!(
            "{} events, {} runs ({} unfinished), {} delivery ids, {} journaled calls, {} kv keys, {} cron ticks, {} quota counters, {} paused recipes",
            self.events.len(),
            self.runs.len(),
            unfinished,
            self.deliveries.len(),
            self.effects.len(),
            self.kv.len(),
            self.ticks.len(),
            self.counters.len(),
            self.paused.len()
        )
    }
}
