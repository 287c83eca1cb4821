//! `realtime-server`: the gateway binary.
//!
//! Reads the command line (and its environment variables, and an optional
//! TOML file), starts the gateway, and runs until SIGINT or SIGTERM, then
//! closes every client with 4200 and exits 0. SIGHUP reloads the TLS
//! certificate files (`--tls-cert`, `--tls-key`) without dropping
//! connections.

use std::process::ExitCode;

use clap::Parser;
use realtime_server::{Cli, Settings};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing_subscriber::EnvFilter;

/// The binary's allocator: jemalloc (feature `jemalloc`, on by default;
/// `--no-default-features` builds with the system allocator).
///
/// Why (issue 18): a gateway allocates on one thread and frees on another
/// all the time (an outbox block or an encoded frame allocated by the
/// thread that publishes, freed by the event loop that writes it). Under
/// glibc malloc such memory goes back to the allocating thread's arena and
/// much of it is kept, not returned: the 10-minute soak (10,000
/// connections, constant load) grew RSS by 15-16% after its warm-up while
/// the bytes in use stayed flat (malloc_stats), and `malloc_trim` or one
/// arena (`MALLOC_ARENA_MAX=1`, +6%) did not cure it. jemalloc returns
/// unused dirty pages to the system after a delay (`dirty_decay_ms`,
/// 10 s by default; tune with `_RJEM_MALLOC_CONF`), so RSS follows what is in
/// use; figures in BENCHMARKS.md ("Soak"). The library crates do not set
/// an allocator: an embedding application keeps its own.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[expect(
    clippy::print_stdout,
    reason = "the binary tells its operator where it listens"
)]
fn announce(settings: &Settings, addr: std::net::SocketAddr) {
    let s = if settings.tls.is_some() { "s" } else { "" };
    println!("realtime-server listening on ws{s}://{addr} (HTTP API on http{s}://{addr})");
    if settings.dev_app {
        let app = &settings.apps[0];
        println!(
            "development app (configure your own for production): app_id={} key={} secret={}",
            app.id, app.key, app.secret
        );
    } else {
        for app in &settings.apps {
            println!("app id={} key={}", app.id, app.key);
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::from_cli(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("realtime-server: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = EnvFilter::try_new(&settings.log_level).unwrap_or_else(|e| {
        eprintln!(
            "realtime-server: bad --log-level {:?} ({e}); using info",
            settings.log_level
        );
        EnvFilter::new("info")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    for app in &settings.apps {
        if !app.id.bytes().all(|b| b.is_ascii_digit()) {
            // Allowed (the Node SDK and pusher-js do not mind), but the
            // official Python SDK refuses such an app before it sends a
            // request: say so now rather than in someone's backend later.
            tracing::warn!(
                app = %app.id,
                "app id is not numeric: Pusher app ids are, and some official server SDKs (Python) refuse others"
            );
        }
    }

    let mut signals = match Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("realtime-server: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let running = match realtime_server::start(&settings) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("realtime-server: cannot start on {}: {e}", settings.bind);
            return ExitCode::FAILURE;
        }
    };
    announce(&settings, running.local_addr());
    let mut signal = None;
    for received in signals.forever() {
        if received != SIGHUP {
            signal = Some(received);
            break;
        }
        match running.reload_tls() {
            Ok(()) if running.is_tls() => tracing::info!("SIGHUP: TLS certificate reloaded"),
            Ok(()) => tracing::info!("SIGHUP: no TLS certificate to reload"),
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: TLS reload failed; the current certificate stays")
            }
        }
    }
    tracing::info!(?signal, "shutting down");
    running.shutdown();
    tracing::info!("stopped");
    ExitCode::SUCCESS
}
