//! `new-lead-sms`: every new lead gets one text through Homebase360 (connection `hb`).
//!
//! Leads come from a cron poll of Homebase360 leads with status `new` (texted ones move to
//! `first_contact`) and from a signed lead webhook (source `leads`, a [`leads::WebLead`]),
//! recorded as a Homebase360 lead first. Each customer is texted once (`kv::once`); quiet
//! hours and the 500-a-day cap defer the run: they never drop a lead.

use serde::Deserialize;
use switchboard_sdk::clock::{TimeZone, Window, after_ms};
use switchboard_sdk::{leads::WebLead, prelude::*};

/// `[plugins.new-lead-sms.settings]`: `template` (`{first_name}` is filled in),
/// `time_zone` (IANA, default UTC), `quiet_hours` (e.g. `"21:00-08:00"`, default none).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    template: Option<String>,
    time_zone: TimeZone,
    quiet_hours: Window,
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
        if let Some(end) = s.quiet_hours.end_if_inside(&s.time_zone)? {
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
                    let why = format!("Homebase360 rate limit or SMS cap ({texted} sent)");
                    return Ok(Outcome::deferred(after_ms(ms.unwrap_or(3_600_000)), why));
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

/// Text the lead's customer unless this recipe has; true if a text went out.
fn text(s: &Settings, lead: &Lead) -> Result<bool> {
    let (Some(id), Some(customer)) = (&lead.id, &lead.contact_id) else {
        return Err(Error::invalid("lead", "no id or customer id"));
    };
    let key = format!("texted/{customer}");
    let mut sent = false;
    if kv::get_raw(&key)?.is_none() {
        let name = contacts::get("hb", customer)?.first_name.unwrap_or("there".into());
        let template = s.template.as_deref().unwrap_or("Hi {first_name}, we will call you soon!");
        let sms = messages::sms(customer, template.replace("{first_name}", &name));
        sent = kv::once(&key, || messages::send("hb", &sms))?.is_some();
    }
    leads::update("hb", id, &Lead { status: Some("first_contact".into()), ..leads::empty() })?;
    Ok(sent)
}

export_recipe!(NewLeadSms, settings = Settings);
