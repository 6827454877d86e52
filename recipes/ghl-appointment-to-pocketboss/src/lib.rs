//! `ghl-appointment-to-pocketboss`: a GoHighLevel appointment (`AppointmentCreate`,
//! `AppointmentUpdate` webhooks) becomes a PocketBoss appointment, and a Homebase360 job
//! when the person is a Homebase360 customer.
//!
//! - The person (name, email, phone) is read from GoHighLevel by the appointment's
//!   `contactId`.
//! - PocketBoss gets the title, start, duration (end − start; `default_duration_minutes`
//!   when the end is missing or not after the start), category, `address` as the location,
//!   notes, and `externalId` = the GHL appointment id.
//! - Homebase360: the customer is looked up by the contact's phone, then email. Found: a
//!   job (the title as its line item) at the same times. Not found: no job, and the outcome
//!   says so.
//! - kv `appt/<GHL id>` keeps what was pushed. An update of a pushed appointment moves the
//!   Homebase360 job when its time changed, and creates the job if the customer has
//!   appeared in Homebase360 since. PocketBoss has no update endpoint and does not dedupe
//!   appointments, so its appointment is pushed once and never again (the outcome says
//!   when its time is out of date). Nothing changed → skipped. An update of an appointment
//!   never seen is handled as a create; a delivery older (`dateUpdated`) than the state
//!   synced is skipped.
//!
//! Connections `ghl`, `pb`, `hb`. Settings:
//! `categories`: GHL calendar id, or a word in the title (case-insensitive; the first
//! match in sorted order), → PocketBoss category (Maintenance, Repair, Consultation,
//! Installation, Service, Remodeling, Projects); setting it replaces the default map of
//! common words (`repair` → Repair, `install` → Installation, `estimate` → Consultation,
//! ...); `default_category` (default `Service`); `default_duration_minutes` (default 60).

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
            ("consult", Consultation),
            ("quote", Consultation),
            ("install", Installation),
            ("remodel", Remodeling),
        ];
        Settings {
            categories: words.map(|(w, c)| (w.to_string(), c)).into(),
            default_category: Service,
            default_duration_minutes: 60,
        }
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

/// What was pushed for one GHL appointment.
#[derive(Serialize, Deserialize, Default)]
struct Pushed {
    pocketboss: Option<String>,
    /// The time PocketBoss has, `start/end`.
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
            .description("GoHighLevel appointment -> PocketBoss appointment, Homebase360 job for a known customer")
            .on_webhook("gohighlevel", "AppointmentCreate")
            .on_webhook("gohighlevel", "AppointmentUpdate")
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
        if let (Some(this), Some(seen)) = (updated, pushed.updated)
            && this < seen
        {
            return Ok(Outcome::skipped(format!(
                "GHL appointment {}: older than the state synced",
                a.id
            )));
        }
        let start = clock::unix_seconds(&a.start_time)
            .ok_or_else(|| Error::invalid("payload.appointment.startTime", "not RFC 3339"))?;
        let (minutes, end) = match a.end_time.as_deref().map(|e| (clock::unix_seconds(e), e)) {
            Some((Some(end), text)) if end > start => ((end - start) / 60, text.to_string()),
            _ => {
                let d = i64::from(s.default_duration_minutes);
                (d, clock::rfc3339(start + d * 60))
            }
        };
        let time = format!("{}/{end}", a.start_time);
        let title = a.title.clone().unwrap_or_else(|| "Appointment".into());
        let mut said = Vec::new();
        let mut acted = false;

