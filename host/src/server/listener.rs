//! The accept loop of `switchboard serve`: HTTP/1.1 connections with bounded lifetimes, so
//! no client can hold the server.
//!
//! - a request's headers must arrive within `header_timeout` (hyper's timer);
//! - a connection with no request in flight is closed after `idle_timeout` (keep-alive, or a
//!   client that opened a connection and sends nothing, or headers at a trickle);
//! - at most `max_connections` are open: at the cap, a new connection evicts the connection
//!   that has been idle longest, so idle or slow clients can never lock out a good webhook
//!   (when every connection is busy with a request, the newcomer is closed instead);
//! - on shutdown, the loop stops accepting and requests in flight finish (graceful).
//!
//! Reading a body in time is the handlers' part (`server::hooks`), since only they know
//! whether a body is worth reading at all.

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower::ServiceExt;

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
    /// Idle connections closed to make room for a new one at the cap.
    pub evicted: AtomicU64,
    /// New connections closed at once: at the cap, with every connection busy.
    pub refused: AtomicU64,
}

/// One open connection, as the accept loop sees it.
struct Conn {
    /// Requests being answered on it now.
    busy: AtomicUsize,
    /// When it last began or finished a request (or was accepted), since `epoch`.
    last_active_ms: AtomicU64,
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

    /// The connection idle for longest, if any is idle.
    fn longest_idle(&self) -> Option<(u64, Arc<Conn>)> {
        let conns = self.conns.lock().unwrap();
        conns
            .iter()
            .filter(|(_, c)| c.busy.load(Ordering::SeqCst) == 0)
            .min_by_key(|(_, c)| c.last_active_ms.load(Ordering::SeqCst))
            .map(|(id, c)| (*id, c.clone()))
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
                if let Some((_, conn)) = table.longest_idle() {
                    counters.evicted.fetch_add(1, Ordering::Relaxed);
                    conn.close.notify_one();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let open = table.conns.lock().unwrap().len();
        if open >= limits.max_connections {
            match table.longest_idle() {
                Some((_, conn)) => {
                    counters.evicted.fetch_add(1, Ordering::Relaxed);
                    conn.close.notify_one();
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
            close: Notify::new(),
        });
        table.conns.lock().unwrap().insert(id, conn.clone());
        counters.open.fetch_add(1, Ordering::Relaxed);

        let service = {
            let (app, conn, table) = (app.clone(), conn.clone(), table.clone());
            hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let (app, conn, table) = (app.clone(), conn.clone(), table.clone());
                async move {
                    conn.busy.fetch_add(1, Ordering::SeqCst);
                    let _done = Activity {
                        conn: &conn,
                        table: &table,
                    };
                    app.oneshot(request.map(axum::body::Body::new)).await
                }
            })
        };
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        let (table, counters) = (table.clone(), counters.clone());
        let idle_timeout = limits.idle_timeout;
        tokio::spawn(async move {
            tokio::select! {
                result = connection => {
                    if let Err(e) = result {
                        tracing::debug!("connection ended: {e}");
                    }
                }
                _ = conn.close.notified() => {}
                _ = idle_watch(&conn, &table, idle_timeout) => {
                    counters.idle_closed.fetch_add(1, Ordering::Relaxed);
                }
            }
            table.conns.lock().unwrap().remove(&id);
            counters.open.fetch_sub(1, Ordering::Relaxed);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Marks the end of a request on its connection (also when the request is dropped).
struct Activity<'a> {
    conn: &'a Conn,
    table: &'a Table,
}

impl Drop for Activity<'_> {
    fn drop(&mut self) {
        self.conn
            .last_active_ms
            .store(self.table.now_ms(), Ordering::SeqCst);
        self.conn.busy.fetch_sub(1, Ordering::SeqCst);
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
        let wait = if busy {
            timeout_ms
        } else {
            timeout_ms - idle_for
        };
        tokio::time::sleep(Duration::from_millis(wait.max(10))).await;
    }
}
