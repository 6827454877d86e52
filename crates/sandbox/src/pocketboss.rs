//! The PocketBoss API v1, as the sandbox serves it: leads merged by email then phone,
//! appointments with their categories.

use super::{SandboxState, faults, new_id, now};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use std::sync::Arc;

/// PocketBoss' state: leads (the CRM contacts) and appointments.
#[derive(Default)]
pub struct Pb {
    leads: Vec<Value>,
    appointments: Vec<Value>,
}

impl SandboxState {
    /// PocketBoss' leads, oldest first (its API has no read endpoint; for tests and tours).
    pub fn pocketboss_leads(&self) -> Vec<Value> {
        self.pb.lock().unwrap().leads.clone()
    }

    /// PocketBoss' appointments, oldest first.
    pub fn pocketboss_appointments(&self) -> Vec<Value> {
        self.pb.lock().unwrap().appointments.clone()
    }
}

type Reply = (StatusCode, Json<Value>);

fn fail(status: StatusCode, code: &str, message: &str, field: Option<&str>) -> Reply {
    let mut body = json!({"error": code, "message": message});
    if let Some(f) = field {
        body["field"] = json!(f);
    }
    (status, Json(body))
}

fn invalid(message: &str, field: &str) -> Reply {
    fail(
        StatusCode::BAD_REQUEST,
        "validation_error",
        message,
        Some(field),
    )
}

pub fn router(state: Arc<SandboxState>) -> Router<Arc<SandboxState>> {
    Router::new()
        .route("/leads", post(push_lead))
        .route("/appointments", post(push_appointment))
        .layer(from_fn_with_state(state.clone(), auth))
        .layer(from_fn_with_state((state, "pocketboss"), faults::inject))
}

async fn auth(State(state): State<Arc<SandboxState>>, request: Request, next: Next) -> Response {
    let expected = format!("Bearer {}", state.keys.pocketboss);
    let authorized = request
        .headers()
        .get("authorization")
        .is_some_and(|v| v.as_bytes() == expected.as_bytes());
    if !authorized {
        return fail(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Missing or invalid API key.",
            None,
        )
        .into_response();
    }
    next.run(request).await
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
}

fn digits(s: &str) -> String {
    let d: String = s.chars().filter(char::is_ascii_digit).collect();
    d.strip_prefix('1')
        .filter(|r| r.len() == 10)
        .map(str::to_string)
        .unwrap_or(d)
}

const LEAD_FIELDS: &[&str] = &[
    "firstName",
    "lastName",
    "email",
    "phone",
    "source",
    "serviceRequested",
    "notes",
    "address",
    "city",
    "state",
    "zip",
    "urgency",
    "propertyType",
    "preferredContactMethod",
    "externalId",
    "metadata",
];

fn check_enum(body: &Value, key: &str, allowed: &[&str]) -> Result<(), Reply> {
    match body.get(key) {
        Some(Value::String(v)) if !allowed.contains(&v.as_str()) => Err(invalid(
            &format!("{key} must be one of: {}", allowed.join(", ")),
            key,
        )),
        _ => Ok(()),
    }
}

