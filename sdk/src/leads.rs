//! Sales leads (needs [`Capability::Leads`](crate::Capability::Leads) and the connection).

use crate::Result;
use crate::bindings::switchboard::recipes::leads as wit;
use crate::types::{Lead, Query};

pub use wit::{LeadPage, Pushed};

/// List leads matching a query.
pub fn list(connection: &str, query: &Query) -> Result<LeadPage> {
    Ok(wit::list(connection, query)?)
}

/// Fetch a lead by id.
pub fn get(connection: &str, id: &str) -> Result<Lead> {
    Ok(wit::get(connection, id)?)
}

/// Create a lead; vendors that dedupe merge it into an existing one instead.
pub fn create(connection: &str, lead: &Lead) -> Result<Pushed> {
    Ok(wit::create(connection, lead)?)
}

/// Update a lead.
pub fn update(connection: &str, id: &str, lead: &Lead) -> Result<Lead> {
    Ok(wit::update(connection, id, lead)?)
}
