//! Cron triggers: one task keeps the next fire of every scheduled plugin and turns each
//! fire into an event for that plugin alone.
//!
//! - Each tick fires once, whoever asks first (every host runs this task; the backend decides).
//! - A fire is skipped while the plugin's previous cron run is queued or running, so
//!   scheduled runs of one plugin never overlap.
//! - The last tick of each trigger is kept by the backend; at start, fires missed while the
//!   host was down run once (or not at all: [`CatchUp`]).
//! - The event's delivery id is `<plugin>/<trigger>/<scheduled ms>`, so a fire is never
//!   stored twice.

use super::backend::TickFire;
use super::schedule::Schedule;
use super::{CatchUp, CronOverride, Incoming, Pipeline, now_ms, rfc3339};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use switchboard_model::Trigger;
use tokio::sync::watch;
use tracing::Instrument;

/// The `source` of cron events.
pub const SOURCE: &str = "cron";

/// One scheduled trigger of one plugin.
#[derive(Debug, Clone)]
pub struct Planned {
    pub plugin: String,
    pub trigger: usize,
    pub schedule: Schedule,
}

/// The cron triggers of the loaded plugins, with the config's overrides applied.
pub fn plan(pipeline: &Pipeline) -> Vec<Planned> {
    let mut out = Vec::new();
    for plugin in pipeline.registry().current().iter() {
        let over = pipeline.options().cron_overrides.get(&*plugin.name);
        for (i, t) in plugin.manifest.triggers.iter().enumerate() {
            let Trigger::Cron { schedule, timezone } = t else {
                continue;
            };
            let parsed = match over {
                Some(CronOverride::Off) => continue,
                Some(CronOverride::Schedule { expr, timezone }) => {
                    Schedule::parse(expr, timezone.as_deref())
                }
                None => Schedule::parse(schedule, timezone.as_deref()),
            };
            match parsed {
                Ok(schedule) => out.push(Planned {
                    plugin: plugin.name.to_string(),
                    trigger: i,
                    schedule,
                }),
                Err(e) => tracing::error!(plugin = %plugin.name, "cron trigger {i} ignored: {e}"),
            }
        }
    }
    out
}

/// Start the cron task; it ends when `stop` turns true.
pub fn start(pipeline: Arc<Pipeline>, mut stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut changes = pipeline.registry().subscribe();
        let mut next: BTreeMap<(String, usize), (String, i64)> = BTreeMap::new();
        let mut first = true;
        loop {
            let planned = plan(&pipeline);
            let now = now_ms();
            let mut fresh = BTreeMap::new();
            for p in &planned {
                let key = (p.plugin.clone(), p.trigger);
                let ident = format!("{} {}", p.schedule.expr(), p.schedule.timezone());
                let due = match next.get(&key) {
                    Some((i, due)) if *i == ident => Some(*due),
                    _ => {
                        if first {
                            catch_up(&pipeline, p, now).await;
                        }
                        p.schedule.next_after(now)
                    }
                };
                if let Some(due) = due {
                    fresh.insert(key, (ident, due));
                }
            }
            next = fresh;
            first = false;
            let by_key: BTreeMap<_, _> = planned
                .into_iter()
                .map(|p| ((p.plugin.clone(), p.trigger), p))
                .collect();
            loop {
                let Some(earliest) = next.values().map(|(_, d)| *d).min() else {
                    tokio::select! {
                        _ = changes.changed() => break,
                        _ = stop.changed() => return,
                    }
                };
                let wait = Duration::from_millis((earliest - now_ms()).max(0) as u64);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = changes.changed() => break,
                    _ = stop.changed() => return,
                }
                let now = now_ms();
                for (key, (_, due)) in next.iter_mut() {
                    if *due > now {
                        continue;
                    }
                    let p = &by_key[key];
                    fire(&pipeline, p, *due).await;
                    match p.schedule.next_after(now.max(*due)) {
                        Some(d) => *due = d,
                        None => *due = i64::MAX,
                    }
                }
            }
        }
    });
}

async fn catch_up(pipeline: &Pipeline, p: &Planned, now: i64) {
    if pipeline.options().cron_catch_up == CatchUp::Skip {
        return;
    }
    let last = match pipeline.backend().last_tick(&p.plugin, p.trigger).await {
        Ok(Some(last)) => last,
        _ => return,
    };
    if let Some(missed) = p.schedule.last_missed(last, now, 100_000) {
        tracing::info!(plugin = %p.plugin, missed = %rfc3339(missed), "running a cron fire missed while down");
        fire(pipeline, p, missed).await;
    }
}

/// Fire one trigger for the time it was scheduled at.
pub async fn fire(pipeline: &Pipeline, p: &Planned, scheduled_ms: i64) {
    let payload = serde_json::json!({
        "schedule": p.schedule.expr(),
        "timezone": p.schedule.timezone(),
        "scheduled_at": rfc3339(scheduled_ms),
    });
    let incoming = Incoming {
        event_id: None,
        source: SOURCE.into(),
        kind: p.schedule.expr().to_string(),
        delivery_id: Some(format!("{}/{}/{scheduled_ms}", p.plugin, p.trigger)),
        payload: serde_json::value::to_raw_value(&payload).expect("JSON serializes"),
    };
    let span = if pipeline.sample_trace() == Some(false) {
        tracing::Span::none()
    } else {
        tracing::info_span!("cron fire", recipe = %p.plugin, scheduled = %rfc3339(scheduled_ms))
    };
    let fired = pipeline
        .fire_tick(&p.plugin, p.trigger, scheduled_ms, incoming)
        .instrument(span.clone())
        .await;
    match fired {
        Ok(TickFire::Fired(crate::backend::Accepted::New { runs })) => {
            if let Some(run) = runs.first() {
                span.in_scope(|| pipeline.traced(&run.event_id, !span.is_none()));
            }
        }
        Ok(TickFire::Fired(_)) | Ok(TickFire::AlreadyFired) => {}
        Ok(TickFire::Busy { run }) => {
            if pipeline.paused().await.contains(&p.plugin) {
                tracing::debug!(plugin = %p.plugin, scheduled = %rfc3339(scheduled_ms), previous = %run, "cron fire skipped: the recipe is paused and its previous run waits");
            } else {
                tracing::warn!(plugin = %p.plugin, scheduled = %rfc3339(scheduled_ms), previous = %run, "cron fire skipped: the previous run is still going");
            }
        }
        Err(e) => tracing::error!(plugin = %p.plugin, "cron fire not recorded: {e}"),
    }
}
