//! Recipe kv: its limits and quota, and why a call was refused.

/// Largest key a recipe may use, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest value a recipe may store, in bytes.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;

/// How much one recipe's kv may hold: keys, and bytes of keys and values together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvQuota {
    pub max_keys: u64,
    pub max_bytes: u64,
}

impl KvQuota {
    /// No limit at all.
    pub fn unlimited() -> Self {
        KvQuota {
            max_keys: u64::MAX,
            max_bytes: u64::MAX,
        }
    }
}

impl Default for KvQuota {
    fn default() -> Self {
        KvQuota {
            max_keys: 250_000,
            max_bytes: 128 << 20,
        }
    }
}

/// Why a kv call was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum KvError {
    #[error("key is {len} bytes; keys are at most {MAX_KEY_BYTES} bytes")]
    KeyTooLarge { len: usize },
    #[error("key is empty")]
    EmptyKey,
    #[error("value is {len} bytes; values are at most {MAX_VALUE_BYTES} bytes")]
    ValueTooLarge { len: usize },
    #[error(
        "recipe '{recipe}' kv would hold {keys} keys and {bytes} bytes; its quota is {max_keys} keys and {max_bytes} bytes (config [plugins.{recipe}] kv_max_keys, kv_max_bytes)"
    )]
    QuotaExceeded {
        recipe: String,
        keys: u64,
        bytes: u64,
        max_keys: u64,
        max_bytes: u64,
    },
    #[error(
        "the value under the key is not an integer: increment adds only to an integer kept as decimal text (or to an absent key)"
    )]
    NotAnInteger,
    #[error("the value under the key is {current}; adding {delta} leaves the signed 64-bit range")]
    Overflow { current: i64, delta: i64 },
    #[error("store error: {0}")]
    Store(String),
}

/// Refuse a key no backend stores: empty, or longer than [`MAX_KEY_BYTES`].
pub fn check_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(KvError::KeyTooLarge { len: key.len() });
    }
    Ok(())
}

/// Refuse a key prefix no key can have: longer than [`MAX_KEY_BYTES`] (empty is every key).
pub fn check_prefix(prefix: &str) -> Result<(), KvError> {
    if prefix.len() > MAX_KEY_BYTES {
        return Err(KvError::KeyTooLarge { len: prefix.len() });
    }
    Ok(())
}

/// Refuse a value longer than [`MAX_VALUE_BYTES`].
pub fn check_value(value: &[u8]) -> Result<(), KvError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(KvError::ValueTooLarge { len: value.len() });
    }
    Ok(())
}

/// The usage change of replacing a value of `old` bytes by one of `new` bytes under `key`
/// (`None`: absent): (keys, bytes), signed. A key's bytes count with its value's.
pub fn delta(key: &str, old: Option<usize>, new: Option<usize>) -> (i64, i64) {
    let size = |v: Option<usize>| v.map_or(0, |n| (key.len() + n) as i64);
    (
        i64::from(new.is_some()) - i64::from(old.is_some()),
        size(new) - size(old),
    )
}

/// The integer a counter's value holds: decimal text, as JSON writes an integer (JSON
/// whitespace around it allowed); `None` for anything else (a fraction, an exponent, a
/// number outside the signed 64-bit range, not a number).
pub fn counter_of(value: &[u8]) -> Option<i64> {
    serde_json::from_slice::<i64>(value).ok()
}

/// The counter after adding `delta` to what `old` holds (absent: 0), and its bytes.
pub fn increment(old: Option<&[u8]>, delta: i64) -> Result<(i64, Vec<u8>), KvError> {
    let current = match old {
        None => 0,
        Some(v) => counter_of(v).ok_or(KvError::NotAnInteger)?,
    };
    let sum = current
        .checked_add(delta)
        .ok_or(KvError::Overflow { current, delta })?;
    Ok((sum, sum.to_string().into_bytes()))
}

/// Keys and bytes one recipe's kv holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KvUsage {
    pub keys: u64,
    pub bytes: u64,
}

impl From<KvError> for crate::RecipeError {
    fn from(e: KvError) -> Self {
        match e {
            KvError::KeyTooLarge { .. } | KvError::EmptyKey => {
                crate::RecipeError::invalid("key", e.to_string())
            }
            KvError::ValueTooLarge { .. } | KvError::NotAnInteger | KvError::Overflow { .. } => {
                crate::RecipeError::invalid("value", e.to_string())
            }
            KvError::QuotaExceeded { .. } => crate::RecipeError::QuotaExceeded {
                message: e.to_string(),
            },
            KvError::Store(message) => crate::RecipeError::Other { message },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_json_integers() {
        assert_eq!(increment(None, 5), Ok((5, b"5".to_vec())));
        assert_eq!(increment(Some(b"41"), 1), Ok((42, b"42".to_vec())));
        assert_eq!(increment(Some(b" -3\n"), 1), Ok((-2, b"-2".to_vec())));
        for bad in [
            &b"4.0"[..],
            b"1e3",
            b"-0",
            b"\"7\"",
            b"",
            b"x",
            b"99999999999999999999",
        ] {
            assert_eq!(
                increment(Some(bad), 1),
                Err(KvError::NotAnInteger),
                "{bad:?}"
            );
        }
        assert_eq!(
            increment(Some(i64::MAX.to_string().as_bytes()), 1),
            Err(KvError::Overflow {
                current: i64::MAX,
                delta: 1
            })
        );
    }
}
