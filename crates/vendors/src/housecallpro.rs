//! Housecall Pro API v1: customers, the source side of "HCP contact changed → update GHL".
//!
//! `Authorization: Token <api key>`; pages are `page` (from 1) and `page_size`.

use super::fields::{page_number, page_size, path_id, text};
use super::http::{BuildError, Request, RetryPolicy, VendorHttp};
use super::{Call, Connector, HttpRequest, HttpResponse, raw_http};
use crate::secrets::Secret;
use reqwest::Method;
use serde_json::Value;
use switchboard_model::{Address, Contact, Job, Lead, Page, Phone, PhoneKind, Query, RecipeError};

pub const BASE_URL: &str = "https://api.housecallpro.com";

/// A Housecall Pro connection.
pub struct HousecallPro {
    http: VendorHttp,
    company_id: Option<String>,
}

impl HousecallPro {
    pub fn new(
        base_url: Option<&str>,
        key: &Secret,
        company_id: Option<String>,
        retry: RetryPolicy,
    ) -> Result<Self, BuildError> {
        Ok(HousecallPro {
            http: VendorHttp::new(
                "housecallpro",
                base_url.unwrap_or(BASE_URL),
                vec![("authorization", format!("Token {}", key.expose()))],
                key,
                retry,
                None,
            )?,
            company_id,
        })
    }
}

