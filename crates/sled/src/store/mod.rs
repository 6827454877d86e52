//! The embedded store: one sled database per host, holding each recipe's kv state (one tree
//! per recipe, so no recipe can reach another's keys), the effect journal, vendor quota
//! counters, and the pipeline's records.
//!
//! - [`kv`]: recipe kv with per-recipe quotas;
//! - [`effects`]: the effect journal of host calls that change vendors;
//! - [`commit`]: group commit, so concurrent writers that need durability share a flush.
//!
//! A store I/O error (a full disk, a read-only remount) is reported to [`Store::failure`],
//! which the server's readiness answers from.

pub mod commit;
pub mod effects;
pub mod kv;

use commit::{CommitError, Committer};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

pub use kv::Kv;
pub use kv::{KvError, KvQuota, KvUsage, MAX_KEY_BYTES, MAX_VALUE_BYTES};

/// Failure to open or use the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store at {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("store error: {0}")]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error("corrupt record {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

/// The first store I/O error, shared by every handle. sled keeps failing once an I/O error
/// has happened (even after the disk has room again) until the database is opened anew, so
/// a failure is for the life of this handle: `serve` stops and exits for a supervisor to
/// start it again, and nothing acknowledged before is lost (it was flushed).
#[derive(Clone, Default)]
pub struct Failures {
    first: Arc<Mutex<Option<String>>>,
    failed: Arc<tokio::sync::Notify>,
}

impl Failures {
    /// Note a failed store operation (only I/O errors: a corrupt record is not a store fault).
    pub fn report(&self, error: &sled::Error) {
        if let sled::Error::Io(e) = error {
            let mut first = self.first.lock().unwrap();
            if first.is_none() {
                tracing::error!("the store failed: {e}");
                *first = Some(e.to_string());
                self.failed.notify_waiters();
            }
        }
    }

    /// The failure, if the store has failed.
    pub fn get(&self) -> Option<String> {
        self.first.lock().unwrap().clone()
    }

    /// Wait until the store fails; returns the failure.
    pub async fn wait(&self) -> String {
        loop {
            let failed = self.failed.notified();
            if let Some(e) = self.get() {
                return e;
            }
            failed.await;
        }
    }
}

/// The host's embedded database.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    effects_tree: sled::Tree,
    committer: Arc<OnceLock<Committer>>,
    spaces: Arc<Mutex<HashMap<String, Kv>>>,
    failures: Failures,
}

impl Store {
    /// Open (or create) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .open()
            .map_err(|source| StoreError::Open {
                path: dir.to_owned(),
                source,
            })?;
        let effects_tree = db.open_tree("effects").map_err(|source| StoreError::Open {
            path: dir.to_owned(),
            source,
        })?;
        Ok(Store {
            db,
            effects_tree,
            committer: Arc::new(OnceLock::new()),
            spaces: Arc::new(Mutex::new(HashMap::new())),
            failures: Failures::default(),
        })
    }

    /// The kv space of one recipe, with its quota. One space per recipe for the life of the
    /// store: every version of a plugin, and every run, share its usage count.
    pub fn kv(&self, recipe: &str, quota: KvQuota) -> Result<Kv, StoreError> {
        let mut spaces = self.spaces.lock().unwrap();
        if let Some(kv) = spaces.get(recipe) {
            kv.set_quota(quota);
            return Ok(kv.clone());
        }
        let tree = self.db.open_tree(format!("kv/{recipe}"))?;
        let kv = Kv::open(recipe, tree, quota, self.failures.clone())?;
        spaces.insert(recipe.to_string(), kv.clone());
        Ok(kv)
    }

    /// Daily counters for vendor quotas.
    pub fn quota(&self) -> Result<Quota, StoreError> {
        Ok(Quota {
            tree: self.db.open_tree("quota")?,
        })
    }

    /// The effect journal of host calls.
    pub fn effects(&self) -> effects::Effects {
        effects::Effects::new(self.effects_tree.clone(), self.clone())
    }

    /// The sled database itself, for the pipeline's own trees.
    pub fn db(&self) -> sled::Db {
        self.db.clone()
    }

    /// Store I/O failures, shared with everything that writes to this store.
    pub fn failures(&self) -> &Failures {
        &self.failures
    }

    /// The store's failure, if an I/O error has happened.
    pub fn failure(&self) -> Option<String> {
        self.failures.get()
    }

    /// Wait until everything written before this call is on disk, sharing the flush with
    /// concurrent callers (group commit).
    pub async fn commit(&self) -> Result<(), CommitError> {
        let result = self.committer().commit().await;
        if let Err(e) = &result {
            self.failures
                .report(&sled::Error::Io(std::io::Error::other(e.0.clone())));
        }
        result
    }

    fn committer(&self) -> &Committer {
        self.committer
            .get_or_init(|| Committer::start(self.db.clone()))
    }

    /// Write everything to disk.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().inspect_err(|e| self.failures.report(e))?;
        Ok(())
    }
}

