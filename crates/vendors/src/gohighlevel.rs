//! GoHighLevel (LeadConnector) API v2: contacts, tags, notes.
//!
//! `Authorization: Bearer <token>` and `Version: 2021-07-28`; 100 requests per 10 s per
//! connection, enforced client-side. Contacts live in a location (sub-account).

use super::fields::{page_number, page_size, path_id, text};
use super::http::{BuildError, RateLimiter, Request, RetryPolicy, VendorHttp};
use super::{Call, Connector, HttpRequest, HttpResponse, raw_http};
use crate::secrets::Secret;
use reqwest::Method;
use serde_json::{Map, Value, json};
use std::time::Duration;
use switchboard_model::{Address, Contact, Page, Phone, PhoneKind, Query, RecipeError};

pub const BASE_URL: &str = "https://services.leadconnectorhq.com";
pub const API_VERSION: &str = "2021-07-28";

/// A GoHighLevel connection.
pub struct GoHighLevel {
    http: VendorHttp,
    location_id: String,
}

impl GoHighLevel {
    pub fn new(
        base_url: Option<&str>,
        token: &Secret,
        location_id: String,
        retry: RetryPolicy,
    ) -> Result<Self, BuildError> {
        Ok(GoHighLevel {
            http: VendorHttp::new(
                "gohighlevel",
                base_url.unwrap_or(BASE_URL),
                vec![
                    ("authorization", format!("Bearer {}", token.expose())),
                    ("version", API_VERSION.to_string()),
                ],
                token,
                retry,
                Some(RateLimiter::new(100, Duration::from_secs(10))),
            )?,
            location_id,
        })
    }
}

fn task_body(task: &Value, creating: bool) -> Result<Value, RecipeError> {
    let Some(obj) = task.as_object() else {
        return Err(RecipeError::invalid("task", "must be an object"));
    };
    const FIELDS: &[&str] = &["title", "body", "dueDate", "completed", "assignedTo"];
    if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(RecipeError::invalid(
            format!("task.{k}"),
            "is not a task field",
        ));
    }
    if creating {
        for k in ["title", "dueDate"] {
            if obj.get(k).and_then(Value::as_str).is_none_or(str::is_empty) {
                return Err(RecipeError::invalid(format!("task.{k}"), "is required"));
            }
        }
    }
    let mut body = obj.clone();
    if creating {
        body.entry("completed").or_insert(Value::Bool(false));
    }
    Ok(Value::Object(body))
}

impl GoHighLevel {
    /// Send, mapping GoHighLevel's "not found" (a 400 with that message) to `not-found`.
    async fn send(&self, call: &Call, r: &Request) -> Result<super::http::Response, RecipeError> {
        match self.http.send(call, r).await {
            Err(RecipeError::Invalid { reason, .. })
                if reason.to_lowercase().contains("not found") =>
            {
                Err(RecipeError::NotFound { message: reason })
            }
            other => other,
        }
    }
}

/// `/contacts/{contact}/{kind}` or `/contacts/{contact}/{kind}/{id}`, with the ids checked.
fn contact_path(contact: &str, kind: &str, id: Option<&str>) -> Result<String, RecipeError> {
    let contact = path_id("GoHighLevel", contact)?;
    Ok(match id {
        Some(id) => format!("/contacts/{contact}/{kind}/{}", path_id("GoHighLevel", id)?),
        None => format!("/contacts/{contact}/{kind}"),
    })
}

/// GoHighLevel endpoints the typed interfaces do not cover: tasks, notes beyond adding,
/// a contact's appointments, business contacts. Recipes reach them with `vendor-http`.
impl GoHighLevel {
    async fn json(&self, call: &Call, r: Request) -> Result<Value, RecipeError> {
        self.send(call, &r).await?.json()
    }

    pub async fn tasks(&self, call: &Call, contact: &str) -> Result<Value, RecipeError> {
        let path = contact_path(contact, "tasks", None)?;
        Ok(self.json(call, Request::new(Method::GET, path)).await?["tasks"].take())
    }

    pub async fn task(&self, call: &Call, contact: &str, task: &str) -> Result<Value, RecipeError> {
        let path = contact_path(contact, "tasks", Some(task))?;
        Ok(self.json(call, Request::new(Method::GET, path)).await?["task"].take())
    }

    /// Create a task (`title` and `dueDate` required).
    pub async fn create_task(
        &self,
        call: &Call,
        contact: &str,
        task: &Value,
    ) -> Result<Value, RecipeError> {
        let path = contact_path(contact, "tasks", None)?;
        let r = Request::new(Method::POST, path).json(&task_body(task, true)?);
        Ok(self.json(call, r).await?["task"].take())
    }

