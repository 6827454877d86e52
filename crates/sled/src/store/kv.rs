//! Recipe kv: one sled tree per recipe, with limits per key and value and a quota per recipe
//! (keys and bytes held), so one recipe cannot fill the disk every recipe shares.

use super::Failures;
use std::sync::{Arc, Mutex};
pub use switchboard_model::kv::{KvError, KvQuota, KvUsage, MAX_KEY_BYTES, MAX_VALUE_BYTES};
use switchboard_model::kv::{check_key, check_prefix, check_value, delta};

/// One recipe's durable key-value space.
#[derive(Clone)]
pub struct Kv {
    inner: Arc<Space>,
}

struct Space {
    recipe: String,
    tree: sled::Tree,
    failures: Failures,
    /// What the tree holds, and its quota; every write holds this lock, so the check and
    /// the write it allows are one step.
    state: Mutex<(KvUsage, KvQuota)>,
}

impl Kv {
    /// Open `recipe`'s space on `tree`, counting what it holds.
    pub(super) fn open(
        recipe: &str,
        tree: sled::Tree,
        quota: KvQuota,
        failures: Failures,
    ) -> Result<Self, sled::Error> {
        let mut usage = KvUsage::default();
        for item in tree.iter() {
            let (k, v) = item?;
            usage.keys += 1;
            usage.bytes += (k.len() + v.len()) as u64;
        }
        Ok(Kv {
            inner: Arc::new(Space {
                recipe: recipe.to_string(),
                tree,
                failures,
                state: Mutex::new((usage, quota)),
            }),
        })
    }

    pub(super) fn set_quota(&self, quota: KvQuota) {
        self.inner.state.lock().unwrap().1 = quota;
    }

    /// What this space holds now.
    pub fn usage(&self) -> KvUsage {
        self.inner.state.lock().unwrap().0
    }

    fn store_error(&self, e: sled::Error) -> KvError {
        self.inner.failures.report(&e);
        KvError::Store(e.to_string())
    }

    /// The usage after a change of (`dk` keys, `db` bytes), or the refusal if it grows past
    /// the quota.
    fn allow(
        &self,
        usage: KvUsage,
        quota: KvQuota,
        (dk, db): (i64, i64),
    ) -> Result<KvUsage, KvError> {
        let after = KvUsage {
            keys: usage.keys.saturating_add_signed(dk),
            bytes: usage.bytes.saturating_add_signed(db),
        };
        if (dk > 0 && after.keys > quota.max_keys) || (db > 0 && after.bytes > quota.max_bytes) {
            return Err(KvError::QuotaExceeded {
                recipe: self.inner.recipe.clone(),
                keys: after.keys,
                bytes: after.bytes,
                max_keys: quota.max_keys,
                max_bytes: quota.max_bytes,
            });
        }
        Ok(after)
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        check_key(key)?;
        Ok(self
            .inner
            .tree
            .get(key)
            .map_err(|e| self.store_error(e))?
            .map(|v| v.to_vec()))
    }

    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        check_key(key)?;
        check_value(value)?;
        let mut state = self.inner.state.lock().unwrap();
        let (usage, quota) = *state;
        // Far from the quota (the usual case), even a new key fits: no need to read the old
        // value first; it comes back from the insert.
        if self
            .allow(usage, quota, delta(key, None, Some(value.len())))
            .is_err()
        {
            let old = self.inner.tree.get(key).map_err(|e| self.store_error(e))?;
            self.allow(
                usage,
                quota,
                delta(key, old.map(|v| v.len()), Some(value.len())),
            )?;
        }
        let old = self
            .inner
            .tree
            .insert(key, value)
            .map_err(|e| self.store_error(e))?;
        let change = delta(key, old.map(|v| v.len()), Some(value.len()));
        state.0 = self.allow(usage, KvQuota::unlimited(), change)?;
        Ok(())
    }

    /// Returns whether the key existed.
    pub fn delete(&self, key: &str) -> Result<bool, KvError> {
        check_key(key)?;
        let mut state = self.inner.state.lock().unwrap();
        let old = self
            .inner
            .tree
            .remove(key)
            .map_err(|e| self.store_error(e))?;
        let existed = old.is_some();
        let change = delta(key, old.map(|v| v.len()), None);
        state.0 = self.allow(state.0, KvQuota::unlimited(), change)?;
        Ok(existed)
    }

    /// Keys starting with `prefix`, in byte order, at most `limit`.
    pub fn list_keys(&self, prefix: &str, limit: Option<usize>) -> Result<Vec<String>, KvError> {
        check_prefix(prefix)?;
        let mut keys = Vec::new();
        for item in self.inner.tree.scan_prefix(prefix).keys() {
            if limit.is_some_and(|l| keys.len() >= l) {
                break;
            }
            let key = item.map_err(|e| self.store_error(e))?;
            // Keys are written from WIT strings, so they are always UTF-8.
            keys.push(String::from_utf8_lossy(&key).into_owned());
        }
        Ok(keys)
    }

    /// Atomically replace `expected` with `new`; false when the current value differs.
    pub fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, KvError> {
        check_key(key)?;
        if let Some(v) = new {
            check_value(v)?;
        }
        let mut state = self.inner.state.lock().unwrap();
        let (usage, quota) = *state;
        // If the swap happens, the old value was `expected`: the change is known up front.
        let after = match self.allow(
            usage,
            quota,
            delta(key, expected.map(<[u8]>::len), new.map(<[u8]>::len)),
        ) {
            Ok(after) => after,
            // A swap that would not happen anyway (the value is not `expected`) is a plain
            // "no", quota or not: a claim taken before is still "taken", not "quota exceeded".
            Err(refusal) => {
                let current = self.inner.tree.get(key).map_err(|e| self.store_error(e))?;
                if current.as_deref() != expected {
                    return Ok(false);
                }
                return Err(refusal);
            }
        };
        let swapped = self
            .inner
            .tree
            .compare_and_swap(key, expected, new)
            .map_err(|e| self.store_error(e))?
            .is_ok();
        if swapped {
            state.0 = after;
        }
        Ok(swapped)
    }

    /// Atomically add `by` to the integer under `key` (absent: 0); returns the sum.
    pub fn increment(&self, key: &str, by: i64) -> Result<i64, KvError> {
        check_key(key)?;
        // Every writer of the space holds the lock: the read and the write are one step.
        let mut state = self.inner.state.lock().unwrap();
        let (usage, quota) = *state;
        let old = self.inner.tree.get(key).map_err(|e| self.store_error(e))?;
        let (sum, new) = switchboard_model::kv::increment(old.as_deref(), by)?;
        let after = self.allow(
            usage,
            quota,
            delta(key, old.as_ref().map(|v| v.len()), Some(new.len())),
        )?;
        self.inner
            .tree
            .insert(key, new)
            .map_err(|e| self.store_error(e))?;
        state.0 = after;
        Ok(sum)
    }

    /// Set only if absent; returns whether it was set.
    pub fn set_if_absent(&self, key: &str, value: &[u8]) -> Result<bool, KvError> {
        self.compare_and_swap(key, None, Some(value))
    }
}

