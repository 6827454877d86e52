//! Texts and emails (needs [`Capability::Messages`](crate::Capability::Messages) and the
//! connection).

use crate::Result;
use crate::bindings::switchboard::recipes::messages as wit;
use crate::types::{Channel, Message};

/// A text to `to` (a contact id or an E.164 number, as the vendor takes it).
pub fn sms(to: impl Into<String>, body: impl Into<String>) -> Message {
    Message {
        id: None,
        channel: Channel::Sms,
        to: to.into(),
        body: Some(body.into()),
        media_url: None,
        status: None,
        sent_at: None,
        raw: None,
    }
}

/// Send a message; the answer carries the vendor's id and status.
pub fn send(connection: &str, message: &Message) -> Result<Message> {
    Ok(wit::send(connection, message)?)
}

/// The vendor's delivery statistics, as JSON.
pub fn stats(connection: &str) -> Result<serde_json::Value> {
    Ok(serde_json::from_str(&wit::stats(connection)?)?)
}
