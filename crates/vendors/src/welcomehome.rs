//! WelcomeHome API: prospects, activities (with calendar fields and time zones), the
//! lookup lists, events and RSVPs, housing contracts, influencers, and CSV exports — live
//! pages followed through `Link` headers (a cursor may be used 3 times a minute) and daily
//! snapshots — surfaced as `data-export` cursors that read one page at a time.
//!
//! `Authorization: Token token=<token>`. WelcomeHome has no webhooks: recipes poll.

use super::fields::text;
use super::http::{BuildError, Request, RetryPolicy, VendorHttp};
use super::{Call, Connector, HttpRequest, HttpResponse, raw_http};
use crate::secrets::Secret;
use reqwest::Method;
use serde_json::{Map, Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use switchboard_model::{
    Contact, ExportPage, ExportRequest, Job, Lead, Page, PhoneKind, Query, RecipeError,
};

pub const BASE_URL: &str = "https://crm.welcomehomesoftware.com/api";

/// Tables the export endpoints serve.
pub const EXPORT_TABLES: &[&str] = &[
    "Organizations",
    "Referrers",
    "Prospects",
    "ProspectFields",
    "Residents",
    "Influencers",
    "Activities",
    "ExternalReferences",
    "Units",
    "HousingContracts",
    "DepositTransactions",
    "MarketingTouchpoints",
    "ServiceAgreements",
    "Traits",
    "Users",
    "WaitlistEntries",
];

/// The time zones WelcomeHome names for calendar activities.
pub const TIME_ZONES: &[&str] = &[
    "Eastern Time (US & Canada)",
    "Central Time (US & Canada)",
    "Mountain Time (US & Canada)",
    "Pacific Time (US & Canada)",
    "Alaska",
    "Arizona",
    "Hawaii",
];

/// RSVP answers an event invite takes.
pub const RSVP_STATUSES: &[&str] = &["pending_response", "accepted", "declined", "not_sure"];

/// Uses of one export cursor allowed per minute.
pub const CURSOR_USES_PER_MINUTE: usize = 3;

/// The read-only lists WelcomeHome serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    ActivityTypes,
    CareTypes,
    Communities,
    FloorPlans,
    LeadSources,
    PrivacyLevels,
    ProspectFields,
}

impl Lookup {
    fn path(self) -> &'static str {
        match self {
            Lookup::ActivityTypes => "/activity_types",
            Lookup::CareTypes => "/care_types",
            Lookup::Communities => "/communities",
            Lookup::FloorPlans => "/floor_plans",
            Lookup::LeadSources => "/lead_sources",
            Lookup::PrivacyLevels => "/privacy_levels",
            Lookup::ProspectFields => "/prospect_fields",
        }
    }
}

/// A WelcomeHome connection.
pub struct WelcomeHome {
    http: VendorHttp,
    community: Option<String>,
    cursor_uses: Mutex<HashMap<String, VecDeque<Instant>>>,
}

fn numeric_id<'a>(field: &str, id: &'a str) -> Result<&'a str, RecipeError> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RecipeError::invalid(
            field,
            format!("'{id}' is not a WelcomeHome id"),
        ));
    }
    Ok(id)
}

fn check_limit(limit: Option<u32>, max: u32) -> Result<(), RecipeError> {
    match limit {
        Some(l) if !(1..=max).contains(&l) => Err(RecipeError::invalid(
            "limit",
            format!("must be between 1 and {max}"),
        )),
        _ => Ok(()),
    }
}

/// A person in a prospect record (resident or influencer) from a contact.
fn person(c: &Contact) -> Value {
    let mut m = Map::new();
    for (k, v) in [("first_name", &c.first_name), ("last_name", &c.last_name)] {
        if let Some(v) = v {
            m.insert(k.into(), json!(v));
        }
    }
    if let Some(e) = c.emails.first() {
        m.insert("email".into(), json!(e));
    }
    if let Some(p) = c.phone(PhoneKind::Mobile) {
        m.insert("phone".into(), json!(p));
    }
    Value::Object(m)
}

