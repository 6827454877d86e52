//! The effect journal's records: host calls that change vendors, per run, with their
//! outcome (see the runtime's `capabilities::effect` and the backends that keep them).

use serde::{Deserialize, Serialize};

/// One journaled call of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    /// The capability call, e.g. `messages.send` or `vendor-http.send POST`.
    pub call: String,
    /// The recipe's name for the connection it went through.
    pub connection: String,
    /// SHA-256 (hex) of the call, connection and arguments: a re-run's call matches only if
    /// it asks for exactly the same thing.
    pub request: String,
    /// The call's place among the run's journaled calls, in the attempt that sent it.
    pub position: u32,
    #[serde(flatten)]
    pub state: EffectState,
    /// When the request was about to leave, RFC 3339.
    pub sent_at: String,
    /// When its outcome was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_at: Option<String>,
}

/// Where a journaled call is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum EffectState {
    /// On its way: the request may be out, its answer not back. Found by a re-run, it means
    /// the host stopped meanwhile, and the outcome is unknown.
    Sending,
    /// It took effect; the answer, given to a re-run instead of sending the request again.
    Done { result: serde_json::Value },
    /// It may have taken effect: the connection broke or timed out after it was sent.
    Unknown { reason: String },
}

impl EffectState {
    /// The state's name, as the JSON says it.
    pub fn name(&self) -> &'static str {
        match self {
            EffectState::Sending => "sending",
            EffectState::Done { .. } => "done",
            EffectState::Unknown { .. } => "unknown",
        }
    }
}

impl Effect {
    /// Whether it is known to have taken effect.
    pub fn confirmed(&self) -> bool {
        matches!(self.state, EffectState::Done { .. })
    }
}

/// Where a call is journaled: its run, its request, and which of the run's identical
/// requests it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallKey<'a> {
    pub run: &'a str,
    /// SHA-256 of the request.
    pub fingerprint: &'a [u8; 32],
    /// 0 for the run's first request with this fingerprint, 1 for the second, ...
    pub occurrence: u32,
}
