//! Journaled host calls: the capability side of the effect journal
//! ([`crate::store::effects`]).
//!
//! A call that changes a vendor (and that the vendor does not deduplicate) goes through
//! [`RunState::effect`]. Its request is fingerprinted (call, connection, arguments) and
//! looked up, as the n-th request of the run with that fingerprint. A match answers from the
//! journal, without a request: the recorded result, or `unknown-outcome` when an earlier
//! attempt sent it and never learned the answer. Otherwise the intent is written and flushed
//! (group commit, shared with concurrent runs), the request sent, and the result recorded.

use crate::state::{Level, RunState};
use crate::store::EffectJournal;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use switchboard_model::effect::{CallKey, Effect, EffectState};
use switchboard_model::{RecipeError, Unconfirmed, now_ms, rfc3339};

/// A run's view of the effect journal.
pub struct RunEffects {
    journal: Arc<dyn EffectJournal>,
    run: String,
    /// Journaled calls made so far in this attempt.
    calls: u32,
    /// How many calls of each fingerprint this attempt has made.
    seen: HashMap<[u8; 32], u32>,
    /// Calls answered `unknown-outcome` in this attempt.
    pub(crate) unconfirmed: Vec<Unconfirmed>,
}

impl RunEffects {
    pub fn new(journal: Arc<dyn EffectJournal>, run: String) -> Self {
        RunEffects {
            journal,
            run,
            calls: 0,
            seen: HashMap::new(),
            unconfirmed: Vec::new(),
        }
    }
}

/// What a call's answer says about its effect.
pub(crate) enum Took {
    /// It took effect: record the answer, for re-runs.
    Effect,
    /// It did not (refused, or never sent): forget it, so a re-run sends it afresh.
    Nothing,
    /// It may have: record that, and never send it again by itself.
    Unknown(String),
}

/// How the answer of a typed call (a create, a send, a delete) reads: an answer is an effect;
/// `unknown-outcome`, or a 2xx the host could not read, may be one; any other error (a 4xx
/// or 5xx answer, a refusal before sending) is not.
pub(crate) fn typed<T>(result: &Result<T, RecipeError>) -> Took {
    match result {
        Ok(_) => Took::Effect,
        Err(RecipeError::UnknownOutcome { message }) => Took::Unknown(message.clone()),
        Err(RecipeError::Upstream { status, message }) if (200..300).contains(status) => {
            Took::Unknown(format!(
                "the vendor answered {status}, in a form the host could not read: {message}"
            ))
        }
        Err(_) => Took::Nothing,
    }
}

/// SHA-256 of what a call asks for.
fn fingerprint(call: &str, connection: &str, request: &impl Serialize) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(call.as_bytes());
    h.update([0]);
    h.update(connection.as_bytes());
    h.update([0]);
    h.update(serde_json::to_vec(request).expect("requests serialize"));
    h.finalize().into()
}

/// Forgets a journaled intent whose request never left (dropped before `send` began).
struct Unsent {
    journal: Arc<dyn EffectJournal>,
    run: String,
    fingerprint: [u8; 32],
    occurrence: u32,
    armed: bool,
}

impl Drop for Unsent {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (journal, run, fingerprint, occurrence) = (
            self.journal.clone(),
            std::mem::take(&mut self.run),
            self.fingerprint,
            self.occurrence,
        );
        // Dropped with its run (the deadline): forget it on the side.
        tokio::spawn(async move {
            let at = CallKey {
                run: &run,
                fingerprint: &fingerprint,
                occurrence,
            };
            let _ = journal.forget(at).await;
        });
    }
}