        let contact = person(contacts::get("ghl", &a.contact_id)?);
        match &pushed.pocketboss {
            None => {
                let category = category(&s, &a, &title);
                let appointment = create_once(
                    "pb",
                    &a.id,
                    &Job {
                        contact: Some(contact.clone()),
                        category: Some(format!("{category:?}")),
                        duration_minutes: Some(minutes as u32),
                        address: a.address.clone().map(|street| Address {
                            street: Some(street),
                            city: None,
                            state: None,
                            postal_code: None,
                            country: None,
                        }),
                        raw: Some(json!({ "externalId": a.id }).to_string()),
                        ..job(&title, &a, &end)
                    },
                )?;
                let Some(appointment) = appointment else {
                    return Ok(busy());
                };
                let id = appointment.id.unwrap_or_default();
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

        match &pushed.homebase360 {
            Some(id) if pushed.homebase360_time != time => {
                jobs::update("hb", id, &job(&title, &a, &end))?;
                said.push(format!("Homebase360 job {id} moved to {time}"));
                acted = true;
            }
            Some(_) => {}
            None => match hb_customer(&contact)? {
                Some(customer) => {
                    let new = Job { contact_id: Some(customer.clone()), ..job(&title, &a, &end) };
                    let Some(created) = create_once("hb", &a.id, &new)? else {
                        return Ok(busy());
                    };
                    let id = created.id.unwrap_or_default();
                    said.push(format!("Homebase360 job {id} created for customer {customer}"));
                    pushed.homebase360 = Some(id);
                    kv::set(&key, &pushed)?;
                    acted = true;
                }
                None => said.push(format!(
                    "no Homebase360 job: no customer with GHL contact {}'s phone or email",
                    a.contact_id
                )),
            },
        }
        pushed.homebase360_time = time;
        pushed.updated = updated.or(pushed.updated);
        kv::set(&key, &pushed)?;
        let summary = format!("GHL appointment {}: {}", a.id, said.join("; "));
        Ok(if acted {
            Outcome::done(summary)
        } else if said.is_empty() {
            Outcome::skipped(format!("GHL appointment {}: nothing we sync changed", a.id))
        } else {
            Outcome::skipped(summary)
        })
    }
}

/// Create `job` through `connection` once per GHL appointment: claimed in kv first, so two
/// runs of one appointment at once (Create and Update often arrive together) cannot both
/// create it; a failed create releases the claim. `None`: another run holds it.
fn create_once(connection: &str, appointment: &str, job: &Job) -> Result<Option<Job>> {
    let claim = format!("claim/{connection}/{appointment}");
    if !kv::set_if_absent_raw(&claim, b"")? {
        return Ok(None);
    }
    jobs::create(connection, job).map(Some).inspect_err(|_| {
        let _ = kv::delete(&claim);
    })
}

/// Another run of this appointment is creating its records: run again in two seconds, when
/// its state is in kv.
fn busy() -> Outcome {
    Outcome::deferred(clock::after_ms(2_000), "another run is pushing this appointment")
}

/// A job with the appointment's title, times and notes; other fields unset.
fn job(title: &str, a: &Appointment, end: &str) -> Job {
    Job {
        title: Some(title.to_string()),
        description: a.notes.clone(),
        start: Some(a.start_time.clone()),
        end: Some(end.to_string()),
        ..jobs::empty()
    }
}

/// The calendar's category, else the first word found in the title, else the default.
fn category(s: &Settings, a: &Appointment, title: &str) -> Category {
    let title = title.to_lowercase();
    a.calendar_id
        .as_ref()
        .and_then(|c| s.categories.get(c))
        .or_else(|| {
            s.categories
                .iter()
                .find(|(word, _)| title.contains(&word.to_lowercase()))
                .map(|(_, c)| c)
        })
        .copied()
        .unwrap_or(s.default_category)
}

/// The GHL contact as a PocketBoss client: PocketBoss needs a name, so a nameless
/// contact is named by its email or phone.
fn person(mut c: Contact) -> Contact {
    if c.first_name.is_none() && c.last_name.is_none() {
        let phone = c.phones.first().map(|p| p.number.clone());
        c.first_name = c.emails.first().cloned().or(phone);
    }
    c
}

/// The Homebase360 customer with the contact's phone (E.164), else its email.
fn hb_customer(c: &Contact) -> Result<Option<String>> {
    let phones = c.phones.iter().filter(|p| p.number.starts_with('+'));
    let queries = phones
        .map(|p| (Some(p.number.clone()), None))
        .chain(c.emails.iter().map(|e| (None, Some(e.clone()))));
    for (phone, email) in queries {
        let query = Query { email, phone, limit: Some(1), ..query() };
        if let Some(found) = contacts::search("hb", &query)?.contacts.pop() {
            return Ok(found.id);
        }
    }
    Ok(None)
}

export_recipe!(GhlAppointmentToPocketBoss, settings = Settings);
