//! `lead-router`: a lead from a web form or a lead service (HomeAdvisor, Thumbtack, ...),
//! posted as a [`leads::WebLead`] to a signed webhook source (kind `lead.created`), goes to
//!
//! - PocketBoss (`pb`), as a lead with `externalId` = the lead's id;
//! - Homebase360 (`hb`), as a lead (Homebase360 finds the customer by mobile and merges);
//! - GoHighLevel (`ghl`): the contact upserted (matched by email, then phone) and tagged with
//!   the `tags` setting (default `["lead-router"]`) and the lead's source; tags are added,
//!   never replaced.
//!
//! Deliveries of one lead run one at a time, in the order they were accepted (the manifest
//! orders by `/id`). Each push is recorded in kv (`routed/<source>/<id>`) as soon as it
//! succeeds: a retry redoes only what failed, and the same lead delivered again is skipped. A
//! push whose outcome is unknown (Homebase360 may have recorded the lead; its answer was lost)
//! fails the run with the call unconfirmed, and is never pushed again by itself: a later
//! delivery of that lead fails too, naming the run to check. Housecall Pro's own
//! `lead.created` (another shape) is not routed.

use serde::{Deserialize, Serialize};
use switchboard_sdk::{leads::WebLead, prelude::*};

/// `[plugins.lead-router.settings]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    tags: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { tags: vec!["lead-router".into()] }
    }
}

/// What has been pushed for one lead: the vendors' ids.
#[derive(Serialize, Deserialize, Default)]
struct Routed {
    pocketboss: Option<String>,
    homebase360: Option<String>,
    gohighlevel: Option<String>,
}

struct LeadRouter;

impl Recipe for LeadRouter {
    fn manifest() -> Manifest {
        Manifest::new("lead-router", env!("CARGO_PKG_VERSION"))
            .description("Inbound lead -> PocketBoss lead, Homebase360 lead, tagged GHL contact")
            .on_webhook("*", "lead.created")
            .ordered_by("/id")
            .uses(Capability::Leads)
            .uses(Capability::Contacts)
            .uses(Capability::Kv)
            .connection("pb")
            .connection("hb")
            .connection("ghl")
    }

    fn handle(event: Event) -> Result<Outcome> {
        if event.source == "housecallpro" {
            return Ok(Outcome::skipped("Housecall Pro leads are not web leads"));
        }
        let s: Settings = settings::get()?;
        let web: WebLead = event.payload()?;
        let source = web.source.clone().unwrap_or(event.source.clone());
        let key = format!("routed/{source}/{}", web.id);
        let mut routed: Routed = kv::get(&key)?.unwrap_or_default();
        if routed.gohighlevel.is_some() {
            return Ok(Outcome::skipped(format!("lead {source}/{} was routed already", web.id)));
        }
        // One delivery routes a lead. Deliveries of a lead run one at a time (the ordering
        // key), so another delivery's claim means that run ended without routing it all.
        let claim = format!("claim/{source}/{}", web.id);
        if !kv::set_if_absent(&claim, &event.id)?
            && let Some(by) = kv::get::<String>(&claim)?.filter(|by| *by != event.id)
        {
            return Err(Error::other(format!(
                "lead {source}/{}: the run of event {by} did not finish routing it; replay that run",
                web.id
            )));
        }
        let lead = Lead { source: Some(source.clone()), ..web.lead() };
        if routed.pocketboss.is_none() {
            routed.pocketboss = leads::create("pb", &lead)?.lead.id;
            kv::set(&key, &routed)?;
        }
        if routed.homebase360.is_none() {
            // Homebase360 leads have one note: the service asked for, then the notes.
            let note = [web.service.clone(), web.notes.clone()].into_iter().flatten();
            let lead = Lead { notes: note.reduce(|a, b| format!("{a}: {b}")), raw: None, ..lead };
            routed.homebase360 = leads::create("hb", &lead)?.lead.id;
            kv::set(&key, &routed)?;
        }
        let contact = Contact { source: Some(source.clone()), ..web.contact() };
        let ghl = contacts::upsert("ghl", &contact)?.contact.id.unwrap_or_default();
        let tags: Vec<String> = s.tags.iter().cloned().chain([source.clone()]).collect();
        contacts::add_tags("ghl", &ghl, &tags)?;
        routed.gohighlevel = Some(ghl.clone());
        kv::set(&key, &routed)?;
        let (pb, hb) =
            (routed.pocketboss.unwrap_or_default(), routed.homebase360.unwrap_or_default());
        Ok(Outcome::done(format!(
            "lead {source}/{}: PocketBoss lead {pb}, Homebase360 lead {hb}, GHL contact {ghl} tagged {}",
            web.id,
            tags.join(", ")
        )))
    }
}

export_recipe!(LeadRouter, settings = Settings);