async fn push_lead(State(state): State<Arc<SandboxState>>, Json(mut body): Json<Value>) -> Reply {
    if let Some(name) = text(&body, "name")
        && text(&body, "firstName").is_none()
    {
        let mut parts = name.splitn(2, ' ');
        body["firstName"] = json!(parts.next().unwrap_or_default());
        if let Some(last) = parts.next() {
            body["lastName"] = json!(last);
        }
    }
    if text(&body, "firstName").is_none() {
        return invalid("firstName (or name) is required", "firstName");
    }
    let email = text(&body, "email");
    let phone = text(&body, "phone");
    if email.is_none() && phone.is_none() {
        return invalid("email or phone is required", "email");
    }
    if email.as_ref().is_some_and(|e| !e.contains('@')) {
        return invalid("email is invalid", "email");
    }
    for (key, allowed) in [
        ("urgency", &["low", "medium", "high", "emergency"][..]),
        (
            "propertyType",
            &["residential", "commercial", "business"][..],
        ),
        ("preferredContactMethod", &["call", "text", "email"][..]),
    ] {
        if let Err(e) = check_enum(&body, key, allowed) {
            return e;
        }
    }
    let mut pb = state.pb.lock().unwrap();
    // Email first, then phone.
    let existing = email
        .as_ref()
        .and_then(|e| {
            pb.leads
                .iter()
                .position(|l| text(l, "email").is_some_and(|x| x.eq_ignore_ascii_case(e)))
        })
        .or_else(|| {
            phone.as_ref().and_then(|p| {
                pb.leads
                    .iter()
                    .position(|l| text(l, "phone").is_some_and(|x| digits(&x) == digits(p)))
            })
        });
    match existing {
        Some(i) => {
            let lead = &mut pb.leads[i];
            for k in LEAD_FIELDS {
                if let Some(v) = body.get(*k) {
                    lead[*k] = v.clone();
                }
            }
            lead["updatedAt"] = json!(now());
            (
                StatusCode::OK,
                Json(json!({"success": true, "action": "updated", "lead": lead})),
            )
        }
        None => {
            let mut lead = json!({
                "id": new_id().to_lowercase(),
                "type": "lead",
                "status": "new",
                "createdAt": now(),
            });
            for k in LEAD_FIELDS {
                if let Some(v) = body.get(*k) {
                    lead[*k] = v.clone();
                }
            }
            pb.leads.push(lead.clone());
            (
                StatusCode::CREATED,
                Json(json!({"success": true, "action": "created", "lead": lead})),
            )
        }
    }
}

const CATEGORIES: &[&str] = &[
    "Maintenance",
    "Repair",
    "Consultation",
    "Installation",
    "Service",
    "Remodeling",
    "Projects",
];

fn parse(t: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(t).ok()
}

async fn push_appointment(
    State(state): State<Arc<SandboxState>>,
    Json(body): Json<Value>,
) -> Reply {
    for field in ["title", "startDate", "clientName"] {
        if text(&body, field).is_none() {
            return invalid(&format!("{field} is required"), field);
        }
    }
    let Some(start) = text(&body, "startDate").as_deref().and_then(parse) else {
        return invalid("startDate must be an ISO 8601 datetime", "startDate");
    };
    if let Err(e) = check_enum(&body, "category", CATEGORIES) {
        return e;
    }
    let (end, duration) = match (
        body.get("duration").and_then(Value::as_i64),
        text(&body, "endDate"),
    ) {
        (Some(d), _) if d > 0 => (start + chrono::TimeDelta::minutes(d), d),
        (Some(_), _) => {
            return invalid("duration must be a positive number of minutes", "duration");
        }
        (None, Some(e)) => match parse(&e) {
            Some(end) if end > start => (end, (end - start).num_minutes()),
            _ => {
                return invalid(
                    "endDate must be an ISO 8601 datetime after startDate",
                    "endDate",
                );
            }
        },
        (None, None) => (start + chrono::TimeDelta::minutes(60), 60),
    };
    let fmt = |t: chrono::DateTime<chrono::FixedOffset>| {
        t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    };
    let mut appointment = json!({
        "id": new_id().to_lowercase(),
        "startDate": fmt(start),
        "endDate": fmt(end),
        "duration": duration,
        "status": "Scheduled",
        "source": "api",
        "createdAt": now(),
    });
    for k in [
        "title",
        "clientName",
        "clientEmail",
        "clientPhone",
        "location",
        "notes",
        "category",
        "externalId",
        "metadata",
    ] {
        if let Some(v) = body.get(k) {
            appointment[k] = v.clone();
        }
    }
    state
        .pb
        .lock()
        .unwrap()
        .appointments
        .push(appointment.clone());
    (
        StatusCode::CREATED,
        Json(json!({"success": true, "action": "created", "appointment": appointment})),
    )
}
