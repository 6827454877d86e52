//! The effect journal: for every host call that changes a vendor (a create, a send, a
//! delete, a raw `POST`), the run's intent is on disk before the request leaves, and its
//! result after, keyed by the run, the request's fingerprint, and which of the run's
//! identical requests it is (the first, the second, ...).
//!
//! When a run is executed again (a retry, crash recovery, a deferral, a replay), a call that
//! asks for exactly what an earlier attempt asked is answered from here: with the recorded
//! result when there is one, or `unknown-outcome` when the request may have gone out but its
//! answer never came back. Either way it is not sent again. Matching on the request rather
//! than on the call's position lets a re-run skip calls (a recipe that finds in its kv that a
//! step is done) and still meet the journal at the calls it makes. The capability layer does
//! the matching (`capabilities::effect`); this module keeps the records.
//!
//! | key                                                     | value             |
//! |---------------------------------------------------------|-------------------|
//! | `<run id> \0 <fingerprint, 32 bytes> <occurrence, u32>` | [`Effect`] (JSON) |

use super::{Store, StoreError};
pub use switchboard_model::effect::{CallKey, Effect, EffectState};

fn key(call: CallKey<'_>) -> Vec<u8> {
    let mut k = prefix(call.run);
    k.extend_from_slice(call.fingerprint);
    k.extend_from_slice(&call.occurrence.to_be_bytes());
    k
}

fn prefix(run: &str) -> Vec<u8> {
    let mut k = run.as_bytes().to_vec();
    k.push(0);
    k
}

fn decode(key: &[u8], bytes: &[u8]) -> Result<Effect, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

/// The journal, over one sled tree of the store.
#[derive(Clone)]
pub struct Effects {
    tree: sled::Tree,
    store: Store,
}

impl Effects {
    pub(super) fn new(tree: sled::Tree, store: Store) -> Self {
        Effects { tree, store }
    }

    fn sled<T>(&self, r: Result<T, sled::Error>) -> Result<T, StoreError> {
        r.map_err(|e| {
            self.store.failures.report(&e);
            StoreError::Sled(e)
        })
    }

    /// The journaled call at `call`, if there is one.
    pub fn get(&self, call: CallKey<'_>) -> Result<Option<Effect>, StoreError> {
        let k = key(call);
        let found = self.sled(self.tree.get(&k))?;
        found.map(|v| decode(&k, &v)).transpose()
    }

    /// Record that `effect` is about to be sent, and wait until that is on disk (sharing the
    /// flush with concurrent writers). Only then may the request leave.
    pub async fn begin(&self, call: CallKey<'_>, effect: &Effect) -> Result<(), StoreError> {
        let value = serde_json::to_vec(effect).expect("effects serialize");
        self.sled(self.tree.insert(key(call), value))?;
        self.store.commit().await?;
        Ok(())
    }

    /// Record the outcome of a call begun with [`Effects::begin`]. It reaches the disk with
    /// the next flush (anyone's group commit, or sled's own within half a second), so a
    /// journaled call costs one flush, not two. Should the host die before that, a re-run
    /// finds the call `sending` and reports its outcome as unknown: true, and never a repeat.
    pub fn settle(&self, call: CallKey<'_>, effect: &Effect) -> Result<(), StoreError> {
        let value = serde_json::to_vec(effect).expect("effects serialize");
        self.sled(self.tree.insert(key(call), value))?;
        Ok(())
    }

    /// Forget a call that did not take effect (the vendor refused it, or it never left), so
    /// a later attempt sends it afresh.
    pub fn forget(&self, call: CallKey<'_>) -> Result<(), StoreError> {
        self.sled(self.tree.remove(key(call)))?;
        Ok(())
    }

    /// Every journaled call of `run`, in the order they were sent.
    pub fn of_run(&self, run: &str) -> Result<Vec<Effect>, StoreError> {
        Ok(self.entries(run)?.into_iter().map(|(_, e)| e).collect())
    }

