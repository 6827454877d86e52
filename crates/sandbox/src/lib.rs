//! The vendor sandbox: the vendors' APIs served on loopback, with state, API-key checks,
//! the documented validation and error bodies, and fault injection, so tests, demos and
//! users can run recipes without touching production.
//!
//! Each vendor is mounted under its own prefix (`/gohighlevel`, `/housecallpro`, `/homebase360`, `/pocketboss`,
//! `/welcomehome`); point a
//! connection's `base_url` at `http://<addr>/<vendor>`. Faults are set per vendor at run
//! time with `PUT /_sandbox/faults/<vendor>` (see [`Faults`]) and cleared with `DELETE`.

mod faults;
pub mod gohighlevel;
pub mod homebase360;
pub mod housecallpro;
pub mod pocketboss;
pub mod webhooks;
pub mod welcomehome;

pub use faults::{Exchange, Faults};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::put;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// The API keys the sandbox accepts, per vendor.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxKeys {
    pub gohighlevel: String,
    pub housecallpro: String,
    pub homebase360: String,
    pub pocketboss: String,
    pub welcomehome: String,
}

impl Default for SandboxKeys {
    fn default() -> Self {
        SandboxKeys {
            gohighlevel: "sandbox-gohighlevel-token".into(),
            housecallpro: "sandbox-housecallpro-key".into(),
            homebase360: "sandbox-homebase360-key".into(),
            pocketboss: "sandbox-pocketboss-key".into(),
            welcomehome: "sandbox-welcomehome-token".into(),
        }
    }
}

/// The GoHighLevel location the sandbox serves.
pub const GHL_LOCATION: &str = "sandboxLocation01";

/// Everything the sandbox holds.
pub struct SandboxState {
    pub keys: SandboxKeys,
    pub(crate) ghl: Mutex<gohighlevel::Ghl>,
    pub(crate) hcp: Mutex<housecallpro::Hcp>,
    pub(crate) hb: Mutex<homebase360::Hb>,
    pub(crate) pb: Mutex<pocketboss::Pb>,
    pub(crate) wh: Mutex<welcomehome::Wh>,
    pub(crate) faults: Mutex<BTreeMap<String, Faults>>,
    /// Requests received, per vendor (faulted ones included).
    pub requests: Mutex<BTreeMap<String, u64>>,
    /// Requests being answered now, and the most ever at once, per vendor.
    pub(crate) in_flight: Mutex<BTreeMap<String, (u64, u64)>>,
    pub(crate) exchanges: Mutex<std::collections::VecDeque<Exchange>>,
    pub(crate) webhooks: Mutex<BTreeMap<String, webhooks::Target>>,
    pub(crate) deliveries: Mutex<Vec<webhooks::Delivery>>,
    pub(crate) ghl_signing: ed25519_dalek::SigningKey,
    pub(crate) http: reqwest::Client,
}

impl SandboxState {
    pub fn new(keys: SandboxKeys) -> Arc<Self> {
        Arc::new(SandboxState {
            keys,
            ghl: Mutex::default(),
            hcp: Mutex::default(),
            hb: Mutex::default(),
            pb: Mutex::default(),
            wh: Mutex::default(),
            faults: Mutex::default(),
            requests: Mutex::default(),
            in_flight: Mutex::default(),
            exchanges: Mutex::default(),
            webhooks: Mutex::default(),
            deliveries: Mutex::default(),
            ghl_signing: ed25519_dalek::SigningKey::from_bytes(&std::array::from_fn(|_| {
                fastrand::u8(..)
            })),
            http: reqwest::Client::new(),
        })
    }
}

impl SandboxState {
    /// Set what `vendor` gets wrong from now on (as `PUT /_sandbox/faults/<vendor>` does);
    /// `Faults::default()` clears it.
    pub fn set_faults(&self, vendor: &str, faults: Faults) {
        self.faults
            .lock()
            .unwrap()
            .insert(vendor.to_string(), faults);
    }

