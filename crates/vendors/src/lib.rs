//! Connections to vendor APIs, as the capability implementations see them. This crate
//! knows nothing of wasm: the runtime checks grants and converts WIT records before it
//! calls a [`Connector`].
//!
//! A [`Connector`] is one configured connection (e.g. `ghl` → GoHighLevel with its
//! credentials), one module per vendor. It knows nothing of wasm: the capability layer
//! checks grants and converts WIT records before calling it. Operations a vendor does not
//! offer answer [`RecipeError::Unsupported`].

mod fields;
pub mod gohighlevel;
pub mod homebase360;
pub mod housecallpro;
pub mod http;
pub mod pocketboss;
pub mod secrets;
pub mod welcomehome;

use crate::secrets::{SecretError, SecretSource};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use switchboard_model::run::MAX_VENDOR_CALLS;
use switchboard_model::{
    Contact, ExportPage, ExportRequest, Job, Lead, Message, Page, Query, RecipeError, VendorCall,
};

/// A quota the host counts for a connection, as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    /// What is counted, e.g. `sms_per_day`.
    pub name: &'static str,
    pub limit: u64,
    pub used: u64,
}

/// Counters that survive restarts, kept by the host's store: vendor quotas such as
/// Homebase360's 500 texts a day.
#[async_trait::async_trait]
pub trait Counters: Send + Sync {
    /// Take one unit of `key` if fewer than `limit` are taken, durably; whether it was.
    async fn try_take(&self, key: &str, limit: u64) -> Result<bool, RecipeError>;
    /// Return a unit taken for something that did not happen.
    async fn give_back(&self, key: &str) -> Result<(), RecipeError>;
    /// How many units of `key` are taken.
    async fn used(&self, key: &str) -> Result<u64, RecipeError>;
}

/// The context of one capability call: when the run must be done, and who to tell when it
/// waits on the network.
#[derive(Clone)]
pub struct Call {
    pub deadline: Instant,
    /// Told when the call starts and stops waiting on a vendor (the runtime does not count
    /// that time as the recipe's CPU time).
    pub waits: Option<Arc<dyn Waits>>,
    /// The capability call's span: its vendor requests are spans under it, and it records
    /// the last status a vendor answered.
    pub span: tracing::Span,
    /// Where each request it sends is written down for the run's record.
    pub log: Option<CallLog>,
}

impl Call {
    /// A call that must be done by `deadline`.
    pub fn until(deadline: Instant) -> Self {
        Call {
            deadline,
            waits: None,
            span: tracing::Span::none(),
            log: None,
        }
    }

    /// Note a wait on the network until the returned guard is dropped.
    pub fn waiting(&self) -> Waiting<'_> {
        if let Some(w) = &self.waits {
            w.begin();
        }
        Waiting {
            call: self,
            since: Instant::now(),
        }
    }
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// The vendor requests of one run, bounded: the first [`MAX_VENDOR_CALLS`] are kept, the
/// rest counted.
#[derive(Debug, Default)]
pub struct VendorCalls {
    pub calls: Vec<VendorCall>,
    pub dropped: u32,
}

/// A capability call's entry into its run's [`VendorCalls`].
#[derive(Clone)]
pub struct CallLog {
    /// `capability.operation`, e.g. `contacts.upsert`.
    pub operation: String,
    pub connection: String,
    pub calls: Arc<Mutex<VendorCalls>>,
}

impl CallLog {
    /// Write down one request: `status` when the vendor answered, else why not.
    pub(crate) fn request(
        &self,
        vendor: &str,
        method: &str,
        retry: u32,
        answer: Result<u16, &RecipeError>,
        took: std::time::Duration,
    ) {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        if calls.calls.len() >= MAX_VENDOR_CALLS {
            calls.dropped = calls.dropped.saturating_add(1);
            return;
        }
        // What went wrong, in words of our own: the error's text can name the request's
        // path and query, which a recipe chooses (personal data).
        let (status, error) = match answer {
            Ok(status) => (Some(status), None),
            Err(RecipeError::Timeout) => (None, Some("timed out".to_string())),
            Err(RecipeError::UnknownOutcome { .. }) => (
                None,
                Some("the connection broke after the request was sent".to_string()),
            ),
            Err(_) => (
                None,
                Some("no answer (connection failed or broke)".to_string()),
            ),
        };
        calls.calls.push(VendorCall {
            operation: self.operation.clone(),
            connection: self.connection.clone(),
            vendor: vendor.to_string(),
            method: method.to_string(),
            status,
            error,
            retry,
            duration_ms: took.as_millis().min(u64::MAX as u128) as u64,
        });
    }
}

