//! Homebase360 API 1.2.0: customers, jobs, leads (with its customer lookup by mobile
//! phone), SMS/MMS messages and their stats.
//!
//! `x-api-key` header; every answer is `{"success": true, "data": ...}`. Phones are E.164.
//! The 500-SMS-a-day limit is counted in the store, per connection and UTC day, so a
//! restart does not reset it.

use super::fields::{path_id, strings, text};
use super::http::{BuildError, Request, RetryPolicy, VendorHttp};
use super::{Call, Connector, HttpRequest, HttpResponse, raw_http};
use crate::Counters;
use crate::secrets::Secret;
use reqwest::Method;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use switchboard_model::{
    Address, Channel, Contact, Job, Lead, Message, Page, Phone, PhoneKind, Query, RecipeError,
    is_e164,
};

pub const BASE_URL: &str = "https://us-central1-homebase-360.cloudfunctions.net/api/v1";
/// Lead statuses Homebase360 knows.
pub const LEAD_STATUSES: &[&str] = &[
    "new",
    "first_contact",
    "second_contact",
    "third_contact",
    "on_hold",
];
/// SMS a business may send per day.
pub const SMS_PER_DAY: u64 = 500;
/// Longest SMS text.
pub const SMS_MAX_CHARS: usize = 200;

/// A Homebase360 connection.
pub struct Homebase360 {
    name: String,
    http: VendorHttp,
    quota: Arc<dyn Counters>,
}

impl Homebase360 {
    pub fn new(
        name: &str,
        base_url: Option<&str>,
        key: &Secret,
        retry: RetryPolicy,
        quota: Arc<dyn Counters>,
    ) -> Result<Self, BuildError> {
        Ok(Homebase360 {
            name: name.to_string(),
            http: VendorHttp::new(
                "homebase360",
                base_url.unwrap_or(BASE_URL),
                vec![("x-api-key", key.expose().to_string())],
                key,
                retry,
                None,
            )?,
            quota,
        })
    }

    /// SMS sent today through this connection, as counted by the host.
    pub async fn sms_sent_today(&self) -> Result<u64, RecipeError> {
        self.quota.used(&self.sms_key()).await
    }

    fn sms_key(&self) -> String {
        format!("{}/sms/{}", self.name, chrono::Utc::now().date_naive())
    }

    async fn data(&self, call: &Call, r: Request) -> Result<Value, RecipeError> {
        let mut v = self.http.send(call, &r).await?.json()?;
        Ok(v.get_mut("data").map(Value::take).unwrap_or(Value::Null))
    }

    async fn first(
        &self,
        call: &Call,
        r: Request,
        what: &str,
        id: &str,
    ) -> Result<Value, RecipeError> {
        self.data(call, r)
            .await?
            .as_array()
            .and_then(|a| a.first().cloned())
            .ok_or_else(|| RecipeError::NotFound {
                message: format!("{what} {id} not found"),
            })
    }
}

const PHONE_KEYS: &[(&str, PhoneKind)] = &[
    ("mobile", PhoneKind::Mobile),
    ("home", PhoneKind::Home),
    ("work", PhoneKind::Work),
    ("additional", PhoneKind::Other),
];

/// A Homebase360 customer as a [`Contact`].
pub fn customer_from_json(v: &Value) -> Contact {
    let phone = v.get("phone").cloned().unwrap_or(Value::Null);
    Contact {
        id: text(v, "customerId").or_else(|| text(v, "id")),
        first_name: text(v, "firstName"),
        last_name: text(v, "lastName"),
        company: text(v, "company"),
        emails: strings(v, "email"),
        phones: PHONE_KEYS
            .iter()
            .filter_map(|(k, kind)| {
                text(&phone, k).map(|number| Phone {
                    kind: *kind,
                    number,
                })
            })
            .collect(),
        addresses: strings(v, "address")
            .into_iter()
            .map(|a| Address {
                street: Some(a),
                ..Address::default()
            })
            .collect(),
        tags: strings(v, "tags"),
        source: text(v, "leadSource"),
        notes: text(v, "notes"),
        created_at: text(v, "dateAdded"),
        updated_at: text(v, "dateUpdated"),
        raw: Some(v.clone()),
    }
}

fn address_line(a: &Address) -> String {
    let join = |parts: &[Option<&str>], sep: &str| {
        parts
            .iter()
            .flatten()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(sep)
    };
    let locality = join(&[a.city.as_deref(), a.state.as_deref()], ", ");
    let tail = join(&[Some(locality.as_str()), a.postal_code.as_deref()], " ");
    join(&[a.street.as_deref(), Some(tail.as_str())], ", ")
}