/// A Housecall Pro customer as a [`Contact`], keeping its JSON.
pub fn customer_from_json(v: &Value) -> Contact {
    let phones = [
        ("mobile_number", PhoneKind::Mobile),
        ("home_number", PhoneKind::Home),
        ("work_number", PhoneKind::Work),
    ]
    .into_iter()
    .filter_map(|(key, kind)| text(v, key).map(|number| Phone { kind, number }))
    .collect();
    let addresses = v
        .get("addresses")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(address_from_json).collect())
        .unwrap_or_default();
    Contact {
        id: text(v, "id"),
        first_name: text(v, "first_name"),
        last_name: text(v, "last_name"),
        company: text(v, "company"),
        emails: text(v, "email").into_iter().collect(),
        phones,
        addresses,
        tags: v
            .get("tags")
            .and_then(Value::as_array)
            .map(|t| {
                t.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        source: text(v, "lead_source"),
        notes: text(v, "notes"),
        created_at: text(v, "created_at"),
        updated_at: text(v, "updated_at"),
        raw: Some(v.clone()),
    }
}

fn address_from_json(a: &Value) -> Address {
    Address {
        street: match (text(a, "street"), text(a, "street_line_2")) {
            (Some(l1), Some(l2)) => Some(format!("{l1}, {l2}")),
            (l1, _) => l1,
        },
        city: text(a, "city"),
        state: text(a, "state"),
        postal_code: text(a, "zip"),
        country: text(a, "country"),
    }
}

/// A Housecall Pro job as a [`Job`].
pub fn job_from_json(v: &Value) -> Job {
    let customer = v.get("customer").filter(|c| c.is_object());
    Job {
        id: text(v, "id"),
        contact_id: customer.and_then(|c| text(c, "id")),
        contact: customer.map(customer_from_json),
        title: text(v, "description"),
        description: v
            .get("notes")
            .and_then(Value::as_array)
            .and_then(|n| n.first())
            .and_then(|n| text(n, "content")),
        status: text(v, "work_status"),
        category: None,
        start: text(&v["schedule"], "scheduled_start"),
        end: text(&v["schedule"], "scheduled_end"),
        duration_minutes: None,
        address: v
            .get("address")
            .filter(|a| a.is_object())
            .map(address_from_json),
        raw: Some(v.clone()),
    }
}

/// A Housecall Pro lead as a [`Lead`].
pub fn lead_from_json(v: &Value) -> Lead {
    let customer = v.get("customer").filter(|c| c.is_object());
    Lead {
        id: text(v, "id"),
        contact_id: customer.and_then(|c| text(c, "id")),
        contact: customer.map(customer_from_json),
        status: text(v, "status"),
        source: text(v, "lead_source"),
        external_id: None,
        notes: None,
        created_at: text(v, "created_at"),
        updated_at: text(v, "updated_at"),
        raw: Some(v.clone()),
    }
}

/// Page and page size from a query (`cursor` is the page number this client gave).
fn paging(q: &Query, default_size: u32) -> Result<(u64, u32), RecipeError> {
    Ok((
        page_number(q.cursor.as_deref())?,
        page_size(q.limit, default_size)?,
    ))
}

fn page_of<T>(v: &Value, key: &str, page: u64, map: fn(&Value) -> T) -> Page<T> {
    let items = v[key]
        .as_array()
        .map(|a| a.iter().map(map).collect())
        .unwrap_or_default();
    let total_pages = v["total_pages"].as_u64().unwrap_or(page);
    Page {
        items,
        next: (page < total_pages).then(|| (page + 1).to_string()),
        total: v["total_items"].as_u64(),
    }
}

#[async_trait::async_trait]
impl Connector for HousecallPro {
    fn vendor(&self) -> &str {
        "housecallpro"
    }

    async fn check(&self, call: &Call) -> Result<String, RecipeError> {
        let r = Request::new(Method::GET, "/company");
        let company = self.http.send(call, &r).await?.json()?;
        let id = text(&company, "id").unwrap_or_default();
        if let Some(expected) = &self.company_id
            && *expected != id
        {
            return Err(RecipeError::Forbidden {
                message: format!(
                    "this API key belongs to company {id}, not the configured {expected}"
                ),
            });
        }
        Ok(format!(
            "company {} ({id})",
            text(&company, "name").unwrap_or_default()
        ))
    }

    async fn http(&self, call: &Call, request: HttpRequest) -> Result<HttpResponse, RecipeError> {
        raw_http(&self.http, call, request).await
    }

    async fn contacts_get(&self, call: &Call, id: &str) -> Result<Contact, RecipeError> {
        let r = Request::new(
            Method::GET,
            format!("/customers/{}", path_id("Housecall Pro", id)?),
        );
        Ok(customer_from_json(&self.http.send(call, &r).await?.json()?))
    }

    async fn contacts_search(&self, call: &Call, q: &Query) -> Result<Page<Contact>, RecipeError> {
        let (page, size) = paging(q, 10)?;
        let mut r = Request::new(Method::GET, "/customers")
            .query("page", page)
            .query("page_size", size);
        if let Some(t) = q.text.as_ref().or(q.email.as_ref()).or(q.phone.as_ref()) {
            r = r.query("q", t);
        }
        let v = self.http.send(call, &r).await?.json()?;
        Ok(page_of(&v, "customers", page, customer_from_json))
    }

    async fn jobs_list(&self, call: &Call, q: &Query) -> Result<Page<Job>, RecipeError> {
        let (page, size) = paging(q, 10)?;
        let mut r = Request::new(Method::GET, "/jobs")
            .query("page", page)
            .query("page_size", size);
        for (param, value) in [
            ("scheduled_start_min", &q.starts_after),
            ("scheduled_start_max", &q.starts_before),
            ("work_status", &q.status),
            ("customer_id", &q.text),
        ] {
            if let Some(v) = value {
                r = r.query(param, v);
            }
        }
        let v = self.http.send(call, &r).await?.json()?;
        Ok(page_of(&v, "jobs", page, job_from_json))
    }

    async fn jobs_get(&self, call: &Call, id: &str) -> Result<Job, RecipeError> {
        let r = Request::new(
            Method::GET,
            format!("/jobs/{}", path_id("Housecall Pro", id)?),
        );
        Ok(job_from_json(&self.http.send(call, &r).await?.json()?))
    }

    async fn leads_list(&self, call: &Call, q: &Query) -> Result<Page<Lead>, RecipeError> {
        let (page, size) = paging(q, 10)?;
        let mut r = Request::new(Method::GET, "/leads")
            .query("page", page)
            .query("page_size", size);
        if let Some(st) = &q.status {
            r = r.query("status", st);
        }
        if let Some(c) = &q.text {
            r = r.query("customer_id", c);
        }
        let v = self.http.send(call, &r).await?.json()?;
        Ok(page_of(&v, "leads", page, lead_from_json))
    }

    async fn leads_get(&self, call: &Call, id: &str) -> Result<Lead, RecipeError> {
        let r = Request::new(
            Method::GET,
            format!("/leads/{}", path_id("Housecall Pro", id)?),
        );
        Ok(lead_from_json(&self.http.send(call, &r).await?.json()?))
    }
}
