//! The workers: claim due runs from the backend (with a lease), run each in the runtime while
//! keeping its lease alive, and settle it with what the retry policy makes of its report.
//!
//! A worker slot is held from claim to settle; it is given back however the attempt ends,
//! a panic in host code included (the run then fails with the panic's message).

use crate::backend::{
    AttemptReport, BackendError, ClaimRequest, Claimed, Concurrency, Lease, Settlement,
};
use crate::{Pipeline, now_ms};
use futures_util::FutureExt;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use switchboard_model::backoff::Backoff;
use switchboard_model::{Outcome, RecipeError, RunError, RunRecord, RunStatus, bound_text};
use tracing::Instrument;

/// How long the dispatcher sleeps at most between looks at the backend (work can also come
/// from another host, which may not wake this one).
const POLL: Duration = Duration::from_secs(1);

/// The dispatcher: runs until the pipeline stops.
pub async fn run(pipeline: Arc<Pipeline>) {
    loop {
        if pipeline.is_stopping() {
            break;
        }
        let free = pipeline.options.workers.saturating_sub(
            pipeline
                .held
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .len(),
        );
        let mut claimed = Vec::new();
        let claimed_at = now_ms();
        if free > 0 {
            match pipeline.claim(free).await {
                Ok(c) => claimed = c,
                Err(e) => {
                    tracing::error!("claiming runs failed: {e}");
                    tokio::time::sleep(POLL).await;
                    continue;
                }
            }
        }
        // Every free slot filled: there may be more to take as soon as one frees. Fewer:
        // nothing else can be taken now, and the next accept, settle or due time wakes us.
        let filled = free > 0 && claimed.len() == free;
        let took = !claimed.is_empty();
        for c in claimed {
            pipeline
                .held
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(c.lease.run.clone(), c.lease.clone());
            let p = pipeline.clone();
            tokio::spawn(async move { p.guarded(c).await });
        }
        if filled {
            continue;
        }
        // Nothing more to take now: sleep until something is due, work arrives, or a slot
        // frees. (After a claim that took something, runs are flowing and their settles
        // wake us: the next due time is only asked when there was nothing at all.)
        // A run due before the claim that took nothing is held back (its recipe at its
        // limit or paused, its key busy): what frees it wakes us, so no polling for it. A
        // backend may also leave a run to another host for a moment (PostgreSQL: to the
        // host holding the most of its recipe's runs); if that host does not take it, we
        // do at our next wake-up or poll, on purpose (waking for each such run had idle
        // hosts claim every few milliseconds: docs/benchmarks.md, run 18).
        let wait = if free == 0 || took {
            POLL
        } else {
            match pipeline.backend.next_due().await {
                Ok(Some(due)) if due > claimed_at => {
                    Duration::from_millis((due - now_ms()).clamp(1, 1000) as u64)
                }
                _ => POLL,
            }
        };
        tokio::select! {
            _ = pipeline.backend.wait_for_work(wait) => {}
            _ = pipeline.slot_freed.notified() => {}
        }
    }
}

/// Deferrals are held at least a second (no busy loop on a past instant) and at most 31 days.
const DEFER_MIN_MS: i64 = 1_000;
const DEFER_MAX_MS: i64 = 31 * 24 * 3_600_000;

/// When a run deferred until `until` (RFC 3339) runs again, as Unix milliseconds.
pub fn deferral_due(until: &str, now: i64) -> Result<i64, String> {
    let at = switchboard_model::parse_ms(until)
        .ok_or_else(|| format!("'{until}' is not an RFC 3339 instant"))?;
    if at > now + DEFER_MAX_MS {
        return Err(format!("'{until}' is more than 31 days away"));
    }
    Ok(at.max(now + DEFER_MIN_MS))
}

fn retry_after(error: &RunError) -> Option<u64> {
    match error {
        RunError::Recipe {
            error: RecipeError::RateLimited { retry_after_ms },
        } => *retry_after_ms,
        _ => None,
    }
}

