//! The GoHighLevel API v2 contacts surface, as the sandbox serves it.

use super::{GHL_LOCATION, SandboxState, faults, new_id, now};
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// GoHighLevel's state: contacts and their notes.
#[derive(Default)]
pub struct Ghl {
    contacts: BTreeMap<String, Value>,
    notes: BTreeMap<String, Vec<Value>>,
    tasks: BTreeMap<String, Vec<Value>>,
    appointments: BTreeMap<String, Vec<Value>>,
}

impl SandboxState {
    /// Book an appointment for a GoHighLevel contact (what the calendar API would do).
    pub fn add_ghl_appointment(&self, contact: &str, event: Value) {
        self.ghl
            .lock()
            .unwrap()
            .appointments
            .entry(contact.to_string())
            .or_default()
            .push(event);
    }

    /// Book an appointment on a GoHighLevel calendar, as a user would: it is stored with the
    /// contact's appointments and announced with a signed `AppointmentCreate` webhook.
    /// `appointment` needs `contactId` and `startTime`; `id` and dates are filled in.
    pub fn book_ghl_appointment(self: &Arc<Self>, mut appointment: Value) -> Value {
        let contact = appointment["contactId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if appointment.get("id").is_none() {
            appointment["id"] = json!(new_id());
        }
        let now = now();
        appointment["dateAdded"] = json!(now);
        appointment["dateUpdated"] = json!(now);
        appointment["appointmentStatus"] = json!("confirmed");
        self.add_ghl_appointment(&contact, appointment.clone());
        let body = json!({"locationId": GHL_LOCATION, "appointment": appointment});
        self.emit_ghl("AppointmentCreate", &body);
        appointment
    }

    /// Set a GoHighLevel contact's business.
    pub fn set_ghl_business(&self, contact: &str, business: &str) {
        if let Some(c) = self.ghl.lock().unwrap().contacts.get_mut(contact) {
            c["businessId"] = json!(business);
        }
    }
}

type Reply = (StatusCode, Json<Value>);

fn error(status: StatusCode, message: &str) -> Reply {
    (
        status,
        Json(json!({"statusCode": status.as_u16(), "message": message})),
    )
}

fn unprocessable(messages: &[String]) -> Reply {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({"statusCode": 422, "message": messages, "error": "Unprocessable Entity"})),
    )
}

/// GoHighLevel answers a missing record with 400 (its OpenAPI documents no 404).
fn not_found() -> Reply {
    error(StatusCode::BAD_REQUEST, "Contact not found")
}

pub fn router(state: Arc<SandboxState>) -> Router<Arc<SandboxState>> {
    Router::new()
        .route("/contacts/", post(create).get(list))
        .route("/contacts/upsert", post(upsert))
        .route("/contacts/search", post(search))
        .route("/contacts/{id}", get(get_one).put(update).delete(delete))
        .route("/contacts/{id}/tags", post(add_tags).delete(remove_tags))
        .route("/contacts/{id}/notes", post(add_note).get(list_notes))
        .route(
            "/contacts/{id}/notes/{note}",
            get(get_note).put(update_note).delete(delete_note),
        )
        .route("/contacts/{id}/tasks", post(create_task).get(list_tasks))
        .route(
            "/contacts/{id}/tasks/{task}",
            get(get_task).put(update_task).delete(delete_task),
        )
        .route("/contacts/{id}/tasks/{task}/completed", put(complete_task))
        .route("/contacts/{id}/appointments", get(appointments))
        .route("/contacts/business/{business_id}", get(by_business))
        .layer(from_fn_with_state(state.clone(), auth))
        .layer(from_fn_with_state((state, "gohighlevel"), faults::inject))
}

async fn auth(State(state): State<Arc<SandboxState>>, request: Request, next: Next) -> Response {
    let expected = format!("Bearer {}", state.keys.gohighlevel);
    let authorized = request
        .headers()
        .get("authorization")
        .is_some_and(|v| v.as_bytes() == expected.as_bytes());
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"statusCode": 401, "message": "Invalid JWT", "error": "Unauthorized"})),
        )
            .into_response();
    }
    if request.headers().get("version").is_none() {
        return error(StatusCode::BAD_REQUEST, "Version header was not found").into_response();
    }
    next.run(request).await
}