/// Whoever wants to know when a call waits on the network.
pub trait Waits: Send + Sync {
    /// A wait begins.
    fn begin(&self);
    /// It ended, after `waited`.
    fn end(&self, waited: std::time::Duration);
}

/// A wait on the network, ended when dropped.
pub struct Waiting<'a> {
    call: &'a Call,
    since: Instant,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(w) = &self.call.waits {
            w.end(self.since.elapsed());
        }
    }
}

/// A raw request through a connection; `path` is relative to the vendor's base URL.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

/// The vendor's answer to an [`HttpRequest`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Kept as base64 where it is stored (the effect journal).
    #[serde(with = "base64_bytes")]
    pub body: Vec<u8>,
}

/// Bytes as base64 text in JSON, not an array of numbers.
mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

fn unsupported<T>(vendor: &str, operation: &str) -> Result<T, RecipeError> {
    Err(RecipeError::Unsupported {
        message: format!("{vendor} does not support {operation}"),
    })
}

/// One configured connection to a vendor. Every operation has a default that answers
/// `unsupported`; each vendor client overrides what its API serves.
#[async_trait::async_trait]
pub trait Connector: Send + Sync + 'static {
    /// The vendor's name, e.g. `gohighlevel`.
    fn vendor(&self) -> &str;

    /// Whether the vendor deduplicates `call` (e.g. `leads.create`) itself, so sending it
    /// twice is harmless: such calls are resent on a retry instead of being journaled.
    fn dedupes(&self, call: &str) -> bool {
        let _ = call;
        false
    }

    /// The quotas the host counts for this connection (Homebase360: texts a day).
    async fn quotas(&self) -> Result<Vec<Quota>, RecipeError> {
        Ok(Vec::new())
    }

    /// Call the vendor's cheapest authenticated endpoint; `Ok` says what answered.
    async fn check(&self, call: &Call) -> Result<String, RecipeError> {
        let _ = call;
        unsupported(self.vendor(), "a connection check")
    }

    /// Send a raw request, with the connection's credentials, under the vendor's base URL.
    async fn http(&self, call: &Call, request: HttpRequest) -> Result<HttpResponse, RecipeError> {
        let _ = (call, request);
        unsupported(self.vendor(), "raw requests")
    }

    async fn contacts_get(&self, call: &Call, id: &str) -> Result<Contact, RecipeError> {
        let _ = (call, id);
        unsupported(self.vendor(), "contacts.get")
    }

    async fn contacts_search(
        &self,
        call: &Call,
        query: &Query,
    ) -> Result<Page<Contact>, RecipeError> {
        let _ = (call, query);
        unsupported(self.vendor(), "contacts.search")
    }

    async fn contacts_create(
        &self,
        call: &Call,
        contact: &Contact,
    ) -> Result<Contact, RecipeError> {
        let _ = (call, contact);
        unsupported(self.vendor(), "contacts.create")
    }

    async fn contacts_update(
        &self,
        call: &Call,
        id: &str,
        contact: &Contact,
    ) -> Result<Contact, RecipeError> {
        let _ = (call, id, contact);
        unsupported(self.vendor(), "contacts.update")
    }

    /// Create or update; `true` when created.
    async fn contacts_upsert(
        &self,
        call: &Call,
        contact: &Contact,
    ) -> Result<(Contact, bool), RecipeError> {
        let _ = (call, contact);
        unsupported(self.vendor(), "contacts.upsert")
    }

    async fn contacts_delete(&self, call: &Call, id: &str) -> Result<(), RecipeError> {
        let _ = (call, id);
        unsupported(self.vendor(), "contacts.delete")
    }

    async fn contacts_add_tags(
        &self,
        call: &Call,
        id: &str,
        tags: &[String],
    ) -> Result<(), RecipeError> {
        let _ = (call, id, tags);
        unsupported(self.vendor(), "contacts.add-tags")
    }

    async fn contacts_remove_tags(
        &self,
        call: &Call,
        id: &str,
        tags: &[String],
    ) -> Result<(), RecipeError> {
        let _ = (call, id, tags);
        unsupported(self.vendor(), "contacts.remove-tags")
    }

    /// Add a note; returns its id.
    async fn contacts_add_note(
        &self,
        call: &Call,
        id: &str,
        body: &str,
    ) -> Result<String, RecipeError> {
        let _ = (call, id, body);
        unsupported(self.vendor(), "contacts.add-note")
    }

    async fn leads_list(&self, call: &Call, query: &Query) -> Result<Page<Lead>, RecipeError> {
        let _ = (call, query);
        unsupported(self.vendor(), "leads.list")
    }

    async fn leads_get(&self, call: &Call, id: &str) -> Result<Lead, RecipeError> {
        let _ = (call, id);
        unsupported(self.vendor(), "leads.get")
    }

    /// Create a lead; `false` when the vendor merged it into an existing one.
    async fn leads_create(&self, call: &Call, lead: &Lead) -> Result<(Lead, bool), RecipeError> {
        let _ = (call, lead);
        unsupported(self.vendor(), "leads.create")
    }

    async fn leads_update(&self, call: &Call, id: &str, lead: &Lead) -> Result<Lead, RecipeError> {
        let _ = (call, id, lead);
        unsupported(self.vendor(), "leads.update")
    }

    async fn jobs_list(&self, call: &Call, query: &Query) -> Result<Page<Job>, RecipeError> {
        let _ = (call, query);
        unsupported(self.vendor(), "jobs.list")
    }

    async fn jobs_get(&self, call: &Call, id: &str) -> Result<Job, RecipeError> {
        let _ = (call, id);
        unsupported(self.vendor(), "jobs.get")
    }

    async fn jobs_create(&self, call: &Call, job: &Job) -> Result<Job, RecipeError> {
        let _ = (call, job);
        unsupported(self.vendor(), "jobs.create")
    }

    async fn jobs_update(&self, call: &Call, id: &str, job: &Job) -> Result<Job, RecipeError> {
        let _ = (call, id, job);
        unsupported(self.vendor(), "jobs.update")
    }

    async fn messages_send(&self, call: &Call, message: &Message) -> Result<Message, RecipeError> {
        let _ = (call, message);
        unsupported(self.vendor(), "messages.send")
    }

    async fn messages_stats(&self, call: &Call) -> Result<serde_json::Value, RecipeError> {
        let _ = call;
        unsupported(self.vendor(), "messages.stats")
    }

    async fn export_open(
        &self,
        call: &Call,
        request: &ExportRequest,
    ) -> Result<ExportPage, RecipeError> {
        let _ = (call, request);
        unsupported(self.vendor(), "data-export.open")
    }

    async fn export_next(&self, call: &Call, cursor: &str) -> Result<ExportPage, RecipeError> {
        let _ = (call, cursor);
        unsupported(self.vendor(), "data-export.next-page")
    }
}

