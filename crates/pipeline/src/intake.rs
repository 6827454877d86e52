//! Events coming in: which recipes an event is for, the runs it makes (with their ordering
//! keys), and its acceptance by the backend (durable, or a duplicate).

use crate::backend::{Accepted, NewEvent, NewRun};
use crate::{Pipeline, PipelineError, now_ms, rfc3339};
use serde::Serialize;
use std::sync::atomic::Ordering;
use switchboard_model::{Event, Trigger};

/// An event on its way in, before it has an id.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The event's id, when the caller took one already.
    pub event_id: Option<String>,
    pub source: String,
    pub kind: String,
    /// The sender's delivery id; repeated ids are deduplicated. `None`: never a duplicate.
    pub delivery_id: Option<String>,
    pub payload: Box<serde_json::value::RawValue>,
}

/// The answer to an accepted event.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Ack {
    pub event_id: String,
    /// True when this delivery was accepted before (nothing new is run).
    pub duplicate: bool,
    /// The runs queued for it.
    pub runs: Vec<String>,
}

impl Pipeline {
    /// The recipes subscribed to an event of `source` and `kind`.
    pub fn subscribers(&self, source: &str, kind: &str) -> Vec<String> {
        self.registry
            .current()
            .iter()
            .filter(|p| {
                p.manifest.triggers.iter().any(|t| match t {
                    Trigger::Webhook { source: s, kind: k } => {
                        (s == "*" || s == source) && glob(k, kind)
                    }
                    Trigger::Cron { .. } => false,
                })
            })
            .map(|p| p.name.to_string())
            .collect()
    }

    /// The runs of `event`: one per recipe, each with its ordering key when the recipe
    /// declares one.
    fn runs_of(&self, event: &Event, plugins: Vec<String>) -> Vec<NewRun> {
        let current = self.registry.current();
        plugins
            .into_iter()
            .map(|plugin| {
                let order_key = current
                    .get(&plugin)
                    .and_then(|p| p.manifest.ordering_key.as_deref())
                    .and_then(|pointer| order_key(event, pointer));
                NewRun { plugin, order_key }
            })
            .collect()
    }

    /// The event an incoming delivery becomes, with its runs (for every subscribed recipe,
    /// or only `only`).
    pub(crate) async fn new_event(
        &self,
        incoming: Incoming,
        only: Option<&str>,
    ) -> Result<NewEvent, PipelineError> {
        let plugins = match only {
            Some(name) => {
                if self.registry.current().get(name).is_none() {
                    return Err(PipelineError::NoPlugin(name.to_string()));
                }
                vec![name.to_string()]
            }
            None => self.subscribers(&incoming.source, &incoming.kind),
        };
        let now = now_ms();
        let id = match incoming.event_id {
            Some(id) => id,
            None => self.backend.next_event_id().await?,
        };
        let event = Event {
            id,
            source: incoming.source,
            kind: incoming.kind,
            time: rfc3339(now),
            payload: incoming.payload,
        };
        let runs = self.runs_of(&event, plugins);
        Ok(NewEvent {
            delivery_id: incoming.delivery_id.unwrap_or_else(|| event.id.clone()),
            received_ms: now,
            window_ms: self.options.dedup_window.as_millis() as i64,
            runs,
            event,
        })
    }

    /// Store an event with a run for each recipe subscribed to it (or only for `only`), and
    /// return once it is durable.
    pub async fn ingest(
        &self,
        incoming: Incoming,
        only: Option<&str>,
    ) -> Result<Ack, PipelineError> {
        if self.is_stopping() {
            return Err(PipelineError::ShuttingDown);
        }
        let new = self.new_event(incoming, only).await?;
        let (source, delivery, event_id) = (
            new.event.source.clone(),
            new.delivery_id.clone(),
            new.event.id.clone(),
        );
        let started = std::time::Instant::now();
        let accepted = self.backend.accept(new).await;
        crate::metrics::store_write("accept", started.elapsed());
        Ok(match accepted? {
            Accepted::Duplicate { event_id } => {
                self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                tracing::info!(source = %source.escape_debug(), delivery = %delivery.escape_debug(), event = %event_id, "duplicate delivery acknowledged");
                Ack {
                    event_id,
                    duplicate: true,
                    runs: Vec::new(),
                }
            }
            Accepted::New { runs } => {
                self.counters.accepted.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(event = %event_id, runs = runs.len(), "event accepted");
                Ack {
                    event_id,
                    duplicate: false,
                    runs: runs.into_iter().map(|r| r.id).collect(),
                }
            }
        })
    }
}

/// The ordering key an event gives a recipe that orders by the JSON pointer `pointer`: the
/// value there, as text (a string as it is, anything else as JSON). `None` when the event has
/// nothing there: such runs are not ordered.
pub fn order_key(event: &Event, pointer: &str) -> Option<String> {
    let payload: serde_json::Value = serde_json::from_str(event.payload.get()).ok()?;
    match payload.pointer(pointer)? {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// `pattern` with `*` matching any run of characters (and `?` any one character).
pub fn glob(pattern: &str, text: &str) -> bool {
    wildmatch::WildMatch::new(pattern).matches(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("*", "customer.updated"));
        assert!(glob("customer.*", "customer.updated"));
        assert!(!glob("customer.*", "job.created"));
        assert!(glob("*.created", "lead.created"));
        assert!(glob("job.*.started", "job.appointment.started"));
        assert!(!glob("job.*.started", "job.started"));
        assert!(glob("ContactUpdate", "ContactUpdate"));
        assert!(!glob("Contact", "ContactUpdate"));
        // Non-ASCII text and patterns (a hand-written matcher once sliced inside a character).
        assert!(!glob("é*é", "éa"));
        assert!(glob("*é", "caféé"));
        assert!(!glob("ab*cd", "abé"));
    }

    #[test]
    fn order_keys_come_from_the_payload() {
        let event = |payload: serde_json::Value| Event::new("e", "s", "k", "t", &payload);
        let e = event(serde_json::json!({"customer": {"id": "cus_1", "n": 7}}));
        assert_eq!(order_key(&e, "/customer/id"), Some("cus_1".into()));
        assert_eq!(order_key(&e, "/customer/n"), Some("7".into()));
        assert_eq!(order_key(&e, "/customer/missing"), None);
        assert_eq!(
            order_key(&event(serde_json::json!({"id": null})), "/id"),
            None
        );
    }
}
