//! The embedded store: one sled database per host, holding each recipe's kv state
//! (one tree per recipe, so no recipe can reach another's keys).

use std::path::{Path, PathBuf};

/// Largest key a recipe may use, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest value a recipe may store, in bytes.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;

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
}

/// Why a kv call was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KvError {
    #[error("key is {len} bytes; keys are at most {MAX_KEY_BYTES} bytes")]
    KeyTooLarge { len: usize },
    #[error("key is empty")]
    EmptyKey,
    #[error("value is {len} bytes; values are at most {MAX_VALUE_BYTES} bytes")]
    ValueTooLarge { len: usize },
    #[error("store error: {0}")]
    Store(String),
}

impl From<sled::Error> for KvError {
    fn from(e: sled::Error) -> Self {
        KvError::Store(e.to_string())
    }
}

/// The host's embedded database.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
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
        Ok(Store { db })
    }

    /// The kv space of one recipe.
    pub fn kv(&self, recipe: &str) -> Result<Kv, StoreError> {
        Ok(Kv {
            tree: self.db.open_tree(format!("kv/{recipe}"))?,
        })
    }

    /// Daily counters for vendor quotas.
    pub fn quota(&self) -> Result<Quota, StoreError> {
        Ok(Quota {
            tree: self.db.open_tree("quota")?,
        })
    }

    /// The sled database itself, for the pipeline's own trees.
    pub fn db(&self) -> sled::Db {
        self.db.clone()
    }

    /// Write everything to disk.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

/// One recipe's durable key-value space.
#[derive(Clone)]
pub struct Kv {
    tree: sled::Tree,
}

fn check_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(KvError::KeyTooLarge { len: key.len() });
    }
    Ok(())
}

fn check_value(value: &[u8]) -> Result<(), KvError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(KvError::ValueTooLarge { len: value.len() });
    }
    Ok(())
}

impl Kv {
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        check_key(key)?;
        Ok(self.tree.get(key)?.map(|v| v.to_vec()))
    }

    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        check_key(key)?;
        check_value(value)?;
        self.tree.insert(key, value)?;
        Ok(())
    }

    /// Returns whether the key existed.
    pub fn delete(&self, key: &str) -> Result<bool, KvError> {
        check_key(key)?;
        Ok(self.tree.remove(key)?.is_some())
    }

    /// Keys starting with `prefix`, in byte order, at most `limit`.
    pub fn list_keys(&self, prefix: &str, limit: Option<usize>) -> Result<Vec<String>, KvError> {
        if prefix.len() > MAX_KEY_BYTES {
            return Err(KvError::KeyTooLarge { len: prefix.len() });
        }
        let mut keys = Vec::new();
        for item in self.tree.scan_prefix(prefix).keys() {
            if limit.is_some_and(|l| keys.len() >= l) {
                break;
            }
            let key = item?;
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
        Ok(self.tree.compare_and_swap(key, expected, new)?.is_ok())
    }

    /// Set only if absent; returns whether it was set.
    pub fn set_if_absent(&self, key: &str, value: &[u8]) -> Result<bool, KvError> {
        self.compare_and_swap(key, None, Some(value))
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
            let current = self.tree.get(key)?;
            let used = decode_count(current.as_deref());
            if used >= limit {
                return Ok(false);
            }
            let next = (used + 1).to_be_bytes();
            if self
                .tree
                .compare_and_swap(key, current, Some(&next[..]))?
                .is_ok()
            {
                self.tree.flush()?;
                return Ok(true);
            }
        }
    }

    /// Return a unit taken for an attempt that did not happen.
    pub fn give_back(&self, key: &str) -> Result<(), KvError> {
        self.tree.update_and_fetch(key, |v| {
            let used = decode_count(v);
            Some(used.saturating_sub(1).to_be_bytes().to_vec())
        })?;
        Ok(())
    }

    /// How many units of `key` are taken.
    pub fn used(&self, key: &str) -> Result<u64, KvError> {
        Ok(decode_count(self.tree.get(key)?.as_deref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_cas() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let kv = store.kv("a").unwrap();
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
        let quota = store.quota().unwrap();
        assert!(quota.try_take("q", 2).unwrap());
        assert!(quota.try_take("q", 2).unwrap());
        assert!(!quota.try_take("q", 2).unwrap());
        quota.give_back("q").unwrap();
        assert_eq!(quota.used("q").unwrap(), 1);
        // Another recipe's space is separate.
        assert!(
            store
                .kv("b")
                .unwrap()
                .list_keys("", None)
                .unwrap()
                .is_empty()
        );
    }
}
