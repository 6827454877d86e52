//! `switchboard:recipes/jobs`.

use super::contacts::{
    address_from_wit, address_to_wit, contact_from_wit, contact_to_wit, query_from_wit, raw_to_json,
};
use super::effect::typed;
use crate::bindings::switchboard::recipes::jobs::{Host, JobPage};
use crate::bindings::types::{Error, Job, Query};
use crate::state::RunState;
use switchboard_model::{self as model, Capability::Jobs, RecipeError};

fn job_from_wit(j: Job) -> Result<model::Job, RecipeError> {
    Ok(model::Job {
        id: j.id,
        contact_id: j.contact_id,
        contact: j.contact.map(contact_from_wit).transpose()?,
        title: j.title,
        description: j.description,
        status: j.status,
        category: j.category,
        start: j.start,
        end: j.end,
        duration_minutes: j.duration_minutes,
        address: j.address.map(address_from_wit),
        raw: raw_to_json(j.raw, "job.raw")?,
    })
}

fn job_to_wit(j: model::Job) -> Job {
    Job {
        id: j.id,
        contact_id: j.contact_id,
        contact: j.contact.map(contact_to_wit),
        title: j.title,
        description: j.description,
        status: j.status,
        category: j.category,
        start: j.start,
        end: j.end,
        duration_minutes: j.duration_minutes,
        address: j.address.map(address_to_wit),
        raw: j.raw.map(|r| r.to_string()),
    }
}

impl Host for RunState {
    async fn list(&mut self, connection: String, query: Query) -> Result<JobPage, Error> {
        let (c, call) = self.connector(Jobs, "list", &connection)?;
        let page = c.jobs_list(&call, &query_from_wit(query)).await?;
        Ok(JobPage {
            jobs: page.items.into_iter().map(job_to_wit).collect(),
            next: page.next,
            total: page.total,
        })
    }

    async fn get(&mut self, connection: String, id: String) -> Result<Job, Error> {
        let (c, call) = self.connector(Jobs, "get", &connection)?;
        Ok(job_to_wit(c.jobs_get(&call, &id).await?))
    }

    async fn create(&mut self, connection: String, job: Job) -> Result<Job, Error> {
        let (c, call) = self.connector(Jobs, "create", &connection)?;
        let job = job_from_wit(job)?;
        let send = async { c.jobs_create(&call, &job).await };
        let created = if c.dedupes("jobs.create") {
            send.await?
        } else {
            self.effect("jobs.create", &connection, &job, typed, send)
                .await?
        };
        Ok(job_to_wit(created))
    }

    async fn update(&mut self, connection: String, id: String, job: Job) -> Result<Job, Error> {
        let (c, call) = self.connector(Jobs, "update", &connection)?;
        Ok(job_to_wit(
            c.jobs_update(&call, &id, &job_from_wit(job)?).await?,
        ))
    }
}
