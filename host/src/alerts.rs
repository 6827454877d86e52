//! `[alerts]`: a signed JSON notification (Standard Webhooks) to an operator's URL when a run
//! ends dead or failed or leaves calls unconfirmed, and when a recipe fails `failures` times
//! within `window`. Alerts of one kind for one recipe are sent at most once per
//! `min_interval` (the ones held back, or dropped from a full queue, are counted in the
//! next); delivery is retried with backoff and logged, on a queue of its own: a slow or dead
//! receiver never holds up a run.
//!
//! ```toml
//! [alerts]
//! url = "https://ops.example.com/hooks/switchboard"
//! secret = { env = "SWITCHBOARD_ALERT_SECRET" }   # whsec_..., signs each alert
//! on = ["dead", "failed", "unconfirmed"]          # the default
//! failures = 5                                     # a recipe failing this often...
//! window = "10m"                                   # ...within this: one `recipe.failing`
//! min_interval = "5m"                              # per (kind, recipe)
//! ```

use crate::ingest::verify::StandardVerifier;
use crate::model::{RunRecord, RunStatus};
use crate::pipeline::Pipeline;
use crate::secrets::SecretSource;
use serde::Deserialize;
use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_model::backoff::Backoff;
use tokio::sync::{broadcast, mpsc};

/// What a run's end can alert on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertOn {
    Dead,
    Failed,
    Unconfirmed,
}

/// `[alerts]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsSection {
    /// Where alerts are POSTed.
    pub url: String,
    /// The Standard Webhooks secret (`whsec_<base64>`) alerts are signed with.
    pub secret: SecretSource,
    #[serde(default = "AlertsSection::default_on")]
    pub on: Vec<AlertOn>,
    /// A recipe failing (failed or dead) this many times within `window` is alerted on once.
    pub failures: Option<NonZeroU32>,
    #[serde(default = "AlertsSection::default_window", with = "humantime_serde")]
    pub window: Duration,
    #[serde(default = "AlertsSection::default_interval", with = "humantime_serde")]
    pub min_interval: Duration,
}

impl AlertsSection {
    fn default_on() -> Vec<AlertOn> {
        vec![AlertOn::Dead, AlertOn::Failed, AlertOn::Unconfirmed]
    }
    fn default_window() -> Duration {
        Duration::from_secs(600)
    }
    fn default_interval() -> Duration {
        Duration::from_secs(300)
    }
}

/// Why alerts cannot be sent as configured.
#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    #[error("alerts.url: '{0}' is not an http(s) URL")]
    Url(String),
    #[error("alerts.secret: {0}")]
    Secret(String),
}

/// One alert, as sent (the body of the POST).
#[derive(Debug, Clone, serde::Serialize)]
struct Alert {
    /// `run.dead`, `run.failed`, `run.unconfirmed` or `recipe.failing`.
    #[serde(rename = "type")]
    kind: &'static str,
    recipe: String,
    /// The run that set it off.
    run: String,
    event: String,
    status: RunStatus,
    attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// `recipe.failing`: failures within the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    failures: Option<usize>,
    /// Alerts of this kind for this recipe held back since the last one sent.
    suppressed: u64,
    at: String,
}

/// How many alerts wait to be sent at most; past it, new ones are dropped (and logged).
const QUEUE: usize = 256;
/// Delivery attempts per alert.
const ATTEMPTS: u32 = 5;

/// Start alerting on `pipeline`'s finished runs as `section` says; runs until the pipeline's
/// announcements end.
pub fn start(pipeline: &Arc<Pipeline>, section: &AlertsSection) -> Result<(), AlertsError> {
    let url = reqwest::Url::parse(&section.url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| AlertsError::Url(section.url.clone()))?;
    let secret = section
        .secret
        .load()
        .map_err(|e| AlertsError::Secret(e.to_string()))?;
    let key = StandardVerifier::decode_secret(secret.expose()).map_err(AlertsError::Secret)?;
    let (queue, waiting) = mpsc::channel(QUEUE);
    tokio::spawn(deliver(url, key, waiting));
    let mut rules = Rules::new(section.clone());
    let mut finished = pipeline.subscribe();
    tokio::spawn(async move {
        loop {
            let run = match finished.recv().await {
                Ok(run) => run,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!("alerts: {n} finished runs went by unseen (too many at once)");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            };
            for alert in rules.of(&run, Instant::now()) {
                match queue.try_send(alert) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(alert)) => {
                        tracing::warn!(run = %run.id, kind = alert.kind, "alerts: the queue is full; an alert is dropped (counted in the next one of its kind)");
                        rules.dropped(&alert);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        tracing::error!(
                            "alerts: the delivery task is gone; no more alerts are sent"
                        );
                        return;
                    }
                }
            }
        }
    });
    Ok(())
}

