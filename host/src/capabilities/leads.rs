//! `switchboard:recipes/leads`.

use crate::model::Capability::Leads;
use crate::runtime::bindings::switchboard::recipes::leads::{Host, LeadPage, Pushed};
use crate::runtime::bindings::types::{Error, Lead, Query};
use crate::runtime::state::RunState;

impl Host for RunState {
    async fn list(&mut self, connection: String, _query: Query) -> Result<LeadPage, Error> {
        self.not_served(Leads, &connection, "leads.list")
    }

    async fn get(&mut self, connection: String, _id: String) -> Result<Lead, Error> {
        self.not_served(Leads, &connection, "leads.get")
    }

    async fn create(&mut self, connection: String, _lead: Lead) -> Result<Pushed, Error> {
        self.not_served(Leads, &connection, "leads.create")
    }

    async fn update(
        &mut self,
        connection: String,
        _id: String,
        _lead: Lead,
    ) -> Result<Lead, Error> {
        self.not_served(Leads, &connection, "leads.update")
    }
}
