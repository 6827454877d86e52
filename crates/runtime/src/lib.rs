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

use crate::capabilities::RunEffects;
use crate::store::{EffectJournal, RecipeStore, StoreFailure};
use bindings::types as wit;
use cache::{ComponentCache, content_hash};
use futures_util::FutureExt;
use plugin::{LoadError, Plugin, PluginLimits};
use serde::Serialize;
use state::{Grants, LogLimits, MemoryLimitExceeded, RunSetup, RunState};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
pub use switchboard_model::RunError;
use switchboard_model::kv::KvQuota;
use switchboard_model::{Event, Level, LogLine, Outcome, Unconfirmed, bound_text};
use switchboard_vendors::Connections;
use wasmtime::component::{Component, Linker};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolConcurrencyLimitError,
    PoolingAllocationConfig, Trap, UpdateDeadline,
};

/// Settings of the runtime; see [`crate::config`] for how the TOML maps onto them.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Default wall-clock budget of one run.
    pub deadline: Duration,
    /// Default memory cap of one instance, in bytes.
    pub memory_limit: usize,
    /// Instances that may be alive at once (the pooling allocator's size).
    pub max_instances: u32,
    /// Granularity of deadlines.
    pub epoch_tick: Duration,
    pub log_limits: LogLimits,
    /// Bytes of stdout, and of stderr, kept per run.
    pub output_limit: usize,
    /// Longest outcome or error text kept from a run, in bytes; longer text is cut with a
    /// marker saying how much was dropped.
    pub max_outcome_bytes: usize,
    /// Default kv quota of one recipe.
    pub kv_quota: KvQuota,
    /// Guest CPU time after which a run is demoted to the slow lane.
    pub cpu_slice: Duration,
    /// Demoted runs executing at once; 0 turns demotion off.
    pub slow_lane: usize,
    /// Where compiled components are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Per-recipe overrides of the limits, by recipe name.
    pub overrides: BTreeMap<String, PluginOverrides>,
    /// Per-recipe settings (JSON objects), by recipe name.
    pub settings: BTreeMap<String, Arc<str>>,
    /// Per-recipe connection maps (the recipe's name -> a configured connection), by recipe.
    pub connection_maps: BTreeMap<String, BTreeMap<String, String>>,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            deadline: Duration::from_secs(10),
            memory_limit: 64 << 20,
            max_instances: 128,
            epoch_tick: Duration::from_millis(5),
            log_limits: LogLimits::default(),
            output_limit: 64 * 1024,
            max_outcome_bytes: 64 * 1024,
            kv_quota: KvQuota::default(),
            cpu_slice: Duration::from_millis(50),
            slow_lane: 1,
            cache_dir: None,
            overrides: BTreeMap::new(),
            settings: BTreeMap::new(),
            connection_maps: BTreeMap::new(),
        }
    }
}

/// Limits set for one recipe in the config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PluginOverrides {
    pub deadline: Option<Duration>,
    pub memory_limit: Option<usize>,
    pub kv_max_keys: Option<u64>,
    pub kv_max_bytes: Option<u64>,
}

/// Failure to build the runtime itself.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot configure the wasm engine: {0}")]
    Engine(String),
    #[error("the store: {0}")]
    Store(#[from] StoreFailure),
}

/// What one run of one recipe on one event did.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub recipe: String,
    pub event_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
    pub logs: Vec<LogLine>,
    /// Log lines dropped past the run's log limits.
    #[serde(skip_serializing_if = "is_zero")]
    pub logs_dropped: usize,
    /// Calls that may have changed a vendor, whose outcome this run does not know.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unconfirmed: Vec<Unconfirmed>,
    pub duration_us: u64,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl RunReport {
    /// The outcome, or the error.
    pub fn result(&self) -> Result<&Outcome, &RunError> {
        match (&self.outcome, &self.error) {
            (Some(o), _) => Ok(o),
            (None, Some(e)) => Err(e),
            (None, None) => unreachable!("a run report has an outcome or an error"),
        }
    }
}

/// Advances the engine's epoch on a fixed tick until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: &Engine, tick: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let engine = engine.weak();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("switchboard-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    match engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .expect("spawning the epoch ticker thread");
        EpochTicker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
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

