//! Journaled host calls: the capability side of the effect journal
//! ([`crate::store::effects`]).
//!
//! A call that changes a vendor (and that the vendor does not deduplicate) goes through
//! [`RunState::effect`]. Its request is fingerprinted (call, connection, arguments) and
//! looked up, as the n-th request of the run with that fingerprint. A match answers from the
//! journal, without a request: the recorded result, or `unknown-outcome` when an earlier
//! attempt sent it and never learned the answer. Otherwise the intent is written and flushed
//! (group commit, shared with concurrent runs), the request sent, and the result recorded.

use crate::model::{RecipeError, Unconfirmed, now_ms, rfc3339};
use crate::runtime::state::{Level, RunState};
use crate::store::effects::{CallKey, Effect, EffectState, Effects};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::Future;

/// A run's view of the effect journal.
pub struct RunEffects {
    journal: Effects,
    run: String,
    /// Journaled calls made so far in this attempt.
    calls: u32,
    /// How many calls of each fingerprint this attempt has made.
    seen: HashMap<[u8; 32], u32>,
    /// Calls answered `unknown-outcome` in this attempt.
    pub(crate) unconfirmed: Vec<Unconfirmed>,
}

impl RunEffects {
    pub fn new(journal: Effects, run: String) -> Self {
        RunEffects {
            journal,
            run,
            calls: 0,
            seen: HashMap::new(),
            unconfirmed: Vec::new(),
        }
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

impl RunState {
    /// Make a call that changes a vendor at most once per run, however often the run is
    /// executed: `send` is awaited only if the journal has no matching call.
    pub(crate) async fn effect<T, F>(
        &mut self,
        call: &str,
        connection: &str,
        request: &impl Serialize,
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
        let found = journal.get(at).map_err(|e| RecipeError::Other {
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
        if let Err(e) = journal.begin(at, &effect).await {
            return Err(RecipeError::Other {
                message: format!(
                    "{call}: cannot write the effect journal ({e}); the request was not sent"
                ),
            });
        }
        let result = send.await;
        effect.settled_at = Some(rfc3339(now_ms()));
        let recorded = match &result {
            Ok(value) => {
                effect.state = EffectState::Done {
                    result: serde_json::to_value(value).expect("results serialize"),
                };
                journal.settle(at, &effect)
            }
            Err(RecipeError::UnknownOutcome { message }) => {
                self.unconfirmed(position, call, connection, message.clone());
                effect.state = EffectState::Unknown {
                    reason: message.clone(),
                };
                journal.settle(at, &effect)
            }
            // The vendor refused it, or it never left: a later attempt sends it afresh.
            Err(_) => journal.forget(at),
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
        if let Some(fx) = self.effects.as_mut() {
            fx.unconfirmed.push(Unconfirmed {
                position,
                call: call.to_string(),
                connection: connection.to_string(),
                reason,
            });
        }
    }
}