    fn entries(&self, run: &str) -> Result<Vec<(sled::IVec, Effect)>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(prefix(run)) {
            let (k, v) = self.sled(item)?;
            let effect = decode(&k, &v)?;
            out.push((k, effect));
        }
        out.sort_by(|(_, a), (_, b)| (&a.sent_at, a.position).cmp(&(&b.sent_at, b.position)));
        Ok(out)
    }

    /// Forget `run`'s calls whose outcome is unknown, so its next execution sends them
    /// again (an operator checked that they did not take effect). Returns how many.
    pub fn forget_unconfirmed(&self, run: &str) -> Result<usize, StoreError> {
        let mut forgotten = 0;
        for (k, effect) in self.entries(run)? {
            if !effect.confirmed() {
                self.sled(self.tree.remove(k))?;
                forgotten += 1;
            }
        }
        Ok(forgotten)
    }

    /// Forget every journaled call of `run` (retention).
    pub fn forget_run(&self, run: &str) -> Result<usize, StoreError> {
        let mut forgotten = 0;
        for item in self.tree.scan_prefix(prefix(run)).keys() {
            self.sled(self.tree.remove(self.sled(item)?))?;
            forgotten += 1;
        }
        Ok(forgotten)
    }
}

#[async_trait::async_trait]
impl switchboard_runtime::store::EffectJournal for Effects {
    async fn get(
        &self,
        call: CallKey<'_>,
    ) -> Result<Option<Effect>, switchboard_runtime::store::StoreFailure> {
        Effects::get(self, call).map_err(failure)
    }

    async fn begin(
        &self,
        call: CallKey<'_>,
        effect: &Effect,
    ) -> Result<(), switchboard_runtime::store::StoreFailure> {
        Effects::begin(self, call, effect).await.map_err(failure)
    }

    async fn settle(
        &self,
        call: CallKey<'_>,
        effect: &Effect,
    ) -> Result<(), switchboard_runtime::store::StoreFailure> {
        Effects::settle(self, call, effect).map_err(failure)
    }

    async fn forget(
        &self,
        call: CallKey<'_>,
    ) -> Result<(), switchboard_runtime::store::StoreFailure> {
        Effects::forget(self, call).map_err(failure)
    }
}

fn failure(e: StoreError) -> switchboard_runtime::store::StoreFailure {
    switchboard_runtime::store::StoreFailure(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn effect(position: u32, state: EffectState) -> Effect {
        Effect {
            call: "messages.send".into(),
            connection: "hb".into(),
            request: "abc".into(),
            position,
            state,
            sent_at: format!("2026-12-01T00:00:0{position}.000Z"),
            settled_at: None,
        }
    }

    #[tokio::test]
    async fn records_by_run_request_and_occurrence() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let fx = store.effects();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let at = |run, fingerprint, occurrence| CallKey {
            run,
            fingerprint,
            occurrence,
        };
        fx.begin(at("e1.a", &a, 0), &effect(0, EffectState::Sending))
            .await
            .unwrap();
        let done = effect(
            0,
            EffectState::Done {
                result: serde_json::json!({"id": "m1"}),
            },
        );
        fx.settle(at("e1.a", &a, 0), &done).unwrap();
        // The same request a second time in the run is another call.
        fx.begin(at("e1.a", &a, 1), &effect(1, EffectState::Sending))
            .await
            .unwrap();
        fx.begin(at("e1.a", &b, 0), &effect(2, EffectState::Sending))
            .await
            .unwrap();
        // A run whose id starts like another's does not see its calls.
        fx.begin(at("e1.ab", &a, 0), &effect(0, EffectState::Sending))
            .await
            .unwrap();
        assert_eq!(fx.get(at("e1.a", &a, 0)).unwrap(), Some(done.clone()));
        assert!(fx.get(at("e1.a", &b, 1)).unwrap().is_none());
        let positions = |run| {
            fx.of_run(run)
                .unwrap()
                .into_iter()
                .map(|e| e.position)
                .collect::<Vec<_>>()
        };
        assert_eq!(positions("e1.a"), [0, 1, 2]);
        assert_eq!(fx.forget_unconfirmed("e1.a").unwrap(), 2);
        assert_eq!(fx.of_run("e1.a").unwrap(), vec![done]);
        assert_eq!(fx.forget_run("e1.ab").unwrap(), 1);
        assert!(fx.get(at("e1.ab", &a, 0)).unwrap().is_none());
        // The JSON an operator sees.
        let json = serde_json::to_value(effect(
            0,
            EffectState::Unknown {
                reason: "the connection broke".into(),
            },
        ))
        .unwrap();
        assert_eq!(json["state"], "unknown");
        assert_eq!(json["reason"], "the connection broke");
    }
}
