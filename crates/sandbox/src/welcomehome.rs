//! The WelcomeHome API, as the sandbox serves it: prospects, activities with calendar
//! fields, lookup lists, events and RSVPs, housing contracts, influencers, and CSV exports
//! paged through `Link` headers with the 3-uses-a-minute cursor limit.

use super::{SandboxState, faults, now};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// WelcomeHome's state.
#[derive(Default)]
pub struct Wh {
    next_id: u64,
    prospects: Vec<Value>,
    influencers: Vec<Value>,
    activities: Vec<Value>,
    events: Vec<Value>,
    invites: Vec<Value>,
    cursor_uses: HashMap<String, VecDeque<Instant>>,
}

impl Wh {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

impl SandboxState {
    /// Change a WelcomeHome prospect's first person (`{"last_name": ...}`), as a user editing
    /// it in WelcomeHome would (the API has no prospect update); its `updated_at` becomes now.
    /// Returns whether the prospect exists.
    pub fn edit_wh_prospect(&self, id: u64, changes: &Value) -> bool {
        let mut wh = self.wh.lock().unwrap();
        let Some(p) = wh.prospects.iter_mut().find(|p| p["id"] == id) else {
            return false;
        };
        p["updated_at"] = json!(now());
        let kind = match p["influencers"].get(0) {
            Some(_) => "influencers",
            None => "residents",
        };
        let Some(person) = p[kind].get_mut(0) else {
            return false;
        };
        for (k, v) in changes.as_object().into_iter().flatten() {
            person[k] = v.clone();
        }
        let person = person.clone();
        if let Some(i) = wh.influencers.iter_mut().find(|i| i["id"] == person["id"]) {
            *i = person;
        }
        true
    }
}

type Reply = (StatusCode, Json<Value>);

fn fail(status: StatusCode, message: &str) -> Reply {
    (status, Json(json!({ "error": message })))
}

pub fn router(state: Arc<SandboxState>) -> Router<Arc<SandboxState>> {
    Router::new()
        .route("/ping", get(ping))
        .route("/activities", get(activities))
        .route("/prospects", post(create_prospect))
        .route(
            "/prospects/{id}/activities",
            get(prospect_activities).post(create_activity),
        )
        .route("/prospects/{pid}/activities/{id}", put(update_activity))
        .route("/activity_types", get(|| lookup("activity_types")))
        .route("/care_types", get(|| lookup("care_types")))
        .route("/communities", get(|| lookup("communities")))
        .route("/floor_plans", get(|| lookup("floor_plans")))
        .route("/lead_sources", get(|| lookup("lead_sources")))
        .route("/privacy_levels", get(|| lookup("privacy_levels")))
        .route("/prospect_fields", get(|| lookup("prospect_fields")))
        .route("/events", get(events).post(create_event))
        .route("/events/{id}/rsvps", post(rsvp))
        .route("/housing_contracts", get(housing_contracts))
        .route("/influencers/{id}", get(influencer).put(update_influencer))
        .route("/exports/community/{community}/table/{table}", get(export))
        .route("/exports/daily_snapshots/table/{table}", get(snapshot))
        .layer(from_fn_with_state(state.clone(), auth))
        .layer(from_fn_with_state((state, "welcomehome"), faults::inject))
}

async fn auth(State(state): State<Arc<SandboxState>>, request: Request, next: Next) -> Response {
    let expected = format!("Token token={}", state.keys.welcomehome);
    let authorized = request
        .headers()
        .get("authorization")
        .is_some_and(|v| v.as_bytes() == expected.as_bytes());
    if !authorized {
        return fail(StatusCode::UNAUTHORIZED, "Bad credentials").into_response();
    }
    next.run(request).await
}

async fn ping() -> Json<Value> {
    Json(json!({"account_id": 2, "lead_source_id": null}))
}

async fn lookup(what: &str) -> Json<Value> {
    Json(match what {
        "activity_types" => {
            json!([{"id": 1, "name": "Phone Call"}, {"id": 2, "name": "Tour"}, {"id": 3, "name": "Home Visit"}])
        }
        "care_types" => {
            json!([{"id": 1, "name": "Independent Living"}, {"id": 2, "name": "Assisted Living"}, {"id": 3, "name": "Memory Care"}])
        }
        "communities" => {
            json!([{"id": 1, "name": "Maple Grove"}, {"id": 2, "name": "Cedar Point"}])
        }
        "floor_plans" => {
            json!([{"id": 1, "name": "Studio", "community_id": 1}, {"id": 2, "name": "One Bedroom", "community_id": 1}])
        }
        "lead_sources" => json!([{"id": 1, "name": "Website"}, {"id": 2, "name": "Referral"}]),
        "privacy_levels" => json!([{"id": 1, "name": "Standard"}]),
        _ => json!([{"id": 1, "name": "Move-in timeframe", "field_type": "select"}]),
    })
}

fn limit(q: &HashMap<String, String>, default: usize, max: usize) -> Result<usize, Reply> {
    match q.get("limit").map(|l| l.parse::<usize>()) {
        None => Ok(default),
        Some(Ok(l)) if (1..=max).contains(&l) => Ok(l),
        _ => Err(fail(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("limit must be between 1 and {max}"),
        )),
    }
}

fn after(q: &HashMap<String, String>, v: &Value, key: &str, field: &str) -> bool {
    q.get(&format!("filters[{key}]"))
        .is_none_or(|t| v[field].as_str().is_some_and(|x| x > t.as_str()))
}

async fn activities(
    State(state): State<Arc<SandboxState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Reply {
    let n = match limit(&q, 10, 100) {
        Ok(n) => n,
        Err(e) => return e,
    };
    let wh = state.wh.lock().unwrap();
    let list: Vec<&Value> = wh
        .activities
        .iter()
        .filter(|a| after(&q, a, "updated_at_after", "updated_at"))
        .filter(|a| {
            q.get("filters[activity_type_id]")
                .is_none_or(|t| a["activity_type_id"].to_string().trim_matches('"') == t)
        })
        .take(n)
        .collect();
    (StatusCode::OK, Json(json!(list)))
}

async fn prospect_activities(State(state): State<Arc<SandboxState>>, Path(id): Path<u64>) -> Reply {
    let wh = state.wh.lock().unwrap();
    if !wh.prospects.iter().any(|p| p["id"] == id) {
        return fail(StatusCode::NOT_FOUND, "Not found");
    }
    let list: Vec<&Value> = wh
        .activities
        .iter()
        .filter(|a| a["prospect_id"] == id)
        .collect();
    (StatusCode::OK, Json(json!(list)))
}

const TIME_ZONES: &[&str] = &[
    "Eastern Time (US & Canada)",
    "Central Time (US & Canada)",
    "Mountain Time (US & Canada)",
    "Pacific Time (US & Canada)",
    "Alaska",
    "Arizona",
    "Hawaii",
];

/// A calendar time: RFC 3339, or a clock time with a meridian ("3:00 PM").
fn calendar_time(t: &str) -> bool {
    if chrono::DateTime::parse_from_rfc3339(t).is_ok() {
        return true;
    }
    let Some((clock, meridian)) = t.trim().rsplit_once(' ') else {
        return false;
    };
    let Some((h, m)) = clock.split_once(':') else {
        return false;
    };
    matches!(meridian, "AM" | "PM" | "am" | "pm")
        && h.parse::<u8>().is_ok_and(|h| (1..=12).contains(&h))
        && m.len() == 2
        && m.parse::<u8>().is_ok_and(|m| m < 60)
}

fn check_activity(a: &Value) -> Result<(), Reply> {
    if !a.is_object() {
        return Err(fail(
            StatusCode::UNPROCESSABLE_ENTITY,
            "activity must be an object",
        ));
    }
    if a["add_to_calendar"] == true {
        let zone = a["time_zone"].as_str();
        if !zone.is_some_and(|z| TIME_ZONES.contains(&z)) {
            return Err(fail(
                StatusCode::UNPROCESSABLE_ENTITY,
                "time_zone is not a supported time zone",
            ));
        }
        for k in ["calendar_event_start_time", "calendar_event_end_time"] {
            if !a[k].as_str().is_some_and(calendar_time) {
                return Err(fail(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &format!("{k} is missing or not a time"),
                ));
            }
        }
    } else if a.get("calendar_event_start_time").is_some() {
        return Err(fail(
            StatusCode::UNPROCESSABLE_ENTITY,
            "calendar times need add_to_calendar: true and a time_zone",
        ));
    }
    Ok(())
}

async fn create_activity(
    State(state): State<Arc<SandboxState>>,
    Path(id): Path<u64>,
    Json(body): Json<Value>,
) -> Reply {
    let activity = &body["activity"];
    if let Err(e) = check_activity(activity) {
        return e;
    }
    let mut wh = state.wh.lock().unwrap();
    if !wh.prospects.iter().any(|p| p["id"] == id) {
        return fail(StatusCode::NOT_FOUND, "Not found");
    }
    let mut a = activity.clone();
    a["id"] = json!(wh.id());
    a["prospect_id"] = json!(id);
    a["created_at"] = json!(now());
    a["updated_at"] = json!(now());
    wh.activities.push(a.clone());
    (StatusCode::OK, Json(a))
}

async fn update_activity(
    State(state): State<Arc<SandboxState>>,
    Path((pid, id)): Path<(u64, u64)>,
    Json(body): Json<Value>,
) -> Reply {
    let activity = &body["activity"];
    if let Err(e) = check_activity(activity) {
        return e;
    }
    let mut wh = state.wh.lock().unwrap();
    let Some(a) = wh
        .activities
        .iter_mut()
        .find(|a| a["id"] == id && a["prospect_id"] == pid)
    else {
        return fail(StatusCode::NOT_FOUND, "Not found");
    };
    for (k, v) in activity.as_object().into_iter().flatten() {
        a[k] = v.clone();
    }
    a["updated_at"] = json!(now());
    (StatusCode::OK, Json(a.clone()))
}

async fn create_prospect(State(state): State<Arc<SandboxState>>, Json(body): Json<Value>) -> Reply {
    let p = &body["prospect"];
    let named = |k: &str| {
        p[k].as_array().is_some_and(|a| {
            a.iter().any(|x| {
                ["first_name", "last_name"]
                    .iter()
                    .any(|n| x[*n].as_str().is_some_and(|s| !s.is_empty()))
            })
        })
    };
    if !named("residents") && !named("influencers") {
        return fail(
            StatusCode::UNPROCESSABLE_ENTITY,
            "A prospect must have at least one resident or influencer with a first or last name",
        );
    }
    let mut wh = state.wh.lock().unwrap();
    let mut prospect = p.clone();
    let id = wh.id();
    prospect["id"] = json!(id);
    prospect["status"] = json!("new");
    prospect["created_at"] = json!(now());
    prospect["updated_at"] = json!(now());
    for kind in ["influencers", "residents"] {
        let people = prospect[kind].as_array().cloned().unwrap_or_default();
        let mut with_ids = Vec::new();
        for mut person in people {
            person["id"] = json!(wh.id());
            person["prospect_id"] = json!(id);
            if kind == "influencers" {
                wh.influencers.push(person.clone());
            }
            with_ids.push(person);
        }
        prospect[kind] = json!(with_ids);
    }
    wh.prospects.push(prospect.clone());
    (StatusCode::CREATED, Json(prospect))
}

async fn events(
    State(state): State<Arc<SandboxState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Reply {
    let n = match limit(&q, 10, 100) {
        Ok(n) => n,
        Err(e) => return e,
    };
    let wh = state.wh.lock().unwrap();
    let list: Vec<&Value> = wh
        .events
        .iter()
        .filter(|e| {
            q.get("filters[community_id]")
                .is_none_or(|c| e["community_id"].to_string().trim_matches('"') == c)
        })
        .filter(|e| after(&q, e, "updated_at_after", "updated_at"))
        .take(n)
        .collect();
    (StatusCode::OK, Json(json!(list)))
}

async fn create_event(State(state): State<Arc<SandboxState>>, Json(body): Json<Value>) -> Reply {
    let Some(event) = body["event"].as_object() else {
        return fail(StatusCode::UNPROCESSABLE_ENTITY, "event is required");
    };
    if event
        .get("name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return fail(
            StatusCode::UNPROCESSABLE_ENTITY,
            "event name can't be blank",
        );
    }
    let mut wh = state.wh.lock().unwrap();
    let mut e = Value::Object(event.clone());
    e["id"] = json!(wh.id());
    e["created_at"] = json!(now());
    e["updated_at"] = json!(now());
    wh.events.push(e.clone());
    (StatusCode::CREATED, Json(e))
}

async fn rsvp(
    State(state): State<Arc<SandboxState>>,
    Path(id): Path<u64>,
    Json(body): Json<Value>,
) -> Reply {
    const STATUSES: &[&str] = &["pending_response", "accepted", "declined", "not_sure"];
    let status = body["status"].as_str();
    let person = body["person_id"].as_u64();
    let email = body["email"].as_str();
    if !status.is_some_and(|s| STATUSES.contains(&s)) || (person.is_none() && email.is_none()) {
        return fail(
            StatusCode::UNPROCESSABLE_ENTITY,
            "status and an email or person_id are required",
        );
    }
    let mut wh = state.wh.lock().unwrap();
    if !wh.events.iter().any(|e| e["id"] == id) {
        return fail(StatusCode::NOT_FOUND, "Not found");
    }
    // The person id wins over the email; an unknown person is a 404.
    let people: Vec<u64> = wh
        .influencers
        .iter()
        .filter(|p| match person {
            Some(pid) => p["id"] == pid,
            None => p["email"].as_str().is_some_and(|e| Some(e) == email),
        })
        .filter_map(|p| p["id"].as_u64())
        .collect();
    if people.is_empty() {
        return fail(StatusCode::NOT_FOUND, "Not found");
    }
    for pid in &people {
        wh.invites
            .retain(|i| !(i["event_id"] == id && i["person_id"] == *pid));
        wh.invites
            .push(json!({"event_id": id, "person_id": pid, "status": status}));
    }
    (StatusCode::OK, Json(json!({"updated": people.len()})))
}

async fn housing_contracts(Query(q): Query<HashMap<String, String>>) -> Reply {
    if let Err(e) = limit(&q, 10, 100) {
        return e;
    }
    let all = json!([
        {"id": 1, "community_id": 1, "prospect_id": null, "resident_id": 11, "move_in_date": "2026-03-01", "updated_at": "2026-02-20T10:00:00Z"},
        {"id": 2, "community_id": 2, "prospect_id": null, "resident_id": 12, "move_in_date": "2026-06-15", "updated_at": "2026-06-01T10:00:00Z"},
    ]);
    let list: Vec<&Value> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            q.get("filters[community_id]")
                .is_none_or(|id| id.parse::<u64>().ok() == c["community_id"].as_u64())
        })
        .filter(|c| {
            q.get("filters[move_in_date_after]")
                .is_none_or(|d| c["move_in_date"].as_str().is_some_and(|m| m > d.as_str()))
        })
        .collect();
    (StatusCode::OK, Json(json!(list)))
}

