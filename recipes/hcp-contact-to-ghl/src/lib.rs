//! `hcp-contact-to-ghl`: when a Housecall Pro customer is created or updated, upsert the
//! matching GoHighLevel contact (GoHighLevel matches by email, then phone).
//!
//! - Deliveries for one customer run one at a time, in the order they were accepted (the
//!   manifest orders by `/customer/id`); one older (`updated_at`) than the state synced is
//!   skipped all the same.
//! - The HCP id → GHL id map is kept in kv (`ghl/<hcp id>`).
//! - Nothing relevant changed (same content hash in kv) → skipped, so a two-way setup
//!   cannot loop on its own echoes.
//! - Changed HCP notes become a GHL note.
//! - `customer.deleted` tags the GHL contact (setting `deleted_tag`) instead of deleting it.

use serde::{Deserialize, Serialize};
use switchboard_sdk::prelude::*;
use switchboard_sdk::serde_json;

/// `[plugins.hcp-contact-to-ghl.settings]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    /// Tags added to every synced contact.
    tags: Vec<String>,
    /// The tag a deleted HCP customer's contact gets.
    deleted_tag: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { tags: vec!["housecall-pro".into()], deleted_tag: "hcp-deleted".into() }
    }
}

/// The fields of an HCP customer this recipe syncs.
#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
struct Customer {
    id: String,
    first_name: Option<String>,
    last_name: Option<String>,
    email: Option<String>,
    mobile_number: Option<String>,
    home_number: Option<String>,
    work_number: Option<String>,
    company: Option<String>,
    lead_source: Option<String>,
    tags: Vec<String>,
    addresses: Vec<HcpAddress>,
    #[serde(skip_serializing)]
    notes: Option<String>,
    #[serde(skip_serializing)]
    updated_at: Option<String>,
}

#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
struct HcpAddress {
    street: Option<String>,
    city: Option<String>,
    state: Option<String>,
    zip: Option<String>,
    country: Option<String>,
}

#[derive(Deserialize)]
struct Payload {
    customer: Customer,
}

/// The GoHighLevel connection (the config may map it: `[plugins.hcp-contact-to-ghl] connections`).
const GHL: &str = "ghl";

struct HcpContactToGhl;

impl Recipe for HcpContactToGhl {
    fn manifest() -> Manifest {
        Manifest::new("hcp-contact-to-ghl", env!("CARGO_PKG_VERSION"))
            .description("Housecall Pro customer changed -> upsert the GoHighLevel contact")
            .on_webhook("housecallpro", "customer.*")
            .ordered_by("/customer/id")
            .uses(Capability::Contacts)
            .uses(Capability::Kv)
            .connection(GHL)
    }

    fn handle(event: Event) -> Result<Outcome> {
        let settings: Settings = settings::get()?;
        let customer = event.payload::<Payload>()?.customer;
        match event.kind.as_str() {
            "customer.created" | "customer.updated" => sync(&settings, &customer),
            "customer.deleted" => mark_deleted(&settings, &customer.id),
            other => Ok(Outcome::skipped(format!("{other} is not handled"))),
        }
    }
}

fn sync(settings: &Settings, customer: &Customer) -> Result<Outcome> {
    // Webhooks may arrive out of order: never let an older state overwrite a newer one.
    let seen_key = format!("updated/{}", customer.id);
    if let (Some(this), Some(seen)) = (&customer.updated_at, kv::get::<String>(&seen_key)?)
        && *this < seen
    {
        return Ok(Outcome::skipped(format!("older than the state synced ({seen})")));
    }
    let hash = digest(&serde_json::to_vec(customer).map_err(|e| Error::other(e.to_string()))?);
    if kv::get::<String>(&format!("hash/{}", customer.id))?.as_deref() == Some(&hash) {
        return Ok(Outcome::skipped("nothing relevant changed"));
    }
    let mut tags = customer.tags.clone();
    tags.extend(settings.tags.iter().cloned());
    let contact = Contact {
        first_name: customer.first_name.clone(),
        last_name: customer.last_name.clone(),
        company: customer.company.clone(),
        emails: customer.email.iter().cloned().collect(),
        phones: [
            (PhoneKind::Mobile, &customer.mobile_number),
            (PhoneKind::Home, &customer.home_number),
            (PhoneKind::Work, &customer.work_number),
        ]
        .into_iter()
        .filter_map(|(kind, n)| Some(Phone { kind, number: contacts::e164(n.as_deref()?)? }))
        .collect(),
        addresses: customer
            .addresses
            .iter()
            .map(|a| Address {
                street: a.street.clone(),
                city: a.city.clone(),
                state: a.state.clone(),
                postal_code: a.zip.clone(),
                country: a.country.clone(),
            })
            .collect(),
        tags,
        source: customer.lead_source.clone(),
        ..contacts::empty()
    };
    let upserted = contacts::upsert(GHL, &contact)?;
    let ghl_id = upserted.contact.id.unwrap_or_default();
    kv::set(&format!("ghl/{}", customer.id), &ghl_id)?;
    kv::set(&format!("hash/{}", customer.id), &hash)?;
    if let Some(updated_at) = &customer.updated_at {
        kv::set(&seen_key, updated_at)?;
    }
    if let Some(notes) = customer.notes.as_deref().filter(|n| !n.trim().is_empty()) {
        let key = format!("notes/{}", customer.id);
        if kv::get::<String>(&key)?.as_deref() != Some(&digest(notes.as_bytes())) {
            contacts::add_note(GHL, &ghl_id, notes)?;
            kv::set(&key, &digest(notes.as_bytes()))?;
        }
    }
    let verb = if upserted.created { "created" } else { "updated" };
    Ok(Outcome::done(format!("GHL contact {ghl_id} {verb} from HCP {}", customer.id)))
}

fn mark_deleted(settings: &Settings, hcp_id: &str) -> Result<Outcome> {
    let Some(ghl_id) = kv::get::<String>(&format!("ghl/{hcp_id}"))? else {
        return Ok(Outcome::skipped(format!("HCP {hcp_id} was never synced")));
    };
    contacts::add_tags(GHL, &ghl_id, std::slice::from_ref(&settings.deleted_tag))?;
    kv::delete(&format!("hash/{hcp_id}"))?;
    Ok(Outcome::done(format!("GHL contact {ghl_id} tagged {}", settings.deleted_tag)))
}

/// A content hash (64-bit FNV-1a): enough to tell "changed" from "the same".
fn digest(bytes: &[u8]) -> String {
    let hash = bytes
        .iter()
        .fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100000001b3));
    format!("{hash:016x}")
}

export_recipe!(HcpContactToGhl, settings = Settings);
