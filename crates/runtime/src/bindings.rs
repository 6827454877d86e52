//! Host bindings for the `switchboard:recipes/recipe` world, generated from `wit/`.
//!
//! Capabilities that reach vendors or the store are `async` (a store may be a server:
//! PostgreSQL); `log`, `settings` and `clock` are synchronous.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "switchboard:recipes/recipe",
    imports: {
        "switchboard:recipes/contacts": async,
        "switchboard:recipes/leads": async,
        "switchboard:recipes/jobs": async,
        "switchboard:recipes/messages": async,
        "switchboard:recipes/data-export": async,
        "switchboard:recipes/vendor-http": async,
        "switchboard:recipes/kv": async,
    },
    exports: { default: async },
});

pub use self::switchboard::recipes::types;
