//! What recipes' runs use, on PostgreSQL: kv with quotas, the effect journal, vendor quota
//! counters. A kv write that changes a space's size locks its recipe's usage row, so a quota
//! holds over every host.

use crate::Pools;
use async_trait::async_trait;
use sqlx::Row;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use switchboard_model::RecipeError;
use switchboard_model::effect::{CallKey, Effect};
use switchboard_model::kv::{KvError, KvQuota, KvUsage, check_key, check_prefix, check_value};
use switchboard_runtime::store::{EffectJournal, KvSpace, RecipeStore, StoreFailure};
use switchboard_vendors::Counters;

/// A kv counter (recipe $1, key $2) plus $3, as `kv_increment` (migration 4) adds when the
/// sum is as long as the value it replaces (no quota to check, no usage to change), in one
/// statement: the new value, or no row when the key is absent, its value not such an integer
/// (here: at most 18 digits, so the cast cannot overflow) or the sum of another length —
/// `kv_increment` then decides. It takes the key's lock first, as every kv writer does: a
/// write that held the lock and changed the row meanwhile is seen when the update meets its
/// row version (PostgreSQL re-evaluates the statement on the newest one).
static ADD_IN_PLACE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let sum = "(CASE WHEN encode(k.value, 'escape') \
               ~ '^[ \\t\\n\\r]*(0|-?[1-9][0-9]{0,17})[ \\t\\n\\r]*$' \
               THEN btrim(encode(k.value, 'escape'), E' \\t\\n\\r')::numeric + $3 END)";
    format!(
        "UPDATE kv k SET value = convert_to({sum}::text, 'UTF8') \
         WHERE k.recipe = $1 AND k.key = $2 \
           AND (SELECT 1 FROM pg_advisory_xact_lock(hashtext(current_schema() || '/' || $1), \
                                                    hashtext($2))) = 1 \
           AND {sum} BETWEEN -9223372036854775808 AND 9223372036854775807 \
           AND octet_length(k.value) = octet_length({sum}::text) \
         RETURNING k.value"
    )
});

/// Kv spaces (one per recipe for the life of the backend) and the effect journal.
pub struct PgRecipeStore {
    pools: Pools,
    spaces: Mutex<HashMap<String, Arc<PgKv>>>,
    /// What each recipe's space held when the backend opened (read once, so `kv` needs no
    /// round trip).
    usage_at_open: HashMap<String, KvUsage>,
}

impl PgRecipeStore {
    pub(crate) async fn open(pools: Pools) -> Result<Self, sqlx::Error> {
        let rows = sqlx::query("SELECT recipe, keys, bytes FROM kv_usage")
            .fetch_all(&pools.fast)
            .await?;
        let mut usage_at_open = HashMap::new();
        for row in rows {
            let keys: i64 = row.try_get("keys")?;
            let bytes: i64 = row.try_get("bytes")?;
            usage_at_open.insert(
                row.try_get::<String, _>("recipe")?,
                KvUsage {
                    keys: keys.max(0) as u64,
                    bytes: bytes.max(0) as u64,
                },
            );
        }
        Ok(PgRecipeStore {
            pools,
            spaces: Mutex::new(HashMap::new()),
            usage_at_open,
        })
    }

    /// Statements that added to counters in place so far, and the increments they carried
    /// (over every recipe's space).
    pub fn additions(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let spaces = self.spaces.lock().unwrap_or_else(|e| e.into_inner());
        spaces.values().fold((0, 0), |(s, i), kv| {
            (
                s + kv.adder.statements.load(Relaxed),
                i + kv.adder.increments.load(Relaxed),
            )
        })
    }
}

impl RecipeStore for PgRecipeStore {
    fn kv(&self, recipe: &str, quota: KvQuota) -> Result<Arc<dyn KvSpace>, StoreFailure> {
        let mut spaces = self.spaces.lock().unwrap_or_else(|e| e.into_inner());
        let space = spaces
            .entry(recipe.to_string())
            .or_insert_with(|| {
                Arc::new(PgKv {
                    recipe: recipe.to_string(),
                    pools: self.pools.clone(),
                    adder: Arc::new(Adder {
                        recipe: recipe.to_string(),
                        pools: self.pools.clone(),
                        waiting: Mutex::new(HashMap::new()),
                        statements: Default::default(),
                        increments: Default::default(),
                    }),
                    state: Mutex::new((
                        self.usage_at_open.get(recipe).copied().unwrap_or_default(),
                        quota,
                    )),
                })
            })
            .clone();
        space.state.lock().unwrap_or_else(|e| e.into_inner()).1 = quota;
        Ok(space)
    }

