//! Shared test setup.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use switchboard::model::{Event, RecipeError};
use switchboard::runtime::plugin::Plugin;
use switchboard::runtime::{PluginOverrides, Runtime, RuntimeOptions};
use switchboard::store::Store;
use switchboard::vendors::{Call, Connections, Connector, HttpRequest, HttpResponse};

/// Options for tests: a small pool, and a compile cache shared by all tests.
pub fn options() -> RuntimeOptions {
    RuntimeOptions {
        max_instances: 16,
        cache_dir: Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("component-cache")),
        ..RuntimeOptions::default()
    }
}

/// Options with per-recipe overrides.
pub fn options_with(name: &str, o: PluginOverrides) -> RuntimeOptions {
    let mut options = options();
    options.overrides.insert(name.into(), o);
    options
}

pub fn runtime_at(dir: &Path, options: RuntimeOptions, connections: Connections) -> Runtime {
    runtime_with_store(dir, options, connections).0
}

/// A runtime on a store in `dir`, and that store (for a pipeline over it).
pub fn runtime_with_store(
    dir: &Path,
    options: RuntimeOptions,
    connections: Connections,
) -> (Runtime, Store) {
    // A store just closed in this process may still be locked for a moment: sled lets go
    // of its file lock when its background flusher ends (seen under a loaded CI machine).
    let started = std::time::Instant::now();
    let store = loop {
        match Store::open(&dir.join("store")) {
            Ok(store) => break store,
            Err(e)
                if format!("{e:?}").contains("could not acquire lock")
                    && started.elapsed() < std::time::Duration::from_secs(10) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("opening the store: {e:?}"),
        }
    };
    let runtime =
        Runtime::new(options, Arc::new(store.clone()), connections).expect("building the runtime");
    (runtime, store)
}

pub async fn load(runtime: &Runtime, path: &str) -> Plugin {
    runtime
        .load(Path::new(path))
        .await
        .unwrap_or_else(|e| panic!("loading {path}: {e}"))
}

static EVENTS: AtomicUsize = AtomicUsize::new(0);

/// An event with a fresh id.
pub fn event(kind: &str, payload: serde_json::Value) -> Event {
    Event::new(
        format!("evt-{}", EVENTS.fetch_add(1, Ordering::Relaxed)),
        "test",
        kind,
        "2026-11-22T08:00:00Z",
        &payload,
    )
}

/// A vendor connection double that counts calls: `/ping` answers at once, `/slow` takes a
/// minute, `/panic` panics (a bug in host code, as a guest could trigger one).
pub struct Double {
    pub calls: AtomicUsize,
}

impl Double {
    pub fn new() -> Arc<Self> {
        Arc::new(Double {
            calls: AtomicUsize::new(0),
        })
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Connector for Double {
    fn vendor(&self) -> &str {
        "double"
    }

    async fn http(&self, _call: &Call, request: HttpRequest) -> Result<HttpResponse, RecipeError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if request.path == "/slow" {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        if request.path == "/panic" {
            panic!("the double panicked");
        }
        Ok(HttpResponse {
            status: 200,
            headers: vec![],
            body: format!("pong {}", request.path).into_bytes(),
        })
    }
}

/// The context of a vendor call with a 10 s deadline.
pub fn call() -> Call {
    Call::until(Instant::now() + Duration::from_secs(10))
}

/// `[connections.ghl]` to GoHighLevel's sandbox, without retries; its key is read from
/// `ghl.key` beside the config (write `sandbox.state.keys.gohighlevel` there).
pub fn ghl_connection(sandbox: &switchboard::sandbox::RunningSandbox) -> String {
    format!(
        "[connections.ghl]\nvendor = \"gohighlevel\"\nsecret = {{ file = \"ghl.key\" }}\n\
         location_id = \"{}\"\nbase_url = \"{}\"\nmax_retries = 0\n",
        switchboard::sandbox::GHL_LOCATION,
        sandbox.base_url("gohighlevel")
    )
}

/// A GoHighLevel client for a running sandbox, with `token`.
pub fn ghl_client(
    sandbox: &switchboard::sandbox::RunningSandbox,
    token: &str,
) -> switchboard::vendors::gohighlevel::GoHighLevel {
    switchboard::vendors::gohighlevel::GoHighLevel::new(
        Some(&sandbox.base_url("gohighlevel")),
        &switchboard::secrets::Secret::new(token),
        switchboard::sandbox::GHL_LOCATION.into(),
        Default::default(),
    )
    .unwrap()
}

/// Say that `test` skipped itself, and why, where the test run shows it: straight to the
/// process's stdout (libtest captures only `print!`), on one line that `cargo xtask ci`
/// collects into its summary.
pub fn skipped(test: &str, why: &str) {
    use std::io::Write;
    let line = format!("SKIPPED {test}: {why}\n");
    let _ = std::io::stdout().lock().write_all(line.as_bytes());
}