/// How runs that keep the CPU busy are kept from starving the others.
struct Fairness {
    /// The slow lane's turns; `None`: no demotion.
    lane: Option<Arc<tokio::sync::Semaphore>>,
    /// Guest time before a run is demoted.
    slice: Duration,
}

/// One run's waits, and its slow-lane turn when it has one.
struct Lane {
    started: Instant,
    /// Time spent waiting (on vendors, the store, a thread), in µs.
    waited_us: AtomicU64,
    demoted: AtomicBool,
    turn: std::sync::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>,
}

impl Lane {
    fn give_back(&self) {
        self.turn.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

impl switchboard_vendors::Waits for Lane {
    /// A wait on a vendor holds no turn of the slow lane.
    fn begin(&self) {
        self.give_back();
    }

    fn end(&self, waited: Duration) {
        self.waited_us
            .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
    }
}

/// Build the engine configuration shared by the runtime and the benchmarks' baseline.
pub fn engine_config(options: &RuntimeOptions) -> Config {
    let largest_memory = options
        .overrides
        .values()
        .filter_map(|o| o.memory_limit)
        .chain([options.memory_limit])
        .max()
        .unwrap_or(options.memory_limit);
    let mut pool = PoolingAllocationConfig::default();
    let n = options.max_instances;
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(8))
        .total_memories(n.saturating_mul(2))
        .total_tables(n.saturating_mul(4))
        .total_stacks(n)
        .max_memories_per_component(4)
        .max_tables_per_component(8)
        .max_core_instances_per_component(16)
        // Round the slot up past the largest cap so the limiter, not the pool, says no.
        .max_memory_size(largest_memory.next_multiple_of(64 << 10) + (64 << 10))
        // Reuse slots without returning their pages to the kernel: reset what a run
        // dirtied with memset (finding dirty pages with PAGEMAP_SCAN where the kernel has
        // it) instead of an madvise per memory, table and stack on every event.
        .linear_memory_keep_resident(4 << 20)
        .table_keep_resident(64 << 10)
        .async_stack_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Auto);
    let mut config = Config::new();
    config
        .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(BACKTRACE_FRAMES))
        .wasm_component_model(true)
        .epoch_interruption(true)
        .memory_init_cow(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
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

    /// Compile (or take from the cache) on a blocking thread: compiling takes the CPU for
    /// a while, and a server reloading plugins must keep answering meanwhile.
    async fn compile(
        &self,
        path: &Path,
        bytes: Vec<u8>,
        hash: &str,
    ) -> Result<Component, LoadError> {
        let engine = self.engine.clone();
        let cache = self.cache.clone();
        let compilations = self.compilations.clone();
        let (path, hash) = (path.to_owned(), hash.to_owned());
        let task_path = path.clone();
        tokio::task::spawn_blocking(move || {
            let path = task_path;
            if let Some(component) = cache.as_ref().and_then(|c| c.get(&engine, &hash)) {
                tracing::debug!(path = %path.display(), "using cached compilation");
                return Ok(component);
            }
            let started = Instant::now();
            compilations.fetch_add(1, Ordering::Relaxed);
            let component = Component::new(&engine, &bytes).map_err(|e| LoadError::Invalid {
                path: path.clone(),
                reason: format!("{e:#}"),
            })?;
            tracing::info!(path = %path.display(), elapsed = ?started.elapsed(), "compiled component");
            if let Some(cache) = &cache {
                cache.put(&engine, &hash, &component);
            }
            Ok(component)
        })
        .await
        .map_err(|e| LoadError::Invalid {
            path,
            reason: format!("compilation did not finish: {e}"),
        })?
    }

    /// Load, check and pre-link one plugin file, and read its manifest.
    pub async fn load(&self, path: &Path) -> Result<Plugin, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        plugin::check_header(path, &bytes)?;
        let hash = content_hash(&bytes);
        let component = self.compile(path, bytes, &hash).await?;
        let imports: Vec<String> = component
            .component_type()
            .imports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let wrong_world = |e: wasmtime::Error| LoadError::WrongWorld {
            path: path.to_owned(),
            reason: match other_contract_version(&imports) {
                Some(version) => format!(
                    "it was built against switchboard:recipes@{version}, and this host serves @{}: rebuild it with the current switchboard-sdk",
                    plugin::CONTRACT_VERSION
                ),
                None => format!("{e:#}"),
            },
        };
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(wrong_world)?;
        let pre = bindings::RecipePre::new(pre).map_err(wrong_world)?;

        // Ask the recipe for its manifest, with no grants at all.
        let file_name: Arc<str> = path
            .file_stem()
            .map(|s| s.to_string_lossy().into())
            .unwrap_or_else(|| "plugin".into());
        let limits = PluginLimits {
            deadline: self.options.deadline,
            memory_limit: self.options.memory_limit,
            kv_quota: self.options.kv_quota,
        };
        let mut store = self.new_store(
            RunSetup {
                recipe: file_name,
                event_id: "manifest".into(),
                grants: Arc::new(Grants::default()),
                kv: None,
                connections: Arc::new(Connections::default()),
                settings: Arc::from("{}"),
                memory_limit: limits.memory_limit,
                log_limits: self.options.log_limits,
                output_limit: self.options.output_limit,
                deadline_at: Instant::now(),
                effects: None,
            },
            limits.deadline,
        );
        // Then, in the same instance, have it check its settings from the config.
        let settings_for = |name: &str| -> Arc<str> {
            self.options
                .settings
                .get(name)
                .cloned()
                .unwrap_or_else(|| Arc::from("{}"))
        };
        let call = async {
            let recipe = pre.instantiate_async(&mut store).await?;
            let manifest = plugin::manifest_from_wit(recipe.call_manifest(&mut store).await?);
            let settings = settings_for(&manifest.name);
            let checked = recipe.call_check_settings(&mut store, &settings).await?;
            wasmtime::Result::Ok((manifest, settings, checked))
        };
        let (manifest, settings) = match tokio::time::timeout(limits.deadline, call).await {
            Ok(Ok((manifest, settings, Ok(())))) => (manifest, settings),
            Ok(Ok((manifest, _, Err(e)))) => {
                return Err(LoadError::Settings {
                    path: path.to_owned(),
                    name: manifest.name,
                    reason: switchboard_model::RecipeError::from(e).to_string(),
                });
            }
            Ok(Err(e)) => {
                let error = classify(e, limits, &store.data().stderr);
                return Err(LoadError::Manifest {
                    path: path.to_owned(),
                    reason: error.to_string(),
                });
            }
            Err(_) => {
                return Err(LoadError::Manifest {
                    path: path.to_owned(),
                    reason: RunError::Timeout {
                        deadline_ms: limits.deadline.as_millis() as u64,
                    }
                    .to_string(),
                });
            }
        };
        plugin::validate_manifest(&manifest).map_err(|(field, reason)| LoadError::BadManifest {
            path: path.to_owned(),
            field,
            reason,
        })?;
        let uses_kv = manifest
            .capabilities
            .contains(&switchboard_model::Capability::Kv);
        let kv = if uses_kv {
            Some(
                self.store
                    .kv(&manifest.name, self.limits_for(&manifest.name).kv_quota)
                    .map_err(|source| LoadError::Store {
                        path: path.to_owned(),
                        source,
                    })?,
            )
        } else {
            None
        };
        let mut grants = Grants::from_manifest(&manifest);
        if let Some(map) = self.options.connection_maps.get(&manifest.name) {
            if let Some(undeclared) = map.keys().find(|k| !grants.connections.contains(*k)) {
                return Err(LoadError::Connections {
                    path: path.to_owned(),
                    name: manifest.name.clone(),
                    reason: format!(
                        "maps '{undeclared}', which the recipe does not use (it uses: {})",
                        manifest.connections.join(", ")
                    ),
                });
            }
            grants.aliases = map.clone();
        }
        Ok(Plugin {
            name: manifest.name.as_str().into(),
            limits: self.limits_for(&manifest.name),
            grants: Arc::new(grants),
            manifest,
            path: path.to_owned(),
            hash,
            imports,
            kv,
            settings,
            pre,
        })
    }

    /// Load every `*.wasm` in `dir`, sorted by file name. Files that fail are reported
    /// beside the plugins that loaded; one bad file never stops the others.
    pub async fn load_dir(&self, dir: &Path) -> std::io::Result<(Plugins, Vec<LoadError>)> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "wasm") && p.is_file())
            .collect();
        paths.sort();
        let mut plugins = Plugins::default();
        let mut errors = Vec::new();
        for path in paths {
            match self.load(&path).await {
                Ok(p) => {
                    if let Err(e) = plugins.insert(p) {
                        errors.push(e);
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        Ok((plugins, errors))
    }

    fn new_store(&self, mut setup: RunSetup, deadline: Duration) -> wasmtime::Store<RunState> {
        let deadline_at = Instant::now() + deadline;
        setup.deadline_at = deadline_at;
        let mut store = wasmtime::Store::new(&self.engine, RunState::new(setup));
        store.limiter(|s| &mut s.limiter);
        // Every epoch tick, a running guest yields to the executor so a busy recipe never
        // stalls the thread other runs share; past its deadline it traps instead.
        //
        // Fair CPU: a run that has spent more than `cpu_slice` running (its wall time, less
        // its waits on vendors and the store, and on a thread after each tick) is demoted to
        // the slow lane, whose few turns (`slow_lane` at once, first come first served) it
        // must hold while its guest code runs. However many runs spin until their deadline,
        // they keep at most `slow_lane` threads busy, and intake and other recipes keep the
        // rest. A turn is given back at every tick and whenever the run waits on a vendor.
        store.set_epoch_deadline(1);
        let fairness = self.fairness.clone();
        let Some(turns) = fairness.lane.clone() else {
            store.epoch_deadline_callback(move |_| {
                if Instant::now() >= deadline_at {
                    return Ok(UpdateDeadline::Interrupt);
                }
                Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(tokio::task::yield_now()),
                ))
            });
            return store;
        };
        let lane = Arc::new(Lane {
            started: Instant::now(),
            waited_us: AtomicU64::new(0),
            demoted: AtomicBool::new(false),
            turn: std::sync::Mutex::new(None),
        });
        store.data_mut().waits = Some(lane.clone());
        let slice = fairness.slice;
        store.epoch_deadline_callback(move |_| {
            let now = Instant::now();
            if now >= deadline_at {
                return Ok(UpdateDeadline::Interrupt);
            }
            lane.give_back();
            let waited = Duration::from_micros(lane.waited_us.load(Ordering::Relaxed));
            let ran = now.duration_since(lane.started).saturating_sub(waited);
            let demoted = lane.demoted.load(Ordering::Relaxed) || ran >= slice;
            lane.demoted.store(demoted, Ordering::Relaxed);
            let (lane, turns) = (lane.clone(), turns.clone());
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(async move {
                    let asked = Instant::now();
                    if demoted {
                        if let Ok(turn) = turns.acquire_owned().await {
                            *lane.turn.lock().unwrap_or_else(|e| e.into_inner()) = Some(turn);
                        }
                    } else {
                        tokio::task::yield_now().await;
                    }
                    // Waiting for a turn, or a thread, is not running.
                    switchboard_vendors::Waits::end(&*lane, asked.elapsed());
                }),
            ))
        });
        store
    }

    /// Run one event through one plugin in a fresh instance, its calls that change vendors
    /// journaled under the run `<event id>.<recipe>` (so a re-run of it never repeats one).
    /// Never panics on guest misbehaviour: every failure is in the report.
    pub async fn run(&self, plugin: &Plugin, event: &Event) -> RunReport {
        self.execute(plugin, event, true).await
    }

    /// [`Runtime::run`] with no effect journal: every call is sent (`switchboard run`, a
    /// one-off by hand, whose event id may be made up and repeated).
    pub async fn run_unjournaled(&self, plugin: &Plugin, event: &Event) -> RunReport {
        self.execute(plugin, event, false).await
    }

    async fn execute(&self, plugin: &Plugin, event: &Event, journaled: bool) -> RunReport {
        let started = Instant::now();
        let limits = plugin.limits;
        let mut store = self.new_store(
            RunSetup {
                recipe: plugin.name.clone(),
                event_id: event.id.clone(),
                grants: plugin.grants.clone(),
                kv: plugin.kv.clone(),
                connections: self.connections.clone(),
                settings: plugin.settings.clone(),
                memory_limit: limits.memory_limit,
                log_limits: self.options.log_limits,
                output_limit: self.options.output_limit,
                deadline_at: Instant::now(),
                effects: journaled.then(|| {
                    RunEffects::new(
                        self.effects.clone(),
                        switchboard_model::run_id(&event.id, &plugin.name),
                    )
                }),
            },
            limits.deadline,
        );
        let wit_event = wit::Event {
            id: event.id.clone(),
            source: event.source.clone(),
            kind: event.kind.clone(),
            time: event.time.clone(),
            payload: event.payload.get().to_owned(),
        };
        let call = async {
            let recipe = plugin.pre.instantiate_async(&mut store).await?;
            recipe.call_handle(&mut store, &wit_event).await
        };
        // A panic in host code (a capability, a vendor client) ends this run, not the host.
        let call = std::panic::AssertUnwindSafe(call).catch_unwind();
        let limit = self.options.max_outcome_bytes;
        let result = match tokio::time::timeout(limits.deadline, call).await {
            Ok(Ok(Ok(Ok(outcome)))) => Ok(match outcome {
                wit::Outcome::Done(mut s) => {
                    bound_text(&mut s, limit);
                    Outcome::Done(s)
                }
                wit::Outcome::Skipped(mut s) => {
                    bound_text(&mut s, limit);
                    Outcome::Skipped(s)
                }
                wit::Outcome::Deferred(mut d) => {
                    bound_text(&mut d.until, 64);
                    bound_text(&mut d.reason, limit);
                    Outcome::Deferred {
                        until: d.until,
                        reason: d.reason,
                    }
                }
            }),
            Ok(Ok(Ok(Err(error)))) => Err(RunError::Recipe {
                error: error.into(),
            }),
            Ok(Ok(Err(e))) => Err(classify(e, limits, &store.data().stderr)),
            Ok(Err(panic)) => {
                let message = panic_message(&*panic);
                tracing::error!(recipe = %plugin.name, event = %event.id, panic = %message.escape_debug(), "host code panicked during a run");
                Err(RunError::HostPanic { message })
            }
            Err(_elapsed) => Err(RunError::Timeout {
                deadline_ms: limits.deadline.as_millis() as u64,
            }),
        };
        let result = result.map_err(|mut e| {
            e.bound(limit);
            e
        });
        let mut state = store.into_data();
        for (stream, output, level) in [
            ("stdout", state.stdout.clone(), Level::Info),
            ("stderr", state.stderr.clone(), Level::Warn),
        ] {
            let (text, dropped) = output.contents();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                state.log.push(LogLine {
                    level,
                    message: line.to_string(),
                    fields: vec![("stream".into(), stream.into())],
                });
            }
            if dropped > 0 {
                state.log.push(LogLine {
                    level: Level::Warn,
                    message: format!("{dropped} bytes of {stream} dropped past the output limit"),
                    fields: vec![("stream".into(), stream.into())],
                });
            }
        }
        if let Err(error) = &result {
            let mut text = error.to_string();
            bound_text(&mut text, 1024);
            tracing::warn!(recipe = %plugin.name, event = %event.id, error = %text.escape_debug(), "run failed");
        }
        if state.log.not_copied > 0 {
            tracing::info!(recipe = %plugin.name, event = %event.id, lines = state.log.not_copied, "log lines of the run not copied to the host log (per-run budget); they are in the run's log");
        }
        let (outcome, error) = match result {
            Ok(o) => (Some(o), None),
            Err(e) => (None, Some(e)),
        };
        RunReport {
            recipe: plugin.name.to_string(),
            event_id: event.id.clone(),
            outcome,
            error,
            logs: state.log.lines,
            logs_dropped: state.log.dropped,
            unconfirmed: state.effects.map(|fx| fx.unconfirmed).unwrap_or_default(),
            duration_us: started.elapsed().as_micros() as u64,
        }
    }
}

