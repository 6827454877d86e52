//! The Homebase360 API 1.2.0, as the sandbox serves it: customers, jobs, leads with the
//! mobile-phone lookup, SMS with its daily cap.

use super::{SandboxState, faults, new_id, now};
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use switchboard_model::is_e164;

/// SMS per day before the sandbox answers 429, as the real API does.
pub const SMS_PER_DAY: u64 = 500;

/// Homebase360's state.
#[derive(Default)]
pub struct Hb {
    customers: Vec<Value>,
    leads: Vec<Value>,
    jobs: Vec<Value>,
    messages: Vec<Value>,
    sms_day: (String, u64),
}

type Reply = (StatusCode, Json<Value>);

fn ok(status: StatusCode, data: Value) -> Reply {
    (status, Json(json!({"success": true, "data": data})))
}

fn fail(status: StatusCode, message: &str) -> Reply {
    (status, Json(json!({"success": false, "error": message})))
}

pub fn router(state: Arc<SandboxState>) -> Router<Arc<SandboxState>> {
    Router::new()
        .route("/ping", get(ping))
        .route("/customers", get(customers).post(create_customer))
        .route("/customers/{id}", put(update_customer))
        .route("/jobs", get(jobs).post(create_job))
        .route("/jobs/{id}", put(update_job))
        .route("/leads", get(leads).post(create_lead))
        .route("/leads/{id}", put(update_lead))
        .route("/messages", post(send_message))
        .route("/messages/stats", get(stats))
        .layer(from_fn_with_state(state.clone(), auth))
        .layer(from_fn_with_state((state, "homebase360"), faults::inject))
}

async fn auth(State(state): State<Arc<SandboxState>>, request: Request, next: Next) -> Response {
    let authorized = request
        .headers()
        .get("x-api-key")
        .is_some_and(|v| v.as_bytes() == state.keys.homebase360.as_bytes());
    if !authorized {
        return fail(StatusCode::UNAUTHORIZED, "Invalid or missing API key").into_response();
    }
    next.run(request).await
}

async fn ping() -> Reply {
    ok(
        StatusCode::OK,
        json!({"message": "API authentication successful", "email": "owner@sandbox.example", "timestamp": now()}),
    )
}

/// A list given as an array or as a separated string.
fn list(v: Option<&Value>, seps: &[char]) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        Some(Value::String(s)) => s
            .split(seps)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        _ => vec![],
    }
}

fn mobile(c: &Value) -> Option<&str> {
    c.get("phone")
        .and_then(|p| p.get("mobile"))
        .and_then(Value::as_str)
}

/// Validate and normalise the customer fields of a body.
fn customer_fields(body: &Value, creating: bool) -> Result<Map<String, Value>, Reply> {
    let mut m = Map::new();
    for k in ["firstName", "lastName", "notes"] {
        if let Some(v) = body.get(k).and_then(Value::as_str) {
            m.insert(k.into(), json!(v));
        }
    }
    if let Some(phone) = body.get("phone") {
        let Some(obj) = phone.as_object() else {
            return Err(fail(StatusCode::BAD_REQUEST, "phone must be an object"));
        };
        for (k, v) in obj {
            if !["mobile", "home", "work", "additional"].contains(&k.as_str()) {
                return Err(fail(
                    StatusCode::BAD_REQUEST,
                    &format!("phone.{k} is not a phone field"),
                ));
            }
            if !v.as_str().is_some_and(is_e164) {
                return Err(fail(
                    StatusCode::BAD_REQUEST,
                    &format!("phone.{k} must be in E.164 format (e.g. +13038284444)"),
                ));
            }
        }
        m.insert("phone".into(), phone.clone());
    }
    let emails = list(body.get("email"), &[',', ';']);
    let addresses = list(body.get("address"), &[';', '*']);
    if emails.len() > 2 {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            "email accepts at most 2 addresses",
        ));
    }
    if addresses.len() > 2 {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            "address accepts at most 2 addresses",
        ));
    }
    if body.get("email").is_some() {
        m.insert("email".into(), json!(emails));
    }
    if body.get("address").is_some() {
        m.insert("address".into(), json!(addresses));
    }
    if body.get("tags").is_some() {
        m.insert(
            "tags".into(),
            json!(list(body.get("tags"), &[',', ';', '*'])),
        );
    }
    if let Some(n) = body.get("notifications").and_then(Value::as_bool) {
        m.insert("notifications".into(), json!(n));
    }
    if creating {
        if !m.contains_key("firstName") && !m.contains_key("lastName") {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                "firstName or lastName is required",
            ));
        }
        let has_phone = m
            .get("phone")
            .and_then(Value::as_object)
            .is_some_and(|p| !p.is_empty());
        if !has_phone && emails.is_empty() {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                "at least one phone or email is required",
            ));
        }
    }
    Ok(m)
}

