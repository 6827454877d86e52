//! Sales leads (needs [`Capability::Leads`](crate::Capability::Leads) and the connection).

use crate::Result;
use crate::bindings::switchboard::recipes::leads as wit;
use crate::types::{Address, Contact, Lead, Phone, PhoneKind, Query};
use serde::Deserialize;

pub use wit::{LeadPage, Pushed};

/// A lead as a web form or a lead service (HomeAdvisor, Thumbtack, ...) posts it to a generic
/// lead webhook: the payload shape our lead recipes take.
///
/// ```json
/// {"id": "HA-1001", "source": "HomeAdvisor", "first_name": "Ada", "last_name": "King",
///  "email": "ada@example.com", "phone": "(303) 555-0100", "service": "Water heater",
///  "notes": "Leaking since Monday", "street": "1 Main St", "city": "Denver",
///  "state": "CO", "zip": "80202"}
/// ```
///
/// `id` (text or a number: the lead's id where it came from) is required, the rest optional.
/// camelCase names are accepted too (`externalId`, `firstName`, `lastName`,
/// `serviceRequested`, `postalCode`), and a full `name` when first and last are not given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct WebLead {
    /// The lead's id in the system it came from.
    #[serde(alias = "externalId", deserialize_with = "id_text")]
    pub id: String,
    /// First name.
    #[serde(alias = "firstName")]
    pub first_name: Option<String>,
    /// Last name.
    #[serde(alias = "lastName")]
    pub last_name: Option<String>,
    /// A full name, used when `first_name` is not given.
    pub name: Option<String>,
    /// Mobile phone; US/CA numbers and `+...` become E.164, anything else is left out.
    pub phone: Option<String>,
    /// Email address.
    pub email: Option<String>,
    /// Where the lead came from, e.g. `HomeAdvisor`.
    pub source: Option<String>,
    /// The service asked for, e.g. `Water heater`.
    #[serde(alias = "serviceRequested")]
    pub service: Option<String>,
    /// Free text.
    pub notes: Option<String>,
    /// Street address.
    #[serde(alias = "address")]
    pub street: Option<String>,
    /// City.
    pub city: Option<String>,
    /// State or province.
    pub state: Option<String>,
    /// ZIP or postal code.
    #[serde(alias = "postalCode", alias = "postal_code")]
    pub zip: Option<String>,
}

fn id_text<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    let id = match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => s.trim().to_string(),
        serde_json::Value::Number(n) => n.to_string(),
        other => {
            return Err(serde::de::Error::custom(format!(
                "id must be text or a number, not {other}"
            )));
        }
    };
    if id.is_empty() {
        return Err(serde::de::Error::custom("id must not be empty"));
    }
    Ok(id)
}

/// A trimmed, non-empty copy.
fn text(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

impl WebLead {
    /// The lead's person as a contact: names, email, the phone (mobile, E.164), address.
    pub fn contact(&self) -> Contact {
        let full = text(&self.name);
        let (first, last) = match full.as_deref().map(|n| n.split_once(' ')) {
            Some(Some((f, l))) => (Some(f.to_string()), Some(l.trim().to_string())),
            _ => (full, None),
        };
        let address = Address {
            street: text(&self.street),
            city: text(&self.city),
            state: text(&self.state),
            postal_code: text(&self.zip),
            country: None,
        };
        let has_address = address.street.is_some() || address.city.is_some();
        Contact {
            first_name: text(&self.first_name).or(first),
            last_name: text(&self.last_name).or(last),
            emails: text(&self.email).into_iter().collect(),
            phones: (self.phone.as_deref().and_then(crate::contacts::e164))
                .map(|number| Phone {
                    kind: PhoneKind::Mobile,
                    number,
                })
                .into_iter()
                .collect(),
            addresses: if has_address {
                vec![address]
            } else {
                Vec::new()
            },
            source: text(&self.source),
            ..crate::contacts::empty()
        }
    }

    /// As a new lead: the contact, `external_id` = `id`, source, notes, and the service as
    /// `serviceRequested` in `raw` (for vendors that take it).
    pub fn lead(&self) -> Lead {
        Lead {
            contact: Some(self.contact()),
            external_id: Some(self.id.clone()),
            source: text(&self.source),
            notes: text(&self.notes),
            raw: text(&self.service)
                .map(|s| serde_json::json!({ "serviceRequested": s }).to_string()),
            ..empty()
        }
    }
}

/// A lead with every field unset, to fill with struct update syntax.
pub fn empty() -> Lead {
    Lead {
        id: None,
        contact_id: None,
        contact: None,
        status: None,
        source: None,
        external_id: None,
        notes: None,
        created_at: None,
        updated_at: None,
        raw: None,
    }
}

/// List leads matching a query.
pub fn list(connection: &str, query: &Query) -> Result<LeadPage> {
    Ok(wit::list(connection, query)?)
}

/// Fetch a lead by id.
pub fn get(connection: &str, id: &str) -> Result<Lead> {
    Ok(wit::get(connection, id)?)
}

/// Create a lead; vendors that dedupe merge it into an existing one instead.
pub fn create(connection: &str, lead: &Lead) -> Result<Pushed> {
    Ok(wit::create(connection, lead)?)
}

/// Update a lead.
pub fn update(connection: &str, id: &str, lead: &Lead) -> Result<Lead> {
    Ok(wit::update(connection, id, lead)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_leads_take_either_naming_and_numeric_ids() {
        let a: WebLead = serde_json::from_str(
            r#"{"externalId": 778, "name": "Grace Hopper", "phone": "+1 720 555 0199",
                "serviceRequested": "Furnace", "type": "lead.created"}"#,
        )
        .unwrap();
        assert_eq!(a.id, "778");
        let c = a.contact();
        assert_eq!(
            (c.first_name.as_deref(), c.last_name.as_deref()),
            (Some("Grace"), Some("Hopper"))
        );
        assert_eq!(c.phones[0].number, "+17205550199");
        assert!(a.lead().raw.unwrap().contains("Furnace"));
        let e = serde_json::from_str::<WebLead>(r#"{"first_name": "Eve"}"#).unwrap_err();
        assert!(e.to_string().contains("missing field `id`"), "{e}");
        assert!(serde_json::from_str::<WebLead>(r#"{"id": " "}"#).is_err());
        let no_phone: WebLead = serde_json::from_str(r#"{"id": "x", "phone": "call me"}"#).unwrap();
        assert!(no_phone.contact().phones.is_empty());
    }
}