#[async_trait::async_trait]
impl switchboard_runtime::store::KvSpace for Kv {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Kv::get(self, key)
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        Kv::set(self, key, value)
    }

    async fn delete(&self, key: &str) -> Result<bool, KvError> {
        Kv::delete(self, key)
    }

    async fn list_keys(&self, prefix: &str, limit: Option<usize>) -> Result<Vec<String>, KvError> {
        Kv::list_keys(self, prefix, limit)
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, KvError> {
        Kv::compare_and_swap(self, key, expected, new)
    }

    async fn increment(&self, key: &str, by: i64) -> Result<i64, KvError> {
        Kv::increment(self, key, by)
    }

    fn usage(&self) -> KvUsage {
        Kv::usage(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn limits_and_cas() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let kv = store.kv("a", KvQuota::default()).unwrap();
        assert_eq!(kv.set("", b"x"), Err(KvError::EmptyKey));
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        assert_eq!(
            kv.set(&long, b"x"),
            Err(KvError::KeyTooLarge {
                len: MAX_KEY_BYTES + 1
            })
        );
        let big = vec![0u8; MAX_VALUE_BYTES + 1];
        assert_eq!(
            kv.set("k", &big),
            Err(KvError::ValueTooLarge {
                len: MAX_VALUE_BYTES + 1
            })
        );
        assert!(kv.set_if_absent("k", b"1").unwrap());
        assert!(!kv.set_if_absent("k", b"2").unwrap());
        assert!(!kv.compare_and_swap("k", Some(b"2"), Some(b"3")).unwrap());
        assert!(kv.compare_and_swap("k", Some(b"1"), Some(b"3")).unwrap());
        assert_eq!(kv.get("k").unwrap().as_deref(), Some(&b"3"[..]));
        kv.set("k2", b"x").unwrap();
        kv.set("other", b"x").unwrap();
        assert_eq!(kv.list_keys("k", None).unwrap(), vec!["k", "k2"]);
        assert_eq!(kv.list_keys("", Some(1)).unwrap(), vec!["k"]);
        assert!(kv.delete("k").unwrap());
        assert!(!kv.delete("k").unwrap());
        // Another recipe's space is separate.
        assert!(
            store
                .kv("b", KvQuota::default())
                .unwrap()
                .list_keys("", None)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn the_quota_counts_keys_and_bytes_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let quota = KvQuota {
            max_keys: 3,
            max_bytes: 100,
        };
        {
            let store = Store::open(dir.path()).unwrap();
            let kv = store.kv("a", quota).unwrap();
            kv.set("a", b"12345").unwrap();
            kv.set("b", b"12345").unwrap();
            kv.set("c", b"12345").unwrap();
            assert_eq!(kv.usage(), KvUsage { keys: 3, bytes: 18 });
            let e = kv.set("d", b"1").unwrap_err();
            assert_eq!(
                e.to_string(),
                "recipe 'a' kv would hold 4 keys and 20 bytes; its quota is 3 keys and 100 bytes (config [plugins.a] kv_max_keys, kv_max_bytes)"
            );
            // Overwriting and shrinking are always allowed; growing a value counts bytes.
            kv.set("a", b"1").unwrap();
            assert_eq!(
                kv.set("b", &[b'x'; 95]).unwrap_err(),
                KvError::QuotaExceeded {
                    recipe: "a".into(),
                    keys: 3,
                    bytes: 104,
                    max_keys: 3,
                    max_bytes: 100
                }
            );
            // At the quota, a claim on a key taken before is still a plain "no".
            assert!(!kv.set_if_absent("a", b"x").unwrap());
            assert!(kv.delete("c").unwrap());
            assert!(kv.set_if_absent("d", b"1").unwrap());
            assert!(kv.compare_and_swap("d", Some(b"1"), None).unwrap());
            assert_eq!(kv.usage(), KvUsage { keys: 2, bytes: 8 });
            store.flush().unwrap();
        }
        let store = Store::reopen(dir.path());
        assert_eq!(
            store.kv("a", quota).unwrap().usage(),
            KvUsage { keys: 2, bytes: 8 }
        );
    }
}