fn new_customer(fields: Map<String, Value>) -> Value {
    let mut c = json!({
        "customerId": new_id(),
        "phone": {},
        "email": [],
        "address": [],
        "tags": [],
        "notes": "",
        "notifications": true,
        "dateAdded": now(),
    });
    merge(&mut c, fields);
    c
}

fn merge(target: &mut Value, fields: Map<String, Value>) {
    for (k, v) in fields {
        target[k] = v;
    }
}

async fn customers(
    State(state): State<Arc<SandboxState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Reply {
    let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(25);
    if limit > 100 {
        return fail(StatusCode::BAD_REQUEST, "limit must be at most 100");
    }
    let mut wanted: Vec<String> = q
        .get("identifiers")
        .map(|i| i.split(',').map(|s| s.trim().to_string()).collect())
        .unwrap_or_default();
    if wanted.len() > 100 {
        return fail(
            StatusCode::BAD_REQUEST,
            "identifiers accepts at most 100 values",
        );
    }
    wanted.extend(
        ["customerId", "phone", "email"]
            .iter()
            .filter_map(|k| q.get(*k).cloned()),
    );
    let hb = state.hb.lock().unwrap();
    let found: Vec<&Value> = hb
        .customers
        .iter()
        .filter(|c| {
            wanted.iter().any(|w| {
                c["customerId"] == w.as_str()
                    || mobile(c) == Some(w.as_str())
                    || list(c.get("email"), &[])
                        .iter()
                        .any(|e| e.eq_ignore_ascii_case(w))
            })
        })
        .take(limit)
        .collect();
    ok(StatusCode::OK, json!(found))
}

async fn create_customer(State(state): State<Arc<SandboxState>>, Json(body): Json<Value>) -> Reply {
    let fields = match customer_fields(&body, true) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let customer = new_customer(fields);
    state.hb.lock().unwrap().customers.push(customer.clone());
    ok(StatusCode::CREATED, customer)
}

async fn update_customer(
    State(state): State<Arc<SandboxState>>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Reply {
    let fields = match customer_fields(&body, false) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let mut hb = state.hb.lock().unwrap();
    match hb
        .customers
        .iter_mut()
        .find(|c| c["customerId"] == id.as_str())
    {
        Some(c) => {
            merge(c, fields);
            c["dateUpdated"] = json!(now());
            ok(StatusCode::OK, c.clone())
        }
        None => fail(StatusCode::NOT_FOUND, "Customer not found"),
    }
}

fn parse(t: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(t).ok()
}

async fn jobs(
    State(state): State<Arc<SandboxState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Reply {
    let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(50);
    if limit > 100 {
        return fail(StatusCode::BAD_REQUEST, "limit must be at most 100");
    }
    let (from, to) = match (q.get("startDate"), q.get("endDate"), q.get("jobId")) {
        (None, None, None) => {
            let today = chrono::Utc::now()
                .date_naive()
                .and_time(chrono::NaiveTime::MIN)
                .and_utc()
                .fixed_offset();
            (Some(today), Some(today + chrono::TimeDelta::days(1)))
        }
        (s, e, _) => (s.and_then(|s| parse(s)), e.and_then(|e| parse(e))),
    };
    let hb = state.hb.lock().unwrap();
    let found: Vec<&Value> = hb
        .jobs
        .iter()
        .filter(|j| q.get("jobId").is_none_or(|id| j["jobId"] == id.as_str()))
        .filter(|j| {
            let start = j["start"].as_str().and_then(parse);
            from.is_none_or(|f| start.is_some_and(|s| s >= f))
                && to.is_none_or(|t| start.is_some_and(|s| s <= t))
        })
        .take(limit)
        .collect();
    ok(StatusCode::OK, json!(found))
}

async fn create_job(State(state): State<Arc<SandboxState>>, Json(body): Json<Value>) -> Reply {
    let (Some(customer), Some(start), Some(end)) = (
        body["customerId"].as_str(),
        body["start"].as_str(),
        body["end"].as_str(),
    ) else {
        return fail(
            StatusCode::BAD_REQUEST,
            "customerId, start and end are required",
        );
    };
    let (Some(s), Some(e)) = (parse(start), parse(end)) else {
        return fail(
            StatusCode::BAD_REQUEST,
            "start and end must be ISO 8601 date-times",
        );
    };
    if e <= s {
        return fail(StatusCode::BAD_REQUEST, "end must be after start");
    }
    if body["lineItems"].as_array().is_none_or(|l| l.is_empty()) {
        return fail(
            StatusCode::BAD_REQUEST,
            "lineItems must contain at least 1 item",
        );
    }
    let mut hb = state.hb.lock().unwrap();
    if !hb.customers.iter().any(|c| c["customerId"] == customer) {
        return fail(StatusCode::NOT_FOUND, "Customer not found");
    }
    let job = json!({
        "jobId": new_id(),
        "customerId": customer,
        "start": start,
        "end": end,
        "lineItems": body["lineItems"],
        "note": body.get("note").cloned().unwrap_or(json!("")),
        "leadSource": body.get("leadSource").cloned().unwrap_or(Value::Null),
        "status": "scheduled",
        "dateAdded": now(),
    });
    hb.jobs.push(job.clone());
    ok(StatusCode::CREATED, job)
}

async fn update_job(
    State(state): State<Arc<SandboxState>>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Reply {
    let mut hb = state.hb.lock().unwrap();
    let Some(job) = hb.jobs.iter_mut().find(|j| j["jobId"] == id.as_str()) else {
        return fail(StatusCode::NOT_FOUND, "Job not found");
    };
    let start = body["start"]
        .as_str()
        .or(job["start"].as_str())
        .and_then(parse);
    let end = body["end"].as_str().or(job["end"].as_str()).and_then(parse);
    if let (Some(s), Some(e)) = (start, end)
        && e <= s
    {
        return fail(StatusCode::BAD_REQUEST, "end must be after start");
    }
    for k in ["start", "end", "note"] {
        if let Some(v) = body.get(k) {
            job[k] = v.clone();
        }
    }
    ok(StatusCode::OK, job.clone())
}

const LEAD_STATUSES: &[&str] = &[
    "new",
    "first_contact",
    "second_contact",
    "third_contact",
    "on_hold",
];

fn check_status(body: &Value) -> Result<(), Reply> {
    match body.get("status").and_then(Value::as_str) {
        Some(s) if !LEAD_STATUSES.contains(&s) => Err(fail(
            StatusCode::BAD_REQUEST,
            &format!("status must be one of {}", LEAD_STATUSES.join(", ")),
        )),
        _ => Ok(()),
    }
}

async fn leads(
    State(state): State<Arc<SandboxState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Reply {
    let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(25);
    if limit > 100 {
        return fail(StatusCode::BAD_REQUEST, "limit must be at most 100");
    }
    if let Some(st) = q.get("status")
        && !LEAD_STATUSES.contains(&st.as_str())
    {
        return fail(StatusCode::BAD_REQUEST, "status is not a lead status");
    }
    let hb = state.hb.lock().unwrap();
    let found: Vec<&Value> = hb
        .leads
        .iter()
        .filter(|l| {
            [
                ("leadId", "leadId"),
                ("customerId", "customerId"),
                ("status", "status"),
            ]
            .iter()
            .all(|(param, field)| q.get(*param).is_none_or(|v| l[*field] == v.as_str()))
        })
        .take(limit)
        .collect();
    ok(StatusCode::OK, json!(found))
}

async fn create_lead(State(state): State<Arc<SandboxState>>, Json(body): Json<Value>) -> Reply {
    if let Err(e) = check_status(&body) {
        return e;
    }
    let mut hb = state.hb.lock().unwrap();
    // Scenario 1: an existing customer by id. 2: details with a mobile phone, looked up
    // and merged. 3: details without one, always a new customer.
    let (customer_id, action) = if let Some(id) = body["customerId"].as_str() {
        if !hb.customers.iter().any(|c| c["customerId"] == id) {
            return fail(StatusCode::NOT_FOUND, "Customer not found");
        }
        (id.to_string(), "existing")
    } else {
        let fields = match customer_fields(&body, true) {
            Ok(f) => f,
            Err(e) => return e,
        };
        let mobile_no = body["phone"]["mobile"].as_str().map(str::to_string);
        match mobile_no.and_then(|m| {
            hb.customers
                .iter_mut()
                .find(|c| mobile(c) == Some(m.as_str()))
        }) {
            Some(existing) => {
                merge(existing, fields);
                (
                    existing["customerId"].as_str().unwrap().to_string(),
                    "merged",
                )
            }
            None => {
                let c = new_customer(fields);
                let id = c["customerId"].as_str().unwrap().to_string();
                hb.customers.push(c);
                (id, "created")
            }
        }
    };
    let lead = json!({
        "leadId": new_id(),
        "customerId": customer_id,
        "status": body.get("status").cloned().unwrap_or(json!("new")),
        "note": body.get("note").cloned().unwrap_or(json!("")),
        "leadSource": body.get("leadSource").cloned().unwrap_or(Value::Null),
        "lineItems": body.get("lineItems").cloned().unwrap_or(json!([])),
        "assignedTo": body.get("assignedTo").cloned().unwrap_or(json!([])),
        "customerAction": action,
        "createdAt": now(),
    });
    hb.leads.push(lead.clone());
    ok(StatusCode::CREATED, lead)
}

async fn update_lead(
    State(state): State<Arc<SandboxState>>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Reply {
    if let Err(e) = check_status(&body) {
        return e;
    }
    let mut hb = state.hb.lock().unwrap();
    let Some(lead) = hb.leads.iter_mut().find(|l| l["leadId"] == id.as_str()) else {
        return fail(StatusCode::NOT_FOUND, "Lead not found");
    };
    for k in ["status", "note", "lineItems", "assignedTo", "leadSource"] {
        if let Some(v) = body.get(k) {
            lead[k] = v.clone();
        }
    }
    lead["updatedAt"] = json!(now());
    ok(StatusCode::OK, lead.clone())
}

fn today() -> String {
    chrono::Utc::now().date_naive().to_string()
}

async fn send_message(State(state): State<Arc<SandboxState>>, Json(body): Json<Value>) -> Reply {
    let text = body["message"].as_str();
    let media = body["mediaUrl"].as_str();
    match (text, media) {
        (None, None) => return fail(StatusCode::BAD_REQUEST, "message or mediaUrl is required"),
        (Some(t), _) if t.chars().count() > 200 => {
            return fail(
                StatusCode::BAD_REQUEST,
                "message must be at most 200 characters",
            );
        }
        (_, Some(u)) if !u.starts_with("https://") => {
            return fail(StatusCode::BAD_REQUEST, "mediaUrl must be an HTTPS URL");
        }
        _ => {}
    }
    let mut hb = state.hb.lock().unwrap();
    let by_phone = body["mobilePhone"].as_str();
    let by_id = body["customerId"].as_str();
    let customer = match (by_phone, by_id) {
        (None, None) => {
            return fail(
                StatusCode::BAD_REQUEST,
                "mobilePhone or customerId is required",
            );
        }
        (_, Some(id)) => hb.customers.iter().find(|c| c["customerId"] == id),
        (Some(p), None) => hb.customers.iter().find(|c| mobile(c) == Some(p)),
    };
    let Some(customer) = customer else {
        return fail(StatusCode::NOT_FOUND, "Customer not found");
    };
    let Some(to) = mobile(customer).map(str::to_string) else {
        return fail(
            StatusCode::BAD_REQUEST,
            "Customer has no mobile phone on file",
        );
    };
    if by_phone.is_some_and(|p| p != to) {
        return fail(
            StatusCode::BAD_REQUEST,
            "mobilePhone does not match the customer's mobile phone",
        );
    }
    let customer_id = customer["customerId"].clone();
    if hb.sms_day.0 != today() {
        hb.sms_day = (today(), 0);
    }
    if hb.sms_day.1 >= SMS_PER_DAY {
        return fail(
            StatusCode::TOO_MANY_REQUESTS,
            "Daily SMS limit reached (500/day)",
        );
    }
    hb.sms_day.1 += 1;
    let message = json!({
        "messageId": new_id(),
        "customerId": customer_id,
        "to": to,
        "message": text,
        "mediaUrl": media,
        "type": if media.is_some() { "mms" } else { "sms" },
        "status": "sent",
        "sentAt": now(),
    });
    hb.messages.push(message.clone());
    ok(StatusCode::OK, message)
}

async fn stats(State(state): State<Arc<SandboxState>>) -> Reply {
    let hb = state.hb.lock().unwrap();
    let sent = if hb.sms_day.0 == today() {
        hb.sms_day.1
    } else {
        0
    };
    ok(
        StatusCode::OK,
        json!({"sentToday": sent, "dailyLimit": SMS_PER_DAY, "remaining": SMS_PER_DAY - sent, "totalSent": hb.messages.len()}),
    )
}
