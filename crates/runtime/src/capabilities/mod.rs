//! The host side of the WIT capability interfaces, one file per interface.
//!
//! Each call first checks the recipe's grants ([`RunState::check_grant`]), then converts the
//! WIT records to the host's own types and hands them to a vendor [`Connector`]. Vendor
//! operations not served yet answer `unsupported`.
//!
//! [`Connector`]: switchboard_vendors::Connector

mod clock;
mod contacts;
mod data_export;
mod effect;
mod jobs;
mod kv;
mod leads;
mod log;
mod messages;
mod settings;
mod vendor_http;

use crate::bindings::types::{Error as WitError, FieldError, UpstreamError};
use crate::state::RunState;
use std::sync::Arc;
use switchboard_model::{Capability, RecipeError};
use switchboard_vendors::Call;

pub use effect::RunEffects;

impl From<RecipeError> for WitError {
    fn from(e: RecipeError) -> Self {
        match e {
            RecipeError::NotFound { message } => WitError::NotFound(message),
            RecipeError::Invalid { field, reason } => {
                WitError::Invalid(FieldError { field, reason })
            }
            RecipeError::Unauthorized { message } => WitError::Unauthorized(message),
            RecipeError::Forbidden { message } => WitError::Forbidden(message),
            RecipeError::RateLimited { retry_after_ms } => WitError::RateLimited(retry_after_ms),
            RecipeError::Unsupported { message } => WitError::Unsupported(message),
            RecipeError::Upstream { status, message } => {
                WitError::Upstream(UpstreamError { status, message })
            }
            RecipeError::Timeout => WitError::Timeout,
            RecipeError::Denied { message } => WitError::Denied(message),
            RecipeError::UnknownOutcome { message } => WitError::UnknownOutcome(message),
            RecipeError::QuotaExceeded { message } => WitError::QuotaExceeded(message),
            RecipeError::Other { message } => WitError::Other(message),
        }
    }
}

impl From<WitError> for RecipeError {
    fn from(e: WitError) -> Self {
        match e {
            WitError::NotFound(message) => RecipeError::NotFound { message },
            WitError::Invalid(FieldError { field, reason }) => {
                RecipeError::Invalid { field, reason }
            }
            WitError::Unauthorized(message) => RecipeError::Unauthorized { message },
            WitError::Forbidden(message) => RecipeError::Forbidden { message },
            WitError::RateLimited(retry_after_ms) => RecipeError::RateLimited { retry_after_ms },
            WitError::Unsupported(message) => RecipeError::Unsupported { message },
            WitError::Upstream(UpstreamError { status, message }) => {
                RecipeError::Upstream { status, message }
            }
            WitError::Timeout => RecipeError::Timeout,
            WitError::Denied(message) => RecipeError::Denied { message },
            WitError::UnknownOutcome(message) => RecipeError::UnknownOutcome { message },
            WitError::QuotaExceeded(message) => RecipeError::QuotaExceeded { message },
            WitError::Other(message) => RecipeError::Other { message },
        }
    }
}

impl RunState {
    /// Check the grant for `operation` of `capability` through `connection`, find that
    /// connection, and give the call its deadline and its span (`host call`, under the run's).
    fn connector(
        &mut self,
        capability: Capability,
        operation: &'static str,
        connection: &str,
    ) -> Result<(Arc<dyn switchboard_vendors::Connector>, Call), RecipeError> {
        self.check_grant(capability, Some(connection))?;
        let name = self
            .grants
            .aliases
            .get(connection)
            .map_or(connection, String::as_str);
        let connector = self.connections.get(name)?.clone();
        // Under the run's span only (none when the run is not traced).
        let span = if tracing::Span::current().is_none() {
            tracing::Span::none()
        } else {
            tracing::info_span!(
                "host call",
                capability = capability.as_str(),
                operation,
                connection = name,
                vendor = connector.vendor(),
                status = tracing::field::Empty,
            )
        };
        Ok((
            connector,
            Call {
                deadline: self.deadline_at,
                waits: self.waits.clone(),
                span,
                log: Some(switchboard_vendors::CallLog {
                    operation: format!("{}.{operation}", capability.as_str()),
                    connection: name.to_string(),
                    calls: self.calls.clone(),
                }),
            },
        ))
    }
}

/// `types` has no functions; the linker still asks for its (empty) host trait.
impl crate::bindings::types::Host for RunState {}