impl switchboard_runtime::store::RecipeStore for Store {
    fn kv(
        &self,
        recipe: &str,
        quota: KvQuota,
    ) -> Result<
        Arc<dyn switchboard_runtime::store::KvSpace>,
        switchboard_runtime::store::StoreFailure,
    > {
        Ok(Arc::new(Store::kv(self, recipe, quota).map_err(|e| {
            switchboard_runtime::store::StoreFailure(e.to_string())
        })?))
    }

    fn effects(&self) -> Arc<dyn switchboard_runtime::store::EffectJournal> {
        Arc::new(effects::Effects::new(
            self.effects_tree.clone(),
            self.clone(),
        ))
    }
}

/// Counters that survive restarts, for vendor quotas (Homebase360's 500 SMS a day).
#[derive(Clone)]
pub struct Quota {
    tree: sled::Tree,
}

fn decode_count(v: Option<&[u8]>) -> u64 {
    v.and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

impl Quota {
    /// Take one unit of `key` if fewer than `limit` are taken; returns whether it was.
    pub fn try_take(&self, key: &str, limit: u64) -> Result<bool, KvError> {
        loop {
            let current = self.tree.get(key).map_err(kv_store)?;
            let used = decode_count(current.as_deref());
            if used >= limit {
                return Ok(false);
            }
            let next = (used + 1).to_be_bytes();
            if self
                .tree
                .compare_and_swap(key, current, Some(&next[..]))
                .map_err(kv_store)?
                .is_ok()
            {
                self.tree.flush().map_err(kv_store)?;
                return Ok(true);
            }
        }
    }

    /// Return a unit taken for an attempt that did not happen.
    pub fn give_back(&self, key: &str) -> Result<(), KvError> {
        self.tree
            .update_and_fetch(key, |v| {
                let used = decode_count(v);
                Some(used.saturating_sub(1).to_be_bytes().to_vec())
            })
            .map_err(kv_store)?;
        Ok(())
    }

    /// How many units of `key` are taken.
    pub fn used(&self, key: &str) -> Result<u64, KvError> {
        Ok(decode_count(
            self.tree.get(key).map_err(kv_store)?.as_deref(),
        ))
    }
}

#[async_trait::async_trait]
impl switchboard_vendors::Counters for Quota {
    async fn try_take(
        &self,
        key: &str,
        limit: u64,
    ) -> Result<bool, switchboard_model::RecipeError> {
        Ok(Quota::try_take(self, key, limit)?)
    }

    async fn give_back(&self, key: &str) -> Result<(), switchboard_model::RecipeError> {
        Ok(Quota::give_back(self, key)?)
    }

    async fn used(&self, key: &str) -> Result<u64, switchboard_model::RecipeError> {
        Ok(Quota::used(self, key)?)
    }
}

fn kv_store(e: sled::Error) -> KvError {
    KvError::Store(e.to_string())
}

#[cfg(test)]
impl Store {
    /// Open the store at `dir` again once the previous handle let go: sled's background
    /// flusher holds the file lock for a moment after the last handle is dropped (seen in
    /// CI: "could not acquire lock").
    pub(crate) fn reopen(dir: &Path) -> Store {
        for _ in 0..300 {
            match Store::open(dir) {
                Ok(store) => return store,
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
        panic!("the store at {} did not open again", dir.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_counters() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let quota = store.quota().unwrap();
        assert!(quota.try_take("q", 2).unwrap());
        assert!(quota.try_take("q", 2).unwrap());
        assert!(!quota.try_take("q", 2).unwrap());
        quota.give_back("q").unwrap();
        assert_eq!(quota.used("q").unwrap(), 1);
    }
}
