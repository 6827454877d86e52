//! Connections to vendor APIs, as the capability implementations see them.
//!
//! A [`Connector`] is one configured connection (e.g. `ghl` → GoHighLevel with its
//! credentials). It knows nothing of wasm: the capability layer checks grants and converts
//! WIT records before calling it. Typed operations that a connector does not serve answer
//! [`RecipeError::Unsupported`].

use crate::model::RecipeError;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A raw request through a connection; `path` is relative to the vendor's base URL.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

/// The vendor's answer to an [`HttpRequest`].
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// One configured connection to a vendor.
#[async_trait::async_trait]
pub trait Connector: Send + Sync + 'static {
    /// The vendor's name, e.g. `gohighlevel`.
    fn vendor(&self) -> &str;

    /// Send a raw request, with the connection's credentials, under the vendor's base URL.
    async fn http(&self, request: HttpRequest) -> Result<HttpResponse, RecipeError> {
        let _ = request;
        Err(RecipeError::Unsupported {
            message: format!("{} serves no raw requests", self.vendor()),
        })
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

    /// Connection names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }
}
