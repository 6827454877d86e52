//! The Housecall Pro API v1 customers surface, as the sandbox serves it.

use super::{SandboxState, faults, new_id, now};
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// Housecall Pro's state, each list in creation order.
#[derive(Default)]
pub struct Hcp {
    customers: Vec<Value>,
    jobs: Vec<Value>,
    leads: Vec<Value>,
}

type Reply = (StatusCode, Json<Value>);

fn error(status: StatusCode, message: &str) -> Reply {
    (status, Json(json!({"error": {"message": message}})))
}

pub fn router(state: Arc<SandboxState>) -> Router<Arc<SandboxState>> {
    Router::new()
        .route("/company", get(company))
        .route("/customers", get(list).post(create))
        .route("/customers/{id}", get(get_one).put(update))
        .route("/jobs", get(list_jobs).post(create_job))
        .route("/jobs/{id}", get(get_job))
        .route("/leads", get(list_leads).post(create_lead))
        .route("/leads/{id}", get(get_lead))
        .layer(from_fn_with_state(state.clone(), auth))
        .layer(from_fn_with_state((state, "housecallpro"), faults::inject))
}

async fn auth(State(state): State<Arc<SandboxState>>, request: Request, next: Next) -> Response {
    let expected = format!("Token {}", state.keys.housecallpro);
    let authorized = request
        .headers()
        .get("authorization")
        .is_some_and(|v| v.as_bytes() == expected.as_bytes());
    if !authorized {
        return error(StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    }
    next.run(request).await
}

#[derive(Deserialize)]
struct ListParams {
    page: Option<u64>,
    page_size: Option<u64>,
    q: Option<String>,
}

/// One page of `items` under `key`, in Housecall Pro's paginated shape.
fn paginate(items: Vec<&Value>, page: Option<u64>, size: Option<u64>, key: &str) -> Reply {
    let page = page.unwrap_or(1).max(1);
    let size = size.unwrap_or(10);
    if !(1..=100).contains(&size) {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"errors": {"page_size": ["must be between 1 and 100"]}})),
        );
    }
    let total = items.len() as u64;
    let slice: Vec<&Value> = items
        .into_iter()
        .skip(((page - 1) * size) as usize)
        .take(size as usize)
        .collect();
    (
        StatusCode::OK,
        Json(json!({
            "page": page,
            "page_size": size,
            "total_pages": total.div_ceil(size),
            "total_items": total,
            key: slice,
        })),
    )
}

async fn list(State(state): State<Arc<SandboxState>>, Query(p): Query<ListParams>) -> Reply {
    let q = p.q.clone().unwrap_or_default().to_lowercase();
    let hcp = state.hcp.lock().unwrap();
    let matching: Vec<&Value> = hcp
        .customers
        .iter()
        .filter(|c| {
            q.is_empty()
                || [
                    "first_name",
                    "last_name",
                    "email",
                    "mobile_number",
                    "company",
                ]
                .iter()
                .any(|k| {
                    c.get(*k)
                        .and_then(Value::as_str)
                        .is_some_and(|v| v.to_lowercase().contains(&q))
                })
        })
        .collect();
    paginate(matching, p.page, p.page_size, "customers")
}

const FIELDS: &[&str] = &[
    "first_name",
    "last_name",
    "email",
    "mobile_number",
    "home_number",
    "work_number",
    "company",
    "notifications_enabled",
    "lead_source",
    "notes",
    "tags",
    "addresses",
];

fn merge(customer: &mut Value, body: &Value) {
    for (k, v) in body.as_object().into_iter().flatten() {
        if FIELDS.contains(&k.as_str()) {
            customer[k] = v.clone();
        }
    }
    // Every stored address has an id (jobs refer to it) and a type.
    if let Some(addresses) = customer["addresses"].as_array_mut() {
        for a in addresses.iter_mut().filter(|a| a.is_object()) {
            if a.get("id").is_none() {
                a["id"] = json!(format!("adr_{}", new_id().to_lowercase()));
            }
            if a.get("type").is_none() {
                a["type"] = json!("service");
            }
        }
    }
    customer["updated_at"] = json!(now());
}