    fn effects(&self) -> Arc<dyn EffectJournal> {
        Arc::new(PgEffects::new(self.pools.clone()))
    }
}

/// One recipe's kv space.
pub struct PgKv {
    recipe: String,
    pools: Pools,
    /// The usage last seen (any host may have changed it since) and the quota.
    state: Mutex<(KvUsage, KvQuota)>,
    /// Increments of this space's counters, added together while one is being written.
    adder: Arc<Adder>,
}

/// Increments of one counter made while a statement adds to it wait, then go in one
/// statement that adds their sum ([`ADD_IN_PLACE`]): a hot counter (runs of a recipe
/// counting events of one kind, say) costs a statement per batch, not per increment, and
/// this host's runs do not queue on the key's lock inside the database. Each increment gets
/// the value it would have had with the batch's increments made one after another, in the
/// order they came; a batch holds amounts of one sign only (the first waiting one's), so
/// every one of those values is between the counter's value before and after (no overflow,
/// no longer value, in between). When the sum cannot be added in place (no such key, not
/// an integer, another length), each increment of the batch takes the usual path alone.
struct Adder {
    recipe: String,
    pools: Pools,
    /// The counters being added to: what waits for the next statement (a counter is here
    /// exactly while its writer task runs).
    waiting: Mutex<HashMap<String, VecDeque<Adding>>>,
    /// Statements written (added in place or not), and increments they carried.
    statements: std::sync::atomic::AtomicU64,
    increments: std::sync::atomic::AtomicU64,
}

/// An increment waiting for its batch, and who waits for its answer.
struct Adding {
    by: i64,
    answer: tokio::sync::oneshot::Sender<Added>,
}

/// What a batch's statement made of an increment.
#[derive(Clone)]
enum Added {
    /// Its counter's value after it.
    Sum(i64),
    /// Not added: the increment takes the usual path alone.
    Alone,
    Failed(KvError),
}

impl Adder {
    /// Add `by` to `key` with the increments made meanwhile.
    async fn add(self: &Arc<Self>, key: &str, by: i64) -> Added {
        let (answer, added) = tokio::sync::oneshot::channel();
        let start = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            match waiting.get_mut(key) {
                Some(queue) => {
                    queue.push_back(Adding { by, answer });
                    false
                }
                None => {
                    waiting.insert(key.to_string(), [Adding { by, answer }].into());
                    true
                }
            }
        };
        if start {
            // A task of its own: a run that stops waiting (its deadline, say) does not
            // strand the increments that queued behind it. Its own increment may still be
            // added, as one whose statement was on its way would be (or not, if its batch
            // cannot be added in place: then nobody is left to take the usual path).
            tokio::spawn(self.clone().write(key.to_string()));
        }
        added
            .await
            .unwrap_or_else(|_| Added::Failed(KvError::Store("the store is closing".into())))
    }

    /// Add `sum` to `key` in one statement: the counter's value after it; `Alone` if it
    /// cannot be added in place.
    async fn add_in_place(&self, key: &str, sum: i64) -> Result<i64, Added> {
        let written: Option<Vec<u8>> = sqlx::query_scalar(&ADD_IN_PLACE)
            .bind(&self.recipe)
            .bind(key)
            .bind(sum)
            .fetch_optional(&self.pools.fast)
            .await
            .map_err(|e| Added::Failed(store(e)))?;
        let value = written.ok_or(Added::Alone)?;
        std::str::from_utf8(&value)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                Added::Failed(KvError::Store("an added counter did not read back".into()))
            })
    }

    /// Write `key`'s batches until none waits.
    async fn write(self: Arc<Self>, key: String) {
        use std::sync::atomic::Ordering::Relaxed;
        loop {
            let batch: VecDeque<Adding> = {
                let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
                let Some(queue) = waiting.get_mut(&key) else {
                    return;
                };
                // The first waiting increment's sign: the others of it go too (and
                // zeros), the rest wait for the next batch.
                let sign = queue.iter().map(|a| a.by.signum()).find(|s| *s != 0);
                let (batch, rest): (VecDeque<Adding>, VecDeque<Adding>) = queue
                    .drain(..)
                    .partition(|a| sign.is_none_or(|s| a.by.signum() != -s));
                *queue = rest;
                if batch.is_empty() {
                    waiting.remove(&key);
                    return;
                }
                batch
            };
            let sum: i128 = batch.iter().map(|a| i128::from(a.by)).sum();
            let total = match i64::try_from(sum) {
                Err(_) => Err(Added::Alone),
                Ok(sum) => {
                    self.statements.fetch_add(1, Relaxed);
                    self.increments.fetch_add(batch.len() as u64, Relaxed);
                    self.add_in_place(&key, sum).await
                }
            };
            let total = match total {
                Ok(total) => total,
                Err(not) => {
                    for a in batch {
                        let _ = a.answer.send(not.clone());
                    }
                    continue;
                }
            };
            // Each one's value as if added in turn: the total less what came after it.
            let mut after = i128::from(total);
            for a in batch.into_iter().rev() {
                let _ = a.answer.send(Added::Sum(after as i64));
                after -= i128::from(a.by);
            }
        }
    }
}