/// The configured connections, by name.
#[derive(Clone, Default)]
pub struct Connections {
    by_name: BTreeMap<String, Arc<dyn Connector>>,
}

impl Connections {
    /// Add or replace a connection.
    pub fn insert(&mut self, name: impl Into<String>, connector: Arc<dyn Connector>) {
        self.by_name.insert(name.into(), connector);
    }

    /// The connection called `name`.
    pub fn get(&self, name: &str) -> Result<&Arc<dyn Connector>, RecipeError> {
        self.by_name.get(name).ok_or_else(|| RecipeError::NotFound {
            message: format!("no connection named '{name}' is configured"),
        })
    }

    /// Connections, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Arc<dyn Connector>)> {
        self.by_name.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Build every connection of a config, counting vendor quotas in `counters`. Fails on
    /// the first one that cannot be built, naming it and the field at fault.
    pub fn from_config(
        sections: &BTreeMap<String, ConnectionConfig>,
        counters: &Arc<dyn Counters>,
    ) -> Result<Self, ConnectionError> {
        let mut connections = Connections::default();
        for (name, section) in sections {
            connections.insert(name.clone(), build(name, section, counters)?);
        }
        Ok(connections)
    }
}

/// The vendors Switchboard has clients for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Vendor {
    Gohighlevel,
    Housecallpro,
    Homebase360,
    Pocketboss,
    Welcomehome,
}

