//! What the pipeline records through the `metrics` facade (the binary exports it; without a
//! recorder installed these calls cost an atomic load). Labels stay bounded: recipe names,
//! triggers and outcomes, never run, event or contact ids.

use crate::backend::Settlement;
use std::time::Duration;
use switchboard_model::{RunError, RunRecord};

/// `switchboard_runs_total{recipe, trigger, outcome}`: attempts ended, by how.
pub const RUNS: &str = "switchboard_runs_total";
/// `switchboard_run_duration_seconds{recipe}`: how long an attempt ran in the sandbox.
pub const RUN_DURATION: &str = "switchboard_run_duration_seconds";
/// `switchboard_run_queue_wait_seconds{recipe}`: from an event's arrival to its run's first
/// attempt (a retry's or a deferral's wait is its own choice, not counted here).
pub const QUEUE_WAIT: &str = "switchboard_run_queue_wait_seconds";
/// `switchboard_recipe_interrupts_total{recipe, kind}`: attempts the sandbox stopped.
pub const INTERRUPTS: &str = "switchboard_recipe_interrupts_total";
/// `switchboard_store_write_seconds{op}`: durable writes (`accept`, `settle`) until committed.
pub const STORE_WRITE: &str = "switchboard_store_write_seconds";

/// What set the run off: `cron`, `manual` (the admin API or CLI) or `webhook`.
pub fn trigger(source: &str) -> &'static str {
    match source {
        crate::cron::SOURCE => "cron",
        "manual" => "manual",
        _ => "webhook",
    }
}

/// The label an attempt's end gets; `None` for a release (the run was not attempted).
pub fn outcome(settlement: &Settlement) -> Option<&'static str> {
    Some(match settlement {
        Settlement::Succeeded(_) => "succeeded",
        Settlement::Deferred { .. } => "deferred",
        Settlement::Retry { .. } => "retry",
        Settlement::Failed(_) => "failed",
        Settlement::Dead(_) => "dead",
        Settlement::Released => return None,
    })
}

/// How the sandbox stopped an attempt, when it did: `timeout`, `memory`, `panic` (a Rust
/// panic in the guest), `trap` (any other trap) or `host_panic`.
pub fn interrupt(error: &RunError) -> Option<&'static str> {
    Some(match error {
        RunError::Timeout { .. } => "timeout",
        RunError::MemoryLimit { .. } => "memory",
        RunError::Trap { panic: Some(_), .. } => "panic",
        RunError::Trap { panic: None, .. } => "trap",
        RunError::HostPanic { .. } => "host_panic",
        RunError::Recipe { .. } | RunError::Instantiate { .. } | RunError::NotLoaded { .. } => {
            return None;
        }
    })
}

/// How an attempt ended, in labels: taken before its settlement goes to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ended {
    outcome: &'static str,
    interrupt: Option<&'static str>,
}

impl Ended {
    /// `None` for a release (the run was not attempted).
    pub(crate) fn of(settlement: &Settlement) -> Option<Ended> {
        let error = match settlement {
            Settlement::Retry { error, .. }
            | Settlement::Failed(error)
            | Settlement::Dead(error) => Some(error),
            _ => None,
        };
        Some(Ended {
            outcome: outcome(settlement)?,
            interrupt: error.and_then(interrupt),
        })
    }

    /// Record the attempt of `run` (as settled), after `duration_us` in the sandbox.
    pub(crate) fn record(self, run: &RunRecord, duration_us: Option<u64>) {
        let recipe = run.plugin.clone();
        metrics::counter!(RUNS, "recipe" => recipe.clone(), "trigger" => trigger(&run.source), "outcome" => self.outcome)
            .increment(1);
        if let Some(us) = duration_us {
            metrics::histogram!(RUN_DURATION, "recipe" => recipe.clone()).record(us as f64 / 1e6);
        }
        if let Some(kind) = self.interrupt {
            metrics::counter!(INTERRUPTS, "recipe" => recipe, "kind" => kind).increment(1);
        }
    }
}

/// Record a claimed run's wait, when this is its first attempt: from its event's arrival.
pub(crate) fn started(run: &RunRecord, now_ms: i64) {
    if run.attempts != 1 || run.replays != 0 || run.deferrals != 0 {
        return;
    }
    let Ok(created) = chrono::DateTime::parse_from_rfc3339(&run.created_at) else {
        return;
    };
    let waited = (now_ms - created.timestamp_millis()).max(0);
    metrics::histogram!(QUEUE_WAIT, "recipe" => run.plugin.clone()).record(waited as f64 / 1e3);
}

/// Record a durable write of kind `op` that took `took`.
pub(crate) fn store_write(op: &'static str, took: Duration) {
    metrics::histogram!(STORE_WRITE, "op" => op).record(took.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_a_closed_set() {
        assert_eq!(trigger("cron"), "cron");
        assert_eq!(trigger("manual"), "manual");
        assert_eq!(trigger("housecallpro"), "webhook");
        assert_eq!(outcome(&Settlement::Released), None);
        assert_eq!(
            interrupt(&RunError::Timeout { deadline_ms: 1 }),
            Some("timeout")
        );
        assert_eq!(
            interrupt(&RunError::Trap {
                message: "unreachable".into(),
                panic: Some("boom".into())
            }),
            Some("panic")
        );
        assert_eq!(interrupt(&RunError::NotLoaded { recipe: "x".into() }), None);
    }
}