fn lead_from_prospect(v: &Value) -> Lead {
    let first_person = v
        .get("influencers")
        .and_then(|i| i.get(0))
        .or_else(|| v.get("residents").and_then(|r| r.get(0)));
    Lead {
        id: text(v, "id"),
        contact_id: None,
        contact: first_person.map(|p| Contact {
            first_name: text(p, "first_name"),
            last_name: text(p, "last_name"),
            emails: text(p, "email").into_iter().collect(),
            ..Contact::default()
        }),
        status: text(v, "status"),
        source: text(v, "lead_source_id"),
        external_id: None,
        notes: text(v, "notes"),
        created_at: text(v, "created_at"),
        updated_at: text(v, "updated_at"),
        raw: Some(v.clone()),
    }
}

fn job_from_activity(v: &Value) -> Job {
    Job {
        id: text(v, "id"),
        contact_id: text(v, "prospect_id"),
        contact: None,
        title: text(v, "activity_type").or_else(|| text(v, "subject")),
        description: text(v, "description"),
        status: text(v, "status"),
        category: text(v, "activity_type_id"),
        start: text(v, "calendar_event_start_time"),
        end: text(v, "calendar_event_end_time"),
        duration_minutes: None,
        address: None,
        raw: Some(v.clone()),
    }
}

/// The activity body for a job: calendar fields need a time zone and come as a set.
fn activity_body(j: &Job) -> Result<Value, RecipeError> {
    let mut a = match &j.raw {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    if let Some(d) = &j.description {
        a.insert("description".into(), json!(d));
    }
    if let Some(t) = &j.category {
        a.entry("activity_type_id").or_insert(json!(t));
    }
    match (&j.start, &j.end) {
        (None, None) => {}
        (Some(start), Some(end)) => {
            let zone = a.get("time_zone").and_then(Value::as_str).ok_or_else(|| {
                RecipeError::invalid("raw.time_zone", "calendar activities need a time zone")
            })?;
            if !TIME_ZONES.contains(&zone) {
                return Err(RecipeError::invalid(
                    "raw.time_zone",
                    format!("'{zone}' is not one of {}", TIME_ZONES.join(", ")),
                ));
            }
            if let (Ok(s), Ok(e)) = (
                chrono::DateTime::parse_from_rfc3339(start),
                chrono::DateTime::parse_from_rfc3339(end),
            ) && e <= s
            {
                return Err(RecipeError::invalid("end", "must be after start"));
            }
            a.insert("add_to_calendar".into(), json!(true));
            a.insert("calendar_event_start_time".into(), json!(start));
            a.insert("calendar_event_end_time".into(), json!(end));
        }
        _ => {
            return Err(RecipeError::invalid(
                "end",
                "calendar activities need both a start and an end",
            ));
        }
    }
    Ok(json!({ "activity": a }))
}

/// The `rel="next"` target of a `Link` header.
pub fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim().replace('"', "") == "rel=next")
            .then(|| {
                url.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
    })
}

/// Parse one page of CSV, header first.
pub fn parse_csv(body: &[u8]) -> Result<(Vec<String>, Vec<Vec<String>>), RecipeError> {
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(body);
    let bad = |e: csv::Error| RecipeError::Upstream {
        status: 200,
        message: format!("welcomehome sent an unreadable CSV page: {e}"),
    };
    let columns = reader
        .headers()
        .map_err(bad)?
        .iter()
        .map(str::to_string)
        .collect();
    let rows = reader
        .records()
        .map(|r| r.map(|r| r.iter().map(str::to_string).collect()))
        .collect::<Result<_, _>>()
        .map_err(bad)?;
    Ok((columns, rows))
}

impl WelcomeHome {
    pub fn new(
        base_url: Option<&str>,
        token: &Secret,
        community: Option<String>,
        retry: RetryPolicy,
    ) -> Result<Self, BuildError> {
        Ok(WelcomeHome {
            http: VendorHttp::new(
                "welcomehome",
                base_url.unwrap_or(BASE_URL),
                vec![("authorization", format!("Token token={}", token.expose()))],
                token,
                retry,
                None,
            )?,
            community,
            cursor_uses: Mutex::default(),
        })
    }

    async fn json(&self, call: &Call, r: Request) -> Result<Value, RecipeError> {
        self.http.send(call, &r).await?.json()
    }