/// What to alert on, with the state that rate-limits and counts.
struct Rules {
    section: AlertsSection,
    /// (kind, recipe) → when one was last sent (none: the last one was dropped unsent), and
    /// how many were held back since.
    last: HashMap<(&'static str, String), (Option<Instant>, u64)>,
    /// recipe → when its recent failures happened.
    failures: HashMap<String, VecDeque<Instant>>,
}

impl Rules {
    fn new(section: AlertsSection) -> Self {
        Rules {
            section,
            last: HashMap::new(),
            failures: HashMap::new(),
        }
    }

    /// The alerts `run` (as it finished, at `now`) sets off, after rate limiting.
    fn of(&mut self, run: &RunRecord, now: Instant) -> Vec<Alert> {
        let on = |o: AlertOn| self.section.on.contains(&o);
        let mut kinds = Vec::new();
        match run.status {
            RunStatus::Dead if on(AlertOn::Dead) => kinds.push(("run.dead", None)),
            RunStatus::Failed if on(AlertOn::Failed) => kinds.push(("run.failed", None)),
            _ => {}
        }
        if !run.unconfirmed.is_empty() && on(AlertOn::Unconfirmed) {
            kinds.push(("run.unconfirmed", None));
        }
        if matches!(run.status, RunStatus::Dead | RunStatus::Failed)
            && let Some(limit) = self.section.failures
        {
            let seen = self.failures.entry(run.plugin.clone()).or_default();
            seen.push_back(now);
            while seen
                .front()
                .is_some_and(|t| now.duration_since(*t) > self.section.window)
            {
                seen.pop_front();
            }
            if seen.len() >= limit.get() as usize {
                kinds.push(("recipe.failing", Some(seen.len())));
                seen.clear();
            }
        }
        let mut alerts = Vec::new();
        for (kind, failures) in kinds {
            let key = (kind, run.plugin.clone());
            let suppressed = match self.last.get_mut(&key) {
                Some((Some(sent), held))
                    if now.duration_since(*sent) < self.section.min_interval =>
                {
                    *held += 1;
                    continue;
                }
                Some((sent, held)) => {
                    *sent = Some(now);
                    std::mem::take(held)
                }
                None => {
                    self.last.insert(key, (Some(now), 0));
                    0
                }
            };
            alerts.push(Alert {
                kind,
                recipe: run.plugin.clone(),
                run: run.id.clone(),
                event: run.event_id.clone(),
                status: run.status,
                attempts: run.attempts,
                reason: run.reason.clone(),
                failures,
                suppressed,
                at: run.updated_at.clone(),
            });
        }
        alerts
    }

