//! Bulk CSV exports, page by page (needs
//! [`Capability::DataExport`](crate::Capability::DataExport) and the connection).
//!
//! A page's `next` cursor is plain text: keep it in [`kv`](crate::kv) and a recipe resumes
//! where it stopped.

use crate::Result;
use crate::bindings::switchboard::recipes::data_export as wit;

pub use wit::{ExportPage, ExportRequest};

/// Start an export and read its first page.
pub fn open(connection: &str, request: &ExportRequest) -> Result<ExportPage> {
    Ok(wit::open(connection, request)?)
}

/// Read the page a cursor points at.
pub fn next_page(connection: &str, cursor: &str) -> Result<ExportPage> {
    Ok(wit::next_page(connection, cursor)?)
}
