//! `new-lead-sms`: every new lead gets one text through Homebase360 (connection `hb`).
//!
//! Leads come from a cron poll of Homebase360 leads with status `new` (texted ones move to
//! `first_contact`) and from a signed lead webhook (source `leads`, a [`leads::WebLead`]),
//! recorded as a Homebase360 lead first (Homebase360 finds the customer by phone).
//! Each customer gets one text: claimed in kv right before it goes out (so a crash at that very
//! instant costs the text, never doubles it); quiet hours and the 500-a-day cap defer the
//! run: they never drop a lead.

use serde::Deserialize;
use switchboard_sdk::clock::{TimeZone, Window, after_ms};
use switchboard_sdk::{leads::WebLead, prelude::*};

/// `[plugins.new-lead-sms.settings]`: `template` (`{first_name}` is filled in),
/// `time_zone` (IANA, default UTC), `quiet_hours` (e.g. `"21:00-08:00"`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    template: Option<String>,
    time_zone: TimeZone,
    quiet_hours: Option<Window>,
}

struct NewLeadSms;

impl Recipe for NewLeadSms {
    fn manifest() -> Manifest {
        Manifest::new("new-lead-sms", env!("CARGO_PKG_VERSION"))
            .description("A new lead gets a text through Homebase360, once, outside quiet hours")
            .on_cron("0 */5 * * * *")
            .on_webhook("leads", "*")
            .uses(Capability::Leads)
            .uses(Capability::Contacts)
            .uses(Capability::Messages)
            .uses(Capability::Kv)
            .connection("hb")
    }

    fn handle(event: Event) -> Result<Outcome> {
        let s: Settings = settings::get()?;
        if let Some(end) =
            s.quiet_hours.map(|q| q.end_if_inside(&s.time_zone)).transpose()?.flatten()
        {
            return Ok(Outcome::deferred(end, "quiet hours"));
        }
        let new = Query { status: Some("new".into()), limit: Some(100), ..query() };
        let leads = match event.source.as_str() {
            "cron" => leads::list("hb", &new)?.leads,
            _ => vec![record(event.payload()?)?],
        };
        let mut texted = 0;
        for lead in &leads {
            match text(&s, lead) {
                Ok(sent) => texted += u32::from(sent),
                Err(Error::RateLimited(ms)) => {
                    let until = after_ms(ms.unwrap_or(3_600_000));
                    let why = format!("Homebase360 rate limit or SMS cap ({texted} sent)");
                    return Ok(Outcome::deferred(until, why));
                }
                Err(e) if event.source == "cron" => log::warn(&format!("{:?}: {e}", lead.id)),
                Err(e) => return Err(e),
            }
        }
        Ok(Outcome::done(format!("texted {texted} of {} leads", leads.len())))
    }
}

/// Record a web lead in Homebase360, once per lead id.
fn record(web: WebLead) -> Result<Lead> {
    let key = format!("web/{}", web.id);
    if let Some(id) = kv::get::<String>(&key)? {
        return leads::get("hb", &id);
    }
    let lead = leads::create("hb", &web.lead())?.lead;
    kv::set(&key, &lead.id)?;
    Ok(lead)
}

/// Text the lead's customer unless this recipe already has; true if a text went out.
fn text(s: &Settings, lead: &Lead) -> Result<bool> {
    let (Some(id), Some(customer)) = (&lead.id, &lead.contact_id) else {
        return Err(Error::invalid("lead", "no id or customer id"));
    };
    let claim = format!("texted/{customer}");
    let fresh = kv::get_raw(&claim)?.is_none();
    if fresh {
        let name = contacts::get("hb", customer)?.first_name.unwrap_or("there".into());
        let template = s.template.as_deref().unwrap_or("Hi {first_name}, we will call you soon!");
        let sms = messages::sms(customer, template.replace("{first_name}", &name));
        // Claimed right before the send: a concurrent run that lost the claim texts nobody.
        if !kv::set_if_absent_raw(&claim, b"")? {
            return Ok(false);
        }
        if let Err(e) = messages::send("hb", &sms) {
            kv::delete(&claim)?;
            return Err(e);
        }
    }
    leads::update("hb", id, &Lead { status: Some("first_contact".into()), ..leads::empty() })?;
    Ok(fresh)
}

export_recipe!(NewLeadSms, settings = Settings);
