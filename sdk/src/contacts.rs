//! Contacts in a CRM (needs [`Capability::Contacts`](crate::Capability::Contacts) and the
//! connection). Every call names a configured connection first.
//!
//! ```no_run
//! use switchboard_sdk::{contacts, types::Contact, Result};
//! # fn f() -> Result<()> {
//! let up = contacts::upsert("ghl", &Contact {
//!     first_name: Some("Ada".into()),
//!     emails: vec!["ada@example.com".into()],
//!     ..contacts::empty()
//! })?;
//! contacts::add_tags("ghl", up.contact.id.as_deref().unwrap_or_default(), &["vip".into()])?;
//! # Ok(()) }
//! ```

use crate::Result;
use crate::bindings::switchboard::recipes::contacts as wit;
use crate::types::{Contact, Query};

pub use wit::{ContactPage, Upserted};

/// A phone number in E.164, as CRMs want it: `(303) 828-6690` → `+13038286690` (10 digits are
/// taken as North American), `+44 20 7946 0958` → `+442079460958`; `None` when it is not a
/// phone number.
///
/// ```
/// assert_eq!(switchboard_sdk::contacts::e164("(303) 828-6690").as_deref(), Some("+13038286690"));
/// assert_eq!(switchboard_sdk::contacts::e164("1-303-828-6690").as_deref(), Some("+13038286690"));
/// assert_eq!(switchboard_sdk::contacts::e164("+44 20 7946 0958").as_deref(), Some("+442079460958"));
/// assert_eq!(switchboard_sdk::contacts::e164("ext. 12"), None);
/// ```
pub fn e164(number: &str) -> Option<String> {
    let digits: String = number.chars().filter(char::is_ascii_digit).collect();
    match digits.len() {
        10 if !number.trim_start().starts_with('+') => Some(format!("+1{digits}")),
        11 if digits.starts_with('1') => Some(format!("+{digits}")),
        8..=15 if number.trim_start().starts_with('+') => Some(format!("+{digits}")),
        _ => None,
    }
}

/// A contact with every field unset, to fill with struct update syntax.
pub fn empty() -> Contact {
    Contact {
        id: None,
        first_name: None,
        last_name: None,
        company: None,
        emails: Vec::new(),
        phones: Vec::new(),
        addresses: Vec::new(),
        tags: Vec::new(),
        source: None,
        notes: None,
        created_at: None,
        updated_at: None,
        raw: None,
    }
}

/// Fetch a contact by id.
pub fn get(connection: &str, id: &str) -> Result<Contact> {
    Ok(wit::get(connection, id)?)
}

/// Search contacts.
pub fn search(connection: &str, query: &Query) -> Result<ContactPage> {
    Ok(wit::search(connection, query)?)
}

/// Create a contact.
pub fn create(connection: &str, contact: &Contact) -> Result<Contact> {
    Ok(wit::create(connection, contact)?)
}

/// Update the fields of `contact` that are set.
pub fn update(connection: &str, id: &str, contact: &Contact) -> Result<Contact> {
    Ok(wit::update(connection, id, contact)?)
}

/// Create or update, matched the way the vendor matches.
pub fn upsert(connection: &str, contact: &Contact) -> Result<Upserted> {
    Ok(wit::upsert(connection, contact)?)
}

/// Delete a contact.
pub fn delete(connection: &str, id: &str) -> Result<()> {
    Ok(wit::delete(connection, id)?)
}

/// Add tags to a contact.
pub fn add_tags(connection: &str, id: &str, tags: &[String]) -> Result<()> {
    Ok(wit::add_tags(connection, id, tags)?)
}

/// Remove tags from a contact.
pub fn remove_tags(connection: &str, id: &str, tags: &[String]) -> Result<()> {
    Ok(wit::remove_tags(connection, id, tags)?)
}

/// Add a note to a contact; returns the note's id.
pub fn add_note(connection: &str, id: &str, body: &str) -> Result<String> {
    Ok(wit::add_note(connection, id, body)?)
}
