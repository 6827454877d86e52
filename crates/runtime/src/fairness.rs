//! Keeping runs that hold the CPU from starving the others: the epoch ticker and the slow
//! lane.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wasmtime::Engine;

/// Advances the engine's epoch on a fixed tick until dropped.
pub(crate) struct EpochTicker {
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) thread: Option<std::thread::JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: &Engine, tick: Duration) -> Self {
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

/// How runs that keep the CPU busy are kept from starving the others.
pub(crate) struct Fairness {
    /// The slow lane's turns; `None`: no demotion.
    pub(crate) lane: Option<Arc<tokio::sync::Semaphore>>,
    /// Guest time before a run is demoted.
    pub(crate) slice: Duration,
}

/// One run's waits, and its slow-lane turn when it has one.
pub(crate) struct Lane {
    pub(crate) started: Instant,
    /// Time spent waiting (on vendors, the store, a thread), in µs.
    pub(crate) waited_us: AtomicU64,
    pub(crate) demoted: AtomicBool,
    pub(crate) turn: std::sync::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>,
}

impl Lane {
    pub(crate) fn give_back(&self) {
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
