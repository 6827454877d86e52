//! The operator's console at `/console`: server-rendered HTML (maud), one small script of
//! our own for live updates, nothing fetched from elsewhere.
//!
//! Sign-in exchanges the admin token for a session cookie (`HttpOnly`, `SameSite=Strict`,
//! `Secure` behind TLS as `X-Forwarded-Proto: https` says); every form that changes
//! something carries the session's CSRF token and is refused without it. No secret is ever
//! rendered; an event's payload (personal data) is shown only after "reveal", and each
//! reveal is logged.
//!
//! | route | does |
//! |-------|------|
//! | `GET /console/runs?<filters>` | runs, newest first; filters; live updates; a chart |
//! | `GET /console/runs/{id}` | a run: its attempts, logs, vendor calls (journal), replay |
//! | `POST /console/runs/{id}/reveal` | the same, with the event's payload |
//! | `POST /console/runs/{id}/replay` | queue a finished run again |
//! | `POST /console/replay` | bulk replay of the filter's runs: a dry-run count, then confirm |
//! | `GET /console/recipes` | loaded recipes, triggers, next cron fire, load errors |
//! | `POST /console/recipes/{name}/pause`, `…/resume` | stop or start a recipe's runs on every host of the store |
//! | `GET /console/connections`, `POST /console/connections/check` | connections, checked |

use super::{AppState, same_secret};
use crate::api::RunFilter;
use crate::model::RunRecord;
use crate::model::effect::EffectState;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::{DOCTYPE, Markup, html};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const COOKIE: &str = "sb_session";
/// How long a session lasts.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most (the oldest go first).
const MAX_SESSIONS: usize = 1024;

/// Signed-in browsers: session id → its CSRF token and expiry.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    /// The last `connections check`, per connection: when, and what it said.
    checks: Mutex<HashMap<String, Checked>>,
}

/// When a connection was checked, and what the check said.
type Checked = (String, Result<String, String>);

#[derive(Clone)]
struct Session {
    csrf: String,
    expires: Instant,
}

impl Sessions {
    fn create(&self) -> (String, Session) {
        let session = Session {
            csrf: random_token(),
            expires: Instant::now() + SESSION_TTL,
        };
        let id = random_token();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        while map.len() >= MAX_SESSIONS {
            let oldest = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => map.remove(&k),
                None => break,
            };
        }
        map.insert(id.clone(), session.clone());
        (id, session)
    }

    fn get(&self, id: &str) -> Option<Session> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(id).filter(|s| s.expires > Instant::now()).cloned()
    }

    fn remove(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

/// 32 random bytes from the operating system, as hex.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system gives random bytes");
    hex::encode(bytes)
}

pub(super) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/runs") }))
        .route("/console/login", get(login_page).post(login))
        .route("/console/logout", post(logout))
        .route("/console/runs", get(runs_page))
        .route("/console/runs/rows", get(runs_rows))
        .route("/console/runs/{id}", get(run_page))
        .route("/console/runs/{id}/reveal", post(reveal))
        .route("/console/runs/{id}/replay", post(replay))
        .route("/console/replay", post(bulk_replay))
        .route("/console/recipes", get(recipes_page))
        .route("/console/recipes/{name}/pause", post(pause))
        .route("/console/recipes/{name}/resume", post(resume))
        .route("/console/connections", get(connections_page))
        .route("/console/connections/check", post(check_connections))
        .route("/console/console.js", get(script))
        .layer(axum::middleware::map_response(hardened))
}

/// Every console answer: never cached (a revealed payload is personal data), not sniffed,
/// not framed by another site.
async fn hardened(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static("frame-ancestors 'none'"),
    );
    response
}

/// The session id a request's cookies carry, if any.
fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// The session of a request, if it has a live one.
fn session(app: &AppState, headers: &HeaderMap) -> Option<Session> {
    app.console.get(&session_id(headers)?)
}

