//! Running a plugin on an event: a fresh, bounded store per run, and what its end means.

use crate::bindings::types as wit;
use crate::capabilities::RunEffects;
use crate::fairness::Lane;
use crate::plugin::{Plugin, PluginLimits};
use crate::state::{MemoryLimitExceeded, RunSetup, RunState};
use crate::{RunReport, Runtime, output, plugin};
use futures_util::FutureExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
pub use switchboard_model::RunError;
use switchboard_model::{Event, Level, LogLine, Outcome, bound_text};
use wasmtime::{PoolConcurrencyLimitError, Trap, UpdateDeadline};

impl Runtime {
    pub(crate) fn new_store(
        &self,
        mut setup: RunSetup,
        deadline: Duration,
    ) -> wasmtime::Store<RunState> {
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

    pub(crate) async fn execute(
        &self,
        plugin: &Plugin,
        event: &Event,
        journaled: bool,
    ) -> RunReport {
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
        let calls = std::mem::take(&mut *state.calls.lock().unwrap_or_else(|e| e.into_inner()));
        RunReport {
            recipe: plugin.name.to_string(),
            event_id: event.id.clone(),
            outcome,
            error,
            logs: state.log.lines,
            logs_dropped: state.log.dropped,
            unconfirmed: state.effects.map(|fx| fx.unconfirmed).unwrap_or_default(),
            calls: calls.calls,
            calls_dropped: calls.dropped,
            duration_us: started.elapsed().as_micros() as u64,
        }
    }
}

/// Guest frames kept in a trap's backtrace.
pub(crate) const BACKTRACE_FRAMES: usize = 1024;

/// Whether a backtrace shows a recursion: deep, or one function repeated at the top.
pub(crate) fn recursing(backtrace: &wasmtime::WasmBacktrace) -> bool {
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
pub(crate) fn other_contract_version(imports: &[String]) -> Option<&str> {
    imports
        .iter()
        .filter_map(|i| i.strip_prefix("switchboard:recipes/"))
        .filter_map(|i| i.split_once('@').map(|(_, v)| v))
        .find(|v| *v != plugin::CONTRACT_VERSION)
}

/// The message of a caught panic.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Turn a wasmtime error from instantiating or calling a guest into a [`RunError`].
pub(crate) fn classify(
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
