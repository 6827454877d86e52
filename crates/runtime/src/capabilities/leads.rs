//! `switchboard:recipes/leads`.

use super::contacts::{contact_from_wit, contact_to_wit, query_from_wit, raw_to_json};
use super::effect::typed;
use crate::bindings::switchboard::recipes::leads::{Host, LeadPage, Pushed};
use crate::bindings::types::{Error, Lead, Query};
use crate::state::RunState;
use switchboard_model::{self as model, Capability::Leads, RecipeError};

fn lead_from_wit(l: Lead) -> Result<model::Lead, RecipeError> {
    Ok(model::Lead {
        id: l.id,
        contact_id: l.contact_id,
        contact: l.contact.map(contact_from_wit).transpose()?,
        status: l.status,
        source: l.source,
        external_id: l.external_id,
        notes: l.notes,
        created_at: l.created_at,
        updated_at: l.updated_at,
        raw: raw_to_json(l.raw, "lead.raw")?,
    })
}

fn lead_to_wit(l: model::Lead) -> Lead {
    Lead {
        id: l.id,
        contact_id: l.contact_id,
        contact: l.contact.map(contact_to_wit),
        status: l.status,
        source: l.source,
        external_id: l.external_id,
        notes: l.notes,
        created_at: l.created_at,
        updated_at: l.updated_at,
        raw: l.raw.map(|r| r.to_string()),
    }
}

impl Host for RunState {
    async fn list(&mut self, connection: String, query: Query) -> Result<LeadPage, Error> {
        let (c, call) = self.connector(Leads, "list", &connection)?;
        let page = c.leads_list(&call, &query_from_wit(query)).await?;
        Ok(LeadPage {
            leads: page.items.into_iter().map(lead_to_wit).collect(),
            next: page.next,
            total: page.total,
        })
    }

    async fn get(&mut self, connection: String, id: String) -> Result<Lead, Error> {
        let (c, call) = self.connector(Leads, "get", &connection)?;
        Ok(lead_to_wit(c.leads_get(&call, &id).await?))
    }

    async fn create(&mut self, connection: String, lead: Lead) -> Result<Pushed, Error> {
        let (c, call) = self.connector(Leads, "create", &connection)?;
        let lead = lead_from_wit(lead)?;
        let send = async { c.leads_create(&call, &lead).await };
        let (lead, created) = if c.dedupes("leads.create") {
            send.await?
        } else {
            self.effect("leads.create", &connection, &lead, typed, send)
                .await?
        };
        Ok(Pushed {
            lead: lead_to_wit(lead),
            created,
        })
    }

    async fn update(&mut self, connection: String, id: String, lead: Lead) -> Result<Lead, Error> {
        let (c, call) = self.connector(Leads, "update", &connection)?;
        Ok(lead_to_wit(
            c.leads_update(&call, &id, &lead_from_wit(lead)?).await?,
        ))
    }
}