/// Guest frames kept in a trap's backtrace.
const BACKTRACE_FRAMES: usize = 1024;

/// Whether a backtrace shows a recursion: deep, or one function repeated at the top.
fn recursing(backtrace: &wasmtime::WasmBacktrace) -> bool {
    let frames = backtrace.frames();
    let Some(top) = frames.first() else {
        return false;
    };
    let repeated = frames
        .iter()
        .take_while(|f| f.func_index() == top.func_index())
        .count();
    frames.len() >= BACKTRACE_FRAMES - 24 || repeated >= 16
}

/// The version of the Switchboard contract a component imports, when it is not this host's.
fn other_contract_version(imports: &[String]) -> Option<&str> {
    imports
        .iter()
        .filter_map(|i| i.strip_prefix("switchboard:recipes/"))
        .filter_map(|i| i.split_once('@').map(|(_, v)| v))
        .find(|v| *v != plugin::CONTRACT_VERSION)
}

/// The message of a caught panic.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Turn a wasmtime error from instantiating or calling a guest into a [`RunError`].
fn classify(
    error: wasmtime::Error,
    limits: PluginLimits,
    stderr: &output::CapturedOutput,
) -> RunError {
    if let Some(m) = error.downcast_ref::<MemoryLimitExceeded>() {
        return RunError::MemoryLimit {
            limit_bytes: m.limit,
            requested_bytes: m.requested,
        };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => RunError::Timeout {
            deadline_ms: limits.deadline.as_millis() as u64,
        },
        Some(Trap::StackOverflow) => RunError::Trap {
            message: "stack overflow: the recipe's call stack is exhausted (deep or endless recursion)"
                .into(),
            panic: None,
        },
        // Rust keeps a shadow stack in linear memory, below the data: overflowing it reads
        // out of bounds. A recursion at that moment (a deep guest backtrace, or its innermost
        // frames all one function) tells it apart from a plain bug.
        Some(Trap::MemoryOutOfBounds)
            if error
                .downcast_ref::<wasmtime::WasmBacktrace>()
                .is_some_and(recursing) =>
        {
            RunError::Trap {
                message: "stack overflow: out of bounds memory access deep in a recursion (the recipe's stack is exhausted)"
                    .into(),
                panic: None,
            }
        }
        Some(trap) => {
            let (text, _) = stderr.contents();
            let panic = text.find("panicked at").map(|i| {
                let msg = text[i..].trim();
                msg.chars().take(1024).collect::<String>()
            });
            RunError::Trap {
                message: trap.to_string(),
                panic,
            }
        }
        None if error.downcast_ref::<PoolConcurrencyLimitError>().is_some() => {
            RunError::Instantiate {
                message: format!("{error:#}"),
            }
        }
        None => RunError::Trap {
            message: format!("{error:#}"),
            panic: None,
        },
    }
}

/// The loaded plugins, by recipe name.
#[derive(Debug, Default, Clone)]
pub struct Plugins {
    by_name: BTreeMap<String, Arc<Plugin>>,
}

impl Plugins {
    /// Add a plugin; refuses a second recipe with the same name.
    pub fn insert(&mut self, plugin: Plugin) -> Result<(), LoadError> {
        if let Some(other) = self.by_name.get(&*plugin.name) {
            return Err(LoadError::Duplicate {
                path: plugin.path.clone(),
                name: plugin.name.to_string(),
                other: other.path.clone(),
            });
        }
        self.by_name
            .insert(plugin.name.to_string(), Arc::new(plugin));
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Plugin>> {
        self.by_name.get(name)
    }

    /// Add or replace the plugin of that name (a new version of a recipe).
    pub fn upsert(&mut self, plugin: Arc<Plugin>) {
        self.by_name.insert(plugin.name.to_string(), plugin);
    }

    /// Remove the plugin of that name; returns it.
    pub fn remove(&mut self, name: &str) -> Option<Arc<Plugin>> {
        self.by_name.remove(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Plugin>> {
        self.by_name.values()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}