/// A quota as the database's bigints (an unlimited one is `i64::MAX`).
fn limits(quota: KvQuota) -> (i64, i64) {
    let cap = |n: u64| n.min(i64::MAX as u64) as i64;
    (cap(quota.max_keys), cap(quota.max_bytes))
}

fn store(e: sqlx::Error) -> KvError {
    KvError::Store(e.to_string())
}

impl PgKv {
    fn quota(&self) -> KvQuota {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).1
    }

    fn seen(&self, usage: KvUsage) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0 = usage;
    }

    /// Write `key` (`new`; `None`: delete) if its value is `expected` (`Some(None)`: absent;
    /// `None`: whatever it is), within the quota: one call of `kv_write`, which takes the
    /// key's lock, and the recipe's usage row when the space's size changes, so the quota
    /// holds over every host. Returns whether it was written, and whether the key existed.
    async fn write(
        &self,
        key: &str,
        expected: Option<Option<&[u8]>>,
        new: Option<&[u8]>,
    ) -> Result<(bool, bool), KvError> {
        let quota = self.quota();
        let (max_keys, max_bytes) = limits(quota);
        let row = sqlx::query("SELECT * FROM kv_write($1, $2, $3, $4, $5, $6, $7)")
            .bind(&self.recipe)
            .bind(key)
            .bind(expected.is_some())
            .bind(expected.flatten())
            .bind(new)
            .bind(max_keys)
            .bind(max_bytes)
            .fetch_one(&self.pools.fast)
            .await
            .map_err(store)?;
        let existed: bool = row.try_get("o_existed").map_err(store)?;
        Ok((self.written(&row, quota)?, existed))
    }

    /// Whether `kv_write` (or `kv_increment`, through it) wrote, from its `o_written`,
    /// `o_keys` and `o_bytes`; the usage it read is the one seen now.
    fn written(&self, row: &sqlx::postgres::PgRow, quota: KvQuota) -> Result<bool, KvError> {
        let written: Option<bool> = row.try_get("o_written").map_err(store)?;
        // Not read when the write left the space's size as it was.
        let keys: Option<i64> = row.try_get("o_keys").map_err(store)?;
        let bytes: Option<i64> = row.try_get("o_bytes").map_err(store)?;
        let usage = keys.zip(bytes).map(|(keys, bytes)| KvUsage {
            keys: keys.max(0) as u64,
            bytes: bytes.max(0) as u64,
        });
        match written {
            Some(written) => {
                if let Some(usage) = usage {
                    self.seen(usage);
                }
                Ok(written)
            }
            None => Err(KvError::QuotaExceeded {
                recipe: self.recipe.clone(),
                keys: usage.map_or(0, |u| u.keys),
                bytes: usage.map_or(0, |u| u.bytes),
                max_keys: quota.max_keys,
                max_bytes: quota.max_bytes,
            }),
        }
    }
}

