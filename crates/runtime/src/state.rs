//! Per-run state: what one `Store` holds while a recipe handles one event.

use super::output::CapturedOutput;
use crate::RECIPE_LOG;
use crate::capabilities::RunEffects;
use crate::store::KvSpace;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc as KvArc;
use std::sync::Arc;
use switchboard_model::{Capability, Manifest, RecipeError};
pub use switchboard_model::{Level, LogLine};
use switchboard_vendors::Connections;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// What a recipe may use: exactly what its manifest declared.
#[derive(Debug, Default, Clone)]
pub struct Grants {
    pub capabilities: BTreeSet<Capability>,
    pub connections: BTreeSet<String>,
    /// The configured connection each of the recipe's connection names uses, where the
    /// config maps it (`[plugins.<name>] connections = { ghl = "ghl-west" }`).
    pub aliases: BTreeMap<String, String>,
}

impl Grants {
    /// The grants a manifest asks for.
    pub fn from_manifest(manifest: &Manifest) -> Self {
        Grants {
            capabilities: manifest.capabilities.iter().copied().collect(),
            connections: manifest.connections.iter().cloned().collect(),
            aliases: BTreeMap::new(),
        }
    }
}

/// Limits on what one run may log.
#[derive(Debug, Clone, Copy)]
pub struct LogLimits {
    /// Lines kept in the run's log.
    pub max_lines: usize,
    /// Bytes kept in the run's log.
    pub max_bytes: usize,
    /// Of the lines kept, how many are also copied to the host's own log.
    pub host_lines: usize,
    /// And how many bytes of them.
    pub host_bytes: usize,
}

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits {
            max_lines: 1000,
            max_bytes: 256 * 1024,
            host_lines: 50,
            host_bytes: 16 * 1024,
        }
    }
}

/// A run's log, bounded: lines past the limits are counted, not kept.
#[derive(Debug, Default)]
pub struct RunLog {
    limits: LogLimits,
    bytes: usize,
    pub lines: Vec<LogLine>,
    pub dropped: usize,
    /// Lines and bytes copied to the host's log so far.
    host_lines: usize,
    host_bytes: usize,
    /// Kept lines not copied to the host's log (its budget was spent).
    pub not_copied: usize,
}

fn line_size(line: &LogLine) -> usize {
    line.message.len()
        + line
            .fields
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

impl RunLog {
    pub fn new(limits: LogLimits) -> Self {
        RunLog {
            limits,
            ..RunLog::default()
        }
    }

    /// Keep `line` if the run's log has room; returns whether it did.
    pub fn push(&mut self, line: LogLine) -> bool {
        let size = line_size(&line);
        if self.lines.len() >= self.limits.max_lines || self.bytes + size > self.limits.max_bytes {
            self.dropped += 1;
            return false;
        }
        self.bytes += size;
        self.lines.push(line);
        true
    }

    /// Whether a kept line of `size` bytes may also go to the host's log (counted if not).
    fn copy_to_host(&mut self, size: usize) -> bool {
        if self.host_lines >= self.limits.host_lines
            || self.host_bytes + size > self.limits.host_bytes
        {
            self.not_copied += 1;
            return false;
        }
        self.host_lines += 1;
        self.host_bytes += size;
        true
    }
}

/// A guest tried to grow its memory past its cap.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("memory limit exceeded: the recipe asked for {requested} bytes; its cap is {limit} bytes")]
pub struct MemoryLimitExceeded {
    pub limit: usize,
    pub requested: usize,
}

/// Enforces a run's memory cap and names the failure when the guest passes it.
pub struct RunLimiter {
    memory_limit: usize,
    table_elements: usize,
}

impl RunLimiter {
    pub fn new(memory_limit: usize) -> Self {
        RunLimiter {
            memory_limit,
            table_elements: 100_000,
        }
    }
}

impl wasmtime::ResourceLimiter for RunLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            return Err(MemoryLimitExceeded {
                limit: self.memory_limit,
                requested: desired,
            }
            .into());
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.table_elements)
    }
}

/// Everything a `Store` holds for one run of one recipe.
pub struct RunState {
    pub(crate) recipe: Arc<str>,
    pub(crate) event_id: String,
    pub(crate) grants: Arc<Grants>,
    pub(crate) kv: Option<KvArc<dyn KvSpace>>,
    pub(crate) connections: Arc<Connections>,
    /// The recipe's settings, a JSON object.
    pub(crate) settings: Arc<str>,
    pub(crate) log: RunLog,
    pub(crate) limiter: RunLimiter,
    pub(crate) stdout: CapturedOutput,
    pub(crate) stderr: CapturedOutput,
    /// When the run must be over; host calls pass it to vendors so retries stop in time.
    pub(crate) deadline_at: std::time::Instant,
    /// The effect journal of this run; `None` where nothing is journaled (loading).
    pub(crate) effects: Option<RunEffects>,
    /// Told when the run waits on a vendor or the store (the slow lane's accounting).
    pub(crate) waits: Option<Arc<dyn switchboard_vendors::Waits>>,
    /// The requests the run sent to vendors.
    pub(crate) calls: Arc<std::sync::Mutex<switchboard_vendors::VendorCalls>>,
    wasi: WasiCtx,
    table: ResourceTable,
}

