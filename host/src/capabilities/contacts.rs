//! `switchboard:recipes/contacts`.

use crate::model::Capability::Contacts;
use crate::runtime::bindings::switchboard::recipes::contacts::{ContactPage, Host, Upserted};
use crate::runtime::bindings::types::{Contact, Error, Query};
use crate::runtime::state::RunState;

impl Host for RunState {
    async fn get(&mut self, connection: String, _id: String) -> Result<Contact, Error> {
        self.not_served(Contacts, &connection, "contacts.get")
    }

    async fn search(&mut self, connection: String, _query: Query) -> Result<ContactPage, Error> {
        self.not_served(Contacts, &connection, "contacts.search")
    }

    async fn create(&mut self, connection: String, _contact: Contact) -> Result<Contact, Error> {
        self.not_served(Contacts, &connection, "contacts.create")
    }

    async fn update(
        &mut self,
        connection: String,
        _id: String,
        _contact: Contact,
    ) -> Result<Contact, Error> {
        self.not_served(Contacts, &connection, "contacts.update")
    }

    async fn upsert(&mut self, connection: String, _contact: Contact) -> Result<Upserted, Error> {
        self.not_served(Contacts, &connection, "contacts.upsert")
    }

    async fn delete(&mut self, connection: String, _id: String) -> Result<(), Error> {
        self.not_served(Contacts, &connection, "contacts.delete")
    }

    async fn add_tags(
        &mut self,
        connection: String,
        _id: String,
        _tags: Vec<String>,
    ) -> Result<(), Error> {
        self.not_served(Contacts, &connection, "contacts.add-tags")
    }

    async fn remove_tags(
        &mut self,
        connection: String,
        _id: String,
        _tags: Vec<String>,
    ) -> Result<(), Error> {
        self.not_served(Contacts, &connection, "contacts.remove-tags")
    }

    async fn add_note(
        &mut self,
        connection: String,
        _id: String,
        _body: String,
    ) -> Result<String, Error> {
        self.not_served(Contacts, &connection, "contacts.add-note")
    }
}
