//! Fault injection, per vendor, as axum middleware.

use super::SandboxState;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// What a vendor should get wrong, set with `PUT /_sandbox/faults/<vendor>`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Delay every answer by this many milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
    /// Answer the next `fail_next` requests with `status` (then behave).
    #[serde(default)]
    pub fail_next: u32,
    /// Answer every request with `status` (an outage).
    #[serde(default)]
    pub fail_always: bool,
    /// Answer this share (0..1) of requests with `status`.
    #[serde(default)]
    pub error_rate: f64,
    /// The failure status (default 500; 429 adds `Retry-After`).
    pub status: Option<u16>,
    /// `Retry-After` seconds on 429s (default 1).
    pub retry_after: Option<u64>,
    /// Break the connection of the next `drop_next` requests mid-answer, before the vendor
    /// does anything.
    #[serde(default)]
    pub drop_next: u32,
    /// Do what the next `drop_after_next` requests ask, then break the connection before the
    /// answer: the client cannot know that it took effect.
    #[serde(default)]
    pub drop_after_next: u32,
    /// Hold the next `hold_next` requests for `hold_ms` before the vendor acts on them (a
    /// slow call that a later one may overtake).
    #[serde(default)]
    pub hold_next: u32,
    #[serde(default)]
    pub hold_ms: u64,
    /// Only requests whose path (under the vendor's prefix) starts with this; default all.
    pub path: Option<String>,
    /// Only requests of this method (`POST`, `PUT`, ...); default all.
    pub method: Option<String>,
}

/// A response body that fails as soon as it is read: the connection breaks.
struct Broken;

impl http_body::Body for Broken {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::task::Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "sandbox fault: connection dropped",
        ))))
    }
}

/// Apply the faults set for `vendor` before the request reaches its handler.
pub async fn inject(
    State((state, vendor)): State<(Arc<SandboxState>, &'static str)>,
    request: Request,
    next: Next,
) -> Response {
    *state
        .requests
        .lock()
        .unwrap()
        .entry(vendor.to_string())
        .or_default() += 1;
    let _in_flight = InFlight::enter(&state, vendor);
    let path = request.uri().path().to_string();
    let method = request.method().as_str().to_string();
    let (latency, fail, status, retry_after, drop, drop_after) = {
        let mut faults = state.faults.lock().unwrap();
        let applies = |f: &Faults| {
            f.path.as_ref().is_none_or(|p| path.starts_with(p.as_str()))
                && f.method
                    .as_ref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(&method))
        };
        match faults.get_mut(vendor).filter(|f| applies(f)) {
            None => (0, false, 500, 1, false, false),
            Some(f) => {
                let drop = f.drop_next > 0;
                f.drop_next = f.drop_next.saturating_sub(1);
                let drop_after = !drop && f.drop_after_next > 0;
                if drop_after {
                    f.drop_after_next -= 1;
                }
                let hold = if f.hold_next > 0 {
                    f.hold_next -= 1;
                    f.hold_ms
                } else {
                    0
                };
                let fail = if f.fail_next > 0 {
                    f.fail_next -= 1;
                    true
                } else {
                    f.fail_always || (f.error_rate > 0.0 && fastrand::f64() < f.error_rate)
                };
                (
                    f.latency_ms + hold,
                    fail,
                    f.status.unwrap_or(500),
                    f.retry_after.unwrap_or(1),
                    drop,
                    drop_after,
                )
            }
        }
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    if drop {
        return Response::new(axum::body::Body::new(Broken));
    }
    if drop_after {
        // The vendor does it; its answer never arrives.
        let _ = record(&state, vendor, request, next).await;
        return Response::new(axum::body::Body::new(Broken));
    }
    if fail {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::json!({
            "statusCode": status.as_u16(),
            "message": format!("sandbox fault: {}", status.canonical_reason().unwrap_or("error")),
        });
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(retry_after));
        }
        return response;
    }
    record(&state, vendor, request, next).await
}

/// A request being answered, counted in its vendor's in-flight gauge until it is done or
/// its client goes away.
struct InFlight<'a> {
    state: &'a SandboxState,
    vendor: &'a str,
}

impl<'a> InFlight<'a> {
    fn enter(state: &'a SandboxState, vendor: &'a str) -> Self {
        let mut gauges = state.in_flight.lock().unwrap();
        let (now, max) = gauges.entry(vendor.to_string()).or_default();
        *now += 1;
        *max = (*max).max(*now);
        InFlight { state, vendor }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some((now, _)) = self.state.in_flight.lock().unwrap().get_mut(self.vendor) {
            *now -= 1;
        }
    }
}

/// One request and its answer, as the sandbox saw them (for contract tests).
#[derive(Debug, Clone)]
pub struct Exchange {
    pub vendor: String,
    pub method: String,
    /// The path under the vendor's prefix, e.g. `/contacts/abc`.
    pub path: String,
    pub request: Option<serde_json::Value>,
    pub status: u16,
    pub response: Option<serde_json::Value>,
}

/// Exchanges kept, newest last.
const KEPT: usize = 10_000;

async fn record(state: &SandboxState, vendor: &str, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 4 << 20).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response();
    };
    let method = parts.method.to_string();
    let path = parts.uri.path().to_string();
    let request_json = serde_json::from_slice(&bytes).ok();
    let response = next
        .run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await;
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    let exchange = Exchange {
        vendor: vendor.to_string(),
        method,
        path,
        request: request_json,
        status: parts.status.as_u16(),
        response: serde_json::from_slice(&bytes).ok(),
    };
    {
        let mut kept = state.exchanges.lock().unwrap();
        if kept.len() >= KEPT {
            kept.pop_front();
        }
        kept.push_back(exchange);
    }
    Response::from_parts(parts, axum::body::Body::from(bytes))
}