impl RunState {
    /// Make a call that changes a vendor at most once per run, however often the run is
    /// executed: `send` is awaited only if the journal has no matching call, and `took` says
    /// what its answer means.
    pub(crate) async fn effect<T, F>(
        &mut self,
        call: &str,
        connection: &str,
        request: &impl Serialize,
        took: impl Fn(&Result<T, RecipeError>) -> Took,
        send: F,
    ) -> Result<T, RecipeError>
    where
        T: Serialize + DeserializeOwned,
        F: Future<Output = Result<T, RecipeError>>,
    {
        let Some(fx) = self.effects.as_mut() else {
            return send.await;
        };
        let fingerprint = fingerprint(call, connection, request);
        let seen = fx.seen.entry(fingerprint).or_default();
        let occurrence = *seen;
        *seen += 1;
        let position = fx.calls;
        fx.calls += 1;
        let (journal, run) = (fx.journal.clone(), fx.run.clone());
        let at = CallKey {
            run: &run,
            fingerprint: &fingerprint,
            occurrence,
        };
        let found = journal.get(at).await.map_err(|e| RecipeError::Other {
            message: format!(
                "{call}: cannot read the effect journal ({e}); the request was not sent"
            ),
        })?;
        if let Some(found) = found {
            return self.answer(position, call, connection, found);
        }
        let mut effect = Effect {
            call: call.to_string(),
            connection: connection.to_string(),
            request: hex::encode(fingerprint),
            position,
            state: EffectState::Sending,
            sent_at: rfc3339(now_ms()),
            settled_at: None,
        };
        // Should the run be dropped (its deadline) before the request leaves, the intent
        // is forgotten: nothing was sent.
        let mut unsent = Unsent {
            journal: journal.clone(),
            run: run.clone(),
            fingerprint,
            occurrence,
            armed: true,
        };
        let waits = self.waits.clone();
        let begun = {
            // The flush is a wait on the store, not the recipe's running time.
            let call = switchboard_vendors::Call {
                deadline: self.deadline_at,
                waits,
                span: tracing::Span::none(),
                log: None,
            };
            let _waiting = call.waiting();
            journal.begin(at, &effect).await
        };
        if let Err(e) = begun {
            return Err(RecipeError::Other {
                message: format!(
                    "{call}: cannot write the effect journal ({e}); the request was not sent"
                ),
            });
        }
        unsent.armed = false;
        let mut result = send.await;
        effect.settled_at = Some(rfc3339(now_ms()));
        let took = took(&result);
        if let (Took::Unknown(reason), Err(e)) = (&took, &result)
            && !matches!(e, RecipeError::UnknownOutcome { .. })
        {
            result = Err(RecipeError::UnknownOutcome {
                message: reason.clone(),
            });
        }
        let recorded = match (took, &result) {
            (Took::Effect, Ok(value)) => {
                effect.state = EffectState::Done {
                    result: serde_json::to_value(value).expect("results serialize"),
                };
                journal.settle(at, &effect).await
            }
            (Took::Unknown(reason), _) => {
                self.unconfirmed(position, call, connection, reason.clone());
                effect.state = EffectState::Unknown { reason };
                journal.settle(at, &effect).await
            }
            // The vendor refused it, or it never left: a later attempt sends it afresh.
            _ => journal.forget(at).await,
        };
        if let Err(e) = recorded {
            // The caller has the outcome; only a re-run would miss the record (and then find
            // the call `sending`: unknown, never repeated).
            tracing::error!(run = %run, call, "recording a call's outcome failed: {e}");
        }
        result
    }

    /// The answer to a call an earlier attempt made: its result, or unknown.
    fn answer<T: DeserializeOwned>(
        &mut self,
        position: u32,
        call: &str,
        connection: &str,
        found: Effect,
    ) -> Result<T, RecipeError> {
        let sent = found.sent_at;
        let reason = match found.state {
            EffectState::Done { result } => match serde_json::from_value(result) {
                Ok(value) => {
                    self.log(
                        Level::Info,
                        format!(
                            "{call} through '{connection}' took effect in an earlier attempt ({sent}): answered from the effect journal, not sent again"
                        ),
                        vec![],
                    );
                    return Ok(value);
                }
                Err(e) => format!("its recorded answer cannot be read ({e}); not sent again"),
            },
            EffectState::Sending => format!(
                "an earlier attempt sent it at {sent} and stopped before the answer came back; not sent again"
            ),
            EffectState::Unknown { reason } => format!(
                "an earlier attempt sent it at {sent} and its outcome is unknown ({reason}); not sent again"
            ),
        };
        self.unconfirmed(position, call, connection, reason.clone());
        Err(RecipeError::UnknownOutcome { message: reason })
    }

    /// Note a call whose outcome is unknown: in the run's log and on its record.
    fn unconfirmed(&mut self, position: u32, call: &str, connection: &str, reason: String) {
        self.log(
            Level::Warn,
            format!("{call} through '{connection}': outcome unknown: {reason}"),
            vec![],
        );
        // The record keeps the first ones (a run re-executed with many unknown calls repeats
        // them); the log says the rest.
        if let Some(fx) = self
            .effects
            .as_mut()
            .filter(|fx| fx.unconfirmed.len() < 100)
        {
            fx.unconfirmed.push(Unconfirmed {
                position,
                call: call.to_string(),
                connection: connection.to_string(),
                reason,
            });
        }
    }
}