    /// The requests `vendor` answered (not faulted ones), oldest first.
    pub fn exchanges(&self, vendor: &str) -> Vec<Exchange> {
        self.exchanges
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.vendor == vendor)
            .cloned()
            .collect()
    }

    /// The most requests to `vendor` that were being answered at once.
    pub fn max_in_flight(&self, vendor: &str) -> u64 {
        self.in_flight
            .lock()
            .unwrap()
            .get(vendor)
            .map_or(0, |(_, max)| *max)
    }

    /// How many requests `vendor` has received.
    pub fn requests(&self, vendor: &str) -> u64 {
        self.requests
            .lock()
            .unwrap()
            .get(vendor)
            .copied()
            .unwrap_or(0)
    }
}

/// The sandbox's routes.
pub fn router(state: Arc<SandboxState>) -> Router {
    Router::new()
        .nest("/gohighlevel", gohighlevel::router(state.clone()))
        .nest("/housecallpro", housecallpro::router(state.clone()))
        .nest("/homebase360", homebase360::router(state.clone()))
        .nest("/pocketboss", pocketboss::router(state.clone()))
        .nest("/welcomehome", welcomehome::router(state.clone()))
        .route(
            "/_sandbox/faults/{vendor}",
            put(set_faults).delete(clear_faults),
        )
        .route("/_sandbox/webhooks/{vendor}", put(set_webhook))
        .route(
            "/_sandbox/webhooks/gohighlevel/public-key",
            axum::routing::get(|State(state): State<Arc<SandboxState>>| async move {
                state.ghl_public_key()
            }),
        )
        .with_state(state)
}

const VENDORS: &[&str] = &[
    "gohighlevel",
    "housecallpro",
    "homebase360",
    "pocketboss",
    "welcomehome",
];

async fn set_faults(
    State(state): State<Arc<SandboxState>>,
    Path(vendor): Path<String>,
    axum::Json(faults): axum::Json<Faults>,
) -> StatusCode {
    if !VENDORS.contains(&vendor.as_str()) {
        return StatusCode::NOT_FOUND;
    }
    state.faults.lock().unwrap().insert(vendor, faults);
    StatusCode::NO_CONTENT
}

async fn set_webhook(
    State(state): State<Arc<SandboxState>>,
    Path(vendor): Path<String>,
    axum::Json(target): axum::Json<webhooks::Target>,
) -> StatusCode {
    if !["gohighlevel", "housecallpro"].contains(&vendor.as_str()) {
        return StatusCode::NOT_FOUND;
    }
    state.webhooks.lock().unwrap().insert(vendor, target);
    StatusCode::NO_CONTENT
}

async fn clear_faults(
    State(state): State<Arc<SandboxState>>,
    Path(vendor): Path<String>,
) -> StatusCode {
    state.faults.lock().unwrap().remove(&vendor);
    StatusCode::NO_CONTENT
}

/// A running sandbox.
pub struct RunningSandbox {
    pub addr: SocketAddr,
    pub state: Arc<SandboxState>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningSandbox {
    /// The base URL of one vendor, e.g. `http://127.0.0.1:4123/gohighlevel`.
    pub fn base_url(&self, vendor: &str) -> String {
        format!("http://{}/{vendor}", self.addr)
    }
}

impl Drop for RunningSandbox {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serve the sandbox on `addr` (port 0 picks a free one) in the background.
pub async fn start(addr: SocketAddr, keys: SandboxKeys) -> std::io::Result<RunningSandbox> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let state = SandboxState::new(keys);
    let app = router(state.clone());
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("vendor sandbox stopped: {e}");
        }
    });
    Ok(RunningSandbox { addr, state, task })
}

/// A fresh vendor-style id: 20 letters and digits.
pub(crate) fn new_id() -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..20)
        .map(|_| CHARS[fastrand::usize(..CHARS.len())] as char)
        .collect()
}

/// Now, as the RFC 3339 text vendors use.
pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}
