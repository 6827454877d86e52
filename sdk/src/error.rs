//! The error recipes and capabilities report.

use crate::bindings::switchboard::recipes::types as wit;
use std::fmt;

/// What went wrong, precisely enough for the host to decide whether to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The record does not exist.
    NotFound(String),
    /// A field was missing or malformed.
    Invalid {
        /// The field at fault, e.g. `payload.customer.email`.
        field: String,
        /// Why it was refused.
        reason: String,
    },
    /// The connection's credentials were refused.
    Unauthorized(String),
    /// The credentials lack a permission.
    Forbidden(String),
    /// Too many requests; retry after this many milliseconds, if known.
    RateLimited(Option<u64>),
    /// The vendor cannot do that.
    Unsupported(String),
    /// The vendor failed with this HTTP status and message.
    Upstream {
        /// The HTTP status.
        status: u16,
        /// The vendor's message.
        message: String,
    },
    /// The run's deadline passed.
    Timeout,
    /// The recipe did not declare this capability or connection.
    Denied(String),
    /// The request may have reached the vendor, and whether it took effect is unknown (the
    /// connection broke or timed out after sending, or an earlier attempt of this run sent it
    /// and never learned the answer). The host never sends such a request again by itself:
    /// treat the effect as possibly done, record that, and do not act as if it failed (or
    /// as if it succeeded). The run's record shows the call as unconfirmed.
    UnknownOutcome(String),
    /// A quota ran out (the recipe's kv keys or bytes); the message names the numbers.
    QuotaExceeded(String),
    /// Anything else.
    Other(String),
}

/// `Result` with the SDK's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A field that failed validation.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Any other failure, with a message.
    pub fn other(message: impl Into<String>) -> Self {
        Error::Other(message.into())
    }

    /// Whether the error proves the request took no effect: it was refused before it left
    /// the host, or the vendor answered that it did not do it. False for
    /// [`Error::UnknownOutcome`], [`Error::Timeout`] (it may have been sent) and
    /// [`Error::Other`].
    pub fn took_no_effect(&self) -> bool {
        !matches!(
            self,
            Error::UnknownOutcome(_) | Error::Timeout | Error::Other(_)
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound(m) => write!(f, "not found: {m}"),
            Error::Invalid { field, reason } => write!(f, "invalid {field}: {reason}"),
            Error::Unauthorized(m) => write!(f, "unauthorized: {m}"),
            Error::Forbidden(m) => write!(f, "forbidden: {m}"),
            Error::RateLimited(Some(ms)) => write!(f, "rate limited, retry after {ms} ms"),
            Error::RateLimited(None) => write!(f, "rate limited"),
            Error::Unsupported(m) => write!(f, "unsupported: {m}"),
            Error::Upstream { status, message } => {
                write!(f, "upstream answered {status}: {message}")
            }
            Error::Timeout => write!(f, "timed out"),
            Error::Denied(m) => write!(f, "denied: {m}"),
            Error::UnknownOutcome(m) => write!(f, "unknown outcome: {m}"),
            Error::QuotaExceeded(m) => write!(f, "quota exceeded: {m}"),
            Error::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::invalid("json", e.to_string())
    }
}

impl From<wit::Error> for Error {
    fn from(e: wit::Error) -> Self {
        match e {
            wit::Error::NotFound(m) => Error::NotFound(m),
            wit::Error::Invalid(f) => Error::Invalid {
                field: f.field,
                reason: f.reason,
            },
            wit::Error::Unauthorized(m) => Error::Unauthorized(m),
            wit::Error::Forbidden(m) => Error::Forbidden(m),
            wit::Error::RateLimited(ms) => Error::RateLimited(ms),
            wit::Error::Unsupported(m) => Error::Unsupported(m),
            wit::Error::Upstream(u) => Error::Upstream {
                status: u.status,
                message: u.message,
            },
            wit::Error::Timeout => Error::Timeout,
            wit::Error::Denied(m) => Error::Denied(m),
            wit::Error::UnknownOutcome(m) => Error::UnknownOutcome(m),
            wit::Error::QuotaExceeded(m) => Error::QuotaExceeded(m),
            wit::Error::Other(m) => Error::Other(m),
        }
    }
}

impl From<Error> for wit::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound(m) => wit::Error::NotFound(m),
            Error::Invalid { field, reason } => {
                wit::Error::Invalid(wit::FieldError { field, reason })
            }
            Error::Unauthorized(m) => wit::Error::Unauthorized(m),
            Error::Forbidden(m) => wit::Error::Forbidden(m),
            Error::RateLimited(ms) => wit::Error::RateLimited(ms),
            Error::Unsupported(m) => wit::Error::Unsupported(m),
            Error::Upstream { status, message } => {
                wit::Error::Upstream(wit::UpstreamError { status, message })
            }
            Error::Timeout => wit::Error::Timeout,
            Error::Denied(m) => wit::Error::Denied(m),
            Error::UnknownOutcome(m) => wit::Error::UnknownOutcome(m),
            Error::QuotaExceeded(m) => wit::Error::QuotaExceeded(m),
            Error::Other(m) => wit::Error::Other(m),
        }
    }
}