const FIELDS: &[&str] = &[
    "firstName",
    "lastName",
    "name",
    "email",
    "phone",
    "companyName",
    "address1",
    "city",
    "state",
    "postalCode",
    "country",
    "website",
    "timezone",
    "source",
    "dateOfBirth",
    "gender",
    "tags",
    "customFields",
    "dnd",
    "assignedTo",
];

/// Check a contact body as GoHighLevel does; `create` also needs the location.
fn validate(body: &Value, needs_location: bool) -> Result<(), Reply> {
    let Some(obj) = body.as_object() else {
        return Err(error(StatusCode::BAD_REQUEST, "Bad Request"));
    };
    let mut problems = Vec::new();
    if needs_location {
        match obj.get("locationId").and_then(Value::as_str) {
            None | Some("") => problems.push("locationId should not be empty".to_string()),
            Some(l) if l != GHL_LOCATION => {
                return Err(error(
                    StatusCode::FORBIDDEN,
                    "The token does not have access to this location.",
                ));
            }
            _ => {}
        }
    }
    if let Some(e) = obj.get("email").and_then(Value::as_str)
        && !(e.contains('@') && e.rsplit('@').next().is_some_and(|d| d.contains('.')))
    {
        problems.push("email must be an email".into());
    }
    if let Some(tags) = obj.get("tags")
        && !tags
            .as_array()
            .is_some_and(|t| t.iter().all(Value::is_string))
    {
        problems.push("each value in tags must be a string".into());
    }
    for key in obj.keys() {
        if !FIELDS.contains(&key.as_str())
            && key != "locationId"
            && key != "createNewIfDuplicateAllowed"
        {
            problems.push(format!("property {key} should not exist"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(unprocessable(&problems))
    }
}

fn lower(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_lowercase)
}

fn digits(v: &Value) -> Option<String> {
    let d: String = v
        .get("phone")?
        .as_str()?
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    (!d.is_empty()).then_some(d)
}

/// Apply the fields of `body` to `contact`.
fn merge(contact: &mut Value, body: &Value) {
    for (k, v) in body.as_object().into_iter().flatten() {
        if FIELDS.contains(&k.as_str()) {
            contact[k] = v.clone();
        }
    }
    let first = contact["firstName"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let last = contact["lastName"].as_str().unwrap_or_default().to_string();
    contact["firstNameLowerCase"] = json!(first.to_lowercase());
    contact["lastNameLowerCase"] = json!(last.to_lowercase());
    contact["fullNameLowerCase"] = json!(format!("{first} {last}").trim().to_lowercase());
    if let Some(e) = lower(contact, "email") {
        contact["emailLowerCase"] = json!(e);
    }
    contact["dateUpdated"] = json!(now());
}

fn new_contact(body: &Value) -> Value {
    let mut c = json!({
        "id": new_id(),
        "locationId": GHL_LOCATION,
        "dateAdded": now(),
        "tags": [],
        "type": "lead",
        "deleted": false,
    });
    merge(&mut c, body);
    c
}

/// The contact matching by email first, then phone (GoHighLevel's duplicate rule).
fn find_duplicate(ghl: &Ghl, body: &Value) -> Option<String> {
    let email = lower(body, "email");
    let phone = digits(body);
    let by = |f: &dyn Fn(&Value) -> bool| {
        ghl.contacts
            .iter()
            .find(|(_, c)| f(c))
            .map(|(id, _)| id.clone())
    };
    email
        .and_then(|e| by(&|c| lower(c, "email").as_deref() == Some(&e)))
        .or_else(|| phone.and_then(|p| by(&|c| digits(c).as_deref() == Some(&p))))
}

async fn create(State(state): State<Arc<SandboxState>>, Json(body): Json<Value>) -> Reply {
    if let Err(e) = validate(&body, true) {
        return e;
    }
    let mut ghl = state.ghl.lock().unwrap();
    if let Some(id) = find_duplicate(&ghl, &body) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "statusCode": 400,
                "message": "This location does not allow duplicated contacts.",
                "meta": {"contactId": id, "matchingField": if body.get("email").is_some() { "email" } else { "phone" }},
            })),
        );
    }
    let contact = new_contact(&body);
    ghl.contacts
        .insert(contact["id"].as_str().unwrap().to_string(), contact.clone());
    state.emit_ghl("ContactCreate", &contact);
    (StatusCode::CREATED, Json(json!({ "contact": contact })))
}

