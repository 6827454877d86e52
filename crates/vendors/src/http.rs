//! The HTTP core every vendor client shares: credentials, error mapping, retries with
//! backoff and jitter (honouring `Retry-After`, always within the run's deadline), and a
//! client-side rate limit.

use super::Call;
use crate::secrets::{Redactor, Secret};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};
use switchboard_model::RecipeError;
use switchboard_model::backoff::Backoff;
use tracing::Instrument;

/// How failed requests are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so `max_retries + 1` attempts at most).
    pub max_retries: u32,
    /// First backoff; doubles on each retry (the workspace's one backoff, with jitter:
    /// [`switchboard_model::backoff::Backoff`]).
    pub base_backoff: Duration,
    /// Longest single wait.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// At most `limit` requests in any `window`, per connection: a `governor` limiter (GCRA)
/// with a burst of a tenth of the limit and the rest refilled evenly over the window, so a
/// burst and its refill together never pass the limit (a vendor's "100 per 10 s": 10 at
/// once, then one every 111 ms).
pub struct RateLimiter {
    limiter: governor::DefaultDirectRateLimiter,
}

impl RateLimiter {
    pub fn new(limit: usize, window: Duration) -> Self {
        let limit = u32::try_from(limit).unwrap_or(u32::MAX).max(1);
        let burst = NonZeroU32::new((limit / 10).max(1)).expect("at least one");
        // `burst` at once, then one per `period`: at most `burst + window / period` = `limit`
        // in any window (a limit of 1 gets one per window).
        let refill = (limit - burst.get()).max(1);
        let period = (window / refill).max(Duration::from_nanos(1));
        let quota = governor::Quota::with_period(period)
            .expect("a period above zero")
            .allow_burst(burst);
        RateLimiter {
            limiter: governor::RateLimiter::direct(quota),
        }
    }

    /// Wait for a slot; `rate-limited` if none frees up before the deadline.
    pub async fn acquire(&self, deadline: Instant) -> Result<(), RecipeError> {
        use governor::clock::{Clock, DefaultClock};
        loop {
            let wait = match self.limiter.check() {
                Ok(()) => return Ok(()),
                Err(not_until) => not_until.wait_time_from(DefaultClock::default().now()),
            };
            if Instant::now() + wait > deadline {
                return Err(RecipeError::RateLimited {
                    retry_after_ms: Some(wait.as_millis() as u64),
                });
            }
            tokio::time::sleep(wait).await;
        }
    }
}

/// What vendor requests record through the `metrics` facade, by vendor (a closed set).
pub mod metrics {
    use super::Response;
    use std::time::Duration;
    use switchboard_model::RecipeError;

    /// `switchboard_vendor_requests_total{vendor, status}`: requests sent (each retry too), by
    /// status class (`2xx` … `5xx`) or `error` (no answer: refused, broken, timed out).
    pub const REQUESTS: &str = "switchboard_vendor_requests_total";
    /// `switchboard_vendor_request_duration_seconds{vendor}`: from send to the whole body.
    pub const DURATION: &str = "switchboard_vendor_request_duration_seconds";
    /// `switchboard_vendor_rate_limited_total{vendor, by}`: `429`s from the vendor (`by` =
    /// `vendor`) and requests the host's own limit refused within the run's deadline (`host`).
    pub const LIMITED: &str = "switchboard_vendor_rate_limited_total";
    /// `switchboard_vendor_retries_total{vendor}`: requests sent again after a failure.
    pub const RETRIES: &str = "switchboard_vendor_retries_total";

    pub(super) fn record(
        vendor: &'static str,
        outcome: &Result<Response, RecipeError>,
        took: Duration,
    ) {
        let status = match outcome {
            Ok(r) => match r.status {
                100..=199 => "1xx",
                200..=299 => "2xx",
                300..=399 => "3xx",
                400..=499 => "4xx",
                _ => "5xx",
            },
            Err(_) => "error",
        };
        ::metrics::counter!(REQUESTS, "vendor" => vendor, "status" => status).increment(1);
        ::metrics::histogram!(DURATION, "vendor" => vendor).record(took.as_secs_f64());
        if matches!(outcome, Ok(r) if r.status == 429) {
            ::metrics::counter!(LIMITED, "vendor" => vendor, "by" => "vendor").increment(1);
        }
    }
}

/// One request to a vendor.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    /// Relative to the base URL, starting with `/`.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// Whether sending it twice is harmless (reads, updates, deletes, upserts).
    pub retry: bool,
}

