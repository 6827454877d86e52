//! Housecall Pro API v1: customers, the source side of "HCP contact changed → update GHL".
//!
//! `Authorization: Token <api key>`; pages are `page` (from 1) and `page_size`.

use super::http::{BuildError, Request, RetryPolicy, VendorHttp};
use super::{Call, Connector, HttpRequest, HttpResponse, raw_http};
use crate::model::{Address, Contact, Page, Phone, PhoneKind, Query, RecipeError};
use crate::secrets::Secret;
use reqwest::Method;
use serde_json::Value;

pub const BASE_URL: &str = "https://api.housecallpro.com";

/// A Housecall Pro connection.
pub struct HousecallPro {
    http: VendorHttp,
}

impl HousecallPro {
    pub fn new(
        base_url: Option<&str>,
        key: &Secret,
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
        })
    }
}

fn s(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// A Housecall Pro customer as a [`Contact`], keeping its JSON.
pub fn customer_from_json(v: &Value) -> Contact {
    let phones = [
        ("mobile_number", PhoneKind::Mobile),
        ("home_number", PhoneKind::Home),
        ("work_number", PhoneKind::Work),
    ]
    .into_iter()
    .filter_map(|(key, kind)| s(v, key).map(|number| Phone { kind, number }))
    .collect();
    let addresses = v
        .get("addresses")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|a| Address {
                    street: match (s(a, "street"), s(a, "street_line_2")) {
                        (Some(l1), Some(l2)) => Some(format!("{l1}, {l2}")),
                        (l1, _) => l1,
                    },
                    city: s(a, "city"),
                    state: s(a, "state"),
                    postal_code: s(a, "zip"),
                    country: s(a, "country"),
                })
                .collect()
        })
        .unwrap_or_default();
    Contact {
        id: s(v, "id"),
        first_name: s(v, "first_name"),
        last_name: s(v, "last_name"),
        company: s(v, "company"),
        emails: s(v, "email").into_iter().collect(),
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
        source: s(v, "lead_source"),
        notes: s(v, "notes"),
        created_at: s(v, "created_at"),
        updated_at: s(v, "updated_at"),
        raw: Some(v.clone()),
    }
}

fn path_id(id: &str) -> Result<&str, RecipeError> {
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(RecipeError::invalid(
            "id",
            format!("'{id}' is not a Housecall Pro id"),
        ));
    }
    Ok(id)
}

#[async_trait::async_trait]
impl Connector for HousecallPro {
    fn vendor(&self) -> &str {
        "housecallpro"
    }

    async fn check(&self, call: &Call) -> Result<String, RecipeError> {
        let r = Request::new(Method::GET, "/customers").query("page_size", 1);
        let v = self.http.send(call, &r).await?.json()?;
        Ok(format!(
            "customers answered ({} in total)",
            v["total_items"]
                .as_u64()
                .map_or("?".into(), |t| t.to_string())
        ))
    }

    async fn http(&self, call: &Call, request: HttpRequest) -> Result<HttpResponse, RecipeError> {
        raw_http(&self.http, call, request).await
    }

    async fn contacts_get(&self, call: &Call, id: &str) -> Result<Contact, RecipeError> {
        let r = Request::new(Method::GET, format!("/customers/{}", path_id(id)?));
        Ok(customer_from_json(&self.http.send(call, &r).await?.json()?))
    }

    async fn contacts_search(&self, call: &Call, q: &Query) -> Result<Page<Contact>, RecipeError> {
        let size = q.limit.unwrap_or(10);
        if !(1..=100).contains(&size) {
            return Err(RecipeError::invalid("limit", "must be between 1 and 100"));
        }
        let page: u64 = match &q.cursor {
            Some(c) => c
                .parse()
                .map_err(|_| RecipeError::invalid("cursor", "not a cursor this connection gave"))?,
            None => 1,
        };
        let mut r = Request::new(Method::GET, "/customers")
            .query("page", page)
            .query("page_size", size);
        if let Some(t) = q.text.as_ref().or(q.email.as_ref()).or(q.phone.as_ref()) {
            r = r.query("q", t);
        }
        let v = self.http.send(call, &r).await?.json()?;
        let items = v["customers"]
            .as_array()
            .map(|a| a.iter().map(customer_from_json).collect())
            .unwrap_or_default();
        let total_pages = v["total_pages"].as_u64().unwrap_or(page);
        Ok(Page {
            items,
            next: (page < total_pages).then(|| (page + 1).to_string()),
            total: v["total_items"].as_u64(),
        })
    }
}
