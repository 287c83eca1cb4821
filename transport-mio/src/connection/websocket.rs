//! The Open phase: a WebSocket session attached to a Hub. Inbound bytes
//! are read into the loop's shared buffer and fed to the connection's
//! incremental [`Decoder`] (`codec.rs`), which keeps at most a frame header
//! and an unfinished message, so an idle connection holds no buffer.
//!
//! [`Connection::ws_bytes`] takes a byte slice and acts on each unit the
//! decoder yields: a message goes to [`Handler::on_message`], a ping is
//! answered with a pong (queued behind what waits, dropped when the socket
//! is far behind), a pong or a fragment counts as activity
//! ([`Handler::on_activity`]), a close frame or a violation ends the session
//! with the peer's code or the violation's (1002, 1007, 1009). A handler
//! that panics ends it with 1011; one that closes the client stops the
//! dispatch of the rest of the read.
//!
//! Timers: a ping is sent after `ping_interval` without inbound traffic or
//! ping, and the session ends with 1001 after `idle_timeout` without
//! inbound traffic.
//!
//! Outbound frames do not pass here: they are drained from the client's
//! outbox by the writer (`write.rs`).
//!
//! [`Handler::on_message`]: crate::Handler::on_message
//! [`Handler::on_activity`]: crate::Handler::on_activity

use std::io;
use std::ops::ControlFlow;
use std::time::Instant;

use bytes::Bytes;
use realtime::MessageType;

use super::{
    guarded, Again, CloseHow, Connection, LoopCtx, Outcome, Phase, Stream, READS_PER_TURN,
};
use crate::codec::{self, Flow, Inbound, Violation};
use crate::stats::{Counters, Ending};

#[cfg(doc)]
use crate::codec::Decoder;

