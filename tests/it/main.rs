//! Integration tests: real wasm components built from source (see `tests/guests`), a real
//! sled store on disk, the real `switchboard` binary.

mod cli;
mod console;
mod contracts;
mod faults;
mod hosts;
mod loading;
mod recipes;
mod sandbox;
mod serve;
mod support;
mod vendors;
mod watch;
