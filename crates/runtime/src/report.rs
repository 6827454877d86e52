//! What a run reports.

use serde::Serialize;
pub use switchboard_model::RunError;
use switchboard_model::{LogLine, Outcome, Unconfirmed, VendorCall};

/// What one run of one recipe on one event did.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub recipe: String,
    pub event_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
    pub logs: Vec<LogLine>,
    /// Log lines dropped past the run's log limits.
    #[serde(skip_serializing_if = "is_zero")]
    pub logs_dropped: usize,
    /// Calls that may have changed a vendor, whose outcome this run does not know.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unconfirmed: Vec<Unconfirmed>,
    /// The requests it sent to vendors (the first [`switchboard_model::run::MAX_VENDOR_CALLS`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<VendorCall>,
    /// Requests past that, not listed.
    #[serde(skip_serializing_if = "is_zero")]
    pub calls_dropped: u32,
    pub duration_us: u64,
}

fn is_zero<T: Default + PartialEq>(n: &T) -> bool {
    *n == T::default()
}

impl RunReport {
    /// The outcome, or the error.
    pub fn result(&self) -> Result<&Outcome, &RunError> {
        match (&self.outcome, &self.error) {
            (Some(o), _) => Ok(o),
            (None, Some(e)) => Err(e),
            (None, None) => unreachable!("a run report has an outcome or an error"),
        }
    }
}
