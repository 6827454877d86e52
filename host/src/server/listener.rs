//! The accept loop of `switchboard serve`: HTTP/1.1 connections with bounded lifetimes, so
//! no client can hold the server.
//!
//! - a request's headers must arrive within `header_timeout` (hyper's timer);
//! - a connection with no request in flight is closed after `idle_timeout` (keep-alive, or a
//!   client that opened a connection and sends nothing);
//! - at most `max_connections` are open. At the cap, a new connection makes room: the
//!   connection idle longest is closed, or, when every connection is busy, the one that has
//!   been reading a webhook body slowest (longer than [`SLOW_BODY`]); only when every
//!   connection is busy answering does the newcomer wait its turn (it is closed). Idle and
//!   slow clients can therefore never lock out a good webhook;
//! - on shutdown, the loop stops accepting and requests in flight finish (graceful).
//!
//! A request is "in flight" from its headers until its response body has been written. How
//! long a webhook body may take is the handler's (`server::hooks`) to say, since only it
//! knows whether a body is worth reading at all; it marks the connection while it reads.

use axum::Router;
use axum::body::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower::ServiceExt;

/// A webhook body still arriving after this long marks its connection as evictable at the
/// cap (a sender on a healthy link delivers a body in milliseconds).
pub const SLOW_BODY: Duration = Duration::from_secs(1);

/// How long clients may take, and how many may be connected.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

/// What the accept loop did to clients, for `/admin/health`.
#[derive(Debug, Default, Serialize)]
pub struct ConnectionCounters {
    /// Connections open now.
    pub open: AtomicUsize,
    pub accepted: AtomicU64,
    /// Closed after `idle_timeout` without a request.
    pub idle_closed: AtomicU64,
    /// Connections closed to make room for a new one at the cap: idle ones, or ones reading
    /// a body slowly.
    pub evicted: AtomicU64,
    /// New connections closed at once: at the cap, with every connection busy answering.
    pub refused: AtomicU64,
}

/// One open connection, as the accept loop sees it.
struct Conn {
    /// Requests being answered on it now (until their response bodies are written).
    busy: AtomicUsize,
    /// When it last began or finished a request (or was accepted), in ms since `epoch`.
    last_active_ms: AtomicU64,
    /// When its handler began reading a webhook body, in ms since `epoch` + 1; 0 when not.
    reading_since_ms: AtomicU64,
    /// Chosen to be closed (so it is not chosen twice).
    closing: AtomicBool,
    close: Notify,
}

struct Table {
    epoch: Instant,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
}

impl Table {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Choose a connection to close for room: the longest idle, else the slowest body
    /// reader; marks it closing. `None`: every connection is busy answering.
    fn evict(&self) -> Option<Arc<Conn>> {
        let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let open = conns.values().filter(|c| !c.closing.load(Ordering::SeqCst));
        let idle = open
            .clone()
            .filter(|c| c.busy.load(Ordering::SeqCst) == 0)
            .min_by_key(|c| c.last_active_ms.load(Ordering::SeqCst));
        let slow = || {
            let now = self.now_ms();
            open.clone()
                .filter_map(|c| {
                    let since = c.reading_since_ms.load(Ordering::SeqCst).checked_sub(1)?;
                    (now.saturating_sub(since) >= SLOW_BODY.as_millis() as u64)
                        .then_some((since, c))
                })
                .min_by_key(|(since, _)| *since)
                .map(|(_, c)| c)
        };
        let victim = idle.or_else(slow)?.clone();
        victim.closing.store(true, Ordering::SeqCst);
        Some(victim)
    }
}

/// A handle on the connection a request arrived on, in the request's extensions: a handler
/// that reads a body says so, so a slow body can make room at the cap.
#[derive(Clone)]
pub struct ConnHandle {
    conn: Arc<Conn>,
    table: Arc<Table>,
}

impl ConnHandle {
    /// The handler starts (`true`) or stops reading the request's body.
    pub fn reading_body(&self, reading: bool) {
        let value = if reading { self.table.now_ms() + 1 } else { 0 };
        self.conn.reading_since_ms.store(value, Ordering::SeqCst);
    }
}