    /// One of the lookup lists (activity types, communities, ...).
    pub async fn lookup(&self, call: &Call, what: Lookup) -> Result<Value, RecipeError> {
        let mut r = Request::new(Method::GET, what.path());
        if matches!(what, Lookup::FloorPlans | Lookup::PrivacyLevels)
            && let Some(c) = &self.community
        {
            r = r.query("filters[community_id]", c);
        }
        self.json(call, r).await
    }

    /// Events, newest filters first; `limit` ≤ 100.
    pub async fn events(&self, call: &Call, q: &Query) -> Result<Value, RecipeError> {
        check_limit(q.limit, 100)?;
        let mut r = Request::new(Method::GET, "/events").query("limit", q.limit.unwrap_or(10));
        if let Some(c) = &self.community {
            r = r.query("filters[community_id]", c);
        }
        if let Some(t) = &q.updated_after {
            r = r.query("filters[updated_at_after]", t);
        }
        self.json(call, r).await
    }

    /// Create an event (`{"name": ..., "start_time": ...}` as WelcomeHome takes it).
    pub async fn create_event(&self, call: &Call, event: &Value) -> Result<Value, RecipeError> {
        if !event.is_object() {
            return Err(RecipeError::invalid("event", "must be an object"));
        }
        self.json(
            call,
            Request::new(Method::POST, "/events").json(&json!({ "event": event })),
        )
        .await
    }

    /// Answer an event invite for a person (by id) or an email.
    pub async fn rsvp(
        &self,
        call: &Call,
        event_id: &str,
        person_id: Option<&str>,
        email: Option<&str>,
        status: &str,
    ) -> Result<Value, RecipeError> {
        if !RSVP_STATUSES.contains(&status) {
            return Err(RecipeError::invalid(
                "status",
                format!("'{status}' is not one of {}", RSVP_STATUSES.join(", ")),
            ));
        }
        let mut body = json!({ "status": status });
        match (person_id, email) {
            (Some(id), _) => {
                body["person_id"] = json!(numeric_id("person_id", id)?.parse::<u64>().unwrap_or(0))
            }
            (None, Some(e)) => body["email"] = json!(e),
            (None, None) => {
                return Err(RecipeError::invalid(
                    "email",
                    "a person id or an email is required",
                ));
            }
        }
        let path = format!("/events/{}/rsvps", numeric_id("event_id", event_id)?);
        self.json(
            call,
            Request::new(Method::POST, path).json(&body).idempotent(),
        )
        .await
    }

    /// Housing contracts, filtered like the API filters them (`filters[...]` keys).
    pub async fn housing_contracts(
        &self,
        call: &Call,
        filters: &[(&str, &str)],
        limit: Option<u32>,
    ) -> Result<Value, RecipeError> {
        check_limit(limit, 100)?;
        let mut r =
            Request::new(Method::GET, "/housing_contracts").query("limit", limit.unwrap_or(10));
        for (k, v) in filters {
            r = r.query(&format!("filters[{k}]"), v);
        }
        self.json(call, r).await
    }

    pub async fn influencer(&self, call: &Call, id: &str) -> Result<Value, RecipeError> {
        let path = format!("/influencers/{}", numeric_id("id", id)?);
        self.json(call, Request::new(Method::GET, path)).await
    }

    /// Update an influencer's birthdate, age, gender or address.
    pub async fn update_influencer(
        &self,
        call: &Call,
        id: &str,
        fields: &Value,
    ) -> Result<Value, RecipeError> {
        const ALLOWED: &[&str] = &["birthdate", "age", "gender", "address"];
        if let Some(k) = fields
            .as_object()
            .and_then(|m| m.keys().find(|k| !ALLOWED.contains(&k.as_str())))
        {
            return Err(RecipeError::invalid(
                format!("influencer.{k}"),
                "only birthdate, age, gender and address can be updated",
            ));
        }
        let path = format!("/influencers/{}", numeric_id("id", id)?);
        self.json(
            call,
            Request::new(Method::PUT, path).json(&json!({ "influencer": fields })),
        )
        .await
    }