async fn influencer(State(state): State<Arc<SandboxState>>, Path(id): Path<u64>) -> Reply {
    match state
        .wh
        .lock()
        .unwrap()
        .influencers
        .iter()
        .find(|i| i["id"] == id)
    {
        Some(i) => (StatusCode::OK, Json(i.clone())),
        None => fail(StatusCode::NOT_FOUND, "Not found"),
    }
}

async fn update_influencer(
    State(state): State<Arc<SandboxState>>,
    Path(id): Path<u64>,
    Json(body): Json<Value>,
) -> Reply {
    let Some(fields) = body["influencer"].as_object() else {
        return fail(StatusCode::UNPROCESSABLE_ENTITY, "influencer is required");
    };
    if let Some(k) = fields
        .keys()
        .find(|k| !["birthdate", "age", "gender", "address"].contains(&k.as_str()))
    {
        return fail(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("{k} cannot be updated"),
        );
    }
    let mut wh = state.wh.lock().unwrap();
    let Some(i) = wh.influencers.iter_mut().find(|i| i["id"] == id) else {
        return fail(StatusCode::NOT_FOUND, "Not found");
    };
    for (k, v) in fields {
        i[k] = v.clone();
    }
    (StatusCode::OK, Json(i.clone()))
}

const TABLES: &[&str] = &[
    "Organizations",
    "Referrers",
    "Prospects",
    "ProspectFields",
    "Residents",
    "Influencers",
    "Activities",
    "ExternalReferences",
    "Units",
    "HousingContracts",
    "DepositTransactions",
    "MarketingTouchpoints",
    "ServiceAgreements",
    "Traits",
    "Users",
    "WaitlistEntries",
];