/// Check a contact's phones and list sizes; the error names the field.
fn check_contact(c: &Contact, prefix: &str) -> Result<(), RecipeError> {
    for (i, p) in c.phones.iter().enumerate() {
        if !is_e164(&p.number) {
            return Err(RecipeError::invalid(
                format!("{prefix}phones[{i}]"),
                format!("'{}' is not E.164 (e.g. +13038284444)", p.number),
            ));
        }
    }
    if c.emails.len() > 2 {
        return Err(RecipeError::invalid(format!("{prefix}emails"), "at most 2"));
    }
    if c.addresses.len() > 2 {
        return Err(RecipeError::invalid(
            format!("{prefix}addresses"),
            "at most 2",
        ));
    }
    Ok(())
}

fn check_new_customer(c: &Contact, prefix: &str) -> Result<(), RecipeError> {
    check_contact(c, prefix)?;
    if c.first_name.is_none() && c.last_name.is_none() {
        return Err(RecipeError::invalid(
            format!("{prefix}first_name"),
            "a first or last name is required",
        ));
    }
    if c.phones.is_empty() && c.emails.is_empty() {
        return Err(RecipeError::invalid(
            format!("{prefix}phones"),
            "a phone or an email is required",
        ));
    }
    Ok(())
}

/// The customer fields of a request body.
fn customer_body(c: &Contact) -> Map<String, Value> {
    let mut m = Map::new();
    if let Some(v) = &c.first_name {
        m.insert("firstName".into(), json!(v));
    }
    if let Some(v) = &c.last_name {
        m.insert("lastName".into(), json!(v));
    }
    if !c.phones.is_empty() {
        let mut phone = Map::new();
        for p in &c.phones {
            let key = PHONE_KEYS
                .iter()
                .find(|(_, k)| *k == p.kind)
                .map_or("additional", |(k, _)| k);
            phone.entry(key).or_insert_with(|| json!(p.number));
        }
        m.insert("phone".into(), Value::Object(phone));
    }
    if !c.emails.is_empty() {
        m.insert("email".into(), json!(c.emails));
    }
    if !c.addresses.is_empty() {
        m.insert(
            "address".into(),
            json!(c.addresses.iter().map(address_line).collect::<Vec<_>>()),
        );
    }
    if let Some(v) = &c.notes {
        m.insert("notes".into(), json!(v));
    }
    if !c.tags.is_empty() {
        m.insert("tags".into(), json!(c.tags));
    }
    m
}

