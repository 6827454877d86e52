//! What the runtime needs of the host's store: each recipe's kv space and the effect journal.
//! The store behind them (sled, PostgreSQL) belongs to the pipeline's backends; the runtime
//! sees only these traits.

use async_trait::async_trait;
use std::sync::Arc;
use switchboard_model::effect::{CallKey, Effect};
use switchboard_model::kv::{KvError, KvQuota, KvUsage};

/// The store failed to read or write.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StoreFailure(pub String);

/// One recipe's durable key-value space, with its quota.
#[async_trait]
pub trait KvSpace: Send + Sync {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    async fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError>;
    /// Returns whether the key existed.
    async fn delete(&self, key: &str) -> Result<bool, KvError>;
    /// Keys starting with `prefix`, in byte order, at most `limit`.
    async fn list_keys(&self, prefix: &str, limit: Option<usize>) -> Result<Vec<String>, KvError>;
    /// Atomically replace `expected` (`None`: absent) with `new` (`None`: delete); false,
    /// changing nothing, when the current value differs.
    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, KvError>;
    /// Set only if absent; returns whether it was set.
    async fn set_if_absent(&self, key: &str, value: &[u8]) -> Result<bool, KvError> {
        self.compare_and_swap(key, None, Some(value)).await
    }
    /// Atomically add `delta` to the integer under `key` (absent: 0; see
    /// [`switchboard_model::kv::increment`]) and return the sum.
    async fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError>;
    /// What the space holds now.
    fn usage(&self) -> KvUsage;
}

/// The effect journal (see `switchboard_model::effect` and [`crate::capabilities`]).
#[async_trait]
pub trait EffectJournal: Send + Sync {
    /// The journaled call at `call`, if there is one.
    async fn get(&self, call: CallKey<'_>) -> Result<Option<Effect>, StoreFailure>;
    /// Record that `effect` is about to be sent; returns once that is durable. Only then may
    /// the request leave.
    async fn begin(&self, call: CallKey<'_>, effect: &Effect) -> Result<(), StoreFailure>;
    /// Record the outcome of a call begun with `begin` (durable with the store's next flush).
    async fn settle(&self, call: CallKey<'_>, effect: &Effect) -> Result<(), StoreFailure>;
    /// Forget a call that did not take effect, so a later attempt sends it afresh.
    async fn forget(&self, call: CallKey<'_>) -> Result<(), StoreFailure>;
}

/// The store as recipes' runs use it.
pub trait RecipeStore: Send + Sync {
    /// The kv space of `recipe`, with `quota`: one per recipe for the life of the store.
    fn kv(&self, recipe: &str, quota: KvQuota) -> Result<Arc<dyn KvSpace>, StoreFailure>;
    /// The effect journal.
    fn effects(&self) -> Arc<dyn EffectJournal>;
}