impl<S: Stream> Connection<S> {
    /// Reads frames until the socket has nothing more (or the turn ends).
    pub(super) fn read_ws(&mut self, ctx: &mut LoopCtx) -> Outcome {
        for _ in 0..READS_PER_TURN {
            if !self.is_open() {
                return self.after_ws(ctx);
            }
            let mut buf = std::mem::take(&mut ctx.read_buf);
            let read = self.out.sock.read(&mut buf);
            let outcome = match read {
                Ok(0) => self.close_ws(1006, "", Ending::Reset, CloseHow::Drop, ctx),
                Ok(n) => {
                    Counters::add(&ctx.counters().bytes_in, n as u64);
                    self.ws_bytes(&buf[..n], ctx)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ctx.read_buf = buf;
                    return self.after_ws(ctx);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => Outcome::Keep,
                Err(_) => self.close_ws(1006, "", Ending::Reset, CloseHow::Drop, ctx),
            };
            ctx.read_buf = buf;
            if outcome == Outcome::Done {
                return Outcome::Done;
            }
        }
        ctx.again.push((self.token, Again::Read));
        self.after_ws(ctx)
    }

    /// After reading: flush pongs, or go on closing.
    pub(super) fn after_ws(&mut self, ctx: &mut LoopCtx) -> Outcome {
        match self.phase {
            Phase::Open(_) => {
                if self.out.is_empty() {
                    return Outcome::Keep;
                }
                // Not a bare flush: if the outbox drain was waiting for the
                // socket (the writer held the rest of a batch), emptying it
                // here consumes the writable readiness it waited for, and no
                // wake comes for a scheduled client: the drain must go on
                // now, or the connection stalls for good.
                self.drain(ctx)
            }
            Phase::Closing(_) => self.drive_closing(ctx),
            Phase::Http(_) => Outcome::Keep,
        }
    }

    /// Feeds inbound bytes to the decoder and acts on what it yields.
    pub(super) fn ws_bytes(&mut self, data: &[u8], ctx: &mut LoopCtx) -> Outcome {
        let Phase::Open(o) = &mut self.phase else {
            return Outcome::Keep;
        };
        o.last_in = ctx.now;
        let mut decoder = std::mem::take(&mut o.decoder);
        let max = ctx.global.config.max_message_size;
        let mut outcome = Outcome::Keep;
        let result = decoder.feed(data, max, &mut |unit| match self.on_unit(unit, ctx) {
            Some(ended) => {
                outcome = ended;
                Flow::Stop
            }
            None => Flow::Continue,
        });
        if let Phase::Open(o) = &mut self.phase {
            o.decoder = decoder;
        }
        match result {
            Ok(()) => outcome,
            Err(v) => self.violation(v, ctx),
        }
    }

    /// Ends the session on bad input, with the violation's close code.
    fn violation(&mut self, v: Violation, ctx: &mut LoopCtx) -> Outcome {
        if let Some(client) = self.client() {
            tracing::debug!(client = client.id(), violation = %v, "closing on bad input");
        }
        let (code, reason) = (v.close_code(), v.reason());
        self.close_ws(code, reason, Ending::Violation, CloseHow::Linger, ctx)
    }

    /// Acts on one inbound unit; `Some` when dispatch must stop (the
    /// session ended or the handler closed the client), with the outcome.
    fn on_unit(&mut self, unit: Inbound, ctx: &mut LoopCtx) -> Option<Outcome> {
        if !self.is_open() {
            return Some(Outcome::Keep);
        }
        match unit {
            Inbound::Message(kind, data) => self.on_message(kind, data, ctx),
            Inbound::Ping(payload) => {
                let ended = self.activity(ctx);
                if ended.is_none() {
                    self.out.push_pong(&payload);
                }
                ended
            }
            Inbound::Pong | Inbound::Fragment => self.activity(ctx),
            Inbound::Close(close) => {
                let code = close.as_ref().map_or(1000, |(code, _)| *code);
                Some(self.close_ws(code, "", Ending::PeerClose, CloseHow::Linger, ctx))
            }
        }
    }

    /// A complete message: to [`Handler::on_message`](crate::Handler).
    fn on_message(&mut self, kind: MessageType, data: Bytes, ctx: &mut LoopCtx) -> Option<Outcome> {
        let client = self.client()?.clone();
        Counters::add(&ctx.counters().frames_in, 1);
        let handler = &ctx.handler;
        if guarded("on_message", || handler.on_message(&client, kind, data)).is_none() {
            return Some(self.handler_panicked(ctx));
        }
        if client.is_closed() {
            // Closed by the handler: stop dispatching; the queued
            // notification (or this call) finishes the close.
            return Some(self.close_app(ctx));
        }
        None
    }

    /// A frame that does not complete a message arrived: tells the handler
    /// ([`Handler::on_activity`]). Returns the outcome if the session
    /// ended (the handler panicked).
    ///
    /// [`Handler::on_activity`]: crate::Handler::on_activity
    fn activity(&mut self, ctx: &mut LoopCtx) -> Option<Outcome> {
        let client = self.client()?;
        let handler = &ctx.handler;
        if guarded("on_activity", || handler.on_activity(client)).is_some() {
            return None;
        }
        Some(self.handler_panicked(ctx))
    }

    /// Ends the session after a handler panicked: 1011.
    pub(super) fn handler_panicked(&mut self, ctx: &mut LoopCtx) -> Outcome {
        let (code, reason) = (1011, "internal error");
        self.close_ws(code, reason, Ending::HandlerPanic, CloseHow::Linger, ctx)
    }

    /// The Open phase's timer: ends an idle session, or sends a ping when
    /// due; the next deadline otherwise.
    pub(super) fn open_deadline(&mut self, ctx: &mut LoopCtx) -> ControlFlow<Outcome, Instant> {
        let config = &ctx.global.config;
        let (interval, idle_timeout) = (config.ping_interval, config.idle_timeout);
        let Phase::Open(o) = &mut self.phase else {
            return ControlFlow::Break(Outcome::Keep);
        };
        let now = ctx.now;
        let idle_at = o.last_in + idle_timeout;
        if now >= idle_at {
            tracing::debug!(client = o.client.id(), "idle timeout");
            let how = CloseHow::BestEffort;
            return ControlFlow::Break(self.close_ws(1001, "idle timeout", Ending::Idle, how, ctx));
        }
        let ping_at = o.last_in.max(o.last_ping) + interval;
        if now < ping_at {
            return ControlFlow::Continue(idle_at.min(ping_at));
        }
        o.last_ping = now;
        Counters::add(&ctx.counters().pings_sent, 1);
        self.out.push(codec::encode_ping(b""));
        if self.flush(ctx).is_err() {
            let how = CloseHow::Drop;
            return ControlFlow::Break(self.close_ws(1006, "", Ending::Reset, how, ctx));
        }
        if self.out.is_empty() {
            // As in `after_ws`: a drain that waited for the socket resumes
            // (a no-op when none waited).
            ctx.again.push((self.token, Again::Drain));
        }
        ControlFlow::Continue(idle_at.min(now + interval))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::connection::testing::{client_frame, close_code, server_frames, Rig, UPGRADE};
    use crate::connection::Outcome;

    /// Opens a session, sends `input` and returns the frames written.
    fn answer_to(config: Config, input: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut rig = Rig::new(config);
        let _client = rig.open();
        assert_eq!(rig.send(input), Outcome::Keep);
        assert!(!rig.conn.is_open());
        server_frames(&rig.written())
    }

    #[test]
    fn protocol_violations_close_with_their_codes() {
        let mut rsv = client_frame(true, 0x1, b"x");
        rsv[0] |= 0x40;
        let mut unmasked = client_frame(true, 0x1, b"");
        unmasked[1] &= 0x7f;
        let cases = [
            (rsv, 1002),
            (unmasked, 1002),
            (client_frame(true, 0x1, b"\xff"), 1007),
            (client_frame(true, 0x2, &[0; 300]), 1009),
        ];
        for (input, code) in cases {
            let config = Config {
                max_message_size: 256,
                ..Config::default()
            };
            let frames = answer_to(config, &input);
            assert_eq!(frames.len(), 1, "{input:x?}");
            assert_eq!(frames[0].0, 0x8);
            assert_eq!(close_code(&frames[0].1), code, "{input:x?}");
        }
    }

    #[test]
    fn a_message_before_a_bad_frame_in_one_read_is_echoed_before_the_close() {
        let mut input = client_frame(true, 0x1, b"hi");
        input.extend(client_frame(true, 0x3, b""));
        let frames = answer_to(Config::default(), &input);
        assert_eq!(frames[0], (0x1, b"hi".to_vec()));
        assert_eq!(frames[1].0, 0x8);
        assert_eq!(close_code(&frames[1].1), 1002);
    }

    #[test]
    fn pings_are_ponged_and_messages_echoed_split_at_any_byte() {
        let mut rig = Rig::new(Config::default());
        let client = rig.open();
        let mut input = client_frame(true, 0x9, b"p");
        input.extend(client_frame(false, 0x1, b"hel"));
        input.extend(client_frame(true, 0x0, b"lo"));
        for byte in &input {
            assert_eq!(rig.send(std::slice::from_ref(byte)), Outcome::Keep);
        }
        assert_eq!(rig.conn.on_notified(&mut rig.ctx), Outcome::Keep);
        let frames = server_frames(&rig.written());
        assert_eq!(frames, [(0xA, b"p".to_vec()), (0x1, b"hello".to_vec())]);
        assert!(!client.is_closed());
    }

    /// An upgrade request offering permessage-deflate with `params`.
    fn offering(params: &str) -> Vec<u8> {
        let head = std::str::from_utf8(UPGRADE).unwrap();
        let head = head.trim_end_matches("\r\n");
        format!("{head}\r\nSec-WebSocket-Extensions: permessage-deflate{params}\r\n\r\n")
            .into_bytes()
    }

    /// A compressed client frame (RSV1) carrying `payload`.
    fn compressed(payload: &[u8]) -> Vec<u8> {
        let deflated = crate::deflate::compress(payload, 15).unwrap();
        let mut f = client_frame(true, 0x1, &deflated);
        f[0] |= 0x40;
        f
    }

    #[test]
    fn an_offer_is_answered_and_compressed_messages_flow_both_ways() {
        let mut rig = Rig::new(Config::default());
        let (client, response) = rig.open_with(&offering("; client_max_window_bits"));
        assert!(
            response.contains(
                "\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n"
            ),
            "{response}"
        );
        let text = "{\"event\":\"x\",\"data\":\"".to_owned() + &"abc".repeat(300) + "\"}";
        assert_eq!(rig.send(&compressed(text.as_bytes())), Outcome::Keep);
        assert_eq!(rig.conn.on_notified(&mut rig.ctx), Outcome::Keep);
        let written = rig.written();
        // The echo (over the threshold) goes out compressed: RSV1, shorter.
        assert_eq!(written[0], 0xC1);
        assert!(written.len() < text.len() / 4);
        let frames = server_frames(&written);
        let mut context = None;
        let mut inflater = crate::deflate::Inflater {
            mode: crate::deflate::Inflate::Shared,
            context: &mut context,
        };
        assert_eq!(
            inflater.inflate(&frames[0].1, 1 << 20).unwrap(),
            text.as_bytes()
        );
        // A short echo goes out plain.
        assert_eq!(rig.send(&client_frame(true, 0x1, b"hi")), Outcome::Keep);
        assert_eq!(rig.conn.on_notified(&mut rig.ctx), Outcome::Keep);
        assert_eq!(rig.written(), b"\x81\x02hi");
        assert!(rig.conn.decoder_has_inflate_context());
        assert!(!client.is_closed());
    }

    #[test]
    fn client_no_context_takeover_keeps_no_inflate_context() {
        let mut rig = Rig::new(Config::default());
        let (_client, response) = rig.open_with(&offering("; client_no_context_takeover"));
        assert!(
            response.contains("; client_no_context_takeover\r\n"),
            "{response}"
        );
        assert_eq!(rig.send(&compressed(&[b'a'; 1000])), Outcome::Keep);
        assert!(rig.conn.is_open());
        assert!(!rig.conn.decoder_has_inflate_context());
    }

    #[test]
    fn compression_off_declines_and_rsv1_is_then_1002() {
        let config = Config {
            compression: false,
            ..Config::default()
        };
        let mut rig = Rig::new(config);
        let (_client, response) = rig.open_with(&offering(""));
        assert!(!response.contains("Sec-WebSocket-Extensions"), "{response}");
        assert_eq!(rig.send(&compressed(b"hello hello hello")), Outcome::Keep);
        let frames = server_frames(&rig.written());
        assert_eq!(frames[0].0, 0x8);
        assert_eq!(close_code(&frames[0].1), 1002);
    }

    #[test]
    fn a_compressed_bomb_is_1009() {
        let config = Config {
            max_message_size: 64 * 1024,
            ..Config::default()
        };
        let mut rig = Rig::new(config);
        rig.open_with(&offering(""));
        let bomb = crate::deflate::compress(&vec![0; 8 << 20], 15).unwrap();
        // FIN, RSV1, binary; masked with a zero mask.
        let mut f = vec![0xC2, 0x80 | 126];
        f.extend_from_slice(&(bomb.len() as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 0]);
        f.extend_from_slice(&bomb);
        assert_eq!(rig.send(&f), Outcome::Keep);
        let frames = server_frames(&rig.written());
        assert_eq!(frames[0].0, 0x8);
        assert_eq!(close_code(&frames[0].1), 1009);
    }
}
