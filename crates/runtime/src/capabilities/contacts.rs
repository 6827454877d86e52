//! `switchboard:recipes/contacts`: WIT records to the host's [`Contact`] and back, through
//! the connection's [`Connector`](switchboard_vendors::Connector).

use super::effect::typed;
use crate::bindings::switchboard::recipes::contacts::{ContactPage, Host, Upserted};
use crate::bindings::types::{Address, Contact, Error, Phone, PhoneKind, Query};
use crate::state::RunState;
use switchboard_model::{self as model, Capability::Contacts, RecipeError};

pub(crate) fn raw_to_json(
    raw: Option<String>,
    field: &str,
) -> Result<Option<serde_json::Value>, RecipeError> {
    raw.map(|r| serde_json::from_str(&r).map_err(|e| RecipeError::invalid(field, e.to_string())))
        .transpose()
}

pub(crate) fn query_from_wit(q: Query) -> model::Query {
    model::Query {
        text: q.text,
        email: q.email,
        phone: q.phone,
        status: q.status,
        updated_after: q.updated_after,
        starts_after: q.starts_after,
        starts_before: q.starts_before,
        limit: q.limit,
        cursor: q.cursor,
    }
}

pub(crate) fn address_from_wit(a: Address) -> model::Address {
    model::Address {
        street: a.street,
        city: a.city,
        state: a.state,
        postal_code: a.postal_code,
        country: a.country,
    }
}

pub(crate) fn address_to_wit(a: model::Address) -> Address {
    Address {
        street: a.street,
        city: a.city,
        state: a.state,
        postal_code: a.postal_code,
        country: a.country,
    }
}

pub(crate) fn contact_from_wit(c: Contact) -> Result<model::Contact, RecipeError> {
    Ok(model::Contact {
        id: c.id,
        first_name: c.first_name,
        last_name: c.last_name,
        company: c.company,
        emails: c.emails,
        phones: c
            .phones
            .into_iter()
            .map(|p| model::Phone {
                kind: match p.kind {
                    PhoneKind::Mobile => model::PhoneKind::Mobile,
                    PhoneKind::Home => model::PhoneKind::Home,
                    PhoneKind::Work => model::PhoneKind::Work,
                    PhoneKind::Other => model::PhoneKind::Other,
                },
                number: p.number,
            })
            .collect(),
        addresses: c.addresses.into_iter().map(address_from_wit).collect(),
        tags: c.tags,
        source: c.source,
        notes: c.notes,
        created_at: c.created_at,
        updated_at: c.updated_at,
        raw: raw_to_json(c.raw, "contact.raw")?,
    })
}

pub(crate) fn contact_to_wit(c: model::Contact) -> Contact {
    Contact {
        id: c.id,
        first_name: c.first_name,
        last_name: c.last_name,
        company: c.company,
        emails: c.emails,
        phones: c
            .phones
            .into_iter()
            .map(|p| Phone {
                kind: match p.kind {
                    model::PhoneKind::Mobile => PhoneKind::Mobile,
                    model::PhoneKind::Home => PhoneKind::Home,
                    model::PhoneKind::Work => PhoneKind::Work,
                    model::PhoneKind::Other => PhoneKind::Other,
                },
                number: p.number,
            })
            .collect(),
        addresses: c.addresses.into_iter().map(address_to_wit).collect(),
        tags: c.tags,
        source: c.source,
        notes: c.notes,
        created_at: c.created_at,
        updated_at: c.updated_at,
        raw: c.raw.map(|r| r.to_string()),
    }
}

impl Host for RunState {
    async fn get(&mut self, connection: String, id: String) -> Result<Contact, Error> {
        let (c, call) = self.connector(Contacts, "get", &connection)?;
        Ok(contact_to_wit(c.contacts_get(&call, &id).await?))
    }

    async fn search(&mut self, connection: String, query: Query) -> Result<ContactPage, Error> {
        let (c, call) = self.connector(Contacts, "search", &connection)?;
        let page = c.contacts_search(&call, &query_from_wit(query)).await?;
        Ok(ContactPage {
            contacts: page.items.into_iter().map(contact_to_wit).collect(),
            next: page.next,
            total: page.total,
        })
    }

    async fn create(&mut self, connection: String, contact: Contact) -> Result<Contact, Error> {
        let (c, call) = self.connector(Contacts, "create", &connection)?;
        let contact = contact_from_wit(contact)?;
        let send = async { c.contacts_create(&call, &contact).await };
        let created = self
            .effect("contacts.create", &connection, &contact, typed, send)
            .await?;
        Ok(contact_to_wit(created))
    }

    async fn update(
        &mut self,
        connection: String,
        id: String,
        contact: Contact,
    ) -> Result<Contact, Error> {
        let (c, call) = self.connector(Contacts, "update", &connection)?;
        let contact = contact_from_wit(contact)?;
        Ok(contact_to_wit(
            c.contacts_update(&call, &id, &contact).await?,
        ))
    }

    async fn upsert(&mut self, connection: String, contact: Contact) -> Result<Upserted, Error> {
        let (c, call) = self.connector(Contacts, "upsert", &connection)?;
        let contact = contact_from_wit(contact)?;
        let (contact, created) = c.contacts_upsert(&call, &contact).await?;
        Ok(Upserted {
            contact: contact_to_wit(contact),
            created,
        })
    }

    async fn delete(&mut self, connection: String, id: String) -> Result<(), Error> {
        let (c, call) = self.connector(Contacts, "delete", &connection)?;
        let send = async { c.contacts_delete(&call, &id).await };
        Ok(self
            .effect("contacts.delete", &connection, &id, typed, send)
            .await?)
    }

    async fn add_tags(
        &mut self,
        connection: String,
        id: String,
        tags: Vec<String>,
    ) -> Result<(), Error> {
        let (c, call) = self.connector(Contacts, "add-tags", &connection)?;
        Ok(c.contacts_add_tags(&call, &id, &tags).await?)
    }

    async fn remove_tags(
        &mut self,
        connection: String,
        id: String,
        tags: Vec<String>,
    ) -> Result<(), Error> {
        let (c, call) = self.connector(Contacts, "remove-tags", &connection)?;
        Ok(c.contacts_remove_tags(&call, &id, &tags).await?)
    }

    async fn add_note(
        &mut self,
        connection: String,
        id: String,
        body: String,
    ) -> Result<String, Error> {
        let (c, call) = self.connector(Contacts, "add-note", &connection)?;
        let send = async { c.contacts_add_note(&call, &id, &body).await };
        Ok(self
            .effect("contacts.add-note", &connection, &(&id, &body), typed, send)
            .await?)
    }
}
