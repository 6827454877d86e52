//! The runtime's settings, and the engine configuration they make.

use crate::execute::BACKTRACE_FRAMES;
use crate::state::LogLimits;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use switchboard_model::kv::KvQuota;
use wasmtime::{Config, Enabled, InstanceAllocationStrategy, PoolingAllocationConfig};

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
