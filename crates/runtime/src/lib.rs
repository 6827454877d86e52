//! The wasm runtime: one engine per process, plugins compiled once and pre-linked, and a
//! fresh, bounded `Store` for every event.
//!
//! Isolation, per run:
//! - time: epoch interruption (one ticker thread per engine) makes running guest code
//!   yield to the executor every tick and trap at the deadline, and the whole run, host
//!   calls included, sits inside a tokio timeout;
//! - memory: a per-instance cap enforced by [`state::RunLimiter`], inside the pooling
//!   allocator's slots (copy-on-write images make instantiation cheap);
//! - capabilities: WASI is wired for clocks, randomness and captured stdio only; every
//!   Switchboard capability call is checked against the manifest's grants.

pub mod bindings;
pub mod cache;
pub mod capabilities;
pub mod output;
pub mod plugin;
pub mod state;
pub mod store;

mod execute;
mod fairness;
mod load;
mod options;
mod plugins;
mod report;

use fairness::{EpochTicker, Fairness};
pub use options::{PluginOverrides, RuntimeOptions, engine_config};
pub use plugins::Plugins;
pub use report::RunReport;

use crate::store::{EffectJournal, RecipeStore, StoreFailure};
use cache::ComponentCache;
use plugin::PluginLimits;
use state::RunState;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
pub use switchboard_model::RunError;
use switchboard_model::kv::KvQuota;
use switchboard_vendors::Connections;
use wasmtime::Engine;
use wasmtime::component::Linker;

/// The `tracing` target of recipes' log lines copied to the host's log. They stay out of
/// exported traces: a recipe may log personal data, and each line is kept in its run's log.
pub const RECIPE_LOG: &str = "switchboard_runtime::recipe";

/// Failure to build the runtime itself.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot configure the wasm engine: {0}")]
    Engine(String),
    #[error("the store: {0}")]
    Store(#[from] StoreFailure),
}

/// The recipe host's wasm runtime.
pub struct Runtime {
    engine: Engine,
    linker: Linker<RunState>,
    options: RuntimeOptions,
    store: Arc<dyn RecipeStore>,
    connections: Arc<Connections>,
    effects: Arc<dyn EffectJournal>,
    fairness: Arc<Fairness>,
    cache: Option<ComponentCache>,
    compilations: Arc<AtomicU64>,
    _ticker: EpochTicker,
}

impl Runtime {
    /// A runtime whose recipes keep kv state in `store` and reach vendors through `connections`.
    pub fn new(
        options: RuntimeOptions,
        store: Arc<dyn RecipeStore>,
        connections: Connections,
    ) -> Result<Self, RuntimeError> {
        let engine = Engine::new(&engine_config(&options))
            .map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        bindings::Recipe::add_to_linker::<RunState, wasmtime::component::HasSelf<RunState>>(
            &mut linker,
            |state| state,
        )
        .map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        let cache = options.cache_dir.clone().map(ComponentCache::new);
        let ticker = EpochTicker::start(&engine, options.epoch_tick);
        let effects = store.effects();
        let fairness = Arc::new(Fairness {
            lane: (options.slow_lane > 0)
                .then(|| Arc::new(tokio::sync::Semaphore::new(options.slow_lane))),
            slice: options.cpu_slice,
        });
        Ok(Runtime {
            engine,
            linker,
            options,
            store,
            connections: Arc::new(connections),
            effects,
            fairness,
            cache,
            compilations: Arc::new(AtomicU64::new(0)),
            _ticker: ticker,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn options(&self) -> &RuntimeOptions {
        &self.options
    }

    /// The vendor connections recipes reach.
    pub fn connections(&self) -> &Connections {
        &self.connections
    }

    /// How many components this runtime compiled (rather than took from the cache).
    pub fn compilations(&self) -> u64 {
        self.compilations.load(Ordering::Relaxed)
    }

    /// Drop from the compiled-component cache every component but `loaded` (content
    /// hashes): the cache holds what is loaded, not every version ever dropped in.
    pub fn prune_cache<'a>(&self, loaded: impl IntoIterator<Item = &'a str>) {
        if let Some(cache) = &self.cache {
            let removed = cache.retain(&self.engine, loaded);
            if removed > 0 {
                tracing::debug!(removed, dir = %cache.dir().display(), "compiled-component cache pruned");
            }
        }
    }

    /// The limits for the recipe called `name`: defaults, then its config overrides.
    pub fn limits_for(&self, name: &str) -> PluginLimits {
        let o = self
            .options
            .overrides
            .get(name)
            .copied()
            .unwrap_or_default();
        PluginLimits {
            deadline: o.deadline.unwrap_or(self.options.deadline),
            memory_limit: o.memory_limit.unwrap_or(self.options.memory_limit),
            kv_quota: KvQuota {
                max_keys: o.kv_max_keys.unwrap_or(self.options.kv_quota.max_keys),
                max_bytes: o.kv_max_bytes.unwrap_or(self.options.kv_quota.max_bytes),
            },
        }
    }
}
