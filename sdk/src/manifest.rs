//! The manifest builder.

use crate::bindings::switchboard::recipes::types as wit;
use crate::types::Capability;

/// What a recipe is, when it runs, and what it may use. The host grants a recipe exactly
/// the capabilities and connections listed here; any other call is answered
/// [`Error::Denied`](crate::Error::Denied).
#[derive(Debug, Clone)]
pub struct Manifest {
    name: String,
    version: String,
    description: String,
    triggers: Vec<wit::Trigger>,
    capabilities: Vec<Capability>,
    connections: Vec<String>,
    ordering_key: Option<String>,
}

impl Manifest {
    /// A manifest for the recipe `name` (lowercase letters, digits and `-`).
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Manifest {
            name: name.into(),
            version: version.into(),
            description: String::new(),
            triggers: Vec::new(),
            capabilities: Vec::new(),
            connections: Vec::new(),
            ordering_key: None,
        }
    }

    /// One line saying what the recipe does.
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = text.into();
        self
    }

    /// Run on webhook events from `source` (`*` for any) whose kind matches `kind`
    /// (`*` matches any run of characters: `customer.*`).
    pub fn on_webhook(mut self, source: impl Into<String>, kind: impl Into<String>) -> Self {
        self.triggers
            .push(wit::Trigger::Webhook(wit::WebhookTrigger {
                source: source.into(),
                kind: kind.into(),
            }));
        self
    }

    /// Run on a six-field cron schedule (`sec min hour day month weekday`), in UTC.
    ///
    /// Each fire is an event with source `cron`, the schedule as its kind, and
    /// `{"schedule", "timezone", "scheduled_at"}` as its payload. A fire is skipped while the
    /// previous scheduled run is still going; the host config can change or switch off the
    /// schedule.
    pub fn on_cron(mut self, schedule: impl Into<String>) -> Self {
        self.triggers.push(wit::Trigger::Cron(wit::CronTrigger {
            schedule: schedule.into(),
            timezone: None,
        }));
        self
    }

    /// Run on a cron schedule in an IANA time zone, e.g. `America/Denver`.
    pub fn on_cron_in(mut self, schedule: impl Into<String>, timezone: impl Into<String>) -> Self {
        self.triggers.push(wit::Trigger::Cron(wit::CronTrigger {
            schedule: schedule.into(),
            timezone: Some(timezone.into()),
        }));
        self
    }

    /// Ask for a capability.
    pub fn uses(mut self, capability: Capability) -> Self {
        if !self.capabilities.contains(&capability) {
            self.capabilities.push(capability);
        }
        self
    }

    /// Ask for a configured connection by name, e.g. `ghl`.
    pub fn connection(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        if !self.connections.contains(&name) {
            self.connections.push(name);
        }
        self
    }

    /// Run one event at a time per value at `pointer` (a JSON pointer into the payload, e.g.
    /// `/customer/id`), in the order the host accepted the events: two updates of one
    /// customer never race, and the later one always lands last. Events without a value
    /// there are not ordered.
    ///
    /// ```no_run
    /// # use switchboard_sdk::prelude::*;
    /// let m = Manifest::new("contacts-sync", "1.0.0")
    ///     .on_webhook("housecallpro", "customer.*")
    ///     .ordered_by("/customer/id");
    /// ```
    pub fn ordered_by(mut self, pointer: impl Into<String>) -> Self {
        self.ordering_key = Some(pointer.into());
        self
    }

    pub(crate) fn into_wit(self) -> wit::Manifest {
        wit::Manifest {
            name: self.name,
            version: self.version,
            description: self.description,
            triggers: self.triggers,
            capabilities: self.capabilities,
            connections: self.connections,
            ordering_key: self.ordering_key,
        }
    }
}
