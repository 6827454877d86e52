//! `switchboard:recipes/vendor-http`: a raw request through a connection.
//!
//! The path is checked here so a request can never leave the vendor's base URL, and
//! headers that carry credentials cannot be set by the recipe.

use super::effect::{Took, typed};
use crate::bindings::switchboard::recipes::vendor_http::{Host, Request, Response};
use crate::bindings::types::Error;
use crate::state::RunState;
use switchboard_model::{Capability, RecipeError};
use switchboard_vendors::{HttpRequest, HttpResponse};

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "x-api-key",
    "api-key",
    "cookie",
    "host",
    "proxy-authorization",
    "content-length",
    "transfer-encoding",
];

/// What a raw answer says about its effect: any 2xx is one; a gateway's 502 or 504 may be one
/// (the request may have reached the vendor); another status is the vendor saying no.
fn raw(result: &Result<HttpResponse, RecipeError>) -> Took {
    match result {
        Ok(r) if (200..300).contains(&r.status) => Took::Effect,
        Ok(r) if matches!(r.status, 502 | 504) => Took::Unknown(format!(
            "the vendor's gateway answered {} after the request was sent: it may have taken effect",
            r.status
        )),
        Ok(_) => Took::Nothing,
        Err(_) => typed(result),
    }
}

/// Check a recipe's raw request; the answer names the field at fault.
pub fn validate(request: &HttpRequest) -> Result<(), RecipeError> {
    if !METHODS.contains(&request.method.as_str()) {
        return Err(RecipeError::invalid(
            "method",
            format!("'{}' is not one of {}", request.method, METHODS.join(", ")),
        ));
    }
    let path = &request.path;
    if !path.starts_with('/') {
        return Err(RecipeError::invalid("path", "must start with '/'"));
    }
    if path.contains("://") || path.starts_with("//") {
        return Err(RecipeError::invalid(
            "path",
            "must be a path under the vendor's base URL, not a URL",
        ));
    }
    if path.contains(['?', '#', '\\']) || path.chars().any(char::is_control) {
        return Err(RecipeError::invalid(
            "path",
            "must not contain '?', '#', '\\' or control characters; pass query parameters in `query`",
        ));
    }
    if path.split('/').any(|seg| {
        let decoded = seg.replace("%2e", ".").replace("%2E", ".");
        decoded == ".." || decoded == "."
    }) {
        return Err(RecipeError::invalid(
            "path",
            "must not contain '.' or '..' segments",
        ));
    }
    for (name, _) in &request.headers {
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(RecipeError::invalid(
                format!("headers.{name}"),
                "is set by the host and cannot be overridden",
            ));
        }
    }
    Ok(())
}

impl Host for RunState {
    async fn send(&mut self, connection: String, request: Request) -> Result<Response, Error> {
        let (connector, call) = self.connector(Capability::VendorHttp, "send", &connection)?;
        let request = HttpRequest {
            method: request.method.to_ascii_uppercase(),
            path: request.path,
            query: request.query,
            headers: request.headers,
            body: request.body,
        };
        validate(&request)?;
        // POST and PATCH are not idempotent: journaled, so a re-run never sends them twice.
        let response = if matches!(request.method.as_str(), "POST" | "PATCH") {
            let what = format!("vendor-http.send {}", request.method);
            let fingerprint = request.clone();
            let send = async { connector.http(&call, request).await };
            self.effect(&what, &connection, &fingerprint, raw, send)
                .await?
        } else {
            connector.http(&call, request).await?
        };
        Ok(Response {
            status: response.status,
            headers: response.headers,
            body: response.body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, path: &str) -> HttpRequest {
        HttpRequest {
            method: method.into(),
            path: path.into(),
            query: vec![],
            headers: vec![],
            body: None,
        }
    }

    fn field(r: Result<(), RecipeError>) -> String {
        match r {
            Err(RecipeError::Invalid { field, .. }) => field,
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn confines_requests_to_the_base_url() {
        assert!(validate(&req("GET", "/contacts/search")).is_ok());
        assert_eq!(field(validate(&req("TRACE", "/x"))), "method");
        assert_eq!(field(validate(&req("GET", "contacts"))), "path");
        assert_eq!(field(validate(&req("GET", "//evil.example/x"))), "path");
        assert_eq!(field(validate(&req("GET", "/a/../../admin"))), "path");
        assert_eq!(field(validate(&req("GET", "/a/%2e%2e/admin"))), "path");
        assert_eq!(field(validate(&req("GET", "/x?token=1"))), "path");
        let mut r = req("GET", "/x");
        r.headers
            .push(("Authorization".into(), "Bearer stolen".into()));
        assert_eq!(field(validate(&r)), "headers.Authorization");
    }
}
