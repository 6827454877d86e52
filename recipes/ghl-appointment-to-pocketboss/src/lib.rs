//! `ghl-appointment-to-pocketboss`: a GoHighLevel appointment (`AppointmentCreate`,
//! `AppointmentUpdate`) becomes a PocketBoss appointment, and a Homebase360 job when the
//! person is a Homebase360 customer (found by phone, then email).
//!
//! - PocketBoss gets the contact (read from GoHighLevel), title, start, duration (end − start,
//!   or `default_duration_minutes`), category, address, notes, `externalId` = the GHL id.
//!   PocketBoss cannot update appointments, so each GHL appointment is pushed there once.
//! - An update moves the Homebase360 job, or creates it once the customer exists there.
//! - Runs of one appointment run one at a time, in the order GoHighLevel's deliveries were
//!   accepted (the manifest orders by `/appointment/id`). kv `appt/<GHL id>` keeps what was
//!   pushed; a delivery older (`dateUpdated`) than the state synced is skipped.
//!
//! Connections `ghl`, `pb`, `hb`. Settings: `categories` (a GHL calendar id, or a word of the
//! title → Maintenance, Repair, Consultation, Installation, Service, Remodeling or Projects;
//! replaces the default words), `default_category` (`Service`), `default_duration_minutes` (60).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use switchboard_sdk::prelude::*;
use switchboard_sdk::serde_json::json;

/// `[plugins.ghl-appointment-to-pocketboss.settings]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    categories: BTreeMap<String, Category>,
    default_category: Category,
    default_duration_minutes: u32,
}

/// PocketBoss' appointment categories; a setting naming another is refused at load.
#[derive(Deserialize, Clone, Copy, Debug)]
enum Category {
    Maintenance,
    Repair,
    Consultation,
    Installation,
    Service,
    Remodeling,
    Projects,
}

impl Default for Settings {
    fn default() -> Self {
        use Category::*;
        let words = [
            ("maintenance", Maintenance),
            ("tune-up", Maintenance),
            ("repair", Repair),
            ("estimate", Consultation),
            ("quote", Consultation),
            ("install", Installation),
            ("remodel", Remodeling),
        ];
        let categories = words.map(|(w, c)| (w.to_string(), c)).into();
        Settings { categories, default_category: Service, default_duration_minutes: 60 }
    }
}

#[derive(Deserialize)]
struct Hook {
    appointment: Appointment,
}

/// The fields of a GHL appointment this recipe uses.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Appointment {
    id: String,
    contact_id: String,
    title: Option<String>,
    calendar_id: Option<String>,
    address: Option<String>,
    notes: Option<String>,
    start_time: String,
    end_time: Option<String>,
    date_updated: Option<String>,
}

/// What was pushed for one GHL appointment, with the times (`start/end`) each vendor has.
#[derive(Serialize, Deserialize, Default)]
struct Pushed {
    pocketboss: Option<String>,
    pocketboss_time: String,
    homebase360: Option<String>,
    homebase360_time: String,
    /// The newest `dateUpdated` synced, in seconds since 1970.
    updated: Option<i64>,
}

struct GhlAppointmentToPocketBoss;

impl Recipe for GhlAppointmentToPocketBoss {
    fn manifest() -> Manifest {
        Manifest::new("ghl-appointment-to-pocketboss", env!("CARGO_PKG_VERSION"))
            .description("GHL appointment -> PocketBoss appointment, Homebase360 job")
            .on_webhook("gohighlevel", "AppointmentCreate")
            .on_webhook("gohighlevel", "AppointmentUpdate")
            .ordered_by("/appointment/id")
            .uses(Capability::Contacts)
            .uses(Capability::Jobs)
            .uses(Capability::Kv)
            .connection("ghl")
            .connection("pb")
            .connection("hb")
    }

