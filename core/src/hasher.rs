//! The hasher of the Hub's hash tables: the channel table, the client
//! table, and each client's subscriptions.
//!
//! Their keys are channel names that clients choose, so the hasher must
//! resist collision flooding: aHash with keys drawn at random per table
//! (`ahash::RandomState`, seeded from the OS), not a fixed-key hash
//! (FxHash) and not foldhash, whose authors disclaim resistance against an
//! attacker who studies a long-running process. It replaces std's
//! SipHash-1-3, which cost about 20 ns per subscribe (two hashes of the
//! name: the channel table and the client's subscriptions; 180 -> 160 ns
//! at 1k members, issue 16 item 4, BENCHMARKS.md).

/// The `BuildHasher` of every hash table in the Hub.
pub(crate) type Hasher = ahash::RandomState;
