//! PocketBoss API v1: push leads (merged by email, then phone) and appointments.
//!
//! `Authorization: Bearer <api key>`. Errors are `{error, message, field}`.

use super::fields::text;
use super::http::{BuildError, Request, RetryPolicy, VendorHttp};
use super::{Call, Connector, HttpRequest, HttpResponse, raw_http};
use crate::secrets::Secret;
use reqwest::Method;
use serde_json::{Map, Value, json};
use switchboard_model::{Contact, Job, Lead, Phone, PhoneKind, RecipeError, full_name};

pub const BASE_URL: &str = "https://api.thepocketboss.com/api/v1";
pub const URGENCIES: &[&str] = &["low", "medium", "high", "emergency"];
pub const PROPERTY_TYPES: &[&str] = &["residential", "commercial", "business"];
pub const CONTACT_METHODS: &[&str] = &["call", "text", "email"];
pub const CATEGORIES: &[&str] = &[
    "Maintenance",
    "Repair",
    "Consultation",
    "Installation",
    "Service",
    "Remodeling",
    "Projects",
];

/// A PocketBoss connection.
pub struct PocketBoss {
    http: VendorHttp,
}

impl PocketBoss {
    pub fn new(
        base_url: Option<&str>,
        key: &Secret,
        retry: RetryPolicy,
    ) -> Result<Self, BuildError> {
        Ok(PocketBoss {
            http: VendorHttp::new(
                "pocketboss",
                base_url.unwrap_or(BASE_URL),
                vec![("authorization", format!("Bearer {}", key.expose()))],
                key,
                retry,
                None,
            )?,
        })
    }
}

fn check_enum(raw: &Map<String, Value>, key: &str, allowed: &[&str]) -> Result<(), RecipeError> {
    match raw.get(key) {
        None => Ok(()),
        Some(Value::String(v)) if allowed.contains(&v.as_str()) => Ok(()),
        Some(v) => Err(RecipeError::invalid(
            format!("raw.{key}"),
            format!("{v} is not one of {}", allowed.join(", ")),
        )),
    }
}

fn lead_from_json(v: &Value) -> Lead {
    Lead {
        id: text(v, "id"),
        contact_id: None,
        contact: Some(Contact {
            first_name: text(v, "firstName"),
            last_name: text(v, "lastName"),
            emails: text(v, "email").into_iter().collect(),
            phones: text(v, "phone")
                .map(|number| Phone {
                    kind: PhoneKind::Mobile,
                    number,
                })
                .into_iter()
                .collect(),
            ..Contact::default()
        }),
        status: text(v, "status"),
        source: text(v, "source"),
        external_id: text(v, "externalId"),
        notes: text(v, "notes"),
        created_at: text(v, "createdAt"),
        updated_at: text(v, "updatedAt"),
        raw: Some(v.clone()),
    }
}

fn job_from_json(v: &Value) -> Job {
    Job {
        id: text(v, "id"),
        contact_id: None,
        contact: None,
        title: text(v, "title"),
        description: text(v, "notes"),
        status: text(v, "status"),
        category: text(v, "category"),
        start: text(v, "startDate"),
        end: text(v, "endDate"),
        duration_minutes: v.get("duration").and_then(Value::as_u64).map(|d| d as u32),
        address: None,
        raw: Some(v.clone()),
    }
}

fn raw_object(raw: &Option<Value>) -> Map<String, Value> {
    match raw {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    }
}

#[async_trait::async_trait]
impl Connector for PocketBoss {
    fn vendor(&self) -> &str {
        "pocketboss"
    }

    /// PocketBoss has no read endpoint for push keys: an empty lead is refused with 400
    /// (`validation_error`) when the key works and 401 when it does not, and creates nothing.
    async fn check(&self, call: &Call) -> Result<String, RecipeError> {
        let r = Request::new(Method::POST, "/leads").json(&json!({}));
        match self.http.send(call, &r).await {
            Err(RecipeError::Invalid { .. }) => Ok("the key is accepted (push leads)".into()),
            Err(e) => Err(e),
            Ok(_) => Ok("the key is accepted".into()),
        }
    }

    async fn http(&self, call: &Call, request: HttpRequest) -> Result<HttpResponse, RecipeError> {
        raw_http(&self.http, call, request).await
    }

    /// PocketBoss merges a lead into the one with the same email, then phone.
    fn dedupes(&self, call: &str) -> bool {
        call == "leads.create"
    }