    pub async fn update_task(
        &self,
        call: &Call,
        contact: &str,
        task: &str,
        fields: &Value,
    ) -> Result<Value, RecipeError> {
        let path = contact_path(contact, "tasks", Some(task))?;
        let r = Request::new(Method::PUT, path).json(&task_body(fields, false)?);
        Ok(self.json(call, r).await?["task"].take())
    }

    pub async fn complete_task(
        &self,
        call: &Call,
        contact: &str,
        task: &str,
        completed: bool,
    ) -> Result<Value, RecipeError> {
        let path = contact_path(contact, "tasks", Some(task))? + "/completed";
        let r = Request::new(Method::PUT, path).json(&json!({ "completed": completed }));
        Ok(self.json(call, r).await?["task"].take())
    }

    pub async fn delete_task(
        &self,
        call: &Call,
        contact: &str,
        task: &str,
    ) -> Result<(), RecipeError> {
        let path = contact_path(contact, "tasks", Some(task))?;
        self.send(call, &Request::new(Method::DELETE, path))
            .await
            .map(|_| ())
    }

    pub async fn notes(&self, call: &Call, contact: &str) -> Result<Value, RecipeError> {
        let path = contact_path(contact, "notes", None)?;
        Ok(self.json(call, Request::new(Method::GET, path)).await?["notes"].take())
    }

    pub async fn note(&self, call: &Call, contact: &str, note: &str) -> Result<Value, RecipeError> {
        let path = contact_path(contact, "notes", Some(note))?;
        Ok(self.json(call, Request::new(Method::GET, path)).await?["note"].take())
    }

    pub async fn update_note(
        &self,
        call: &Call,
        contact: &str,
        note: &str,
        body: &str,
    ) -> Result<Value, RecipeError> {
        if body.trim().is_empty() {
            return Err(RecipeError::invalid("body", "must not be empty"));
        }
        let path = contact_path(contact, "notes", Some(note))?;
        let r = Request::new(Method::PUT, path).json(&json!({ "body": body }));
        Ok(self.json(call, r).await?["note"].take())
    }

    pub async fn delete_note(
        &self,
        call: &Call,
        contact: &str,
        note: &str,
    ) -> Result<(), RecipeError> {
        let path = contact_path(contact, "notes", Some(note))?;
        self.send(call, &Request::new(Method::DELETE, path))
            .await
            .map(|_| ())
    }

    /// A contact's appointments (`events`).
    pub async fn appointments(&self, call: &Call, contact: &str) -> Result<Value, RecipeError> {
        let path = contact_path(contact, "appointments", None)?;
        Ok(self.json(call, Request::new(Method::GET, path)).await?["events"].take())
    }

