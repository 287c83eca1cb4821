//! The end of a connection: closing a WebSocket session and lingering.
//!
//! # Closing a WebSocket
//!
//! Every end of the Open phase goes through [`Connection::close_ws`]: count
//! the ending and its code, release the connection slot, move what the
//! client's outbox holds into the writer and queue the close frame behind
//! it (so what was produced before a protocol error or the peer's close,
//! such as the echo of a message that came in the same read, goes out
//! first), close the client (which removes it from its channels), call
//! [`Handler::on_close`] once, then either linger (a close frame was
//! queued) or drop the socket (reset, write timeout, idle timeout after a
//! best-effort close frame). For a client the application or the Hub
//! closed, nothing is taken: `pop_frame` yields nothing once a client is
//! closed (core's rule: nothing is delivered after a close).
//!
//! # Lingering
//!
//! In the Closing phase what is queued (ending with a close frame or an
//! HTTP response) is flushed, the write side is shut down and inbound bytes
//! are discarded until the peer's end of stream or the linger deadline
//! (`write_timeout`, at most [`LINGER`]). Reading to the end avoids the RST
//! that closing a socket with unread input causes, which could destroy the
//! close frame in flight.
//!
//! [`Handler::on_close`]: crate::Handler::on_close

use std::io;
use std::time::{Duration, Instant};

use realtime::Client;

use super::{
    guarded, Again, CloseHow, ClosingPhase, Connection, LoopCtx, Outcome, Phase, Stream,
    READS_PER_TURN,
};
use crate::codec;
use crate::stats::{Counters, Ending};

/// Longest wait for the peer's end of stream after our close.
const LINGER: Duration = Duration::from_secs(2);

/// When a connection that starts closing now gives up on the peer.
fn linger_deadline(ctx: &LoopCtx) -> Instant {
    ctx.now + ctx.global.config.write_timeout.min(LINGER)
}

impl<S: Stream> Connection<S> {
    /// An application or the Hub closed the client: close the session with
    /// the reason it recorded.
    pub(super) fn close_app(&mut self, ctx: &mut LoopCtx) -> Outcome {
        let Some(client) = self.client() else {
            return Outcome::Keep;
        };
        // The Hub records its reasons before it shuts a client (1008
        // "slow consumer" on overflow, 1001 on Hub close); an application's
        // plain `close()` has none: a normal closure.
        let (code, reason) = match client.close_reason() {
            Some((code, reason)) => (code, reason.to_owned()),
            None => (1000, String::new()),
        };
        self.close_ws(code, &reason, Ending::AppClose, CloseHow::Linger, ctx)
    }

    /// Ends the WebSocket session (see the module docs).
    pub(super) fn close_ws(
        &mut self,
        code: u16,
        reason: &str,
        ending: Ending,
        how: CloseHow,
        ctx: &mut LoopCtx,
    ) -> Outcome {
        if !self.is_open() {
            return Outcome::Keep;
        }
        let deadline = linger_deadline(ctx);
        let closing = Phase::Closing(ClosingPhase {
            deadline,
            shut: false,
        });
        let Phase::Open(open) = std::mem::replace(&mut self.phase, closing) else {
            return Outcome::Keep;
        };
        let client = open.client;
        end_session(&client, code, ending, ctx);
        if how != CloseHow::Drop {
            // After what is already encoded (at most one batch, pongs) and
            // what the outbox held.
            self.out.take_queued(&client, ctx.counters());
            self.out.push(codec::encode_close(code, reason));
        }
        client.close();
        let handler = &ctx.handler;
        let _ = guarded("on_close", || handler.on_close(&client));
        drop(client);
        match how {
            CloseHow::Drop => Outcome::Done,
            CloseHow::BestEffort => {
                let _ = self.flush(ctx);
                Outcome::Done
            }
            CloseHow::Linger => {
                self.arm(deadline, ctx);
                self.drive_closing(ctx)
            }
        }
    }

    /// Enters the Closing phase from the Http phase (the queued bytes go
    /// out first).
    pub(super) fn start_closing(&mut self, ctx: &mut LoopCtx) {
        let deadline = linger_deadline(ctx);
        self.phase = Phase::Closing(ClosingPhase {
            deadline,
            shut: false,
        });
        self.arm(deadline, ctx);
    }