    async fn leads_create(&self, call: &Call, l: &Lead) -> Result<(Lead, bool), RecipeError> {
        let c = l.contact.as_ref().ok_or_else(|| {
            RecipeError::invalid("contact", "PocketBoss leads carry the person's details")
        })?;
        let mut extra = raw_object(&l.raw);
        if c.first_name.is_none() && !extra.contains_key("name") {
            return Err(RecipeError::invalid(
                "contact.first_name",
                "is required (or raw.name)",
            ));
        }
        if c.emails.is_empty() && c.phones.is_empty() {
            return Err(RecipeError::invalid(
                "contact.emails",
                "an email or a phone is required",
            ));
        }
        check_enum(&extra, "urgency", URGENCIES)?;
        check_enum(&extra, "propertyType", PROPERTY_TYPES)?;
        check_enum(&extra, "preferredContactMethod", CONTACT_METHODS)?;
        let mut body = Map::new();
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                body.insert(k.into(), json!(v));
            }
        };
        put("firstName", c.first_name.clone());
        put("lastName", c.last_name.clone());
        put("email", c.emails.first().cloned());
        put("phone", c.phone(PhoneKind::Mobile).map(str::to_string));
        put("source", l.source.clone());
        put("notes", l.notes.clone());
        put("externalId", l.external_id.clone());
        if let Some(a) = c.addresses.first() {
            put("address", a.street.clone());
            put("city", a.city.clone());
            put("state", a.state.clone());
            put("zip", a.postal_code.clone());
        }
        for key in [
            "name",
            "serviceRequested",
            "urgency",
            "propertyType",
            "preferredContactMethod",
            "metadata",
        ] {
            if let Some(v) = extra.remove(key) {
                body.entry(key).or_insert(v);
            }
        }
        // PocketBoss merges by email, then phone: pushing the same lead twice is harmless.
        let r = Request::new(Method::POST, "/leads")
            .json(&Value::Object(body))
            .idempotent();
        let v = self.http.send(call, &r).await?.json()?;
        Ok((lead_from_json(&v["lead"]), v["action"] == "created"))
    }

    async fn jobs_create(&self, call: &Call, j: &Job) -> Result<Job, RecipeError> {
        let title = j
            .title
            .clone()
            .ok_or_else(|| RecipeError::invalid("title", "is required"))?;
        let start = j
            .start
            .clone()
            .ok_or_else(|| RecipeError::invalid("start", "is required"))?;
        chrono::DateTime::parse_from_rfc3339(&start).map_err(|_| {
            RecipeError::invalid("start", format!("'{start}' is not an ISO 8601 date-time"))
        })?;
        let contact = j.contact.as_ref();
        let client = contact.and_then(full_name).ok_or_else(|| {
            RecipeError::invalid("contact.first_name", "the client's name is required")
        })?;
        if let Some(cat) = &j.category
            && !CATEGORIES.contains(&cat.as_str())
        {
            return Err(RecipeError::invalid(
                "category",
                format!("'{cat}' is not one of {}", CATEGORIES.join(", ")),
            ));
        }
        let mut body = Map::from_iter([
            ("title".to_string(), json!(title)),
            ("startDate".to_string(), json!(start)),
            ("clientName".to_string(), json!(client)),
        ]);
        match (j.duration_minutes, &j.end) {
            (Some(d), _) => {
                body.insert("duration".into(), json!(d));
            }
            (None, Some(end)) => {
                body.insert("endDate".into(), json!(end));
            }
            (None, None) => {}
        }
        if let Some(c) = contact {
            if let Some(e) = c.emails.first() {
                body.insert("clientEmail".into(), json!(e));
            }
            if let Some(p) = c.phone(PhoneKind::Mobile) {
                body.insert("clientPhone".into(), json!(p));
            }
        }
        if let Some(a) = &j.address {
            let line = [&a.street, &a.city, &a.state, &a.postal_code]
                .into_iter()
                .flatten()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            body.insert("location".into(), json!(line));
        }
        if let Some(d) = &j.description {
            body.insert("notes".into(), json!(d));
        }
        if let Some(cat) = &j.category {
            body.insert("category".into(), json!(cat));
        }
        let mut extra = raw_object(&j.raw);
        for key in ["externalId", "metadata"] {
            if let Some(v) = extra.remove(key) {
                body.entry(key).or_insert(v);
            }
        }
        // Appointments are not deduplicated: never resent blindly.
        let r = Request::new(Method::POST, "/appointments").json(&Value::Object(body));
        let v = self.http.send(call, &r).await?.json()?;
        Ok(job_from_json(&v["appointment"]))
    }
}