/// A new customer from a create body, or the 422 Housecall Pro answers.
fn new_customer(body: &Value) -> Result<Value, Reply> {
    let has = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .is_some_and(|v| !v.is_empty())
    };
    if !(has("first_name") || has("last_name") || has("email") || has("mobile_number")) {
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"errors": {"name": ["is missing"]}})),
        ));
    }
    let mut customer = json!({
        "id": format!("cus_{}", new_id().to_lowercase()),
        "company_id": "sandbox-company",
        "created_at": now(),
        "tags": [],
        "addresses": [],
    });
    merge(&mut customer, body);
    Ok(customer)
}

async fn create(State(state): State<Arc<SandboxState>>, Json(body): Json<Value>) -> Reply {
    match new_customer(&body) {
        Ok(customer) => {
            state.hcp.lock().unwrap().customers.push(customer.clone());
            state.emit_hcp("customer.created", "customer", &customer);
            (StatusCode::CREATED, Json(customer))
        }
        Err(e) => e,
    }
}

async fn get_one(State(state): State<Arc<SandboxState>>, Path(id): Path<String>) -> Reply {
    let hcp = state.hcp.lock().unwrap();
    match hcp.customers.iter().find(|c| c["id"] == id.as_str()) {
        Some(c) => (StatusCode::OK, Json(c.clone())),
        None => error(StatusCode::NOT_FOUND, "customer not found"),
    }
}

async fn update(
    State(state): State<Arc<SandboxState>>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Reply {
    let mut hcp = state.hcp.lock().unwrap();
    match hcp.customers.iter_mut().find(|c| c["id"] == id.as_str()) {
        Some(c) => {
            merge(c, &body);
            state.emit_hcp("customer.updated", "customer", c);
            (StatusCode::OK, Json(c.clone()))
        }
        None => error(StatusCode::NOT_FOUND, "customer not found"),
    }
}

#[derive(Deserialize)]
struct JobParams {
    page: Option<u64>,
    page_size: Option<u64>,
    customer_id: Option<String>,
    work_status: Option<String>,
    scheduled_start_min: Option<String>,
    scheduled_start_max: Option<String>,
}

async fn list_jobs(State(state): State<Arc<SandboxState>>, Query(p): Query<JobParams>) -> Reply {
    let hcp = state.hcp.lock().unwrap();
    let start = |j: &Value| {
        j["schedule"]["scheduled_start"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let matching: Vec<&Value> = hcp
        .jobs
        .iter()
        .filter(|j| {
            p.customer_id
                .as_ref()
                .is_none_or(|c| j["customer"]["id"] == c.as_str())
        })
        .filter(|j| {
            p.work_status
                .as_ref()
                .is_none_or(|w| j["work_status"] == w.as_str())
        })
        .filter(|j| {
            p.scheduled_start_min
                .as_ref()
                .is_none_or(|m| start(j) >= *m)
        })
        .filter(|j| {
            p.scheduled_start_max
                .as_ref()
                .is_none_or(|m| start(j) <= *m)
        })
        .collect();
    paginate(matching, p.page, p.page_size, "jobs")
}

fn customer_of(hcp: &Hcp, body: &Value) -> Result<Value, Reply> {
    let Some(id) = body["customer_id"].as_str() else {
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"errors": {"customer_id": ["is missing"]}})),
        ));
    };
    hcp.customers
        .iter()
        .find(|c| c["id"] == id)
        .cloned()
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "customer not found"))
}

