//! `new-lead-sms`: every new lead gets one text through Homebase360 (connection `hb`).
//!
//! Leads come from a cron poll of Homebase360 leads with status `new` (texted ones move to
//! `first_contact`) and from a signed lead webhook (source `leads`, a [`leads::WebLead`]),
//! recorded as a Homebase360 lead first. Each customer is texted once (`kv::once`); quiet
//! hours and the 500-a-day cap defer the run: they never drop a lead. A lead moves to
//! `first_contact` only once its text is confirmed sent: one whose text may or may not have
//! gone out (the connection broke after sending, the host died mid-send) stays `new` and is
//! named as unconfirmed in the run's outcome, for someone to check.

use serde::Deserialize;
use switchboard_sdk::clock::{TimeZone, Window, after_ms};
use switchboard_sdk::{kv::Once, leads::WebLead, prelude::*};

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
        let leads = match event.source.as_str() {
            "cron" => new_leads()?,
            _ => vec![record(event.payload()?)?],
        };
        let (mut texted, mut unconfirmed) = (0, Vec::new());
        for lead in &leads {
            match text(&s, lead) {
                Ok(Texted::Sent) => texted += 1,
                Ok(Texted::Before) => {}
                Ok(Texted::Unconfirmed(why)) => {
                    let id = lead.id.clone().unwrap_or_default();
                    log::warn(&format!("lead {id}: text unconfirmed, left new: {why}"));
                    unconfirmed.push(id);
                }
                Err(Error::RateLimited(ms)) => {
                    let why = format!("Homebase360 rate limit or SMS cap ({texted} sent)");
                    return Ok(Outcome::deferred(after_ms(ms.unwrap_or(3_600_000)), why));
                }
                Err(e) if event.source == "cron" => log::warn(&format!("{:?}: {e}", lead.id)),
                Err(e) => return Err(e),
            }
        }
        let mut summary = format!("texted {texted} of {} leads", leads.len());
        if !unconfirmed.is_empty() {
            summary += &format!("; text unconfirmed, left new: {}", unconfirmed.join(", "));
        }
        Ok(Outcome::done(summary))
    }
}

/// What became of one lead's text.
enum Texted {
    Sent,
    /// Texted by an earlier run.
    Before,
    /// Maybe sent, maybe not: never resent by itself, and the lead stays `new`.
    Unconfirmed(String),
}

/// Every lead with status `new`, page by page (leads whose text is unconfirmed stay `new`, so
/// they never crowd out the others), at most 1,000 a poll.
fn new_leads() -> Result<Vec<Lead>> {
    let mut all = Vec::new();
    let mut cursor = None;
    for _ in 0..10 {
        let q = Query { status: Some("new".into()), limit: Some(100), cursor, ..query() };
        let page = leads::list("hb", &q)?;
        all.extend(page.leads);
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    Ok(all)
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

/// Text the lead's customer unless this recipe has, and once the text is confirmed, move the
/// lead to `first_contact`.
fn text(s: &Settings, lead: &Lead) -> Result<Texted> {
    let (Some(id), Some(customer)) = (&lead.id, &lead.contact_id) else {
        return Err(Error::invalid("lead", "no id or customer id"));
    };
    let key = format!("texted/{customer}");
    let texted = match kv::once_state(&key)? {
        // Done before: no need to look the customer up again.
        kv::OnceState::Done => Ok(Once::Before(None)),
        kv::OnceState::Held { by } => Ok(Once::Held { by }),
        kv::OnceState::Free | kv::OnceState::Mine => {
            let name = contacts::get("hb", customer)?.first_name.unwrap_or("there".into());
            let template =
                s.template.as_deref().unwrap_or("Hi {first_name}, we will call you soon!");
            let sms = messages::sms(customer, template.replace("{first_name}", &name));
            kv::once(&key, || messages::send("hb", &sms))
        }
    };
    let texted = match texted {
        Ok(Once::Done(_)) => Texted::Sent,
        Ok(Once::Before(_)) => Texted::Before,
        Ok(Once::Held { by }) => {
            let why = format!(
                "customer {customer} is claimed by the run of {by} (in flight, or unconfirmed)"
            );
            return Ok(Texted::Unconfirmed(why));
        }
        Err(Error::UnknownOutcome(why)) => return Ok(Texted::Unconfirmed(why)),
        Err(e) => return Err(e),
    };
    leads::update("hb", id, &Lead { status: Some("first_contact".into()), ..leads::empty() })?;
    Ok(texted)
}

export_recipe!(NewLeadSms, settings = Settings);
