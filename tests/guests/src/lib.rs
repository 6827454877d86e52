//! Paths of the wasm guests the tests and benchmarks use, built from source by `build.rs`.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));
