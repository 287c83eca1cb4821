//! The server: binds the listeners, starts one event loop per worker, and
//! shuts them down.
//!
//! # Accepting
//!
//! With [`AcceptMode::ReusePort`] (the default) every loop owns a listener
//! bound to the same address with `SO_REUSEPORT`; the kernel spreads new
//! connections across them by a hash of the 4-tuple, so no socket crosses a
//! thread and no loop is the accept bottleneck. The spread is statistical,
//! not exact (a handful of connections may all land on one loop). With
//! [`AcceptMode::RoundRobin`] loop 0 owns the only listener and hands every
//! other socket to the next loop through its queue and waker.
//!

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use mio::net::TcpListener;
use mio::{Interest, Poll, Waker};
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::{AcceptMode, Config};
use crate::connection::LoopCtx;
use crate::event_loop::{EventLoop, LISTENER, WAKER};
use crate::handler::Handler;
use crate::limits::Global;
use crate::slots::Slots;
use crate::stats::Stats;
use crate::wake::LoopShared;

/// A running WebSocket server: N event loops serving one [`Handler`].
///
/// Dropping it shuts it down like [`Server::shutdown`].
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use realtime::{Client, Hub, MessageType};
/// use realtime_mio::{Config, Handler, Request, Server, Upgrade};
///
/// struct App(Hub);
/// impl Handler for App {
///     fn on_upgrade(&self, _: &Request) -> Upgrade {
///         Upgrade::Accept { hub: self.0.clone(), auth: Bytes::new() }
///     }
///     fn on_message(&self, client: &Client, _: MessageType, data: Bytes) {
///         let _ = client.send_text(data);
///     }
/// }
///
/// let config = Config { bind: "127.0.0.1:0".parse().unwrap(), workers: 1, ..Config::default() };
/// let server = Server::bind(config, App(Hub::new())).unwrap();
/// let url = format!("ws://{}/", server.local_addr());
/// let (mut ws, _) = tungstenite::connect(url).unwrap();
/// ws.send(tungstenite::Message::text("ping?")).unwrap();
/// assert_eq!(ws.read().unwrap(), tungstenite::Message::text("ping?"));
/// server.shutdown();
/// ```
pub struct Server {
    local_addr: SocketAddr,
    global: Arc<Global>,
    loops: Arc<[Arc<LoopShared>]>,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    /// Binds the listener(s) and starts the event loops.
    ///
    /// # Errors
    ///
    /// Binding, `Poll` creation or thread spawning failed.
    pub fn bind(config: Config, handler: impl Handler) -> io::Result<Server> {
        let handler: Arc<dyn Handler> = Arc::new(handler);
        let n = config.loops();
        let global = Arc::new(Global::new(config.clone()));
        let mut polls = Vec::with_capacity(n);
        let mut shared = Vec::with_capacity(n);
        for _ in 0..n {
            let poll = Poll::new()?;
            let waker = Waker::new(poll.registry(), WAKER)?;
            shared.push(Arc::new(LoopShared::new(waker)));
            polls.push(poll);
        }
        let peers: Arc<[Arc<LoopShared>]> = shared.into();
        let listeners = bind_listeners(&config, n)?;
        let local_addr = listeners
            .first()
            .map(TcpListener::local_addr)
            .transpose()?
            .unwrap_or(config.bind);
        let mut listeners = listeners.into_iter();
        let mut threads = Vec::with_capacity(n);
        let now = Instant::now();
        let mut server = Server {
            local_addr,
            global: Arc::clone(&global),
            loops: Arc::clone(&peers),
            threads: Vec::new(),
        };
        for (index, poll) in polls.into_iter().enumerate() {
            let mut listener = listeners.next();
            if let Some(l) = &mut listener {
                poll.registry().register(l, LISTENER, Interest::READABLE)?;
            }
            let event_loop = EventLoop {
                index,
                poll,
                listener,
                peers: Arc::clone(&peers),
                next_peer: 0,
                conns: Slots::new(),
                ctx: LoopCtx::new(
                    Arc::clone(&handler),
                    Arc::clone(&global),
                    Arc::clone(&peers[index]),
                    config.tick(),
                    now,
                ),
                stop_deadline: None,
                accept_retry: None,
            };
            let spawned = std::thread::Builder::new()
                .name(format!("rt-mio-{index}"))
                .spawn(move || event_loop.run());
            match spawned {
                Ok(handle) => threads.push(handle),
                Err(e) => {
                    server.threads = threads;
                    server.stop(1001, "server shutdown");
                    return Err(e);
                }
            }
        }
        server.threads = threads;
        tracing::info!(addr = %local_addr, loops = n, "listening");
        Ok(server)
    }

    /// The address the server listens on (the actual port when bound to
    /// port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Open WebSocket connections.
    pub fn connections(&self) -> usize {
        self.global.open_sessions()
    }

    /// The number of event loops.
    pub fn loops(&self) -> usize {
        self.loops.len()
    }

    /// Counters summed over every loop.
    pub fn stats(&self) -> Stats {
        let mut stats = Stats::default();
        for shared in self.loops.iter() {
            stats.add(&shared.counters);
        }
        stats.http_body_bytes = self.global.body_bytes() as u64;
        stats
    }

    /// Per-loop counters, in loop order (to see how connections spread).
    pub fn loop_stats(&self) -> Vec<Stats> {
        self.loops
            .iter()
            .map(|shared| {
                let mut stats = Stats::default();
                stats.add(&shared.counters);
                stats
            })
            .collect()
    }

    /// Shuts down with close code 1001 ("going away"): see
    /// [`Server::shutdown_with`].
    pub fn shutdown(self) {
        self.shutdown_with(1001, "server shutdown");
    }

    /// Stops accepting, sends a close frame with `code` and `reason` to
    /// every client (closing it on its Hub, so [`Handler::on_close`] runs),
    /// flushes for at most `shutdown_timeout`, drops the remaining sockets
    /// and joins the loop threads.
    pub fn shutdown_with(mut self, code: u16, reason: &str) {
        self.stop(code, reason);
    }

    fn stop(&mut self, code: u16, reason: &str) {
        for shared in self.loops.iter() {
            shared.stop(code, reason);
        }
        for handle in self.threads.drain(..) {
            if handle.join().is_err() {
                tracing::error!("event loop thread panicked");
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.stop(1001, "server shutdown");
        }
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("loops", &self.loops.len())
            .field("connections", &self.connections())
            .finish()
    }
}

/// One listener per loop (`ReusePort`) or one for loop 0.
fn bind_listeners(config: &Config, loops: usize) -> io::Result<Vec<TcpListener>> {
    let count = match config.accept {
        AcceptMode::ReusePort => loops,
        AcceptMode::RoundRobin => 1,
    };
    let reuse_port = config.accept == AcceptMode::ReusePort && count > 1;
    let mut addr = config.bind;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        if reuse_port {
            set_reuse_port(&socket)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(i32::try_from(config.backlog).unwrap_or(i32::MAX))?;
        let listener = TcpListener::from_std(socket.into());
        // Port 0: the others join the port the first one got.
        addr = listener.local_addr()?;
        out.push(listener);
    }
    Ok(out)
}

#[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
fn set_reuse_port(socket: &Socket) -> io::Result<()> {
    socket.set_reuse_port(true)
}

#[cfg(not(all(unix, not(any(target_os = "solaris", target_os = "illumos")))))]
fn set_reuse_port(_socket: &Socket) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "SO_REUSEPORT is not available: use AcceptMode::RoundRobin",
    ))
}