async fn create_job(State(state): State<Arc<SandboxState>>, Json(body): Json<Value>) -> Reply {
    let mut hcp = state.hcp.lock().unwrap();
    let customer = match customer_of(&hcp, &body) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let address = body["address_id"].as_str().and_then(|id| {
        customer["addresses"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["id"] == id).cloned())
    });
    let Some(address) = address else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"errors": {"address_id": ["must be one of the customer's addresses"]}})),
        );
    };
    let job = json!({
        "id": format!("job_{}", new_id().to_lowercase()),
        "invoice_number": (hcp.jobs.len() + 1001).to_string(),
        "description": body.get("description").cloned().unwrap_or(json!("")),
        "customer": customer,
        "address": address,
        "notes": [],
        "work_status": "scheduled",
        "schedule": body.get("schedule").cloned().unwrap_or(json!({})),
        "lead_source": body.get("lead_source").cloned().unwrap_or(Value::Null),
        "tags": body.get("tags").cloned().unwrap_or(json!([])),
        "company_id": "sandbox-company",
        "created_at": now(),
        "updated_at": now(),
    });
    hcp.jobs.push(job.clone());
    state.emit_hcp("job.created", "job", &job);
    (StatusCode::CREATED, Json(job))
}

async fn get_job(State(state): State<Arc<SandboxState>>, Path(id): Path<String>) -> Reply {
    let hcp = state.hcp.lock().unwrap();
    match hcp.jobs.iter().find(|j| j["id"] == id.as_str()) {
        Some(j) => (StatusCode::OK, Json(j.clone())),
        None => error(StatusCode::NOT_FOUND, "job not found"),
    }
}

#[derive(Deserialize)]
struct LeadParams {
    page: Option<u64>,
    page_size: Option<u64>,
    customer_id: Option<String>,
    status: Option<String>,
}

async fn list_leads(State(state): State<Arc<SandboxState>>, Query(p): Query<LeadParams>) -> Reply {
    let hcp = state.hcp.lock().unwrap();
    let matching: Vec<&Value> = hcp
        .leads
        .iter()
        .filter(|l| {
            p.customer_id
                .as_ref()
                .is_none_or(|c| l["customer"]["id"] == c.as_str())
        })
        .filter(|l| p.status.as_ref().is_none_or(|s| l["status"] == s.as_str()))
        .collect();
    paginate(matching, p.page, p.page_size, "leads")
}

async fn create_lead(State(state): State<Arc<SandboxState>>, Json(body): Json<Value>) -> Reply {
    let mut hcp = state.hcp.lock().unwrap();
    // Either an existing customer's id or the details of a new one.
    let customer = match body.get("customer").filter(|c| c.is_object()) {
        Some(details) => match new_customer(details) {
            Ok(c) => {
                hcp.customers.push(c.clone());
                c
            }
            Err(e) => return e,
        },
        None => match customer_of(&hcp, &body) {
            Ok(c) => c,
            Err(e) => return e,
        },
    };
    let lead = json!({
        "id": format!("lea_{}", new_id().to_lowercase()),
        "number": hcp.leads.len() + 1,
        "customer": customer,
        "lead_source": body.get("lead_source").cloned().unwrap_or(Value::Null),
        "tags": [],
        "status": "open",
        "pipeline_status": "new",
        "company_id": "sandbox-company",
        "created_at": now(),
        "updated_at": now(),
    });
    hcp.leads.push(lead.clone());
    state.emit_hcp("lead.created", "lead", &lead);
    (StatusCode::CREATED, Json(lead))
}

async fn get_lead(State(state): State<Arc<SandboxState>>, Path(id): Path<String>) -> Reply {
    let hcp = state.hcp.lock().unwrap();
    match hcp.leads.iter().find(|l| l["id"] == id.as_str()) {
        Some(l) => (StatusCode::OK, Json(l.clone())),
        None => error(StatusCode::NOT_FOUND, "lead not found"),
    }
}

async fn company() -> Json<Value> {
    Json(json!({
        "id": "sandbox-company",
        "name": "Sandbox Plumbing Co",
        "support_email": "support@sandbox.example",
        "phone_number": "3035550100",
        "website": "https://sandbox.example",
        "time_zone": "America/Denver",
    }))
}