impl Pipeline {
    /// Run claimed attempts in one worker slot, which goes back however an attempt ends (a
    /// panic in host code fails the run with the panic's message). An attempt's settle
    /// claims the slot's next due run in the same call, if there is one: the slot runs it
    /// without a round trip through the dispatcher.
    pub(crate) async fn guarded(self: Arc<Self>, mut claimed: Claimed) {
        loop {
            let lease = claimed.lease.clone();
            let attempt = std::panic::AssertUnwindSafe(self.attempt(claimed)).catch_unwind();
            let next = match attempt.await {
                Ok(next) => next,
                Err(panic) => {
                    let mut message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "a panic without a message".into());
                    bound_text(&mut message, 4096);
                    tracing::error!(run = %lease.run, panic = %message.escape_debug(), "host code panicked during a run");
                    let error = RunError::HostPanic { message };
                    self.settle(
                        &lease,
                        Settlement::Failed(error),
                        AttemptReport::default(),
                        false,
                    )
                    .await
                }
            };
            // The next run is held before this one is let go, so the dispatcher never
            // counts the slot free twice.
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(next) = &next {
                held.insert(next.lease.run.clone(), next.lease.clone());
            }
            held.remove(&lease.run);
            drop(held);
            match next {
                Some(next) => claimed = next,
                None => break,
            }
        }
        self.slot_freed.notify_one();
    }

    /// Each recipe's limit of runs in flight: as configured, none for a paused recipe.
    async fn recipe_limits(&self) -> Cow<'_, HashMap<String, usize>> {
        let paused = self.paused().await;
        if paused.is_empty() {
            Cow::Borrowed(&self.options.plugin_concurrency)
        } else {
            let mut with_paused = self.options.plugin_concurrency.clone();
            with_paused.extend(paused.into_iter().map(|r| (r, 0)));
            Cow::Owned(with_paused)
        }
    }

    /// A claim of up to `max` due runs for this host, under the configured concurrency
    /// (`per_recipe`: [`recipe_limits`](Self::recipe_limits)) and lease.
    fn claim_request<'a>(
        &'a self,
        max: usize,
        per_recipe: &'a HashMap<String, usize>,
    ) -> ClaimRequest<'a> {
        ClaimRequest {
            holder: &self.holder,
            now_ms: now_ms(),
            lease_ms: self.options.lease.as_millis() as i64,
            max,
            concurrency: Concurrency {
                default: self.options.per_plugin,
                per_recipe,
            },
        }
    }

    /// Claim up to `max` due runs for this host.
    async fn claim(&self, max: usize) -> Result<Vec<Claimed>, BackendError> {
        let limits = self.recipe_limits().await;
        self.backend.claim(self.claim_request(max, &limits)).await
    }

    /// One attempt of a claimed run: run it, keeping its lease alive, and settle it; returns
    /// the run its slot claimed next, if any.
    async fn attempt(&self, claimed: Claimed) -> Option<Claimed> {
        let Claimed { run, event, lease } = claimed;
        crate::metrics::started(&run, now_ms());
        // No span at all for an attempt whose trace is not exported (sampled out).
        let traces = self.traces.get();
        let wanted = traces.map(|t| t.wanted(&run.event_id));
        let span = if wanted == Some(false) {
            tracing::Span::none()
        } else {
            tracing::info_span!(
                "run",
                run = %run.id,
                event = %run.event_id,
                recipe = %run.plugin,
                attempt = run.attempts,
            )
        };
        let trace_id = match (traces, wanted) {
            (Some(t), Some(true)) => t.attempt(&span, &run.event_id),
            _ => None,
        };
        let plugin = self.registry.current().get(&run.plugin).cloned();
        let work = async {
            match (event, plugin) {
                (None, _) => (
                    Err(RunError::Trap {
                        message: format!("event {} is missing from the store", run.event_id),
                        panic: None,
                    }),
                    AttemptReport::default(),
                ),
                (Some(_), None) => (
                    Err(RunError::NotLoaded {
                        recipe: run.plugin.clone(),
                    }),
                    AttemptReport::default(),
                ),
                (Some(stored), Some(plugin)) => {
                    let report = self.runtime.run(&plugin, &stored.event).await;
                    let result = match (report.outcome, report.error) {
                        (Some(o), _) => Ok(o),
                        (None, Some(e)) => Err(e),
                        (None, None) => unreachable!("a run report has an outcome or an error"),
                    };
                    let attempt = AttemptReport {
                        duration_us: Some(report.duration_us),
                        plugin_version: Some(plugin.manifest.version.clone()),
                        logs: report.logs,
                        logs_dropped: report.logs_dropped,
                        unconfirmed: report.unconfirmed,
                        trace_id: None,
                        calls: report.calls,
                        calls_dropped: report.calls_dropped,
                    };
                    (result, attempt)
                }
            }
        };
        // The lease as last extended: its expiry tells the settle whether it still held.
        let (lease, (result, mut report)) =
            self.renewing(lease, work).instrument(span.clone()).await;
        report.trace_id = trace_id;
        let settlement = self.settlement(&run, result);
        self.settle(&lease, settlement, report, true)
            .instrument(span)
            .await
    }

    /// Drive `work` to its end, extending `lease` every third of its length meanwhile (in
    /// this task: no task of its own per run); returns the lease as last extended, and what
    /// `work` returned.
    async fn renewing<T>(
        &self,
        mut lease: Lease,
        work: impl std::future::Future<Output = T>,
    ) -> (Lease, T) {
        let length = self.options.lease;
        let mut renewing = true;
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return (lease, out),
                _ = tokio::time::sleep(length / 3), if renewing => {
                    match self
                        .backend
                        .extend(&lease, now_ms(), length.as_millis() as i64)
                        .await
                    {
                        Ok(extended) => lease = extended,
                        Err(e) => {
                            tracing::warn!(run = %lease.run, "could not extend the run's lease: {e}");
                            // Taken over: the run's result will be refused; let it end.
                            renewing = !matches!(e, BackendError::Stale { .. });
                        }
                    }
                }
            }
        }
    }

    /// What the retry policy makes of an attempt's result.
    fn settlement(&self, run: &RunRecord, result: Result<Outcome, RunError>) -> Settlement {
        let now = now_ms();
        let result = result.and_then(|outcome| match outcome {
            Outcome::Deferred { .. } if run.deferrals >= self.options.max_deferrals => {
                Err(RunError::Recipe {
                    error: RecipeError::Other {
                        message: format!("deferred {} times; not held any longer", run.deferrals),
                    },
                })
            }
            Outcome::Deferred { ref until, .. } => match deferral_due(until, now) {
                Ok(due_ms) => Ok(Settlement::Deferred { outcome, due_ms }),
                Err(reason) => Err(RunError::Recipe {
                    error: RecipeError::invalid("deferral.until", reason),
                }),
            },
            outcome => Ok(Settlement::Succeeded(outcome)),
        });
        match result {
            Ok(settlement) => settlement,
            Err(error) if error.is_retryable() && run.attempts < self.options.max_attempts => {
                let backoff = Backoff {
                    base: self.options.retry_base,
                    max: self.options.retry_max,
                };
                let delay = backoff.delay_honouring(
                    run.attempts,
                    fastrand::f64(),
                    retry_after(&error).map(Duration::from_millis),
                );
                Settlement::Retry {
                    error,
                    due_ms: now + delay.as_millis() as i64,
                }
            }
            Err(error) if error.is_retryable() => Settlement::Dead(error),
            Err(error) => Settlement::Failed(error),
        }
    }

    /// Record how an attempt ended, and announce it. With `take_next` (and the pipeline not
    /// stopping), the same call claims the slot's next due run, returned.
    pub(crate) async fn settle(
        &self,
        lease: &Lease,
        settlement: Settlement,
        report: AttemptReport,
        take_next: bool,
    ) -> Option<Claimed> {
        let counter = match &settlement {
            Settlement::Succeeded(_) => Some(&self.counters.succeeded),
            Settlement::Deferred { .. } => Some(&self.counters.deferred),
            Settlement::Retry { .. } => Some(&self.counters.retried),
            Settlement::Failed(_) => Some(&self.counters.failed),
            Settlement::Dead(_) => Some(&self.counters.dead),
            Settlement::Released => None,
        };
        let announce = !matches!(settlement, Settlement::Retry { .. } | Settlement::Released);
        let duration_us = report.duration_us;
        let ended = crate::metrics::Ended::of(&settlement);
        let started = std::time::Instant::now();
        let settled = if take_next && !self.is_stopping() {
            let limits = self.recipe_limits().await;
            let next = self.claim_request(1, &limits);
            let now = next.now_ms;
            // Another slot of this host is free: the dispatcher's claims take the other
            // recipes' runs, so this slot may keep its recipe's room.
            let handover =
                self.held.lock().unwrap_or_else(|e| e.into_inner()).len() < self.options.workers;
            self.backend
                .settle_then_claim(lease, now, settlement, report, next, handover)
                .await
        } else {
            self.backend
                .settle(lease, now_ms(), settlement, report)
                .await
                .map(|run| (run, Vec::new()))
        };
        crate::metrics::store_write("settle", started.elapsed());
        match settled {
            Ok((run, mut next)) => {
                if let Some(counter) = counter {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(ended) = ended {
                    ended.record(&run, duration_us);
                }
                match run.status {
                    RunStatus::Queued if run.is_deferred() => {
                        tracing::info!(run = %run.id, next = ?run.next_attempt_at, "run deferred")
                    }
                    RunStatus::Queued => {
                        tracing::info!(run = %run.id, attempt = run.attempts, next = ?run.next_attempt_at, reason = ?run.reason, "run will be retried")
                    }
                    RunStatus::Dead => {
                        tracing::warn!(run = %run.id, attempts = run.attempts, reason = ?run.reason, "run is dead: out of attempts")
                    }
                    _ => {}
                }
                let next = next.pop();
                // The slot took its recipe's next run: the room it freed is taken again. It
                // took another recipe's run (the freed room may have a taker), or this run
                // had a key (its key's next may be due now): the dispatcher looks for more.
                // It took none: the slot goes back, which wakes the dispatcher.
                if next
                    .as_ref()
                    .is_some_and(|n| n.run.plugin != run.plugin || run.order_key.is_some())
                {
                    self.slot_freed.notify_one();
                }
                if announce {
                    let _ = self.finished.send(run);
                }
                next
            }
            // Taken over (its lease expired): the other holder's result stands.
            Err(BackendError::Stale { .. }) => {
                tracing::warn!(run = %lease.run, "run finished after its lease was taken over; its result is dropped");
                None
            }
            Err(e) => {
                tracing::error!(run = %lease.run, "run could not be recorded: {e}");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deferrals_are_bounded() {
        let now = 1_000_000;
        assert_eq!(deferral_due("1970-01-01T00:16:40Z", now), Ok(now + 1_000));
        assert!(deferral_due("2999-01-01T00:00:00Z", now).is_err());
        assert!(deferral_due("tomorrow", now).is_err());
    }
}
