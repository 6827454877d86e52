//! `hello`: counts events per kind in kv and logs them. The smallest useful recipe, and the
//! one the README and the tests use.

use switchboard_sdk::prelude::*;

struct Hello;

impl Recipe for Hello {
    fn manifest() -> Manifest {
        Manifest::new("hello", env!("CARGO_PKG_VERSION"))
            .description("Counts events per kind in kv and logs them")
            .on_webhook("*", "*")
            .uses(Capability::Kv)
    }

    fn handle(event: Event) -> Result<Outcome> {
        let key = format!("count/{}", event.kind);
        let count = kv::increment(&key, 1)?;
        log::with(
            log::Level::Info,
            &format!("{} event #{count}", event.kind),
            &[("kind", &event.kind), ("source", &event.source)],
        );
        Ok(Outcome::done(format!("{} seen {count} time(s)", event.kind)))
    }
}

export_recipe!(Hello);