    /// `alert` was not sent (its queue was full): the next one of its kind and recipe goes
    /// out without waiting for `min_interval`, and counts it (and what it counted) as held.
    fn dropped(&mut self, alert: &Alert) {
        let last = self
            .last
            .entry((alert.kind, alert.recipe.clone()))
            .or_insert((None, 0));
        last.0 = None;
        last.1 += 1 + alert.suppressed;
    }
}

/// Send each queued alert, retrying with backoff.
async fn deliver(url: reqwest::Url, key: Vec<u8>, mut waiting: mpsc::Receiver<Alert>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client with a timeout builds");
    let backoff = Backoff {
        base: Duration::from_secs(1),
        max: Duration::from_secs(60),
    };
    while let Some(alert) = waiting.recv().await {
        let body = serde_json::to_vec(&alert).expect("alerts serialize");
        let id = format!("alert_{:016x}", fastrand::u64(..));
        for attempt in 1..=ATTEMPTS {
            let ts = chrono::Utc::now().timestamp();
            let sent = http
                .post(url.clone())
                .header("content-type", "application/json")
                .header("webhook-id", &id)
                .header("webhook-timestamp", ts.to_string())
                .header(
                    "webhook-signature",
                    StandardVerifier::sign(&key, &id, ts, &body),
                )
                .body(body.clone())
                .send()
                .await;
            let failure = match sent {
                Ok(r) if r.status().is_success() => {
                    tracing::info!(kind = alert.kind, recipe = %alert.recipe, run = %alert.run, "alert sent");
                    break;
                }
                Ok(r) => format!("answered {}", r.status()),
                Err(e) => e.to_string(),
            };
            if attempt == ATTEMPTS {
                tracing::error!(kind = alert.kind, recipe = %alert.recipe, run = %alert.run, "alert not delivered after {ATTEMPTS} attempts: {failure}");
                break;
            }
            let wait = backoff.delay(attempt, fastrand::f64());
            tracing::warn!(kind = alert.kind, run = %alert.run, attempt, ?wait, "alert delivery failed ({failure}); trying again");
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(failures: Option<u32>) -> AlertsSection {
        AlertsSection {
            url: "http://127.0.0.1:1/".into(),
            secret: SecretSource::Env("X".into()),
            on: AlertsSection::default_on(),
            failures: failures.and_then(NonZeroU32::new),
            window: Duration::from_secs(60),
            min_interval: Duration::from_secs(30),
        }
    }

    fn run(id: &str, status: RunStatus) -> RunRecord {
        let event = switchboard_model::Event::new(id, "s", "k", "t", &serde_json::json!({}));
        let mut r = RunRecord::queued(&event, "probe", "t");
        r.status = status;
        r
    }

    #[test]
    fn alerts_are_rate_limited_per_kind_and_recipe_and_count_what_was_held() {
        let mut rules = Rules::new(section(None));
        let t = Instant::now();
        let kinds = |a: &[Alert]| a.iter().map(|a| a.kind).collect::<Vec<_>>();
        assert_eq!(
            kinds(&rules.of(&run("e1", RunStatus::Failed), t)),
            ["run.failed"]
        );
        assert!(
            rules
                .of(&run("e2", RunStatus::Failed), t + Duration::from_secs(1))
                .is_empty()
        );
        assert!(
            rules
                .of(&run("e3", RunStatus::Failed), t + Duration::from_secs(2))
                .is_empty()
        );
        assert_eq!(
            kinds(&rules.of(&run("e4", RunStatus::Dead), t + Duration::from_secs(3))),
            ["run.dead"],
            "another kind is not held back"
        );
        let later = rules.of(&run("e5", RunStatus::Failed), t + Duration::from_secs(31));
        assert_eq!(kinds(&later), ["run.failed"]);
        assert_eq!(later[0].suppressed, 2, "the two held back are counted");
        assert!(rules.of(&run("e6", RunStatus::Succeeded), t).is_empty());
    }

    #[test]
    fn an_alert_dropped_unsent_is_counted_in_the_next_which_is_not_held_back() {
        let mut rules = Rules::new(section(None));
        let t = Instant::now();
        assert_eq!(rules.of(&run("e1", RunStatus::Failed), t).len(), 1);
        assert!(
            rules
                .of(&run("e2", RunStatus::Failed), t + Duration::from_secs(1))
                .is_empty()
        );
        let second = rules.of(&run("e3", RunStatus::Failed), t + Duration::from_secs(31));
        assert_eq!(second[0].suppressed, 1);
        // The queue was full: the second (which counted one held back) never left...
        rules.dropped(&second[0]);
        // ...so the next goes at once, counting the dropped one and the one it counted.
        let third = rules.of(&run("e4", RunStatus::Failed), t + Duration::from_secs(32));
        assert_eq!(
            third.len(),
            1,
            "not held back by an alert that was never sent"
        );
        assert_eq!(third[0].suppressed, 2);
        // And the interval runs from that one, which was sent.
        assert!(
            rules
                .of(&run("e5", RunStatus::Failed), t + Duration::from_secs(33))
                .is_empty()
        );
    }

    #[test]
    fn a_recipe_failing_often_within_the_window_is_alerted_once() {
        let mut rules = Rules::new(section(Some(3)));
        let t = Instant::now();
        let failing = |rules: &mut Rules, id: &str, at: Duration| {
            rules
                .of(&run(id, RunStatus::Failed), t + at)
                .iter()
                .any(|a| a.kind == "recipe.failing")
        };
        assert!(!failing(&mut rules, "e1", Duration::ZERO));
        assert!(
            !failing(&mut rules, "e2", Duration::from_secs(70)),
            "e1 left the window"
        );
        assert!(!failing(&mut rules, "e3", Duration::from_secs(80)));
        assert!(
            failing(&mut rules, "e4", Duration::from_secs(90)),
            "three within 60 s"
        );
        assert!(
            !failing(&mut rules, "e5", Duration::from_secs(91)),
            "counted afresh"
        );
    }
}