    /// Count a use of an export cursor; wait (within the deadline) when it was used 3
    /// times in the last minute.
    async fn use_cursor(&self, call: &Call, cursor: &str) -> Result<(), RecipeError> {
        loop {
            let wait = {
                let mut uses = self.cursor_uses.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                uses.retain(|_, q| {
                    q.back()
                        .is_some_and(|t| now.duration_since(*t) < Duration::from_secs(60))
                });
                let q = uses.entry(cursor.to_string()).or_default();
                while q
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
                {
                    q.pop_front();
                }
                if q.len() < CURSOR_USES_PER_MINUTE {
                    q.push_back(now);
                    return Ok(());
                }
                Duration::from_secs(60) - now.duration_since(q[0])
            };
            if Instant::now() + wait > call.deadline {
                return Err(RecipeError::RateLimited {
                    retry_after_ms: Some(wait.as_millis() as u64),
                });
            }
            let _waiting = call.waiting();
            tokio::time::sleep(wait).await;
        }
    }

    async fn export_page(&self, call: &Call, r: Request) -> Result<ExportPage, RecipeError> {
        let response = self.http.send(call, &r).await?;
        let (columns, rows) = parse_csv(&response.body)?;
        let next = match response.header("link").and_then(next_link) {
            None => None,
            Some(url) => Some(self.relative(&url)?),
        };
        Ok(ExportPage {
            columns,
            rows,
            next,
        })
    }

    /// A `Link` URL as a cursor: its path and query under the base URL. A link elsewhere is
    /// refused rather than followed with our credentials.
    fn relative(&self, url: &str) -> Result<String, RecipeError> {
        let rest = url.strip_prefix(self.http.base_url()).or(Some(url));
        match rest {
            Some(r) if r.starts_with("/exports/") => Ok(r.to_string()),
            _ => Err(RecipeError::Upstream {
                status: 200,
                message: format!("welcomehome linked the next page outside its API: {url}"),
            }),
        }
    }
}

#[async_trait::async_trait]
impl Connector for WelcomeHome {
    fn vendor(&self) -> &str {
        "welcomehome"
    }

    async fn check(&self, call: &Call) -> Result<String, RecipeError> {
        let v = self.json(call, Request::new(Method::GET, "/ping")).await?;
        Ok(format!(
            "account {}",
            text(&v, "account_id").unwrap_or_else(|| "?".into())
        ))
    }

    async fn http(&self, call: &Call, request: HttpRequest) -> Result<HttpResponse, RecipeError> {
        raw_http(&self.http, call, request).await
    }