/// The lowest of `wanted` and what the process's open-file limit leaves room for (a
/// connection is a file; the store, plugins and vendor clients need some too). Raises the
/// soft limit to the hard limit first.
pub fn fit_to_file_limit(wanted: usize) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("cannot read the open-file limit: {e}");
            return wanted;
        }
    };
    let room = (limit as usize).saturating_sub(128).max(16);
    if room < wanted {
        tracing::warn!(
            max_connections = room,
            open_file_limit = limit,
            "max_connections lowered to fit the open-file limit"
        );
    }
    wanted.min(room)
}

/// Serve `app` on `listener` until `shutdown` completes, then let requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    counters: Arc<ConnectionCounters>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let table = Arc::new(Table {
        epoch: Instant::now(),
        conns: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(0),
    });
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors (or another transient failure): make room, and do
                // not spin.
                tracing::warn!("accepting a connection failed: {e}");
                if let Some(victim) = table.evict() {
                    counters.evicted.fetch_add(1, Ordering::Relaxed);
                    victim.close.notify_one();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let open = table.conns.lock().unwrap_or_else(|e| e.into_inner()).len();
        if open >= limits.max_connections {
            match table.evict() {
                Some(victim) => {
                    counters.evicted.fetch_add(1, Ordering::Relaxed);
                    victim.close.notify_one();
                }
                None => {
                    counters.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "connection refused: every connection is busy"
                    );
                    drop(stream);
                    continue;
                }
            }
        }
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        let id = table.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            busy: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(table.now_ms()),
            reading_since_ms: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            close: Notify::new(),
        });
        table
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, conn.clone());
        counters.open.fetch_add(1, Ordering::Relaxed);

        let handle = ConnHandle {
            conn: conn.clone(),
            table: table.clone(),
        };
        let service = {
            let app = app.clone();
            hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                let (app, handle) = (app.clone(), handle.clone());
                handle.conn.busy.fetch_add(1, Ordering::SeqCst);
                let activity = Activity(handle.clone());
                request.extensions_mut().insert(handle);
                async move {
                    let response = app.oneshot(request.map(axum::body::Body::new)).await;
                    // In flight until the response body is written (or dropped).
                    response.map(|r| {
                        r.map(|inner| Tracked {
                            inner,
                            _activity: activity,
                        })
                    })
                }
            })
        };
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        let (table, counters) = (table.clone(), counters.clone());
        let idle_timeout = limits.idle_timeout;
        tokio::spawn(async move {
            tokio::pin!(connection);
            loop {
                tokio::select! {
                    result = &mut connection => {
                        if let Err(e) = result {
                            tracing::debug!("connection ended: {e}");
                        }
                        break;
                    }
                    _ = conn.close.notified() => {
                        // Chosen as idle, but a request began meanwhile: it stays, unless
                        // that request is a body arriving too slowly.
                        let since = conn.reading_since_ms.load(Ordering::SeqCst);
                        let slow = since > 0
                            && table.now_ms().saturating_sub(since - 1) >= SLOW_BODY.as_millis() as u64;
                        if conn.busy.load(Ordering::SeqCst) == 0 || slow {
                            break;
                        }
                        conn.closing.store(false, Ordering::SeqCst);
                    }
                    _ = idle_watch(&conn, &table, idle_timeout) => {
                        counters.idle_closed.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
            table
                .conns
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            counters.open.fetch_sub(1, Ordering::Relaxed);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// A request in flight on its connection; dropped when its response body is written (or
/// the response is dropped).
struct Activity(ConnHandle);

impl Drop for Activity {
    fn drop(&mut self) {
        let ConnHandle { conn, table } = &self.0;
        conn.last_active_ms.store(table.now_ms(), Ordering::SeqCst);
        conn.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps its request in flight until it is written.
struct Tracked {
    inner: axum::body::Body,
    _activity: Activity,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Completes once `conn` has had no request in flight for `timeout`.
async fn idle_watch(conn: &Conn, table: &Table, timeout: Duration) {
    let timeout_ms = timeout.as_millis() as u64;
    loop {
        let idle_for = table
            .now_ms()
            .saturating_sub(conn.last_active_ms.load(Ordering::SeqCst));
        let busy = conn.busy.load(Ordering::SeqCst) > 0;
        if !busy && idle_for >= timeout_ms {
            return;
        }
        // Busy: look again soon after it may have ended, so idle time is not overshot.
        let wait = if busy {
            timeout_ms / 4
        } else {
            timeout_ms - idle_for
        };
        tokio::time::sleep(Duration::from_millis(wait.max(10))).await;
    }
}
