//! The upgrade of an HTTP request to a WebSocket session, from the Http
//! phase to the Open phase.
//!
//! In order: the handshake is validated (`crate::handshake`: 400, 426); a
//! server that is stopping answers 503; a session slot is reserved against
//! `max_connections` (503 with `Retry-After` when full); then
//! [`Handler::on_upgrade`] decides: accept (attach a client to the Hub it
//! names), refuse (101, the handler's text frames, then its close frame:
//! no client is created) or reject (its HTTP response). Every path but
//! accept gives the slot back.
//!
//! On accept, [`Handler::on_open`] runs before the `101` is written: once
//! the peer sees the handshake complete, whatever `on_open` did
//! (subscriptions) is done. Bytes that came in behind the request (the
//! peer's first frames) are fed to the session at once.
//!
//! [`Handler::on_upgrade`]: crate::Handler::on_upgrade
//! [`Handler::on_open`]: crate::Handler::on_open

use std::sync::Arc;

use bytes::Bytes;
use realtime::{Client, Hub};

use super::{guarded, Connection, LoopCtx, OpenPhase, Phase, Stream};
use crate::codec::{self, Decoder};
use crate::deflate;
use crate::handler::Upgrade;
use crate::handshake;
use crate::http::{Head, HttpResponse};
use crate::stats::Counters;
use crate::wake::ConnTransport;

impl<S: Stream> Connection<S> {
    /// Handles a WebSocket upgrade request.
    pub(super) fn upgrade(&mut self, head: Head, ctx: &mut LoopCtx) {
        let accept = match handshake::validate(&head.request) {
            Ok(accept) => accept,
            Err(e) => return self.fail(e, ctx),
        };
        if !self.admit(&head, ctx) {
            return;
        }
        let Some((hub, auth)) = self.decide(&head, &accept, ctx) else {
            return;
        };
        let transport = Arc::new(ConnTransport {
            token: self.token,
            shared: Arc::clone(&ctx.shared),
        });
        match hub.attach(transport, auth) {
            Ok(client) => self.open(client, &head, &accept, ctx),
            Err(e) => {
                ctx.global.release();
                tracing::debug!(error = %e, "attach failed: 503");
                let response = HttpResponse::text(503, "unavailable\n");
                self.respond(&response, false, false, ctx);
            }
        }
    }

    /// Reserves a session slot; false if the request was answered instead
    /// (stopping, or at capacity: 503).
    fn admit(&mut self, head: &Head, ctx: &mut LoopCtx) -> bool {
        if ctx.stopping {
            let response = HttpResponse::text(503, "shutting down\n");
            self.respond(&response, false, false, ctx);
            return false;
        }
        if ctx.global.reserve() {
            return true;
        }
        Counters::add(&ctx.counters().rejected_over_capacity, 1);
        tracing::debug!(peer = %head.request.peer, "over capacity: 503");
        let response = HttpResponse::text(503, "server at capacity\n").header("Retry-After", "5");
        self.respond(&response, false, false, ctx);
        false
    }

    /// Asks the handler; the Hub and credentials to attach with if it
    /// accepted, else `None` (answered, slot released).
    fn decide(&mut self, head: &Head, accept: &str, ctx: &mut LoopCtx) -> Option<(Hub, Bytes)> {
        let handler = &ctx.handler;
        let decision = guarded("on_upgrade", || handler.on_upgrade(&head.request));
        match decision {
            Some(Upgrade::Accept { hub, auth }) => return Some((hub, auth)),
            Some(Upgrade::Reject(response)) => {
                Counters::add(&ctx.counters().refused, 1);
                self.respond(&response, false, false, ctx);
            }
            Some(Upgrade::Refuse {
                frames,
                code,
                reason,
            }) => {
                Counters::add(&ctx.counters().refused, 1);
                self.out.push(handshake::switching_protocols(accept, None));
                for frame in &frames {
                    self.out.push(codec::encode_text(frame));
                }
                self.out.push(codec::encode_close(code, &reason));
                self.start_closing(ctx);
            }
            None => {
                let response = HttpResponse::text(500, "internal error\n");
                self.respond(&response, false, false, ctx);
            }
        }
        ctx.global.release();
        None
    }

    /// Enters the Open phase with `client`, permessage-deflate negotiated
    /// from the request if the configuration allows; the request took
    /// `head.len` bytes of the buffer.
    fn open(&mut self, client: Client, head: &Head, accept: &str, ctx: &mut LoopCtx) {
        let Phase::Http(h) = &mut self.phase else {
            return;
        };
        let leftover = h.buf.split_off(head.len.min(h.buf.len()));
        Counters::add(&ctx.counters().upgrades, 1);
        Counters::add(&ctx.counters().connections, 1);
        let config = &ctx.global.config;
        let deflate = handshake::deflate(&head.request, config.compression);
        let decoder = match &deflate {
            Some(p) => Decoder::with_deflate(p.client_no_context),
            None => Decoder::default(),
        };
        self.out.set_deflate(deflate.map(|p| deflate::Outbound {
            window: p.server_window,
            // Thresholds past 4 GiB compress nothing anyway.
            threshold: u32::try_from(config.compression_threshold).unwrap_or(u32::MAX),
        }));
        self.phase = Phase::Open(OpenPhase {
            client: client.clone(),
            decoder,
            last_in: ctx.now,
            last_ping: ctx.now,
        });
        let handler = &ctx.handler;
        let opened = guarded("on_open", || handler.on_open(&client));
        self.out
            .push(handshake::switching_protocols(accept, deflate.as_ref()));
        if opened.is_none() {
            let _ = self.handler_panicked(ctx);
            return;
        }
        let config = &ctx.global.config;
        let at = ctx.now + config.ping_interval.min(config.idle_timeout);
        self.arm(at, ctx);
        if !leftover.is_empty() {
            let _ = self.ws_bytes(&leftover, ctx);
        }
    }
}