/// Vendor fields a recipe passed in `raw`, under the mapped ones.
fn with_raw(mut body: Map<String, Value>, raw: &Option<Value>, allowed: &[&str]) -> Value {
    if let Some(Value::Object(extra)) = raw {
        for (k, v) in extra {
            if allowed.contains(&k.as_str()) {
                body.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    Value::Object(body)
}

fn check_status(status: &Option<String>) -> Result<(), RecipeError> {
    match status {
        Some(s) if !LEAD_STATUSES.contains(&s.as_str()) => Err(RecipeError::invalid(
            "status",
            format!("'{s}' is not one of {}", LEAD_STATUSES.join(", ")),
        )),
        _ => Ok(()),
    }
}

fn check_limit(limit: Option<u32>) -> Result<(), RecipeError> {
    match limit {
        Some(l) if !(1..=100).contains(&l) => {
            Err(RecipeError::invalid("limit", "must be between 1 and 100"))
        }
        _ => Ok(()),
    }
}

fn parse_time(
    field: &str,
    value: &str,
) -> Result<chrono::DateTime<chrono::FixedOffset>, RecipeError> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map_err(|_| RecipeError::invalid(field, format!("'{value}' is not an ISO 8601 date-time")))
}

fn check_span(start: Option<&str>, end: Option<&str>) -> Result<(), RecipeError> {
    if let (Some(s), Some(e)) = (start, end)
        && parse_time("end", e)? <= parse_time("start", s)?
    {
        return Err(RecipeError::invalid("end", "must be after start"));
    }
    Ok(())
}

/// A Homebase360 lead as a [`Lead`].
pub fn lead_from_json(v: &Value) -> Lead {
    Lead {
        id: text(v, "leadId").or_else(|| text(v, "id")),
        contact_id: text(v, "customerId"),
        contact: v
            .get("customer")
            .filter(|c| c.is_object())
            .map(customer_from_json),
        status: text(v, "status"),
        source: text(v, "leadSource"),
        external_id: None,
        notes: text(v, "note"),
        created_at: text(v, "createdAt").or_else(|| text(v, "dateAdded")),
        updated_at: text(v, "updatedAt"),
        raw: Some(v.clone()),
    }
}

/// A Homebase360 job as a [`Job`].
pub fn job_from_json(v: &Value) -> Job {
    Job {
        id: text(v, "jobId").or_else(|| text(v, "id")),
        contact_id: text(v, "customerId"),
        contact: None,
        title: v
            .get("lineItems")
            .and_then(|l| l.get(0))
            .and_then(|i| text(i, "name").or_else(|| text(i, "title"))),
        description: text(v, "note"),
        status: text(v, "status"),
        category: None,
        start: text(v, "start"),
        end: text(v, "end"),
        duration_minutes: None,
        address: None,
        raw: Some(v.clone()),
    }
}

fn message_from_json(v: &Value, sent: &Message) -> Message {
    Message {
        id: text(v, "messageId").or_else(|| text(v, "id")),
        status: text(v, "status").or_else(|| Some("sent".into())),
        sent_at: text(v, "sentAt").or_else(|| text(v, "timestamp")),
        raw: Some(v.clone()),
        ..sent.clone()
    }
}

/// Milliseconds until the next UTC midnight, when the SMS count starts again.
fn until_midnight_ms() -> u64 {
    let now = chrono::Utc::now();
    let tomorrow = now
        .date_naive()
        .succ_opt()
        .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc());
    tomorrow.map_or(3_600_000, |t| (t - now).num_milliseconds().max(0) as u64)
}

#[async_trait::async_trait]
impl Connector for Homebase360 {
    fn vendor(&self) -> &str {
        "homebase360"
    }

    async fn quotas(&self) -> Result<Vec<crate::Quota>, RecipeError> {
        Ok(vec![crate::Quota {
            name: "sms_per_day",
            limit: SMS_PER_DAY,
            used: self.sms_sent_today().await?,
        }])
    }

    async fn check(&self, call: &Call) -> Result<String, RecipeError> {
        let data = self.data(call, Request::new(Method::GET, "/ping")).await?;
        Ok(text(&data, "message").unwrap_or_else(|| "ping answered".into()))
    }

    async fn http(&self, call: &Call, request: HttpRequest) -> Result<HttpResponse, RecipeError> {
        raw_http(&self.http, call, request).await
    }

    async fn contacts_get(&self, call: &Call, id: &str) -> Result<Contact, RecipeError> {
        let r = Request::new(Method::GET, "/customers")
            .query("customerId", path_id("Homebase360 customer", id)?);
        Ok(customer_from_json(
            &self.first(call, r, "customer", id).await?,
        ))
    }

    async fn contacts_search(&self, call: &Call, q: &Query) -> Result<Page<Contact>, RecipeError> {
        check_limit(q.limit)?;
        if let Some(p) = &q.phone
            && !is_e164(p)
        {
            return Err(RecipeError::invalid("phone", format!("'{p}' is not E.164")));
        }
        let mut r = Request::new(Method::GET, "/customers").query("limit", q.limit.unwrap_or(25));
        if let Some(e) = &q.email {
            r = r.query("email", e);
        }
        if let Some(p) = &q.phone {
            r = r.query("phone", p);
        }
        if let Some(t) = &q.text {
            r = r.query("identifiers", t);
        }
        let data = self.data(call, r).await?;
        let items: Vec<Contact> = data
            .as_array()
            .map(|a| a.iter().map(customer_from_json).collect())
            .unwrap_or_default();
        Ok(Page {
            total: Some(items.len() as u64),
            items,
            next: None,
        })
    }

    async fn contacts_create(&self, call: &Call, c: &Contact) -> Result<Contact, RecipeError> {
        check_new_customer(c, "")?;
        let r = Request::new(Method::POST, "/customers").json(&Value::Object(customer_body(c)));
        Ok(customer_from_json(&self.data(call, r).await?))
    }

    async fn contacts_update(
        &self,
        call: &Call,
        id: &str,
        c: &Contact,
    ) -> Result<Contact, RecipeError> {
        check_contact(c, "")?;
        let r = Request::new(
            Method::PUT,
            format!("/customers/{}", path_id("Homebase360 customer", id)?),
        )
        .json(&Value::Object(customer_body(c)));
        Ok(customer_from_json(&self.data(call, r).await?))
    }

    async fn leads_list(&self, call: &Call, q: &Query) -> Result<Page<Lead>, RecipeError> {
        check_limit(q.limit)?;
        check_status(&q.status)?;
        let mut r = Request::new(Method::GET, "/leads").query("limit", q.limit.unwrap_or(25));
        if let Some(st) = &q.status {
            r = r.query("status", st);
        }
        if let Some(t) = &q.text {
            r = r.query("customerId", t);
        }
        let data = self.data(call, r).await?;
        let items: Vec<Lead> = data
            .as_array()
            .map(|a| a.iter().map(lead_from_json).collect())
            .unwrap_or_default();
        Ok(Page {
            total: Some(items.len() as u64),
            items,
            next: None,
        })
    }

    async fn leads_get(&self, call: &Call, id: &str) -> Result<Lead, RecipeError> {
        let r =
            Request::new(Method::GET, "/leads").query("leadId", path_id("Homebase360 lead", id)?);
        Ok(lead_from_json(&self.first(call, r, "lead", id).await?))
    }

    async fn leads_create(&self, call: &Call, l: &Lead) -> Result<(Lead, bool), RecipeError> {
        check_status(&l.status)?;
        // The three lookup scenarios: an existing customer by id; details with a mobile
        // phone (looked up and merged by Homebase360); details without (always created).
        let mut body = match (&l.contact_id, &l.contact) {
            (Some(id), _) => Map::from_iter([(
                "customerId".to_string(),
                json!(path_id("Homebase360 customer", id)?),
            )]),
            (None, Some(c)) => {
                check_new_customer(c, "contact.")?;
                customer_body(c)
            }
            (None, None) => {
                return Err(RecipeError::invalid(
                    "contact",
                    "a lead needs a contact_id or the contact's details",
                ));
            }
        };
        if let Some(n) = &l.notes {
            body.insert("note".into(), json!(n));
        }
        if let Some(src) = &l.source {
            body.insert("leadSource".into(), json!(src));
        }
        body.insert("status".into(), json!(l.status.as_deref().unwrap_or("new")));
        let body = with_raw(body, &l.raw, &["lineItems", "assignedTo", "notifications"]);
        let r = Request::new(Method::POST, "/leads").json(&body);
        Ok((lead_from_json(&self.data(call, r).await?), true))
    }

    async fn leads_update(&self, call: &Call, id: &str, l: &Lead) -> Result<Lead, RecipeError> {
        check_status(&l.status)?;
        let mut body = Map::new();
        if let Some(st) = &l.status {
            body.insert("status".into(), json!(st));
        }
        if let Some(n) = &l.notes {
            body.insert("note".into(), json!(n));
        }
        if let Some(src) = &l.source {
            body.insert("leadSource".into(), json!(src));
        }
        let body = with_raw(body, &l.raw, &["lineItems", "assignedTo"]);
        let r = Request::new(
            Method::PUT,
            format!("/leads/{}", path_id("Homebase360 lead", id)?),
        )
        .json(&body);
        Ok(lead_from_json(&self.data(call, r).await?))
    }

    async fn jobs_list(&self, call: &Call, q: &Query) -> Result<Page<Job>, RecipeError> {
        check_limit(q.limit)?;
        let mut r = Request::new(Method::GET, "/jobs").query("limit", q.limit.unwrap_or(50));
        if let Some(t) = &q.starts_after {
            parse_time("starts_after", t)?;
            r = r.query("startDate", t);
        }
        if let Some(t) = &q.starts_before {
            parse_time("starts_before", t)?;
            r = r.query("endDate", t);
        }
        let data = self.data(call, r).await?;
        let items: Vec<Job> = data
            .as_array()
            .map(|a| a.iter().map(job_from_json).collect())
            .unwrap_or_default();
        Ok(Page {
            total: Some(items.len() as u64),
            items,
            next: None,
        })
    }

    async fn jobs_get(&self, call: &Call, id: &str) -> Result<Job, RecipeError> {
        let r = Request::new(Method::GET, "/jobs").query("jobId", path_id("Homebase360 job", id)?);
        Ok(job_from_json(&self.first(call, r, "job", id).await?))
    }

    async fn jobs_create(&self, call: &Call, j: &Job) -> Result<Job, RecipeError> {
        let customer = j.contact_id.as_deref().ok_or_else(|| {
            RecipeError::invalid(
                "contact_id",
                "Homebase360 jobs need an existing customer id",
            )
        })?;
        let start = j
            .start
            .as_deref()
            .ok_or_else(|| RecipeError::invalid("start", "is required"))?;
        let end = j
            .end
            .as_deref()
            .ok_or_else(|| RecipeError::invalid("end", "is required"))?;
        check_span(Some(start), Some(end))?;
        let mut body = Map::from_iter([
            (
                "customerId".to_string(),
                json!(path_id("Homebase360 customer", customer)?),
            ),
            ("start".to_string(), json!(start)),
            ("end".to_string(), json!(end)),
        ]);
        if let Some(d) = &j.description {
            body.insert("note".into(), json!(d));
        }
        let has_items = j
            .raw
            .as_ref()
            .and_then(|r| r.get("lineItems"))
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        if !has_items {
            let title = j.title.as_deref().ok_or_else(|| {
                RecipeError::invalid(
                    "raw.lineItems",
                    "at least one line item (or a title to make one from) is required",
                )
            })?;
            body.insert("lineItems".into(), json!([{"name": title, "quantity": 1}]));
        }
        let body = with_raw(body, &j.raw, &["lineItems", "leadSource"]);
        let r = Request::new(Method::POST, "/jobs").json(&body);
        Ok(job_from_json(&self.data(call, r).await?))
    }

    async fn jobs_update(&self, call: &Call, id: &str, j: &Job) -> Result<Job, RecipeError> {
        check_span(j.start.as_deref(), j.end.as_deref())?;
        let mut body = Map::new();
        for (k, v) in [
            ("start", &j.start),
            ("end", &j.end),
            ("note", &j.description),
        ] {
            if let Some(v) = v {
                body.insert(k.into(), json!(v));
            }
        }
        let r = Request::new(
            Method::PUT,
            format!("/jobs/{}", path_id("Homebase360 job", id)?),
        )
        .json(&Value::Object(body));
        Ok(job_from_json(&self.data(call, r).await?))
    }

    async fn messages_send(&self, call: &Call, m: &Message) -> Result<Message, RecipeError> {
        if m.channel == Channel::Email {
            return Err(RecipeError::Unsupported {
                message: "homebase360 sends SMS and MMS, not email".into(),
            });
        }
        let mut body = Map::new();
        if is_e164(&m.to) {
            body.insert("mobilePhone".into(), json!(m.to));
        } else if m.to.starts_with('+')
            || m.to
                .chars()
                .all(|c| c.is_ascii_digit() || "()- ".contains(c))
        {
            return Err(RecipeError::invalid(
                "to",
                format!("'{}' is not E.164 (e.g. +13038284444)", m.to),
            ));
        } else {
            body.insert(
                "customerId".into(),
                json!(path_id("Homebase360 customer", &m.to)?),
            );
        }
        match (&m.body, &m.media_url) {
            (None, None) => {
                return Err(RecipeError::invalid(
                    "body",
                    "a text or a media_url is required",
                ));
            }
            (Some(text), _) if text.chars().count() > SMS_MAX_CHARS => {
                return Err(RecipeError::invalid(
                    "body",
                    format!(
                        "{} characters; texts are at most {SMS_MAX_CHARS}",
                        text.chars().count()
                    ),
                ));
            }
            (_, Some(url)) if !url.starts_with("https://") => {
                return Err(RecipeError::invalid("media_url", "must be an https URL"));
            }
            _ => {}
        }
        if let Some(t) = &m.body {
            body.insert("message".into(), json!(t));
        }
        if let Some(u) = &m.media_url {
            body.insert("mediaUrl".into(), json!(u));
        }
        let key = self.sms_key();
        if !self.quota.try_take(&key, SMS_PER_DAY).await? {
            return Err(RecipeError::RateLimited {
                retry_after_ms: Some(until_midnight_ms()),
            });
        }
        let r = Request::new(Method::POST, "/messages").json(&Value::Object(body));
        match self.data(call, r).await {
            Ok(data) => Ok(message_from_json(&data, m)),
            Err(e) => {
                // Refused before sending: the text did not go out, so it does not count.
                if matches!(
                    e,
                    RecipeError::Invalid { .. }
                        | RecipeError::NotFound { .. }
                        | RecipeError::Unauthorized { .. }
                        | RecipeError::Forbidden { .. }
                        | RecipeError::RateLimited { .. }
                ) {
                    self.quota.give_back(&key).await?;
                }
                Err(e)
            }
        }
    }

    async fn messages_stats(&self, call: &Call) -> Result<Value, RecipeError> {
        self.data(call, Request::new(Method::GET, "/messages/stats"))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_become_one_line() {
        let a = Address {
            street: Some("123 Main St".into()),
            city: Some("Denver".into()),
            state: Some("CO".into()),
            postal_code: Some("80202".into()),
            country: None,
        };
        assert_eq!(address_line(&a), "123 Main St, Denver, CO 80202");
    }
}