    /// A new prospect; the contact becomes its influencer (the person who called), and
    /// `raw` may carry `residents`, `influencers`, `community_id` and other prospect fields.
    async fn leads_create(&self, call: &Call, l: &Lead) -> Result<(Lead, bool), RecipeError> {
        let mut p = match &l.raw {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        if let Some(c) = &l.contact {
            let people = p.entry("influencers").or_insert_with(|| json!([]));
            if let Some(a) = people.as_array_mut() {
                a.insert(0, person(c));
            }
        }
        let named = ["residents", "influencers"].iter().any(|k| {
            p.get(*k).and_then(Value::as_array).is_some_and(|a| {
                a.iter()
                    .any(|x| text(x, "first_name").is_some() || text(x, "last_name").is_some())
            })
        });
        if !named {
            return Err(RecipeError::invalid(
                "contact",
                "a prospect needs a resident or influencer with a first or last name",
            ));
        }
        if let Some(n) = &l.notes {
            p.entry("notes").or_insert(json!(n));
        }
        if let Some(c) = &self.community {
            p.entry("community_id").or_insert(json!(c));
        }
        let r = Request::new(Method::POST, "/prospects").json(&json!({ "prospect": p }));
        Ok((lead_from_prospect(&self.json(call, r).await?), true))
    }

    async fn jobs_list(&self, call: &Call, q: &Query) -> Result<Page<Job>, RecipeError> {
        check_limit(q.limit, 100)?;
        let path = match &q.text {
            Some(prospect) => format!("/prospects/{}/activities", numeric_id("text", prospect)?),
            None => "/activities".to_string(),
        };
        let mut r = Request::new(Method::GET, path).query("limit", q.limit.unwrap_or(10));
        if let Some(t) = &q.updated_after {
            r = r.query("filters[updated_at_after]", t);
        }
        let v = self.json(call, r).await?;
        let list = v.get("activities").unwrap_or(&v);
        let items: Vec<Job> = list
            .as_array()
            .map(|a| a.iter().map(job_from_activity).collect())
            .unwrap_or_default();
        Ok(Page {
            total: Some(items.len() as u64),
            items,
            next: None,
        })
    }

    async fn jobs_create(&self, call: &Call, j: &Job) -> Result<Job, RecipeError> {
        let prospect = j.contact_id.as_deref().ok_or_else(|| {
            RecipeError::invalid("contact_id", "activities belong to a prospect id")
        })?;
        let path = format!(
            "/prospects/{}/activities",
            numeric_id("contact_id", prospect)?
        );
        let r = Request::new(Method::POST, path).json(&activity_body(j)?);
        Ok(job_from_activity(&self.json(call, r).await?))
    }

    async fn jobs_update(&self, call: &Call, id: &str, j: &Job) -> Result<Job, RecipeError> {
        let prospect = j.contact_id.as_deref().ok_or_else(|| {
            RecipeError::invalid("contact_id", "activities belong to a prospect id")
        })?;
        let path = format!(
            "/prospects/{}/activities/{}",
            numeric_id("contact_id", prospect)?,
            numeric_id("id", id)?
        );
        let r = Request::new(Method::PUT, path).json(&activity_body(j)?);
        Ok(job_from_activity(&self.json(call, r).await?))
    }

    async fn export_open(
        &self,
        call: &Call,
        req: &ExportRequest,
    ) -> Result<ExportPage, RecipeError> {
        if !EXPORT_TABLES.contains(&req.table.as_str()) {
            return Err(RecipeError::invalid(
                "table",
                format!("'{}' is not one of {}", req.table, EXPORT_TABLES.join(", ")),
            ));
        }
        if req.snapshot {
            let r = Request::new(
                Method::GET,
                format!("/exports/daily_snapshots/table/{}", req.table),
            )
            .query("direct", "true");
            return self.export_page(call, r).await;
        }
        check_limit(req.page_size, 10_000)?;
        let scope = req
            .scope
            .clone()
            .or_else(|| self.community.clone())
            .unwrap_or_else(|| "all".into());
        if scope != "all" {
            numeric_id("scope", &scope)?;
        }
        let mut r = Request::new(
            Method::GET,
            format!("/exports/community/{scope}/table/{}", req.table),
        )
        .query("sort_by", "updated_at");
        if let Some(n) = req.page_size {
            r = r.query("limit", n);
        }
        if let Some(t) = &req.updated_after {
            r = r.query("filters[updated_at_after]", t);
        }
        self.export_page(call, r).await
    }

    async fn export_next(&self, call: &Call, cursor: &str) -> Result<ExportPage, RecipeError> {
        if !cursor.starts_with("/exports/") || cursor.contains("..") || cursor.contains("://") {
            return Err(RecipeError::invalid(
                "cursor",
                "not a cursor this connection gave",
            ));
        }
        self.use_cursor(call, cursor).await?;
        let (path, query) = cursor.split_once('?').unwrap_or((cursor, ""));
        let mut r = Request::new(Method::GET, path);
        r.query = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        self.export_page(call, r).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers_and_csv() {
        assert_eq!(
            next_link(
                r#"<https://x/api/exports/community/all/table/Prospects?cursor=a%20b&limit=2>; rel="next""#
            ),
            Some("https://x/api/exports/community/all/table/Prospects?cursor=a%20b&limit=2".into())
        );
        assert_eq!(next_link(r#"<https://x/p?page=1>; rel="prev""#), None);
        let (cols, rows) = parse_csv(b"id,name\n1,\"Smith, Ann\"\n2,Bob\n").unwrap();
        assert_eq!(cols, ["id", "name"]);
        assert_eq!(rows[0], ["1", "Smith, Ann"]);
        let pairs = |q: &str| -> Vec<(String, String)> {
            form_urlencoded::parse(q.as_bytes()).into_owned().collect()
        };
        assert_eq!(
            pairs("cursor=a%20b+c%5B1%5D"),
            [("cursor".to_string(), "a b c[1]".to_string())]
        );
        // A cursor a recipe made up: a '%' before a multi-byte character decodes, never panics.
        assert_eq!(pairs("c=%a\u{e9}")[0].1, "%a\u{e9}");
    }
}