    /// All contacts of the location, `limit` (≤ 100) at a time, with the list endpoint's
    /// `startAfter`/`startAfterId` paging (the cursor carries both).
    pub async fn list_contacts(
        &self,
        call: &Call,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<Contact>, RecipeError> {
        if !(1..=100).contains(&limit) {
            return Err(RecipeError::invalid("limit", "must be between 1 and 100"));
        }
        let mut r = Request::new(Method::GET, "/contacts/")
            .query("locationId", &self.location_id)
            .query("limit", limit);
        if let Some(c) = cursor {
            let (after, id) = c
                .split_once(':')
                .filter(|(a, id)| a.parse::<i64>().is_ok() && !id.is_empty())
                .ok_or_else(|| {
                    RecipeError::invalid("cursor", "not a cursor this connection gave")
                })?;
            r = r.query("startAfter", after).query("startAfterId", id);
        }
        let v = self.json(call, r).await?;
        let items = v["contacts"]
            .as_array()
            .map(|a| a.iter().map(contact_from_json).collect())
            .unwrap_or_default();
        let meta = &v["meta"];
        let next = match (meta["startAfter"].as_i64(), meta["startAfterId"].as_str()) {
            (Some(after), Some(id)) => Some(format!("{after}:{id}")),
            _ => None,
        };
        Ok(Page {
            items,
            next,
            total: meta["total"].as_u64(),
        })
    }

    /// Contacts of a business, `limit` (≤ 100) from `skip`.
    pub async fn business_contacts(
        &self,
        call: &Call,
        business: &str,
        limit: u32,
        skip: u32,
    ) -> Result<Page<Contact>, RecipeError> {
        if !(1..=100).contains(&limit) {
            return Err(RecipeError::invalid("limit", "must be between 1 and 100"));
        }
        let r = Request::new(
            Method::GET,
            format!("/contacts/business/{}", path_id("GoHighLevel", business)?),
        )
        .query("locationId", &self.location_id)
        .query("limit", limit)
        .query("skip", skip);
        let v = self.json(call, r).await?;
        let items: Vec<Contact> = v["contacts"]
            .as_array()
            .map(|a| a.iter().map(contact_from_json).collect())
            .unwrap_or_default();
        let total = v["count"].as_u64();
        let next = total
            .filter(|t| u64::from(skip) + u64::from(limit) < *t)
            .map(|_| (skip + limit).to_string());
        Ok(Page { items, next, total })
    }
}

/// A GoHighLevel contact as a [`Contact`], keeping its JSON.
pub fn contact_from_json(v: &Value) -> Contact {
    let mut emails: Vec<String> = text(v, "email").into_iter().collect();
    if let Some(more) = v.get("additionalEmails").and_then(Value::as_array) {
        emails.extend(
            more.iter()
                .filter_map(|e| e.as_str().map(str::to_string).or_else(|| text(e, "email"))),
        );
    }
    let address = Address {
        street: text(v, "address1"),
        city: text(v, "city"),
        state: text(v, "state"),
        postal_code: text(v, "postalCode"),
        country: text(v, "country"),
    };
    Contact {
        id: text(v, "id"),
        first_name: text(v, "firstName"),
        last_name: text(v, "lastName"),
        company: text(v, "companyName"),
        emails,
        phones: text(v, "phone")
            .map(|number| Phone {
                kind: PhoneKind::Mobile,
                number,
            })
            .into_iter()
            .collect(),
        addresses: if address == Address::default() {
            vec![]
        } else {
            vec![address]
        },
        tags: v
            .get("tags")
            .and_then(Value::as_array)
            .map(|t| {
                t.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        source: text(v, "source"),
        notes: None,
        created_at: text(v, "dateAdded"),
        updated_at: text(v, "dateUpdated"),
        raw: Some(v.clone()),
    }
}

/// The request body for a contact; `location_id` for create and upsert.
pub fn contact_to_json(c: &Contact, location_id: Option<&str>) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: Option<&String>| {
        if let Some(v) = v {
            m.insert(k.into(), Value::String(v.clone()));
        }
    };
    put("firstName", c.first_name.as_ref());
    put("lastName", c.last_name.as_ref());
    put("companyName", c.company.as_ref());
    put("email", c.emails.first());
    let phone = c.phone(PhoneKind::Mobile).map(str::to_string);
    put("phone", phone.as_ref());
    if let Some(a) = c.addresses.first() {
        put("address1", a.street.as_ref());
        put("city", a.city.as_ref());
        put("state", a.state.as_ref());
        put("postalCode", a.postal_code.as_ref());
        put("country", a.country.as_ref());
    }
    put("source", c.source.as_ref());
    if !c.tags.is_empty() {
        m.insert("tags".into(), json!(c.tags));
    }
    if let Some(l) = location_id {
        m.insert("locationId".into(), Value::String(l.into()));
    }
    Value::Object(m)
}

fn check_email(c: &Contact) -> Result<(), RecipeError> {
    for (i, e) in c.emails.iter().enumerate() {
        let valid = e
            .split_once('@')
            .is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.'));
        if !valid {
            return Err(RecipeError::invalid(
                format!("emails[{i}]"),
                format!("'{e}' is not an email address"),
            ));
        }
    }
    Ok(())
}

fn contact_of(body: &Value) -> Result<Contact, RecipeError> {
    body.get("contact")
        .map(contact_from_json)
        .ok_or_else(|| RecipeError::Upstream {
            status: 200,
            message: "gohighlevel answered without a contact".into(),
        })
}

#[async_trait::async_trait]
impl Connector for GoHighLevel {
    fn vendor(&self) -> &str {
        "gohighlevel"
    }

    async fn check(&self, call: &Call) -> Result<String, RecipeError> {
        let body = json!({"locationId": self.location_id, "pageLimit": 1});
        let r = Request::new(Method::POST, "/contacts/search")
            .json(&body)
            .idempotent();
        let total = self.send(call, &r).await?.json()?["total"].as_u64();
        Ok(format!(
            "location {} answered ({} contacts)",
            self.location_id,
            total.map_or("?".into(), |t| t.to_string())
        ))
    }

    async fn http(&self, call: &Call, request: HttpRequest) -> Result<HttpResponse, RecipeError> {
        raw_http(&self.http, call, request).await
    }

    async fn contacts_get(&self, call: &Call, id: &str) -> Result<Contact, RecipeError> {
        let r = Request::new(
            Method::GET,
            format!("/contacts/{}", path_id("GoHighLevel", id)?),
        );
        contact_of(&self.send(call, &r).await?.json()?)
    }

    async fn contacts_search(&self, call: &Call, q: &Query) -> Result<Page<Contact>, RecipeError> {
        let limit = page_size(q.limit, 20)?;
        let page = page_number(q.cursor.as_deref())?;
        let mut body = json!({"locationId": self.location_id, "pageLimit": limit, "page": page});
        let text = q.text.as_ref().or(q.email.as_ref()).or(q.phone.as_ref());
        if let Some(t) = text {
            body["query"] = Value::String(t.clone());
        }
        let r = Request::new(Method::POST, "/contacts/search")
            .json(&body)
            .idempotent();
        let v = self.send(call, &r).await?.json()?;
        let items: Vec<Contact> = v["contacts"]
            .as_array()
            .map(|a| a.iter().map(contact_from_json).collect())
            .unwrap_or_default();
        let total = v["total"].as_u64();
        let next = total
            .filter(|t| page * u64::from(limit) < *t)
            .map(|_| (page + 1).to_string());
        Ok(Page { items, next, total })
    }

    async fn contacts_create(&self, call: &Call, c: &Contact) -> Result<Contact, RecipeError> {
        check_email(c)?;
        let r = Request::new(Method::POST, "/contacts/")
            .json(&contact_to_json(c, Some(&self.location_id)));
        contact_of(&self.send(call, &r).await?.json()?)
    }

    async fn contacts_update(
        &self,
        call: &Call,
        id: &str,
        c: &Contact,
    ) -> Result<Contact, RecipeError> {
        check_email(c)?;
        let r = Request::new(
            Method::PUT,
            format!("/contacts/{}", path_id("GoHighLevel", id)?),
        )
        .json(&contact_to_json(c, None));
        contact_of(&self.send(call, &r).await?.json()?)
    }

    async fn contacts_upsert(
        &self,
        call: &Call,
        c: &Contact,
    ) -> Result<(Contact, bool), RecipeError> {
        check_email(c)?;
        if c.emails.is_empty() && c.phones.is_empty() {
            return Err(RecipeError::invalid(
                "emails",
                "an upsert needs an email or a phone to match on",
            ));
        }
        // GoHighLevel matches on email, then phone: resending is harmless.
        let r = Request::new(Method::POST, "/contacts/upsert")
            .json(&contact_to_json(c, Some(&self.location_id)))
            .idempotent();
        let v = self.send(call, &r).await?.json()?;
        Ok((contact_of(&v)?, v["new"].as_bool().unwrap_or(false)))
    }

    async fn contacts_delete(&self, call: &Call, id: &str) -> Result<(), RecipeError> {
        let r = Request::new(
            Method::DELETE,
            format!("/contacts/{}", path_id("GoHighLevel", id)?),
        );
        self.send(call, &r).await.map(|_| ())
    }

    async fn contacts_add_tags(
        &self,
        call: &Call,
        id: &str,
        tags: &[String],
    ) -> Result<(), RecipeError> {
        let r = Request::new(Method::POST, contact_path(id, "tags", None)?)
            .json(&json!({ "tags": tags }))
            .idempotent();
        self.send(call, &r).await.map(|_| ())
    }

    async fn contacts_remove_tags(
        &self,
        call: &Call,
        id: &str,
        tags: &[String],
    ) -> Result<(), RecipeError> {
        let r = Request::new(Method::DELETE, contact_path(id, "tags", None)?)
            .json(&json!({ "tags": tags }));
        self.send(call, &r).await.map(|_| ())
    }

    async fn contacts_add_note(
        &self,
        call: &Call,
        id: &str,
        body: &str,
    ) -> Result<String, RecipeError> {
        if body.trim().is_empty() {
            return Err(RecipeError::invalid("body", "must not be empty"));
        }
        let r = Request::new(Method::POST, contact_path(id, "notes", None)?)
            .json(&json!({ "body": body }));
        let v = self.send(call, &r).await?.json()?;
        text(&v["note"], "id").ok_or_else(|| RecipeError::Upstream {
            status: 200,
            message: "gohighlevel answered without a note id".into(),
        })
    }
}