const PROSPECT_COLUMNS: &[&str] = &[
    "id",
    "first_name",
    "last_name",
    "email",
    "community_id",
    "created_at",
    "updated_at",
    "phone",
];

/// The rows of a table, sorted by `updated_at`.
fn table(wh: &Wh, name: &str) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let cell = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    match name {
        "Prospects" => {
            let mut rows: Vec<(String, Vec<String>)> = wh
                .prospects
                .iter()
                .map(|p| {
                    let who = p["influencers"]
                        .get(0)
                        .or(p["residents"].get(0))
                        .cloned()
                        .unwrap_or(Value::Null);
                    let row = vec![
                        cell(&p["id"]),
                        cell(&who["first_name"]),
                        cell(&who["last_name"]),
                        cell(&who["email"]),
                        cell(&p["community_id"]),
                        cell(&p["created_at"]),
                        cell(&p["updated_at"]),
                        cell(&who["phone"]),
                    ];
                    (cell(&p["updated_at"]), row)
                })
                .collect();
            rows.sort_by(|a, b| {
                a.0.cmp(&b.0)
                    .then(a.1[0].len().cmp(&b.1[0].len()))
                    .then(a.1[0].cmp(&b.1[0]))
            });
            (
                PROSPECT_COLUMNS.to_vec(),
                rows.into_iter().map(|(_, r)| r).collect(),
            )
        }
        _ => (vec!["id", "created_at", "updated_at"], vec![]),
    }
}

