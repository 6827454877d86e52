//! Jobs, visits and appointments (needs [`Capability::Jobs`](crate::Capability::Jobs) and
//! the connection).

use crate::Result;
use crate::bindings::switchboard::recipes::jobs as wit;
use crate::types::{Job, Query};

/// A job with every field unset, to fill with struct update syntax.
pub fn empty() -> Job {
    Job {
        id: None,
        contact_id: None,
        contact: None,
        title: None,
        description: None,
        status: None,
        category: None,
        start: None,
        end: None,
        duration_minutes: None,
        address: None,
        raw: None,
    }
}

pub use wit::JobPage;

/// List jobs matching a query.
pub fn list(connection: &str, query: &Query) -> Result<JobPage> {
    Ok(wit::list(connection, query)?)
}

/// Fetch a job by id.
pub fn get(connection: &str, id: &str) -> Result<Job> {
    Ok(wit::get(connection, id)?)
}

/// Create a job.
pub fn create(connection: &str, job: &Job) -> Result<Job> {
    Ok(wit::create(connection, job)?)
}

/// Update a job.
pub fn update(connection: &str, id: &str, job: &Job) -> Result<Job> {
    Ok(wit::update(connection, id, job)?)
}
