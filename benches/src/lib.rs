//! `realtime-benches`: criterion benchmarks of the `realtime` Hub and the
//! `broadcasting` bus, each measured beside a lock-based baseline written
//! the way the Go reference works (issue #5), and the load generator
//! (`src/bin/loadgen.rs`).
//!
//! The library holds what the bench targets share:
//!
//! - [`BaselineHub`] / [`ClientB`]: one global `RwLock` around
//!   `HashMap<String, Vec<Arc<ClientB>>>`, the member `Vec` cloned on
//!   broadcast, a bounded crossbeam channel per client (`baseline.rs`);
//! - [`BaselineBus`]: the reference's Memory driver (`bus_baseline.rs`);
//! - fixtures: attached Hub clients with no thread each, inline draining
//!   outside the timed region, a crew of publisher threads (`fixture.rs`);
//! - [`wire`]: what the load generator and the soak driver
//!   (`src/bin/soak/`) write and read on their sockets: client WebSocket
//!   frames, a connect from a chosen 127.0.0.0/8 source address, and a
//!   keep-alive HTTP client that signs Pusher API requests.
//!
//! The groups (`benches/*.rs`, criterion, `harness = false`) and their
//! figures are described in `BENCHMARKS.md` at the workspace root, as are
//! two examples that explain figures rather than track them:
//! `examples/fanout_floor.rs` (a cost model of the per-recipient fan-out
//! work, beside the Hub) and `examples/bus_select.rs` (why the Memory
//! driver's publish is slow, in crossbeam alone).

mod baseline;
mod bus_baseline;
pub mod fixture;
pub mod wire;

pub use baseline::{BaselineHub, ClientB};
pub use bus_baseline::BaselineBus;