async fn upsert(State(state): State<Arc<SandboxState>>, Json(body): Json<Value>) -> Reply {
    if let Err(e) = validate(&body, true) {
        return e;
    }
    let mut ghl = state.ghl.lock().unwrap();
    let trace = new_id();
    match find_duplicate(&ghl, &body) {
        Some(id) => {
            let contact = ghl.contacts.get_mut(&id).unwrap();
            merge(contact, &body);
            state.emit_ghl("ContactUpdate", contact);
            (
                StatusCode::OK,
                Json(json!({"new": false, "contact": contact, "traceId": trace})),
            )
        }
        None => {
            let contact = new_contact(&body);
            ghl.contacts
                .insert(contact["id"].as_str().unwrap().to_string(), contact.clone());
            state.emit_ghl("ContactCreate", &contact);
            (
                StatusCode::OK,
                Json(json!({"new": true, "contact": contact, "traceId": trace})),
            )
        }
    }
}

async fn search(State(state): State<Arc<SandboxState>>, Json(body): Json<Value>) -> Reply {
    if body.get("locationId").and_then(Value::as_str) != Some(GHL_LOCATION) {
        return unprocessable(&["locationId should not be empty".into()]);
    }
    let limit = body.get("pageLimit").and_then(Value::as_u64).unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return unprocessable(&["pageLimit must not be greater than 100".into()]);
    }
    let page = body.get("page").and_then(Value::as_u64).unwrap_or(1).max(1);
    let query = lower(&body, "query").unwrap_or_default();
    let ghl = state.ghl.lock().unwrap();
    let matching: Vec<&Value> = ghl
        .contacts
        .values()
        .filter(|c| {
            query.is_empty()
                || ["fullNameLowerCase", "email", "phone", "companyName"]
                    .iter()
                    .any(|k| lower(c, k).is_some_and(|v| v.contains(&query)))
        })
        .collect();
    let contacts: Vec<&Value> = matching
        .iter()
        .skip(((page - 1) * limit) as usize)
        .take(limit as usize)
        .copied()
        .collect();
    (
        StatusCode::OK,
        Json(json!({"contacts": contacts, "total": matching.len()})),
    )
}

async fn get_one(State(state): State<Arc<SandboxState>>, Path(id): Path<String>) -> Reply {
    match state.ghl.lock().unwrap().contacts.get(&id) {
        Some(c) => (StatusCode::OK, Json(json!({ "contact": c }))),
        None => not_found(),
    }
}

