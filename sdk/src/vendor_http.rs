//! Raw requests through a connection, for endpoints the typed interfaces do not cover
//! (needs [`Capability::VendorHttp`](crate::Capability::VendorHttp) and the connection).
//!
//! The host adds the credentials and keeps the request under the vendor's base URL.
//!
//! ```no_run
//! use switchboard_sdk::{vendor_http, Result};
//! # fn f() -> Result<()> {
//! let res = vendor_http::get("ghl", "/contacts/business/b1")?;
//! let body: serde_json::Value = res.json()?;
//! # let _ = body; Ok(()) }
//! ```

use crate::Result;
use crate::bindings::switchboard::recipes::vendor_http as wit;

pub use wit::{Request, Response};

/// Send a request through `connection`. Any HTTP status is `Ok`.
pub fn send(connection: &str, request: &Request) -> Result<Response> {
    Ok(wit::send(connection, request)?)
}

/// `GET path` through `connection`.
pub fn get(connection: &str, path: &str) -> Result<Response> {
    send(
        connection,
        &Request {
            method: "GET".into(),
            path: path.into(),
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
        },
    )
}

/// `method path` with a JSON body through `connection`.
pub fn json<T: serde::Serialize + ?Sized>(
    connection: &str,
    method: &str,
    path: &str,
    body: &T,
) -> Result<Response> {
    send(
        connection,
        &Request {
            method: method.into(),
            path: path.into(),
            query: Vec::new(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: Some(serde_json::to_vec(body)?),
        },
    )
}

impl Response {
    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        Ok(serde_json::from_slice(&self.body)?)
    }
}