/// The session, or the answer to give instead: to sign in (a page) or 401 (a form).
fn signed_in(app: &AppState, headers: &HeaderMap, page: bool) -> Result<Session, Box<Response>> {
    session(app, headers).ok_or_else(|| {
        Box::new(if page {
            Redirect::to("/console/login").into_response()
        } else {
            (
                StatusCode::UNAUTHORIZED,
                page_of("Signed out", None, html! { p { "Sign in first." } }),
            )
                .into_response()
        })
    })
}

/// The session, if the form carries its CSRF token; else the refusal.
fn checked(app: &AppState, headers: &HeaderMap, csrf: &str) -> Result<Session, Box<Response>> {
    let session = signed_in(app, headers, false)?;
    if !same_secret(csrf, &session.csrf) {
        tracing::warn!("console: a form without the session's CSRF token was refused");
        return Err(Box::new(
            (
                StatusCode::FORBIDDEN,
                page_of(
                    "Refused",
                    None,
                    html! { p { "This form has expired or did not come from the console." } },
                ),
            )
                .into_response(),
        ));
    }
    Ok(session)
}

fn page_of(title: &str, session: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Switchboard" }
                style { (maud::PreEscaped(STYLE)) }
            }
            body {
                header {
                    strong { "Switchboard" }
                    @if let Some(s) = session {
                        nav {
                            a href="/console/runs" { "Runs" }
                            a href="/console/recipes" { "Recipes" }
                            a href="/console/connections" { "Connections" }
                            form method="post" action="/console/logout" class="inline" {
                                input type="hidden" name="csrf" value=(s.csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { h1 { (title) } (body) }
                script src="/console/console.js" {}
            }
        }
    }
}

const STYLE: &str = "
body{font:14px system-ui,sans-serif;margin:0;color:#222}
header{display:flex;gap:2em;align-items:center;padding:.6em 1.2em;background:#1d3557;color:#fff}
header a,header button{color:#fff;margin-right:1em;background:none;border:0;font:inherit;cursor:pointer}
main{padding:1em 1.2em}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.3em .5em;border-bottom:1px solid #ddd;vertical-align:top}
.inline{display:inline}
.status-succeeded{color:#2a7d2a}.status-failed,.status-dead{color:#b00020}
.status-queued,.status-running{color:#8a6d00}
form.filters{display:flex;flex-wrap:wrap;gap:.6em;align-items:end;margin-bottom:1em}
form.filters label{display:flex;flex-direction:column;font-size:12px}
pre{background:#f4f4f4;padding:.6em;overflow:auto;max-height:30em}
.error{color:#b00020}
";

/// Our one script: the runs table refreshes itself while it shows the first page.
const SCRIPT: &str = r#"
(function () {
  var body = document.querySelector('tbody[data-live]');
  if (!body) return;
  setInterval(function () {
    fetch(body.getAttribute('data-live'), { credentials: 'same-origin' })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html !== null) body.innerHTML = html; });
  }, 1000);
})();
"#;

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
}

async fn login_page() -> Markup {
    login_form(None)
}

fn login_form(error: Option<&str>) -> Markup {
    page_of(
        "Sign in",
        None,
        html! {
            @if let Some(e) = error { p.error { (e) } }
            form method="post" action="/console/login" {
                label { "Admin token " input type="password" name="token" autofocus; }
                " "
                button type="submit" { "Sign in" }
            }
        },
    )
}

async fn login(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let Some(token) = &app.admin_token else {
        return (
            StatusCode::UNAUTHORIZED,
            login_form(Some(
                "The console is disabled: set [server] admin_token or SWITCHBOARD_ADMIN_TOKEN.",
            )),
        )
            .into_response();
    };
    if !same_secret(&form.token, token.expose()) {
        tracing::warn!("console sign-in refused: wrong token");
        return (
            StatusCode::UNAUTHORIZED,
            login_form(Some("That is not the admin token.")),
        )
            .into_response();
    }
    let (id, _) = app.console.create();
    let secure = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let cookie = format!(
        "{COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_TTL.as_secs(),
        if secure { "; Secure" } else { "" }
    );
    tracing::info!("console: signed in");
    (
        [(header::SET_COOKIE, cookie)],
        Redirect::to("/console/runs"),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(refused) = checked(&app, &headers, &form.csrf) {
        return *refused;
    }
    if let Some(id) = session_id(&headers) {
        app.console.remove(&id);
    }
    (
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0"),
        )],
        Redirect::to("/console/login"),
    )
        .into_response()
}

/// The filter's query string (for links and the live rows).
fn query_string(filter: &RunFilter) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(filter_fields(filter))
        .finish()
}

/// The filter as the form sent it: empty fields are no filter.
fn cleaned(mut f: RunFilter) -> RunFilter {
    let clean = |v: &mut Option<String>| {
        if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
            *v = None;
        }
    };
    clean(&mut f.status);
    clean(&mut f.plugin);
    clean(&mut f.source);
    clean(&mut f.delivery);
    clean(&mut f.since);
    clean(&mut f.until);
    clean(&mut f.cursor);
    f
}

async fn runs_page(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(filter): Query<RunFilter>,
) -> Response {
    let session = match signed_in(&app, &headers, true) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let filter = cleaned(filter);
    let page = fetch(&app, &filter, 50).await;
    let deliveries = match &page {
        Ok((runs, _)) => deliveries(&app, runs).await,
        Err(_) => HashMap::new(),
    };
    let recipes: Vec<String> = app
        .pipeline
        .registry()
        .current()
        .iter()
        .map(|p| p.name.to_string())
        .collect();
    let chart = chart(&app).await;
    let qs = query_string(&filter);
    let statuses = ["", "queued", "running", "succeeded", "failed", "dead"];
    let body = html! {
        form.filters method="get" action="/console/runs" {
            label { "Status" select name="status" {
                @for s in statuses {
                    option value=(s) selected[filter.status.as_deref() == Some(s)] {
                        @if s.is_empty() { "any" } @else { (s) }
                    }
                }
            } }
            label { "Recipe" select name="plugin" {
                option value="" { "any" }
                @for r in &recipes {
                    option value=(r) selected[filter.plugin.as_deref() == Some(r.as_str())] { (r) }
                }
            } }
            label { "Source" input name="source" value=[filter.source.as_deref()]; }
            label { "Delivery id" input name="delivery" value=[filter.delivery.as_deref()]; }
            label { "Since (RFC 3339)" input name="since" value=[filter.since.as_deref()]; }
            label { "Until" input name="until" value=[filter.until.as_deref()]; }
            button type="submit" { "Filter" }
        }
        (chart)
        @match &page {
            Err(e) => p.error { (e) },
            Ok((runs, next)) => {
                table #runs {
                    thead { tr {
                        th { "Status" } th { "Recipe" } th { "Source / kind" } th { "Event" } th { "Delivery id" }
                        th { "Received" } th { "Started" } th { "Finished" } th { "Duration" }
                        th { "Attempts" } th { "Next attempt" } th { "Error" }
                    } }
                    @if filter.cursor.is_none() {
                        tbody data-live=(format!("/console/runs/rows?{qs}")) { (rows(runs, &deliveries)) }
                    } @else {
                        tbody { (rows(runs, &deliveries)) }
                    }
                }
                @if let Some(next) = next {
                    p { a href=(format!("/console/runs?{}{}cursor={}", qs, if qs.is_empty() { "" } else { "&" }, next)) { "Older runs →" } }
                }
            }
        }
        h2 { "Replay everything this filter matches" }
        form method="post" action="/console/replay" {
            input type="hidden" name="csrf" value=(session.csrf);
            @for (k, v) in filter_fields(&filter) { input type="hidden" name=(k) value=(v); }
            button #bulk type="submit" { "Count the runs to replay" }
        }
    };
    page_of("Runs", Some(&session), body).into_response()
}

/// The filters set (after [`cleaned`]: none empty), as query or form fields.
fn filter_fields(f: &RunFilter) -> Vec<(&'static str, String)> {
    [
        ("status", &f.status),
        ("plugin", &f.plugin),
        ("source", &f.source),
        ("delivery", &f.delivery),
        ("since", &f.since),
        ("until", &f.until),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
    .collect()
}

async fn fetch(
    app: &AppState,
    filter: &RunFilter,
    limit: usize,
) -> Result<(Vec<RunRecord>, Option<String>), String> {
    let mut query = filter.query()?;
    query.limit = limit;
    let page = app.pipeline.runs(&query).await.map_err(|e| e.to_string())?;
    Ok((page.runs, page.next))
}

/// `GET /console/runs/rows`: the table's rows, for the live update.
async fn runs_rows(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(filter): Query<RunFilter>,
) -> Response {
    if let Err(r) = signed_in(&app, &headers, false) {
        return *r;
    }
    match fetch(&app, &cleaned(filter), 50).await {
        Ok((runs, _)) => rows(&runs, &deliveries(&app, &runs).await).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

/// The delivery id of each event of `runs` (a page of them: one read per event).
async fn deliveries(app: &AppState, runs: &[RunRecord]) -> HashMap<String, String> {
    let mut found = HashMap::new();
    for r in runs {
        if !found.contains_key(&r.event_id)
            && let Ok(Some(e)) = app.pipeline.event(&r.event_id).await
        {
            found.insert(r.event_id.clone(), e.delivery_id);
        }
    }
    found
}

fn rows(runs: &[RunRecord], deliveries: &HashMap<String, String>) -> Markup {
    html! {
        @for r in runs {
            tr data-run=(r.id) data-status=(r.status.as_str()) {
                td class=(format!("status-{}", r.status.as_str())) { (r.status.as_str())
                    @if r.is_deferred() { " (deferred)" } }
                td { (r.plugin) @if let Some(v) = &r.plugin_version { "@" (v) } }
                td { (r.source) " / " (r.kind) }
                td { a href=(format!("/console/runs/{}", r.id)) { (r.event_id) } }
                td.delivery { (deliveries.get(&r.event_id).map_or("", String::as_str)) }
                td { (r.created_at) }
                td { (r.started_at.as_deref().unwrap_or("")) }
                td { (r.finished_at.as_deref().unwrap_or("")) }
                td { @if let Some(us) = r.duration_us { (format!("{:.1} ms", us as f64 / 1000.0)) } }
                td { (r.attempts) }
                td { (r.next_attempt_at.as_deref().unwrap_or("")) }
                td.error { (r.reason.as_deref().unwrap_or("")) }
            }
        }
    }
}

/// Runs of the last hour by outcome, in 5-minute bars (an SVG drawn here).
async fn chart(app: &AppState) -> Markup {
    const BUCKETS: i64 = 12;
    const WIDTH_MS: i64 = 5 * 60 * 1000;
    let now = crate::pipeline::now_ms();
    let filter = RunFilter {
        since: Some(crate::pipeline::rfc3339(now - BUCKETS * WIDTH_MS)),
        ..Default::default()
    };
    const MOST: usize = 2000;
    let Ok((runs, more)) = fetch(app, &filter, MOST).await else {
        return html! {};
    };
    let capped = more.is_some();
    let mut counts = vec![[0usize; 3]; BUCKETS as usize];
    for r in &runs {
        let Some(at) = crate::model::parse_ms(&r.created_at) else {
            continue;
        };
        let i = ((now - at) / WIDTH_MS).clamp(0, BUCKETS - 1);
        let slot = &mut counts[(BUCKETS - 1 - i) as usize];
        match r.status.as_str() {
            "succeeded" => slot[0] += 1,
            "failed" | "dead" => slot[1] += 1,
            _ => slot[2] += 1,
        }
    }
    let top = counts
        .iter()
        .map(|c| c.iter().sum::<usize>())
        .max()
        .unwrap_or(0)
        .max(1);
    let colours = ["#2a7d2a", "#b00020", "#c9a400"];
    let names = ["succeeded", "failed or dead", "unfinished"];
    // (x, y, height, colour, title): each bar's parts stacked from the bottom.
    let mut rects = Vec::new();
    for (i, c) in counts.iter().enumerate() {
        let mut y = 80.0;
        for (k, n) in c.iter().enumerate().filter(|(_, n)| **n > 0) {
            let h = *n as f64 * 78.0 / top as f64;
            y -= h;
            rects.push((i * 40 + 4, y, h, colours[k], format!("{n} {}", names[k])));
        }
    }
    html! {
        figure {
            svg #chart width="480" height="90" role="img" aria-label="Runs of the last hour by outcome" {
                @for (x, y, h, colour, title) in &rects {
                    rect x=(x) y=(format!("{y:.1}")) width="32" height=(format!("{h:.1}")) fill=(colour) {
                        title { (title) }
                    }
                }
            }
            figcaption {
                @if capped { "The newest " (MOST) " runs of the last hour" } @else { "Runs of the last hour" }
                ", 5 minutes a bar: "
                span style="color:#2a7d2a" { "succeeded" } ", "
                span style="color:#b00020" { "failed or dead" } ", "
                span style="color:#c9a400" { "unfinished" } }
        }
    }
}

async fn run_page(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    match signed_in(&app, &headers, true) {
        Ok(session) => run_view(&app, &session, &id, false, None).await,
        Err(r) => *r,
    }
}

async fn reveal(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    match checked(&app, &headers, &form.csrf) {
        Ok(session) => {
            tracing::warn!(run = %id, "console: an event's payload was revealed");
            run_view(&app, &session, &id, true, None).await
        }
        Err(r) => *r,
    }
}

async fn replay(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let session = match checked(&app, &headers, &form.csrf) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let note = match app.pipeline.replay(&id, false).await {
        Ok(_) => {
            tracing::info!(run = %id, "console: run replayed");
            "Queued again.".to_string()
        }
        Err(e) => format!("Not replayed: {e}"),
    };
    run_view(&app, &session, &id, false, Some(&note)).await
}

async fn run_view(
    app: &AppState,
    session: &Session,
    id: &str,
    revealed: bool,
    note: Option<&str>,
) -> Response {
    let detail = match app.pipeline.run_detail(id).await {
        Ok(d) => d,
        Err(e) => {
            return (
                StatusCode::NOT_FOUND,
                page_of("No such run", Some(session), html! { p.error { (e) } }),
            )
                .into_response();
        }
    };
    let run = &detail.run;
    let event = app.pipeline.event(&run.event_id).await.ok().flatten();
    let effects = app.pipeline.effects(&run.id).await.unwrap_or_default();
    let body = html! {
        @if let Some(n) = note { p #note { (n) } }
        table.facts {
            tr { th { "Status" } td #status class=(format!("status-{}", run.status.as_str())) { (run.status.as_str()) } }
            tr { th { "Recipe" } td { (run.plugin) @if let Some(v) = &run.plugin_version { "@" (v) } } }
            tr { th { "Source / kind" } td { (run.source) " / " (run.kind) } }
            tr { th { "Event" } td { (run.event_id) } }
            @if let Some(e) = &event { tr { th { "Delivery id" } td { (e.delivery_id) } } }
            tr { th { "Received" } td { (run.created_at) } }
            tr { th { "Attempts" } td { (run.attempts) @if run.replays > 0 { " (replayed " (run.replays) "×)" } } }
            tr { th { "Started / finished" } td { (run.started_at.as_deref().unwrap_or("–")) " / " (run.finished_at.as_deref().unwrap_or("–")) } }
            @if let Some(us) = run.duration_us { tr { th { "Last attempt took" } td { (format!("{:.1} ms", us as f64 / 1000.0)) } } }
            @if let Some(n) = &run.next_attempt_at { tr { th { "Next attempt" } td { (n) } } }
            @if let Some(r) = &run.reason { tr { th { "Error" } td.error #reason { (r) } } }
            @if let Some(t) = &run.trace_id { tr { th { "Trace" } td { code { (t) } } } }
            @if !run.unconfirmed.is_empty() { tr { th { "Unconfirmed calls" } td.error { (run.unconfirmed.len()) " — check them at the vendor before replaying" } } }
        }
        @if run.status.is_terminal() {
            form method="post" action=(format!("/console/runs/{}/replay", run.id)) {
                input type="hidden" name="csrf" value=(session.csrf);
                button #replay type="submit" { "Replay this run" }
            }
        }
        h2 { "Event payload" }
        @match (&event, revealed) {
            (None, _) => p { "The event is no longer kept." },
            (Some(e), true) => pre #payload { (pretty(e.event.payload.get())) },
            (Some(_), false) => form method="post" action=(format!("/console/runs/{}/reveal", run.id)) {
                input type="hidden" name="csrf" value=(session.csrf);
                p { "Hidden: it may hold personal data. Revealing it is logged. " }
                button #reveal type="submit" { "Reveal payload" }
            },
        }
        @if let Some(outcome) = &run.outcome {
            h2 { "Outcome" }
            pre { (serde_json::to_string_pretty(outcome).unwrap_or_default()) }
        }
        h2 { "Attempts" }
        @if detail.timeline.is_empty() { p { "None ended yet." } }
        @else {
            table #timeline {
                tr { th { "Attempt" } th { "Started" } th { "Ended" } th { "Outcome" } th { "Took" } th { "Version" } th { "Trace" } th { "Error" } }
                @for a in &detail.timeline {
                    tr data-outcome=(a.outcome) {
                        td { (a.attempt) }
                        td { (a.started_at.as_deref().unwrap_or("")) }
                        td { (a.finished_at) }
                        td { (a.outcome) }
                        td { @if let Some(us) = a.duration_us { (format!("{:.1} ms", us as f64 / 1000.0)) } }
                        td { (a.plugin_version.as_deref().unwrap_or("")) }
                        td { (a.trace_id.as_deref().unwrap_or("")) }
                        td.error { (a.reason.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
        h2 { "Log of the last attempt" }
        @if detail.logs.is_empty() { p { "No lines." } }
        @else {
            table { @for l in &detail.logs { tr { td { (format!("{:?}", l.level)) } td { (l.message) } } } }
            @if run.logs_dropped > 0 { p { (run.logs_dropped) " more lines were dropped." } }
        }
        h2 { "Vendor requests" }
        @if detail.timeline.iter().all(|a| a.calls.is_empty()) { p { "None sent." } }
        @else {
            table #calls {
                tr { th { "Attempt" } th { "Call" } th { "Connection" } th { "Vendor" } th { "Method" } th { "Status" } th { "Took" } th { "Retry" } th { "Error" } }
                @for a in &detail.timeline {
                    @for c in &a.calls {
                        tr data-status=(c.status.map_or_else(|| "none".to_string(), |s| s.to_string())) {
                            td { (a.attempt) } td { (c.operation) } td { (c.connection) } td { (c.vendor) }
                            td { (c.method) } td { @if let Some(s) = c.status { (s) } @else { "–" } }
                            td { (c.duration_ms) " ms" } td { (c.retry) } td.error { (c.error.as_deref().unwrap_or("")) }
                        }
                    }
                    @if a.calls_dropped > 0 {
                        tr { td { (a.attempt) } td colspan="8" { (a.calls_dropped) " more requests, not listed" } }
                    }
                }
            }
        }
        h2 { "Effect journal" }
        @if effects.is_empty() { p { "None journaled." } }
        @else {
            table {
                tr { th { "Call" } th { "Connection" } th { "State" } }
                @for e in &effects {
                    tr {
                        td { (e.call) } td { (e.connection) }
                        td { (e.state.name())
                            @if let EffectState::Unknown { reason } = &e.state { ": " (reason) } }
                    }
                }
            }
        }
        p { a href="/console/runs" { "← All runs" } }
    };
    page_of(&format!("Run {}", run.id), Some(session), body).into_response()
}

fn pretty(raw: &str) -> String {
    serde_json::from_str::<serde_json::Value>(raw)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| raw.to_string())
}

#[derive(serde::Deserialize)]
struct BulkForm {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    filter: RunFilter,
    #[serde(default)]
    confirm: Option<String>,
}

async fn bulk_replay(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<BulkForm>,
) -> Response {
    let session = match checked(&app, &headers, &form.csrf) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let mut filter = cleaned(form.filter);
    // Finished runs only: failed and dead by default.
    if filter.status.is_none() {
        filter.status = Some("failed,dead".into());
    }
    let query = match filter.query() {
        Ok(q) => q,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                page_of("Bulk replay", Some(&session), html! { p.error { (e) } }),
            )
                .into_response();
        }
    };
    if let Some(e) = crate::api::not_replayable(&query) {
        return (
            StatusCode::BAD_REQUEST,
            page_of("Bulk replay", Some(&session), html! { p.error { (e) } }),
        )
            .into_response();
    }
    let confirmed = form.confirm.as_deref() == Some("yes");
    let body = match app.pipeline.replay_matching(&query, !confirmed).await {
        Err(e) => html! { p.error { (e) } },
        Ok(r) if !confirmed => html! {
            p #matched { (r.matched) " finished run(s) match." }
            @if r.matched > 0 {
                form method="post" action="/console/replay" {
                    input type="hidden" name="csrf" value=(session.csrf);
                    @for (k, v) in filter_fields(&filter) { input type="hidden" name=(k) value=(v); }
                    button #confirm type="submit" name="confirm" value="yes" { "Replay " (r.matched) " run(s)" }
                }
            }
            p { a href=(format!("/console/runs?{}", query_string(&filter))) { "← Back" } }
        },
        Ok(r) => {
            tracing::info!(queued = r.queued.len(), "console: bulk replay");
            html! {
                p #replayed { "Replayed " (r.queued.len()) " run(s)." }
                p { a href=(format!("/console/runs?{}", query_string(&filter))) { "← Back" } }
            }
        }
    };
    page_of("Bulk replay", Some(&session), body).into_response()
}

/// `POST /console/recipes/{name}/pause` and `.../resume`.
async fn pause(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    pause_or_resume(&app, &headers, &name, &form.csrf, true).await
}

async fn resume(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    pause_or_resume(&app, &headers, &name, &form.csrf, false).await
}

/// Pause a loaded recipe, or resume one (loaded or not: a recipe whose file is gone may
/// still be paused on the store).
async fn pause_or_resume(
    app: &AppState,
    headers: &HeaderMap,
    name: &str,
    csrf: &str,
    pause: bool,
) -> Response {
    if let Err(r) = checked(app, headers, csrf) {
        return *r;
    }
    let done = if pause {
        if app.pipeline.registry().current().get(name).is_none() {
            return (
                StatusCode::NOT_FOUND,
                format!("no recipe named '{name}' is loaded"),
            )
                .into_response();
        }
        app.pipeline.pause(name).await
    } else {
        app.pipeline.resume(name).await
    };
    match done {
        Ok(_) => Redirect::to("/console/recipes").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

async fn recipes_page(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let session = match signed_in(&app, &headers, true) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let paused = app.pipeline.paused().await;
    let now = crate::pipeline::now_ms();
    let next_fire = |recipe: &str| {
        crate::pipeline::cron::plan(&app.pipeline)
            .iter()
            .filter(|p| p.plugin == recipe)
            .filter_map(|p| p.schedule.next_after(now))
            .min()
            .map(crate::pipeline::rfc3339)
    };
    let registry = app.pipeline.registry();
    let statuses = registry.statuses();
    let errors = registry.errors();
    // Paused with no file loaded here (removed, or loaded on other hosts only): their runs
    // wait all the same, so they are listed with a way to resume them.
    let not_loaded: Vec<&String> = paused
        .iter()
        .filter(|r| !statuses.iter().any(|p| &p.name == *r))
        .collect();
    let body = html! {
        table #recipes {
            tr { th { "Recipe" } th { "Version" } th { "Triggers" } th { "Next cron fire" } th { "Capabilities" } th { "Loaded" } th { "Runs" } }
            @for p in &statuses {
                tr data-recipe=(p.name) {
                    td { (p.name) } td { (p.version) }
                    td { @for t in &p.manifest.triggers { div { (match t {
                        crate::model::Trigger::Webhook { source, kind } => format!("webhook {source} / {kind}"),
                        crate::model::Trigger::Cron { schedule, timezone } => format!("cron {schedule} ({})", timezone.as_deref().unwrap_or("UTC")),
                    }) } } }
                    td { (next_fire(&p.name).unwrap_or_default()) }
                    td { (p.manifest.capabilities.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")) }
                    td { (p.loaded_at) }
                    td {
                        @let is_paused = paused.contains(&p.name);
                        span.state { @if is_paused { "paused" } @else { "running" } } " "
                        form.inline method="post" action=(format!("/console/recipes/{}/{}", p.name, if is_paused { "resume" } else { "pause" })) {
                            input type="hidden" name="csrf" value=(session.csrf);
                            button type="submit" { @if is_paused { "Resume" } @else { "Pause" } }
                        }
                    }
                }
            }
        }
        @if !not_loaded.is_empty() {
            h2 { "Paused, not loaded on this host" }
            p { "Their runs wait, queued, until they are resumed (from any host)." }
            table #paused-not-loaded {
                @for name in &not_loaded {
                    tr data-recipe=(name) {
                        td { (name) }
                        td {
                            span.state { "paused" } " "
                            form.inline method="post" action=(format!("/console/recipes/{name}/resume")) {
                                input type="hidden" name="csrf" value=(session.csrf);
                                button type="submit" { "Resume" }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Files that did not load" }
        @if errors.is_empty() { p { "None." } }
        @else {
            table #load-errors {
                @for (path, e) in &errors {
                    tr { td { (path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()) } td.error { (e) } }
                }
            }
        }
    };
    page_of("Recipes", Some(&session), body).into_response()
}

async fn connections_page(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match signed_in(&app, &headers, true) {
        Ok(session) => connections_view(&app, &session),
        Err(r) => *r,
    }
}

fn connections_view(app: &AppState, session: &Session) -> Response {
    let checks = app
        .console
        .checks
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let connections = app.pipeline.runtime().connections();
    let body = html! {
        table #connections {
            tr { th { "Connection" } th { "Vendor" } th { "Last check" } th { "Result" } }
            @for (name, c) in connections.iter() {
                tr {
                    td { (name) } td { (c.vendor()) }
                    @match checks.get(name) {
                        None => { td { "never" } td {} },
                        Some((at, Ok(ok))) => { td { (at) } td.status-succeeded { (ok) } },
                        Some((at, Err(e))) => { td { (at) } td.error { (e) } },
                    }
                }
            }
        }
        form method="post" action="/console/connections/check" {
            input type="hidden" name="csrf" value=(session.csrf);
            button type="submit" { "Check every connection" }
        }
    };
    page_of("Connections", Some(session), body).into_response()
}

async fn check_connections(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let session = match checked(&app, &headers, &form.csrf) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let connections: Vec<_> = app
        .pipeline
        .runtime()
        .connections()
        .iter()
        .map(|(n, c)| (n.to_string(), c.clone()))
        .collect();
    for (name, connector) in connections {
        let call = crate::vendors::Call::until(Instant::now() + Duration::from_secs(10));
        let result = connector.check(&call).await.map_err(|e| e.to_string());
        let at = crate::pipeline::rfc3339(crate::pipeline::now_ms());
        app.console
            .checks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name, (at, result));
    }
    connections_view(&app, &session)
}
