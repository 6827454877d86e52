//! # switchboard-sdk
//!
//! Everything a Switchboard recipe depends on. A recipe is a Rust library compiled to a
//! `wasm32-wasip2` component; the host runs it in a sandbox for every event its manifest
//! subscribes to, and it reaches CRMs only through the capabilities it declares.
//!
//! ```no_run
//! use switchboard_sdk::prelude::*;
//!
//! struct Hello;
//!
//! impl Recipe for Hello {
//!     fn manifest() -> Manifest {
//!         Manifest::new("hello", env!("CARGO_PKG_VERSION"))
//!             .description("Counts events per kind")
//!             .on_webhook("*", "*")
//!             .uses(Capability::Kv)
//!     }
//!
//!     fn handle(event: Event) -> Result<Outcome> {
//!         let seen = kv::update(&format!("count/{}", event.kind), |n: Option<u64>| {
//!             n.unwrap_or(0) + 1
//!         })?;
//!         log::info(&format!("{} seen {seen} times", event.kind));
//!         Ok(Outcome::done(format!("{} #{seen}", event.kind)))
//!     }
//! }
//!
//! export_recipe!(Hello);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` (crate type `cdylib`) and
//! drop the `.wasm` into the host's plugins folder.

#![deny(missing_docs)]

// Lets the generated bindings name this crate the same way from inside and outside it.
extern crate self as switchboard_sdk;

mod error;
mod event;
mod manifest;

pub mod clock;
pub mod contacts;
pub mod data_export;
pub mod jobs;
pub mod kv;
pub mod leads;
pub mod log;
pub mod messages;
pub mod settings;
pub mod vendor_http;

pub use error::{Error, Result};
pub use event::{Event, Outcome};
pub use manifest::Manifest;
pub use serde;
pub use serde_json;

/// The CRM records and enums of the WIT contract.
pub mod types {
    pub use crate::bindings::switchboard::recipes::types::{
        Address, Capability, Channel, Contact, Job, Lead, Message, Phone, PhoneKind, Query,
    };

    /// An address with every field unset, to fill with struct update syntax.
    pub fn address() -> Address {
        Address {
            street: None,
            city: None,
            state: None,
            postal_code: None,
            country: None,
        }
    }

    /// A query with every filter unset, to fill with struct update syntax.
    pub fn query() -> Query {
        Query {
            text: None,
            email: None,
            phone: None,
            status: None,
            updated_after: None,
            starts_after: None,
            starts_before: None,
            limit: None,
            cursor: None,
        }
    }
}
pub use types::Capability;

/// What most recipes need, in one `use`.
pub mod prelude {
    pub use crate::types::*;
    pub use crate::{
        Error, Event, Manifest, Outcome, Recipe, Result, clock, contacts, data_export,
        export_recipe, jobs, kv, leads, log, messages, settings, vendor_http,
    };
}

/// A recipe: its manifest and how it handles one event.
///
/// Export it with [`export_recipe!`].
pub trait Recipe {
    /// What the recipe is, when it runs, and which capabilities and connections it uses.
    /// Called once when the host loads the plugin.
    fn manifest() -> Manifest;

    /// Handle one event. Return an [`Error`] to fail the run; retryable errors
    /// ([`Error::RateLimited`], [`Error::Upstream`], [`Error::Timeout`]) may be retried by
    /// the host.
    fn handle(event: Event) -> Result<Outcome>;
}

/// Export a type implementing [`Recipe`] as the plugin's entry points.
///
/// `export_recipe!(MyRecipe, settings = MySettings)` also has the host check the recipe's
/// settings (see [`settings`]) against `MySettings` at load; without it, a recipe takes no
/// settings and a config that sets some is refused.
///
/// ```no_run
/// # use switchboard_sdk::prelude::*;
/// struct Noop;
/// impl Recipe for Noop {
///     fn manifest() -> Manifest { Manifest::new("noop", "0.1.0") }
///     fn handle(_: Event) -> Result<Outcome> { Ok(Outcome::skipped("nothing to do")) }
/// }
/// export_recipe!(Noop);
/// ```
#[macro_export]
macro_rules! export_recipe {
    ($recipe:ty) => {
        $crate::export_recipe!(@export $recipe, |json: &str| $crate::settings::check_none(json));
    };
    ($recipe:ty, settings = $settings:ty) => {
        $crate::export_recipe!(@export $recipe, |json: &str| {
            $crate::settings::parse::<$settings>(json).map(|_| ())
        });
    };
    (@export $recipe:ty, $check:expr) => {
        #[doc(hidden)]
        struct __SwitchboardExport;

        impl $crate::bindings::Guest for __SwitchboardExport {
            fn manifest() -> $crate::bindings::switchboard::recipes::types::Manifest {
                $crate::__private::manifest::<$recipe>()
            }

            fn handle(
                event: $crate::bindings::switchboard::recipes::types::Event,
            ) -> ::core::result::Result<
                $crate::bindings::switchboard::recipes::types::Outcome,
                $crate::bindings::switchboard::recipes::types::Error,
            > {
                $crate::__private::handle::<$recipe>(event)
            }

            fn check_settings(
                settings: ::std::string::String,
            ) -> ::core::result::Result<(), $crate::bindings::switchboard::recipes::types::Error>
            {
                let check: fn(&str) -> $crate::Result<()> = $check;
                check(&settings).map_err(Into::into)
            }
        }

        $crate::bindings::__export_recipe_world!(__SwitchboardExport with_types_in $crate::bindings);
    };
}

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

/// Generated bindings; not part of the SDK's stable surface.
#[doc(hidden)]
#[allow(missing_docs, clippy::too_many_arguments)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "switchboard:recipes/recipe",
        pub_export_macro: true,
        export_macro_name: "__export_recipe_world",
        default_bindings_module: "::switchboard_sdk::bindings",
        runtime_path: "::switchboard_sdk::__wit_bindgen::rt",
        // So a value `kv::once` returned can be kept with its claim.
        additional_derives: [::serde::Serialize, ::serde::Deserialize],
    });
}

#[doc(hidden)]
pub mod __private {
    use crate::bindings::switchboard::recipes::types as wit;

    pub fn manifest<R: crate::Recipe>() -> wit::Manifest {
        R::manifest().into_wit()
    }

    pub fn handle<R: crate::Recipe>(event: wit::Event) -> Result<wit::Outcome, wit::Error> {
        CURRENT_EVENT.with(|e| *e.borrow_mut() = event.id.clone());
        R::handle(event.into()).map(Into::into).map_err(Into::into)
    }

    std::thread_local! {
        static CURRENT_EVENT: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }

    /// The id of the event being handled (an instance handles one event).
    pub fn current_event() -> String {
        CURRENT_EVENT.with(|e| e.borrow().clone())
    }
}