/// `[connections.<name>]` in the host config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    pub vendor: Vendor,
    /// The API key or token: `{ env = "VAR" }` or `{ file = "path" }`.
    pub secret: SecretSource,
    /// Override the vendor's base URL (e.g. the vendor sandbox).
    pub base_url: Option<String>,
    /// GoHighLevel: the location (sub-account) id.
    pub location_id: Option<String>,
    /// WelcomeHome: the community id lists and exports default to (all when unset).
    pub community_id: Option<String>,
    /// Housecall Pro: the company the API key must belong to (checked by `check`).
    pub company_id: Option<String>,
    /// Retries of idempotent requests on 429, 5xx and connection errors.
    pub max_retries: Option<u32>,
}

/// Why a connection could not be built. Never contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("connections.{name}.secret: {source}")]
    Secret {
        name: String,
        #[source]
        source: SecretError,
    },
    #[error("connections.{name}.{field}: {reason}")]
    Invalid {
        name: String,
        field: &'static str,
        reason: String,
    },
}

fn build(
    name: &str,
    c: &ConnectionConfig,
    counters: &Arc<dyn Counters>,
) -> Result<Arc<dyn Connector>, ConnectionError> {
    let secret = c.secret.load().map_err(|source| ConnectionError::Secret {
        name: name.into(),
        source,
    })?;
    if let Some(url) = &c.base_url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        return Err(ConnectionError::Invalid {
            name: name.into(),
            field: "base_url",
            reason: format!("'{url}' is not an http(s) URL"),
        });
    }
    let mut retry = http::RetryPolicy::default();
    if let Some(n) = c.max_retries {
        retry.max_retries = n;
    }
    let invalid = |field, reason: String| ConnectionError::Invalid {
        name: name.into(),
        field,
        reason,
    };
    match c.vendor {
        Vendor::Gohighlevel => {
            let location = c
                .location_id
                .clone()
                .ok_or_else(|| invalid("location_id", "required for gohighlevel".into()))?;
            Ok(Arc::new(
                gohighlevel::GoHighLevel::new(c.base_url.as_deref(), &secret, location, retry)
                    .map_err(|e| invalid("secret", e.to_string()))?,
            ))
        }
        Vendor::Housecallpro => Ok(Arc::new(
            housecallpro::HousecallPro::new(
                c.base_url.as_deref(),
                &secret,
                c.company_id.clone(),
                retry,
            )
            .map_err(|e| invalid("secret", e.to_string()))?,
        )),
        Vendor::Homebase360 => Ok(Arc::new(
            homebase360::Homebase360::new(
                name,
                c.base_url.as_deref(),
                &secret,
                retry,
                counters.clone(),
            )
            .map_err(|e| invalid("secret", e.to_string()))?,
        )),
        Vendor::Pocketboss => Ok(Arc::new(
            pocketboss::PocketBoss::new(c.base_url.as_deref(), &secret, retry)
                .map_err(|e| invalid("secret", e.to_string()))?,
        )),
        Vendor::Welcomehome => Ok(Arc::new(
            welcomehome::WelcomeHome::new(
                c.base_url.as_deref(),
                &secret,
                c.community_id.clone(),
                retry,
            )
            .map_err(|e| invalid("secret", e.to_string()))?,
        )),
    }
}

/// The raw-request half of [`Connector::http`] shared by every HTTP vendor client.
pub(crate) async fn raw_http(
    client: &http::VendorHttp,
    call: &Call,
    request: HttpRequest,
) -> Result<HttpResponse, RecipeError> {
    let method = reqwest::Method::from_bytes(request.method.as_bytes())
        .map_err(|_| RecipeError::invalid("method", "not an HTTP method"))?;
    let mut r = http::Request::new(method, request.path);
    r.query = request.query;
    r.headers = request.headers;
    r.body = request.body;
    let response = client.send_raw(call, &r).await?;
    Ok(HttpResponse {
        status: response.status,
        headers: response.headers,
        body: response.body,
    })
}