#[async_trait]
impl KvSpace for PgKv {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        check_key(key)?;
        sqlx::query_scalar("SELECT value FROM kv WHERE recipe = $1 AND key = $2")
            .bind(&self.recipe)
            .bind(key)
            .fetch_optional(&self.pools.fast)
            .await
            .map_err(store)
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        check_key(key)?;
        check_value(value)?;
        self.write(key, None, Some(value)).await.map(|_| ())
    }

    async fn delete(&self, key: &str) -> Result<bool, KvError> {
        check_key(key)?;
        Ok(self.write(key, None, None).await?.1)
    }

    async fn list_keys(&self, prefix: &str, limit: Option<usize>) -> Result<Vec<String>, KvError> {
        check_prefix(prefix)?;
        // In byte order: the column's collation is "C".
        sqlx::query_scalar(
            "SELECT key FROM kv WHERE recipe = $1 AND key >= $2 AND starts_with(key, $2) \
             ORDER BY key LIMIT $3",
        )
        .bind(&self.recipe)
        .bind(prefix)
        .bind(limit.map_or(i64::MAX, |l| l as i64))
        .fetch_all(&self.pools.fast)
        .await
        .map_err(store)
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, KvError> {
        check_key(key)?;
        if let Some(v) = new {
            check_value(v)?;
        }
        Ok(self.write(key, Some(expected), new).await?.0)
    }

    async fn increment(&self, key: &str, by: i64) -> Result<i64, KvError> {
        check_key(key)?;
        // The usual case: added in place, with the increments made meanwhile.
        match self.adder.add(key, by).await {
            Added::Sum(sum) => return Ok(sum),
            Added::Failed(e) => return Err(e),
            Added::Alone => {}
        }
        let quota = self.quota();
        let (max_keys, max_bytes) = limits(quota);
        let row = sqlx::query("SELECT * FROM kv_increment($1, $2, $3, $4, $5)")
            .bind(&self.recipe)
            .bind(key)
            .bind(by)
            .bind(max_keys)
            .bind(max_bytes)
            .fetch_one(&self.pools.fast)
            .await
            .map_err(store)?;
        let integer: bool = row.try_get("o_integer").map_err(store)?;
        if !integer {
            return Err(KvError::NotAnInteger);
        }
        let Some(sum) = row.try_get::<Option<i64>, _>("o_sum").map_err(store)? else {
            return Err(KvError::Overflow {
                current: row.try_get("o_current").map_err(store)?,
                delta: by,
            });
        };
        // Under the key's lock the swap inside cannot lose: false would be a bug.
        if !self.written(&row, quota)? {
            return Err(KvError::Store(
                "kv_increment lost its own compare-and-swap".into(),
            ));
        }
        Ok(sum)
    }

    fn usage(&self) -> KvUsage {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0
    }
}

/// The effect journal. An intent (`begin`) commits synchronously: it is on disk before the
/// request may leave; outcomes commit asynchronously (durable with the next synchronous
/// commit, within a fraction of a second), as the sled journal's do.
pub struct PgEffects {
    pools: Pools,
}

fn failure(e: sqlx::Error) -> StoreFailure {
    StoreFailure(e.to_string())
}

fn decode(json: &str) -> Result<Effect, StoreFailure> {
    serde_json::from_str(json).map_err(|e| StoreFailure(format!("a journaled call: {e}")))
}

impl PgEffects {
    pub(crate) fn new(pools: Pools) -> Self {
        PgEffects { pools }
    }

    async fn put(
        &self,
        call: CallKey<'_>,
        effect: &Effect,
        durable: bool,
    ) -> Result<(), StoreFailure> {
        let pool = if durable {
            &self.pools.durable
        } else {
            &self.pools.fast
        };
        sqlx::query(
            "INSERT INTO effects (run_id, fingerprint, occurrence, effect) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (run_id, fingerprint, occurrence) DO UPDATE SET effect = EXCLUDED.effect",
        )
        .bind(call.run)
        .bind(call.fingerprint)
        .bind(call.occurrence as i32)
        .bind(serde_json::to_string(effect).expect("effects serialize"))
        .execute(pool)
        .await
        .map_err(failure)?;
        Ok(())
    }

