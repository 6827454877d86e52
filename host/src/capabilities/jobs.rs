//! `switchboard:recipes/jobs`.

use crate::model::Capability::Jobs;
use crate::runtime::bindings::switchboard::recipes::jobs::{Host, JobPage};
use crate::runtime::bindings::types::{Error, Job, Query};
use crate::runtime::state::RunState;

impl Host for RunState {
    async fn list(&mut self, connection: String, _query: Query) -> Result<JobPage, Error> {
        self.not_served(Jobs, &connection, "jobs.list")
    }

    async fn get(&mut self, connection: String, _id: String) -> Result<Job, Error> {
        self.not_served(Jobs, &connection, "jobs.get")
    }

    async fn create(&mut self, connection: String, _job: Job) -> Result<Job, Error> {
        self.not_served(Jobs, &connection, "jobs.create")
    }

    async fn update(&mut self, connection: String, _id: String, _job: Job) -> Result<Job, Error> {
        self.not_served(Jobs, &connection, "jobs.update")
    }
}
