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

/// Housecall Pro's state: customers in creation order.
#[derive(Default)]
pub struct Hcp {
    customers: Vec<Value>,
}

type Reply = (StatusCode, Json<Value>);

fn error(status: StatusCode, message: &str) -> Reply {
    (status, Json(json!({"error": {"message": message}})))
}

pub fn router(state: Arc<SandboxState>) -> Router<Arc<SandboxState>> {
    Router::new()
        .route("/customers", get(list).post(create))
        .route("/customers/{id}", get(get_one).put(update))
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

async fn list(State(state): State<Arc<SandboxState>>, Query(p): Query<ListParams>) -> Reply {
    let page = p.page.unwrap_or(1).max(1);
    let size = p.page_size.unwrap_or(10);
    if !(1..=100).contains(&size) {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"errors": {"page_size": ["must be between 1 and 100"]}})),
        );
    }
    let q = p.q.unwrap_or_default().to_lowercase();
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
    let total = matching.len() as u64;
    let customers: Vec<&Value> = matching
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
            "customers": customers,
        })),
    )
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
    customer["updated_at"] = json!(now());
}

async fn create(State(state): State<Arc<SandboxState>>, Json(body): Json<Value>) -> Reply {
    let has = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .is_some_and(|v| !v.is_empty())
    };
    if !(has("first_name") || has("last_name") || has("email") || has("mobile_number")) {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"errors": {"name": ["is missing"]}})),
        );
    }
    let mut customer = json!({
        "id": format!("cus_{}", new_id().to_lowercase()),
        "company_id": "sandbox-company",
        "created_at": now(),
        "tags": [],
        "addresses": [],
    });
    merge(&mut customer, &body);
    state.hcp.lock().unwrap().customers.push(customer.clone());
    (StatusCode::CREATED, Json(customer))
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
            (StatusCode::OK, Json(c.clone()))
        }
        None => error(StatusCode::NOT_FOUND, "customer not found"),
    }
}