fn csv(columns: &[&str], rows: &[Vec<String>]) -> String {
    let mut w = csv::Writer::from_writer(vec![]);
    let _ = w.write_record(columns);
    for r in rows {
        let _ = w.write_record(r);
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

fn csv_response(body: String, link: Option<String>) -> Response {
    let mut response = (StatusCode::OK, [(header::CONTENT_TYPE, "text/csv")], body).into_response();
    if let Some(l) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LINK, l);
    }
    response
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn export(
    State(state): State<Arc<SandboxState>>,
    Path((community, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !TABLES.contains(&name.as_str()) {
        return fail(StatusCode::NOT_FOUND, "Unknown table").into_response();
    }
    let page_size = match limit(&q, 1000, 10_000) {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    let mut wh = state.wh.lock().unwrap();
    let offset: usize = match q.get("cursor") {
        None => 0,
        Some(cursor) => {
            // A cursor may be used 3 times within a minute.
            let now = Instant::now();
            let uses = wh.cursor_uses.entry(cursor.clone()).or_default();
            while uses
                .front()
                .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
            {
                uses.pop_front();
            }
            if uses.len() >= 3 {
                let wait = 60 - now.duration_since(uses[0]).as_secs();
                let mut r = fail(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Cursor used too many times; try again later",
                )
                .into_response();
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(wait.max(1)));
                return r;
            }
            uses.push_back(now);
            match cursor.strip_prefix('o').and_then(|o| o.parse().ok()) {
                Some(o) => o,
                None => {
                    return fail(StatusCode::UNPROCESSABLE_ENTITY, "Invalid cursor")
                        .into_response();
                }
            }
        }
    };
    let (columns, mut rows) = table(&wh, &name);
    if community != "all" {
        let col = columns.iter().position(|c| *c == "community_id");
        rows.retain(|r| col.is_none_or(|c| r[c] == community));
    }
    if let Some(t) = q.get("filters[updated_at_after]") {
        let col = columns.iter().position(|c| *c == "updated_at").unwrap_or(0);
        rows.retain(|r| r[col].as_str() > t.as_str());
    }
    let page: Vec<Vec<String>> = rows.iter().skip(offset).take(page_size).cloned().collect();
    let link = (offset + page_size < rows.len()).then(|| {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1");
        let mut url = format!(
            "http://{host}/welcomehome/exports/community/{community}/table/{name}?cursor=o{}&limit={page_size}",
            offset + page_size
        );
        if let Some(t) = q.get("filters[updated_at_after]") {
            url.push_str(&format!("&{}={}", encode("filters[updated_at_after]"), encode(t)));
        }
        format!("<{url}>; rel=\"next\"")
    });
    csv_response(csv(&columns, &page), link)
}

async fn snapshot(
    State(state): State<Arc<SandboxState>>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !TABLES.contains(&name.as_str()) {
        return fail(StatusCode::NOT_FOUND, "Unknown table").into_response();
    }
    if q.get("direct").map(String::as_str) != Some("true") {
        let location = format!("/welcomehome/exports/daily_snapshots/table/{name}?direct=true");
        return (
            StatusCode::MOVED_PERMANENTLY,
            [(header::LOCATION, location)],
        )
            .into_response();
    }
    let wh = state.wh.lock().unwrap();
    let (columns, rows) = table(&wh, &name);
    csv_response(csv(&columns, &rows), None)
}