/// The inputs of a [`RunState`].
pub struct RunSetup {
    pub recipe: Arc<str>,
    pub event_id: String,
    pub grants: Arc<Grants>,
    pub kv: Option<KvArc<dyn KvSpace>>,
    pub connections: Arc<Connections>,
    pub settings: Arc<str>,
    pub memory_limit: usize,
    pub log_limits: LogLimits,
    pub output_limit: usize,
    pub deadline_at: std::time::Instant,
    pub effects: Option<RunEffects>,
}

impl RunState {
    pub fn new(setup: RunSetup) -> Self {
        let stdout = CapturedOutput::new(setup.output_limit);
        let stderr = CapturedOutput::new(setup.output_limit);
        // No preopened directories, environment, arguments or network: WASI is there for
        // clocks, randomness and the captured stdio only.
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        RunState {
            recipe: setup.recipe,
            event_id: setup.event_id,
            grants: setup.grants,
            kv: setup.kv,
            connections: setup.connections,
            settings: setup.settings,
            log: RunLog::new(setup.log_limits),
            limiter: RunLimiter::new(setup.memory_limit),
            stdout,
            stderr,
            deadline_at: setup.deadline_at,
            effects: setup.effects,
            waits: None,
            calls: Arc::default(),
            wasi,
            table: ResourceTable::new(),
        }
    }

    /// Append to the run's log and, within the run's budget for it, to the host's log
    /// (escaped: a recipe cannot forge a host log line) under the target [`RECIPE_LOG`].
    pub fn log(&mut self, level: Level, message: String, fields: Vec<(String, String)>) {
        let line = LogLine {
            level,
            message,
            fields,
        };
        let size = line_size(&line);
        let enabled = match level {
            Level::Trace => tracing::enabled!(target: RECIPE_LOG, tracing::Level::TRACE),
            Level::Debug => tracing::enabled!(target: RECIPE_LOG, tracing::Level::DEBUG),
            Level::Info => tracing::enabled!(target: RECIPE_LOG, tracing::Level::INFO),
            Level::Warn => tracing::enabled!(target: RECIPE_LOG, tracing::Level::WARN),
            Level::Error => tracing::enabled!(target: RECIPE_LOG, tracing::Level::ERROR),
        };
        if !self.log.push(line) || !enabled || !self.log.copy_to_host(size) {
            return;
        }
        let kept = self.log.lines.last().expect("just pushed");
        let message = kept.message.escape_debug().to_string();
        let fields = &kept.fields;
        let recipe = &*self.recipe;
        let event = &self.event_id;
        match level {
            Level::Trace => {
                tracing::trace!(target: RECIPE_LOG, recipe, event, ?fields, "{message}")
            }
            Level::Debug => {
                tracing::debug!(target: RECIPE_LOG, recipe, event, ?fields, "{message}")
            }
            Level::Info => tracing::info!(target: RECIPE_LOG, recipe, event, ?fields, "{message}"),
            Level::Warn => tracing::warn!(target: RECIPE_LOG, recipe, event, ?fields, "{message}"),
            Level::Error => {
                tracing::error!(target: RECIPE_LOG, recipe, event, ?fields, "{message}")
            }
        }
    }

    /// Check that the recipe declared `capability` (and `connection`, when the call names one).
    /// A refusal is logged and answered `denied`; the call never reaches data.
    pub fn check_grant(
        &mut self,
        capability: Capability,
        connection: Option<&str>,
    ) -> Result<(), RecipeError> {
        let refusal = if !self.grants.capabilities.contains(&capability) {
            Some(format!(
                "recipe '{}' did not declare the '{capability}' capability",
                self.recipe
            ))
        } else {
            connection
                .filter(|c| !self.grants.connections.contains(*c))
                .map(|c| {
                    format!(
                        "recipe '{}' did not declare the connection '{c}'",
                        self.recipe
                    )
                })
        };
        match refusal {
            None => Ok(()),
            Some(message) => {
                let mut fields = vec![("capability".to_string(), capability.to_string())];
                if let Some(c) = connection {
                    fields.push(("connection".to_string(), c.to_string()));
                }
                self.log(Level::Warn, message.clone(), fields);
                Err(RecipeError::Denied { message })
            }
        }
    }
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