    /// Every journaled call of `run`, in the order they were sent.
    pub async fn of_run(&self, run: &str) -> Result<Vec<(Vec<u8>, i32, Effect)>, StoreFailure> {
        let rows = sqlx::query(
            "SELECT fingerprint, occurrence, effect FROM effects WHERE run_id = $1 ORDER BY sent",
        )
        .bind(run)
        .fetch_all(&self.pools.fast)
        .await
        .map_err(failure)?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("fingerprint").map_err(failure)?,
                    row.try_get("occurrence").map_err(failure)?,
                    decode(row.try_get("effect").map_err(failure)?)?,
                ))
            })
            .collect()
    }

    /// Forget `run`'s calls whose outcome is unknown; returns how many.
    pub async fn forget_unconfirmed(&self, run: &str) -> Result<usize, StoreFailure> {
        let mut forgotten = 0;
        for (fingerprint, occurrence, effect) in self.of_run(run).await? {
            if !effect.confirmed() {
                sqlx::query(
                    "DELETE FROM effects WHERE run_id = $1 AND fingerprint = $2 AND occurrence = $3",
                )
                .bind(run)
                .bind(&fingerprint)
                .bind(occurrence)
                .execute(&self.pools.fast)
                .await
                .map_err(failure)?;
                forgotten += 1;
            }
        }
        Ok(forgotten)
    }
}

#[async_trait]
impl EffectJournal for PgEffects {
    async fn get(&self, call: CallKey<'_>) -> Result<Option<Effect>, StoreFailure> {
        let json: Option<String> = sqlx::query_scalar(
            "SELECT effect FROM effects WHERE run_id = $1 AND fingerprint = $2 AND occurrence = $3",
        )
        .bind(call.run)
        .bind(call.fingerprint)
        .bind(call.occurrence as i32)
        .fetch_optional(&self.pools.fast)
        .await
        .map_err(failure)?;
        json.as_deref().map(decode).transpose()
    }

    async fn begin(&self, call: CallKey<'_>, effect: &Effect) -> Result<(), StoreFailure> {
        self.put(call, effect, true).await
    }

    async fn settle(&self, call: CallKey<'_>, effect: &Effect) -> Result<(), StoreFailure> {
        self.put(call, effect, false).await
    }

    async fn forget(&self, call: CallKey<'_>) -> Result<(), StoreFailure> {
        sqlx::query(
            "DELETE FROM effects WHERE run_id = $1 AND fingerprint = $2 AND occurrence = $3",
        )
        .bind(call.run)
        .bind(call.fingerprint)
        .bind(call.occurrence as i32)
        .execute(&self.pools.fast)
        .await
        .map_err(failure)?;
        Ok(())
    }
}

/// Counters for vendor quotas, one row each; a unit taken commits synchronously.
pub struct PgCounters {
    pub(crate) pools: Pools,
}

fn other(e: sqlx::Error) -> RecipeError {
    RecipeError::Other {
        message: format!("store error: {e}"),
    }
}

#[async_trait]
impl Counters for PgCounters {
    async fn try_take(&self, key: &str, limit: u64) -> Result<bool, RecipeError> {
        if limit == 0 {
            return Ok(false);
        }
        let taken: Option<i64> = sqlx::query_scalar(
            "INSERT INTO counters (key, used) VALUES ($1, 1) ON CONFLICT (key) \
             DO UPDATE SET used = counters.used + 1 WHERE counters.used < $2 RETURNING used",
        )
        .bind(key)
        .bind(limit.min(i64::MAX as u64) as i64)
        .fetch_optional(&self.pools.durable)
        .await
        .map_err(other)?;
        Ok(taken.is_some())
    }

    async fn give_back(&self, key: &str) -> Result<(), RecipeError> {
        sqlx::query("UPDATE counters SET used = greatest(used - 1, 0) WHERE key = $1")
            .bind(key)
            .execute(&self.pools.durable)
            .await
            .map_err(other)?;
        Ok(())
    }

    async fn used(&self, key: &str) -> Result<u64, RecipeError> {
        let used: Option<i64> = sqlx::query_scalar("SELECT used FROM counters WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pools.fast)
            .await
            .map_err(other)?;
        Ok(used.unwrap_or(0).max(0) as u64)
    }
}