impl Request {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        let retry = matches!(
            method,
            Method::GET | Method::PUT | Method::DELETE | Method::HEAD
        );
        Request {
            method,
            path: path.into(),
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
            retry,
        }
    }

    pub fn query(mut self, key: &str, value: impl ToString) -> Self {
        self.query.push((key.to_string(), value.to_string()));
        self
    }

    pub fn json(mut self, body: &serde_json::Value) -> Self {
        self.body = Some(body.to_string().into_bytes());
        self.headers
            .push(("content-type".into(), "application/json".into()));
        self
    }

    /// Mark a non-GET request as safe to resend (an upsert, a search).
    pub fn idempotent(mut self) -> Self {
        self.retry = true;
        self
    }
}

/// A vendor's answer.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> Result<serde_json::Value, RecipeError> {
        serde_json::from_slice(&self.body).map_err(|e| RecipeError::Upstream {
            status: self.status,
            message: format!("the vendor answered with invalid JSON: {e}"),
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The shared HTTP client of one connection.
pub struct VendorHttp {
    vendor: &'static str,
    client: reqwest::Client,
    base_url: String,
    auth: Vec<(HeaderName, HeaderValue)>,
    retry: RetryPolicy,
    limiter: Option<RateLimiter>,
    redactor: Redactor,
}

impl std::fmt::Debug for VendorHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VendorHttp")
            .field("vendor", &self.vendor)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// Building a client failed (bad header value, TLS setup).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub String);

impl VendorHttp {
    /// A client for `base_url` that sends `auth` headers (values built from `secret`).
    pub fn new(
        vendor: &'static str,
        base_url: &str,
        auth: Vec<(&'static str, String)>,
        secret: &Secret,
        retry: RetryPolicy,
        limiter: Option<RateLimiter>,
    ) -> Result<Self, BuildError> {
        let auth = auth
            .into_iter()
            .map(|(name, value)| {
                let mut value = HeaderValue::from_str(&value).map_err(|_| {
                    BuildError(format!("{vendor}: invalid characters in the credentials"))
                })?;
                value.set_sensitive(true);
                Ok((HeaderName::from_static(name), value))
            })
            .collect::<Result<_, BuildError>>()?;
        let client = reqwest::Client::builder()
            .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
            // Well under a run's deadline: a connection that cannot be made fails as such
            // (nothing was sent), before the run's own timeout makes it ambiguous.
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| BuildError(format!("{vendor}: cannot build the HTTP client: {e}")))?;
        Ok(VendorHttp {
            vendor,
            client,
            base_url: base_url.trim_end_matches('/').to_string(),
            auth,
            retry,
            limiter,
            redactor: Redactor::new([secret.clone()]),
        })
    }

    pub fn vendor(&self) -> &'static str {
        self.vendor
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Send a request, retrying what may be retried, and answer the response whatever
    /// its status. Only transport failures (after retries) are errors.
    pub async fn send_raw(&self, call: &Call, request: &Request) -> Result<Response, RecipeError> {
        let _waiting = call.waiting();
        let mut attempt = 0;
        loop {
            if let Some(limiter) = &self.limiter
                && let Err(refused) = limiter.acquire(call.deadline).await
            {
                ::metrics::counter!(metrics::LIMITED, "vendor" => self.vendor, "by" => "host")
                    .increment(1);
                return Err(refused);
            }
            // Under the capability call's span only (none when the run is not traced).
            let span = if call.span.is_none() {
                tracing::Span::none()
            } else {
                tracing::info_span!(
                    parent: &call.span,
                    "vendor request",
                    vendor = self.vendor,
                    method = %request.method,
                    attempt,
                    status = tracing::field::Empty,
                )
            };
            let outcome = self
                .send_once(call, request, attempt)
                .instrument(span.clone())
                .await;
            if let Ok(r) = &outcome {
                span.record("status", r.status);
                call.span.record("status", r.status);
            }
            let retry_after = match &outcome {
                Ok(r) if r.status == 429 || r.status >= 500 => retry_after(r.header("retry-after")),
                Ok(_) => return outcome,
                Err(RecipeError::Timeout) if Instant::now() >= call.deadline => return outcome,
                Err(_) => None,
            };
            if !request.retry || attempt >= self.retry.max_retries {
                return outcome;
            }
            let wait = retry_after.unwrap_or_else(|| self.backoff(attempt));
            if Instant::now() + wait >= call.deadline {
                return outcome;
            }
            attempt += 1;
            ::metrics::counter!(metrics::RETRIES, "vendor" => self.vendor).increment(1);
            tracing::debug!(vendor = self.vendor, path = %request.path, attempt, ?wait, "retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// Send a request and map any non-2xx answer to the WIT error it means. A gateway's 502
    /// or 504 to a request that is not safe to send twice is `unknown-outcome`: the request
    /// may have reached the vendor behind it.
    pub async fn send(&self, call: &Call, request: &Request) -> Result<Response, RecipeError> {
        let response = self.send_raw(call, request).await?;
        if (200..300).contains(&response.status) {
            return Ok(response);
        }
        if !request.retry && matches!(response.status, 502 | 504) {
            return Err(RecipeError::UnknownOutcome {
                message: format!(
                    "{} {} to {}: its gateway answered {} after the request was sent, so it may have taken effect",
                    request.method, request.path, self.vendor, response.status
                ),
            });
        }
        Err(self.map_status(&response))
    }

    fn backoff(&self, attempt: u32) -> Duration {
        Backoff {
            base: self.retry.base_backoff,
            max: self.retry.max_backoff,
        }
        .delay(attempt + 1, fastrand::f64())
    }

    /// Send `request` once (`retry`: 0 for the first send), noted in the run's log of vendor
    /// requests if it left.
    async fn send_once(
        &self,
        call: &Call,
        request: &Request,
        retry: u32,
    ) -> Result<Response, RecipeError> {
        let remaining = call.deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(RecipeError::Timeout);
        }
        let url = format!("{}{}", self.base_url, request.path);
        let mut headers = HeaderMap::new();
        for (k, v) in &request.headers {
            let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::from_str(v))
            else {
                return Err(RecipeError::invalid(
                    format!("headers.{k}"),
                    "is not a valid HTTP header",
                ));
            };
            headers.insert(k, v);
        }
        for (k, v) in &self.auth {
            headers.insert(k.clone(), v.clone());
        }
        let mut builder = self
            .client
            .request(request.method.clone(), &url)
            .query(&request.query)
            .headers(headers)
            .timeout(remaining);
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        // Counted from here: the request leaves (what was refused before it is not a request).
        let sent = Instant::now();
        let outcome = async {
            let response = builder
                .send()
                .await
                .map_err(|e| self.transport_error(e, request))?;
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let body = response
                .bytes()
                .await
                .map_err(|e| self.transport_error(e, request))?
                .to_vec();
            Ok(Response {
                status,
                headers,
                body,
            })
        }
        .await;
        let took = sent.elapsed();
        metrics::record(self.vendor, &outcome, took);
        if let Some(log) = &call.log {
            let answer = outcome.as_ref().map(|r| r.status);
            log.request(self.vendor, request.method.as_str(), retry, answer, took);
        }
        outcome
    }

    /// The error a failed exchange means. A request that may have reached the vendor (the
    /// connection broke or timed out after connecting) and is not safe to send twice is
    /// `unknown-outcome`: it may have taken effect, and nobody should send it again blindly.
    fn transport_error(&self, e: reqwest::Error, request: &Request) -> RecipeError {
        let detail = std::error::Error::source(&e)
            .map(ToString::to_string)
            .unwrap_or_else(|| e.to_string());
        if !e.is_connect() && !request.retry {
            let what = if e.is_timeout() { "timed out" } else { "broke" };
            return RecipeError::UnknownOutcome {
                message: self.redactor.redact(&format!(
                    "{} {} to {}: the connection {what} after the request was sent, so it may have taken effect ({detail})",
                    request.method, request.path, self.vendor
                )),
            };
        }
        if e.is_timeout() {
            return RecipeError::Timeout;
        }
        // reqwest's messages carry the URL, never the headers; redact anyway.
        let reason = if e.is_connect() {
            "connection failed"
        } else {
            "the connection broke"
        };
        RecipeError::Upstream {
            status: StatusCode::BAD_GATEWAY.as_u16(),
            message: self.redactor.redact(&format!(
                "could not reach {}: {reason} ({detail})",
                self.vendor
            )),
        }
    }

    /// The WIT error a non-2xx answer means, with the vendor's own message.
    pub fn map_status(&self, response: &Response) -> RecipeError {
        let (field, message) = vendor_message(&response.body);
        let message = self.redactor.redact(&message);
        match response.status {
            401 => RecipeError::Unauthorized { message },
            403 => RecipeError::Forbidden { message },
            404 => RecipeError::NotFound { message },
            400 | 409 | 422 => RecipeError::Invalid {
                field: field.unwrap_or_else(|| "request".into()),
                reason: message,
            },
            429 => RecipeError::RateLimited {
                retry_after_ms: retry_after(response.header("retry-after"))
                    .map(|d| d.as_millis() as u64),
            },
            status => RecipeError::Upstream { status, message },
        }
    }
}

/// `Retry-After` as seconds (the form vendors use here).
fn retry_after(value: Option<&str>) -> Option<Duration> {
    let secs: f64 = value?.trim().parse().ok()?;
    (secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

/// The field (if the vendor names one) and the message of a vendor's error body, from the
/// shapes the five vendors use: `message` (a string, or GHL's array), `error` (a string, or
/// HCP's `{message}`), `errors` (HCP's `{field: [reasons]}`), PocketBoss' `field`.
pub fn vendor_message(body: &[u8]) -> (Option<String>, String) {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
        let text = String::from_utf8_lossy(body)
            .trim()
            .chars()
            .take(300)
            .collect::<String>();
        return (
            None,
            if text.is_empty() {
                "no details".into()
            } else {
                text
            },
        );
    };
    let field = json
        .get("field")
        .and_then(|f| f.as_str())
        .map(str::to_string);
    if let Some(errors) = json.get("errors").and_then(|e| e.as_object())
        && let Some((name, reasons)) = errors.iter().next()
    {
        let reason = match reasons {
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            other => other.as_str().unwrap_or_default().to_string(),
        };
        return (Some(name.clone()), format!("{name} {reason}"));
    }
    let message = match json.get("message") {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Array(a)) => Some(
            a.iter()
                .filter_map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        ),
        _ => None,
    }
    .or_else(|| match json.get("error") {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Object(o)) => o
            .get("message")
            .and_then(|m| m.as_str())
            .map(str::to_string),
        _ => None,
    })
    .unwrap_or_else(|| json.to_string().chars().take(300).collect());
    (field, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_messages_from_every_shape() {
        let m = |s: &str| vendor_message(s.as_bytes());
        assert_eq!(
            m(r#"{"statusCode":400,"message":"Bad Request"}"#),
            (None, "Bad Request".into())
        );
        assert_eq!(
            m(r#"{"statusCode":422,"message":["email must be an email","phone too short"]}"#).1,
            "email must be an email; phone too short"
        );
        assert_eq!(
            m(r#"{"error":{"message":"job not found"}}"#).1,
            "job not found"
        );
        assert_eq!(
            m(r#"{"errors":{"name":["is missing"]}}"#),
            (Some("name".into()), "name is missing".into())
        );
        assert_eq!(
            m(r#"{"error":"validation_error","message":"email is invalid","field":"email"}"#),
            (Some("email".into()), "email is invalid".into())
        );
        assert_eq!(m(r#"{"error":"Bad credentials"}"#).1, "Bad credentials");
        assert_eq!(m("oops").1, "oops");
    }

    #[test]
    fn retry_after_is_seconds() {
        assert_eq!(retry_after(Some("2")), Some(Duration::from_secs(2)));
        assert_eq!(retry_after(Some("0.5")), Some(Duration::from_millis(500)));
        assert_eq!(retry_after(Some("soon")), None);
    }

    #[tokio::test]
    async fn the_rate_limiter_waits_or_refuses_within_the_deadline() {
        let window = Duration::from_millis(200);
        let limiter = RateLimiter::new(2, window);
        let far = Instant::now() + Duration::from_secs(5);
        let mut sent = Vec::new();
        for _ in 0..6 {
            limiter.acquire(far).await.unwrap();
            sent.push(Instant::now());
        }
        // Never a third request within one window.
        for pair in sent.windows(3) {
            assert!(
                pair[2].duration_since(pair[0]) >= window - Duration::from_millis(10),
                "three requests within {:?}",
                pair[2].duration_since(pair[0])
            );
        }
        // And no slower than that: one burst, then one request per window.
        assert!(sent[5].duration_since(sent[0]) < window * 6);
        let near = Instant::now() + Duration::from_millis(10);
        assert!(matches!(
            limiter.acquire(near).await,
            Err(RecipeError::RateLimited { .. })
        ));
    }
}
