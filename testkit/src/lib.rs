//! `testkit`: the test code of the gateway, kept out of the product crates.
//!
//! - [`fuzz`]: one function per fuzz target in `fuzz/fuzz_targets/`, each
//!   taking arbitrary bytes and panicking only when the code under test
//!   breaks a property. The targets are one-line calls into them. The Hub
//!   targets (`hub_ops`, `presence_info`, `channel_name`) carry their own
//!   oracles here, written against `realtime`'s public API only; the
//!   server and transport targets call the `#[doc(hidden)]` hooks of
//!   `realtime-server` and `realtime-mio`, whose parsers are private.
//! - [`replay`]: runs the committed inputs (`fuzz/seeds/<target>/`,
//!   `fuzz/regressions/<target>/`) through those functions on stable Rust,
//!   so every `cargo test` checks what the fuzzers found
//!   (`tests/fuzz_replay.rs`).
//!
//! Not published and never a dependency of a product crate.

mod channel_name;
pub mod fuzz;
pub mod hub_ops;
mod json;
mod presence_info;
mod probe;
pub mod replay;