async fn update(
    State(state): State<Arc<SandboxState>>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Reply {
    if let Err(e) = validate(&body, false) {
        return e;
    }
    let mut ghl = state.ghl.lock().unwrap();
    match ghl.contacts.get_mut(&id) {
        Some(c) => {
            merge(c, &body);
            state.emit_ghl("ContactUpdate", c);
            (
                StatusCode::OK,
                Json(json!({"succeded": true, "contact": c})),
            )
        }
        None => not_found(),
    }
}

async fn delete(State(state): State<Arc<SandboxState>>, Path(id): Path<String>) -> Reply {
    let mut ghl = state.ghl.lock().unwrap();
    match ghl.contacts.remove(&id) {
        Some(c) => {
            state.emit_ghl("ContactDelete", &c);
            ghl.notes.remove(&id);
            (StatusCode::OK, Json(json!({"succeded": true})))
        }
        None => not_found(),
    }
}

fn tags_of(body: &Value) -> Result<Vec<String>, Reply> {
    body.get("tags")
        .and_then(Value::as_array)
        .map(|t| {
            t.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        })
        .ok_or_else(|| unprocessable(&["tags must be an array".into()]))
}

/// Apply `change` to a contact's tags with the request's tags, and answer the new list.
fn change_tags(
    state: &Arc<SandboxState>,
    id: &str,
    body: &Value,
    status: StatusCode,
    change: impl FnOnce(&mut Vec<String>, Vec<String>),
) -> Reply {
    let tags = match tags_of(body) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let mut ghl = state.ghl.lock().unwrap();
    let Some(c) = ghl.contacts.get_mut(id) else {
        return not_found();
    };
    let mut all = tags_of(c).unwrap_or_default();
    change(&mut all, tags);
    c["tags"] = json!(all);
    state.emit_ghl("ContactTagUpdate", c);
    (status, Json(json!({ "tags": all })))
}

async fn add_tags(
    State(state): State<Arc<SandboxState>>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Reply {
    change_tags(&state, &id, &body, StatusCode::CREATED, |all, tags| {
        for t in tags {
            if !all.contains(&t) {
                all.push(t);
            }
        }
    })
}

async fn remove_tags(
    State(state): State<Arc<SandboxState>>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Reply {
    change_tags(&state, &id, &body, StatusCode::OK, |all, tags| {
        all.retain(|t| !tags.contains(t))
    })
}

async fn add_note(
    State(state): State<Arc<SandboxState>>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Reply {
    let Some(text) = body
        .get("body")
        .and_then(Value::as_str)
        .filter(|b| !b.is_empty())
    else {
        return unprocessable(&["body should not be empty".into()]);
    };
    let mut ghl = state.ghl.lock().unwrap();
    if !ghl.contacts.contains_key(&id) {
        return not_found();
    }
    let note = json!({"id": new_id(), "body": text, "contactId": id, "dateAdded": now()});
    ghl.notes.entry(id).or_default().push(note.clone());
    (StatusCode::CREATED, Json(json!({ "note": note })))
}

async fn list_notes(State(state): State<Arc<SandboxState>>, Path(id): Path<String>) -> Reply {
    let ghl = state.ghl.lock().unwrap();
    if !ghl.contacts.contains_key(&id) {
        return not_found();
    }
    let notes = ghl.notes.get(&id).cloned().unwrap_or_default();
    (StatusCode::OK, Json(json!({ "notes": notes })))
}

#[derive(serde::Deserialize)]
struct Paging {
    limit: Option<usize>,
    skip: Option<usize>,
}

async fn by_business(
    State(state): State<Arc<SandboxState>>,
    Path(business): Path<String>,
    axum::extract::Query(p): axum::extract::Query<Paging>,
) -> Reply {
    let limit = p.limit.unwrap_or(25);
    if !(1..=100).contains(&limit) {
        return unprocessable(&["limit must not be greater than 100".into()]);
    }
    let ghl = state.ghl.lock().unwrap();
    let all: Vec<&Value> = ghl
        .contacts
        .values()
        .filter(|c| c.get("businessId").and_then(Value::as_str) == Some(business.as_str()))
        .collect();
    let contacts: Vec<&Value> = all
        .iter()
        .skip(p.skip.unwrap_or(0))
        .take(limit)
        .copied()
        .collect();
    (
        StatusCode::OK,
        Json(json!({"contacts": contacts, "count": all.len()})),
    )
}

/// Run `f` on the state when the contact `id` exists; 404 otherwise.
fn with_contact(
    state: &SandboxState,
    id: &str,
    f: impl FnOnce(&mut Ghl) -> Result<Reply, Reply>,
) -> Reply {
    let mut ghl = state.ghl.lock().unwrap();
    if !ghl.contacts.contains_key(id) {
        return not_found();
    }
    f(&mut ghl).unwrap_or_else(|e| e)
}

async fn get_note(
    State(state): State<Arc<SandboxState>>,
    Path((id, note)): Path<(String, String)>,
) -> Reply {
    with_contact(&state, &id, |g| {
        let n = g
            .notes
            .get(&id)
            .and_then(|n| n.iter().find(|n| n["id"] == note.as_str()));
        n.map(|n| (StatusCode::OK, Json(json!({ "note": n }))))
            .ok_or_else(|| error(StatusCode::BAD_REQUEST, "Note not found"))
    })
}

async fn update_note(
    State(state): State<Arc<SandboxState>>,
    Path((id, note)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Reply {
    let Some(text) = body
        .get("body")
        .and_then(Value::as_str)
        .filter(|b| !b.is_empty())
    else {
        return unprocessable(&["body should not be empty".into()]);
    };
    with_contact(&state, &id, |g| {
        let n = g
            .notes
            .get_mut(&id)
            .and_then(|n| n.iter_mut().find(|n| n["id"] == note.as_str()))
            .ok_or_else(|| error(StatusCode::BAD_REQUEST, "Note not found"))?;
        n["body"] = json!(text);
        Ok((StatusCode::OK, Json(json!({ "note": n }))))
    })
}

async fn delete_note(
    State(state): State<Arc<SandboxState>>,
    Path((id, note)): Path<(String, String)>,
) -> Reply {
    with_contact(&state, &id, |g| {
        let notes = g.notes.entry(id.clone()).or_default();
        let before = notes.len();
        notes.retain(|n| n["id"] != note.as_str());
        if notes.len() == before {
            return Err(error(StatusCode::BAD_REQUEST, "Note not found"));
        }
        Ok((StatusCode::OK, Json(json!({"succeded": true}))))
    })
}

const TASK_FIELDS: &[&str] = &["title", "body", "dueDate", "completed", "assignedTo"];

fn check_task(body: &Value, creating: bool) -> Result<(), Reply> {
    let Some(obj) = body.as_object() else {
        return Err(error(StatusCode::BAD_REQUEST, "Bad Request"));
    };
    let mut problems: Vec<String> = obj
        .keys()
        .filter(|k| !TASK_FIELDS.contains(&k.as_str()))
        .map(|k| format!("property {k} should not exist"))
        .collect();
    if creating {
        for k in ["title", "dueDate"] {
            if obj.get(k).and_then(Value::as_str).is_none_or(str::is_empty) {
                problems.push(format!("{k} should not be empty"));
            }
        }
        if !obj.get("completed").is_some_and(Value::is_boolean) {
            problems.push("completed must be a boolean value".into());
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(unprocessable(&problems))
    }
}

fn task_mut<'a>(g: &'a mut Ghl, id: &str, task: &str) -> Result<&'a mut Value, Reply> {
    g.tasks
        .get_mut(id)
        .and_then(|t| t.iter_mut().find(|t| t["id"] == task))
        .ok_or_else(|| error(StatusCode::BAD_REQUEST, "Task not found"))
}

async fn create_task(
    State(state): State<Arc<SandboxState>>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Reply {
    if let Err(e) = check_task(&body, true) {
        return e;
    }
    with_contact(&state, &id, |g| {
        let mut task = body.clone();
        task["id"] = json!(new_id());
        task["contactId"] = json!(id);
        g.tasks.entry(id.clone()).or_default().push(task.clone());
        Ok((StatusCode::CREATED, Json(json!({ "task": task }))))
    })
}

async fn list_tasks(State(state): State<Arc<SandboxState>>, Path(id): Path<String>) -> Reply {
    with_contact(&state, &id, |g| {
        let tasks = g.tasks.get(&id).cloned().unwrap_or_default();
        Ok((StatusCode::OK, Json(json!({ "tasks": tasks }))))
    })
}

async fn get_task(
    State(state): State<Arc<SandboxState>>,
    Path((id, task)): Path<(String, String)>,
) -> Reply {
    with_contact(&state, &id, |g| {
        let t = task_mut(g, &id, &task)?;
        Ok((StatusCode::OK, Json(json!({ "task": t }))))
    })
}

async fn update_task(
    State(state): State<Arc<SandboxState>>,
    Path((id, task)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Reply {
    if let Err(e) = check_task(&body, false) {
        return e;
    }
    with_contact(&state, &id, |g| {
        let t = task_mut(g, &id, &task)?;
        for (k, v) in body.as_object().into_iter().flatten() {
            t[k] = v.clone();
        }
        Ok((StatusCode::OK, Json(json!({ "task": t }))))
    })
}

async fn complete_task(
    State(state): State<Arc<SandboxState>>,
    Path((id, task)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Reply {
    let Some(done) = body.get("completed").and_then(Value::as_bool) else {
        return unprocessable(&["completed must be a boolean value".into()]);
    };
    with_contact(&state, &id, |g| {
        let t = task_mut(g, &id, &task)?;
        t["completed"] = json!(done);
        Ok((StatusCode::OK, Json(json!({ "task": t }))))
    })
}

async fn delete_task(
    State(state): State<Arc<SandboxState>>,
    Path((id, task)): Path<(String, String)>,
) -> Reply {
    with_contact(&state, &id, |g| {
        task_mut(g, &id, &task)?;
        g.tasks
            .entry(id.clone())
            .or_default()
            .retain(|t| t["id"] != task.as_str());
        Ok((StatusCode::OK, Json(json!({"succeded": true}))))
    })
}

async fn appointments(State(state): State<Arc<SandboxState>>, Path(id): Path<String>) -> Reply {
    with_contact(&state, &id, |g| {
        let events = g.appointments.get(&id).cloned().unwrap_or_default();
        Ok((StatusCode::OK, Json(json!({ "events": events }))))
    })
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListParams {
    location_id: Option<String>,
    limit: Option<usize>,
    start_after_id: Option<String>,
    start_after: Option<i64>,
    query: Option<String>,
}

/// Milliseconds since the epoch of a contact's `dateAdded`, the list's sort key.
fn added_ms(c: &Value) -> i64 {
    c["dateAdded"]
        .as_str()
        .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
        .map_or(0, |t| t.timestamp_millis())
}

/// The deprecated `GET /contacts/`, paged with `startAfterId` and `startAfter`.
async fn list(
    State(state): State<Arc<SandboxState>>,
    axum::extract::Query(p): axum::extract::Query<ListParams>,
) -> Reply {
    if p.location_id.as_deref() != Some(GHL_LOCATION) {
        return unprocessable(&["locationId should not be empty".into()]);
    }
    let limit = p.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return unprocessable(&["limit must not be greater than 100".into()]);
    }
    let query = p.query.unwrap_or_default().to_lowercase();
    let ghl = state.ghl.lock().unwrap();
    let mut all: Vec<(i64, &String, &Value)> = ghl
        .contacts
        .iter()
        .filter(|(_, c)| {
            query.is_empty()
                || ["fullNameLowerCase", "email", "phone"]
                    .iter()
                    .any(|k| lower(c, k).is_some_and(|v| v.contains(&query)))
        })
        .map(|(id, c)| (added_ms(c), id, c))
        .collect();
    all.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let total = all.len();
    let after = match (p.start_after, &p.start_after_id) {
        (Some(ms), Some(id)) => all
            .iter()
            .position(|(m, i, _)| (*m, *i) > (ms, id))
            .unwrap_or(total),
        _ => 0,
    };
    let page: Vec<&(i64, &String, &Value)> = all.iter().skip(after).take(limit).collect();
    let mut meta = json!({"total": total, "currentPage": after / limit + 1});
    if after + page.len() < total
        && let Some((ms, id, _)) = page.last()
    {
        meta["startAfter"] = json!(ms);
        meta["startAfterId"] = json!(id);
        meta["nextPage"] = json!(after / limit + 2);
        meta["nextPageUrl"] = json!(format!(
            "/contacts/?locationId={GHL_LOCATION}&startAfter={ms}&startAfterId={id}&limit={limit}"
        ));
    }
    let contacts: Vec<&Value> = page.iter().map(|(_, _, c)| *c).collect();
    (
        StatusCode::OK,
        Json(json!({"contacts": contacts, "count": contacts.len(), "meta": meta})),
    )
}