    /// Flushes, shuts the write side, discards input until end of stream.
    pub(super) fn drive_closing(&mut self, ctx: &mut LoopCtx) -> Outcome {
        if let Err(e) = self.flush(ctx) {
            tracing::debug!(token = self.token.0, error = %e, "closing: write failed, unsent bytes dropped");
            return Outcome::Done;
        }
        let Phase::Closing(c) = &mut self.phase else {
            return Outcome::Keep;
        };
        if self.out.is_empty() && !c.shut {
            c.shut = true;
            let _ = self.out.sock.shutdown_write();
        }
        let shut = c.shut;
        for _ in 0..READS_PER_TURN {
            match self.out.sock.read(&mut ctx.read_buf) {
                Ok(0) if shut => return Outcome::Done,
                // The peer is done sending; we still have bytes to send.
                Ok(0) => return Outcome::Keep,
                Ok(n) => Counters::add(&ctx.counters().bytes_in, n as u64),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Outcome::Keep,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let unsent = !self.out.is_empty();
                    tracing::debug!(token = self.token.0, error = %e, unsent, "closing: read failed");
                    return Outcome::Done;
                }
            }
        }
        ctx.again.push((self.token, Again::Read));
        Outcome::Keep
    }
}

/// Counts a session's end and gives its connection slot back.
fn end_session(client: &Client, code: u16, ending: Ending, ctx: &LoopCtx) {
    let counters = ctx.counters();
    counters.ended(ending, code);
    // Relaxed: a gauge.
    counters
        .connections
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    ctx.global.release();
    tracing::debug!(client = client.id(), code, ?ending, "websocket closed");
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::connection::testing::{client_frame, close_code, server_frames, Rig};
    use crate::connection::Outcome;

    #[test]
    fn the_close_frame_goes_out_after_what_waits_and_what_was_queued() {
        let mut rig = Rig::new(Config::default());
        let client = rig.open();
        rig.sock().room = 0;
        client.send_text("a").unwrap();
        client.send_text("b").unwrap();
        assert_eq!(rig.conn.on_notified(&mut rig.ctx), Outcome::Keep);
        assert!(!rig.conn.out.is_empty(), "the socket pushed back");
        // Queued while the writer is blocked: it stays in the outbox.
        client.send_text("c").unwrap();
        assert_eq!(client.pending(), 1);

        // The peer closes: our close goes behind "a", "b" and "c".
        let close = client_frame(true, 0x8, &3001u16.to_be_bytes());
        assert_eq!(rig.send(&close), Outcome::Keep);
        assert!(client.is_closed());
        assert_eq!(rig.closed(), 1);
        assert_eq!(rig.writable(usize::MAX), Outcome::Keep);
        let frames = server_frames(&rig.written());
        let texts: Vec<&[u8]> = frames[..3].iter().map(|(_, p)| p.as_slice()).collect();
        assert_eq!(texts, [b"a", b"b", b"c"]);
        assert_eq!(frames.len(), 4);
        assert_eq!(frames[3].0, 0x8);
        assert_eq!(close_code(&frames[3].1), 3001);
    }

    #[test]
    fn lingering_discards_input_until_the_peers_end_of_stream() {
        let mut rig = Rig::new(Config::default());
        let client = rig.open();
        client.close_with(4000, "bye");
        assert_eq!(rig.conn.on_notified(&mut rig.ctx), Outcome::Keep);
        let frames = server_frames(&rig.written());
        assert_eq!(frames.len(), 1);
        assert_eq!(close_code(&frames[0].1), 4000);
        assert!(rig.sock().is_shut(), "the write side is shut once flushed");

        // Whatever the peer still sends is read and dropped.
        let late = client_frame(true, 0x1, b"too late");
        assert_eq!(rig.send(&late), Outcome::Keep);
        assert!(rig.sock().input.is_empty());
        assert!(rig.written().is_empty());

        rig.sock().eof = true;
        assert_eq!(rig.conn.on_readable(&mut rig.ctx), Outcome::Done);
        assert_eq!(rig.closed(), 1);
    }
}