    fn handle(event: Event) -> Result<Outcome> {
        let s: Settings = settings::get()?;
        let a = event.payload::<Hook>()?.appointment;
        let key = format!("appt/{}", a.id);
        let mut pushed: Pushed = kv::get(&key)?.unwrap_or_default();
        // Webhooks may arrive out of order: never let an older state undo a newer one.
        let updated = a.date_updated.as_deref().and_then(clock::unix_seconds);
        if updated.zip(pushed.updated).is_some_and(|(this, seen)| this < seen) {
            let why = format!("GHL appointment {}: older than the state synced", a.id);
            return Ok(Outcome::skipped(why));
        }
        let job = job(&s, &a)?;
        let time = format!("{}/{}", a.start_time, job.end.as_deref().unwrap_or_default());
        let contact = contacts::get("ghl", &a.contact_id)?;
        let mut said = Vec::new();
        let mut acted = false;

        match &pushed.pocketboss {
            None => {
                let category = category(&s, &a);
                let address =
                    a.address.clone().map(|street| Address { street: Some(street), ..address() });
                let appointment = Job {
                    contact: Some(contact.clone()),
                    category: Some(format!("{category:?}")),
                    address,
                    raw: Some(json!({ "externalId": a.id }).to_string()),
                    ..job.clone()
                };
                let created = create_once("pb", &a.id, &appointment)?;
                let (id, minutes) =
                    (created.id.unwrap_or_default(), job.duration_minutes.unwrap_or(0));
                said.push(format!(
                    "PocketBoss appointment {id} created ({category:?}, {minutes} min)"
                ));
                (pushed.pocketboss, pushed.pocketboss_time) = (Some(id), time.clone());
                kv::set(&key, &pushed)?;
                acted = true;
            }
            Some(id) if pushed.pocketboss_time != time => said.push(format!(
                "PocketBoss appointment {id} keeps {} (PocketBoss cannot update appointments)",
                pushed.pocketboss_time
            )),
            Some(_) => {}
        }

        let job = Job { duration_minutes: None, ..job };
        let customer = match &pushed.homebase360 {
            None => hb_customer(&contact)?,
            Some(_) => None,
        };
        match (&pushed.homebase360, customer) {
            (Some(id), _) if pushed.homebase360_time != time => {
                jobs::update("hb", id, &job)?;
                said.push(format!("Homebase360 job {id} moved to {time}"));
                acted = true;
            }
            (Some(_), _) => {}
            (None, Some(customer)) => {
                let new = Job { contact_id: Some(customer.clone()), ..job };
                let created = create_once("hb", &a.id, &new)?;
                let id = created.id.unwrap_or_default();
                said.push(format!("Homebase360 job {id} created for customer {customer}"));
                pushed.homebase360 = Some(id);
                acted = true;
            }
            (None, None) => said.push(format!(
                "no Homebase360 job: no customer with GHL contact {}'s phone or email",
                a.contact_id
            )),
        }
        pushed.homebase360_time = time;
        pushed.updated = updated.or(pushed.updated);
        kv::set(&key, &pushed)?;
        let summary = format!("GHL appointment {}: {}", a.id, said.join("; "));
        Ok(match (acted, said.is_empty()) {
            (true, _) => Outcome::done(summary),
            (false, true) => {
                Outcome::skipped(format!("GHL appointment {}: nothing we sync changed", a.id))
            }
            (false, false) => Outcome::skipped(summary),
        })
    }
}

/// The appointment as a job: title, notes, start, end and duration (the end when it is after
/// the start, else `default_duration_minutes` later).
fn job(s: &Settings, a: &Appointment) -> Result<Job> {
    let start = clock::unix_seconds(&a.start_time)
        .ok_or_else(|| Error::invalid("payload.appointment.startTime", "not RFC 3339"))?;
    let end = a.end_time.as_deref().and_then(clock::unix_seconds).filter(|end| *end > start);
    let minutes = end.map_or(i64::from(s.default_duration_minutes), |end| (end - start) / 60);
    let end = match end {
        Some(_) => a.end_time.clone(),
        None => Some(clock::rfc3339(start + minutes * 60)),
    };
    Ok(Job {
        title: Some(a.title.clone().unwrap_or_else(|| "Appointment".into())),
        description: a.notes.clone(),
        start: Some(a.start_time.clone()),
        end,
        duration_minutes: Some(minutes as u32),
        ..jobs::empty()
    })
}

/// Create `job` through `connection` once per GHL appointment (`kv::once`). Runs of one
/// appointment do not overlap (the ordering key); the claim is the defence if they ever did,
/// and what keeps a record whose creation is in doubt from being created twice: an earlier
/// run's confirmed create is reused (its record is kept with the claim); one whose outcome is
/// unknown fails this run, naming that run, to be checked by hand.
fn create_once(connection: &str, appointment: &str, job: &Job) -> Result<Job> {
    let key = format!("claim/{connection}/{appointment}");
    match kv::once(&key, || jobs::create(connection, job))? {
        kv::Once::Done(job) | kv::Once::Before(Some(job)) => Ok(job),
        kv::Once::Before(None) => Err(Error::other(format!(
            "GHL appointment {appointment}: an earlier run created it through '{connection}' without keeping its id; see kv {key}"
        ))),
        kv::Once::Held { by } => Err(Error::other(format!(
            "GHL appointment {appointment}: the run of event {by} may have created it through '{connection}' (its outcome is unknown); check, then replay that run (with --resend-unconfirmed if it was not created)"
        ))),
    }
}

/// The calendar's category, else the first word found in the title, else the default.
fn category(s: &Settings, a: &Appointment) -> Category {
    let title = a.title.as_deref().unwrap_or_default().to_lowercase();
    let by_calendar = a.calendar_id.as_ref().and_then(|c| s.categories.get(c));
    let by_word = || s.categories.iter().find(|(w, _)| title.contains(&w.to_lowercase()));
    by_calendar.or_else(|| by_word().map(|(_, c)| c)).copied().unwrap_or(s.default_category)
}

/// The Homebase360 customer with the contact's phone (E.164), else its email.
fn hb_customer(c: &Contact) -> Result<Option<String>> {
    let phones = c.phones.iter().filter(|p| p.number.starts_with('+'));
    let by_phone = phones.map(|p| Query { phone: Some(p.number.clone()), ..query() });
    let by_email = c.emails.iter().map(|e| Query { email: Some(e.clone()), ..query() });
    for q in by_phone.chain(by_email) {
        if let Some(found) = contacts::search("hb", &Query { limit: Some(1), ..q })?.contacts.pop()
        {
            return Ok(found.id);
        }
    }
    Ok(None)
}

export_recipe!(GhlAppointmentToPocketBoss, settings = Settings);
