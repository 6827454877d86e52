//! Host bindings for the `switchboard:recipes/recipe` world, generated from `wit/`.
//!
//! Capabilities that reach vendors over the network are `async`; `kv` and `log` are
//! synchronous (sled and an in-memory buffer answer in microseconds).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "switchboard:recipes/recipe",
    imports: {
        "switchboard:recipes/contacts": async,
        "switchboard:recipes/leads": async,
        "switchboard:recipes/jobs": async,
        "switchboard:recipes/messages": async,
        "switchboard:recipes/data-export": async,
        "switchboard:recipes/vendor-http": async,
    },
    exports: { default: async },
});

pub use self::switchboard::recipes::types;
