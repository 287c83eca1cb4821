//! The Http phase: plain HTTP/1.1 requests on the WebSocket port, until an
//! upgrade or the end of the connection.
//!
//! The request head (≤ 8 KiB) and body are read into a buffer that exists
//! only in this phase, and parsed there (`crate::http`) after each read; a
//! request is served once it is complete, one at a time: the next one is
//! looked at only once the previous response has been written (so a peer
//! that pipelines and never reads holds one response, not many).
//!
//! For each request, in order: an upgrade request goes to `handshake.rs`;
//! the head alone is shown once to [`Handler::on_http_head`], which may
//! answer before any body byte is buffered; the body bytes held are
//! reserved against the server-wide `max_http_buffer` ([`BodyBudget`], 503
//! beyond it); a complete body (`Content-Length`, or `chunked` decoded
//! incrementally) goes with the request to [`Handler::on_http`]. The answer
//! keeps the connection (keep-alive) or starts closing it; error answers
//! always close.
//!
//! Timers: a socket that sends nothing is dropped at `silent_timeout`; once
//! it speaks, each request must complete within `handshake_timeout`. On a
//! TLS port the handshake is part of the first request's time: its first
//! record counts as speaking, and a handshake rustls refuses (a plaintext
//! client, a garbage ClientHello) closes the socket after rustls's alert,
//! counted (`tls_handshake_failures`) and logged.
//!
//! [`Handler::on_http_head`]: crate::Handler::on_http_head
//! [`Handler::on_http`]: crate::Handler::on_http
//! [`BodyBudget`]: crate::limits::BodyBudget

use std::io;
use std::ops::ControlFlow;
use std::time::Instant;

use bytes::Bytes;

use super::{
    guarded, Again, CloseHow, Connection, LoopCtx, Outcome, Phase, Stream, READS_PER_TURN,
};
use crate::http::{self, Head, HttpError, HttpResponse};
use crate::stats::{Counters, Ending};

impl<S: Stream> Connection<S> {
    /// Reads and serves requests until the socket has nothing more, a
    /// response waits for the socket, or the phase changes.
    pub(super) fn drive_http(&mut self, ctx: &mut LoopCtx) -> Outcome {
        let mut reads = 0;
        loop {
            if !matches!(self.phase, Phase::Http(_)) {
                return self.after_http(ctx);
            }
            if !self.out.is_empty() {
                if self.flush(ctx).is_err() {
                    return Outcome::Done;
                }
                if !self.out.is_empty() {
                    // One response at a time: resume on writable readiness.
                    return Outcome::Keep;
                }
            }
            if self.serve_buffered(ctx) {
                continue;
            }
            if reads == READS_PER_TURN {
                ctx.again.push((self.token, Again::Read));
                return Outcome::Keep;
            }
            reads += 1;
            if let Some(outcome) = self.read_http(ctx) {
                return outcome;
            }
        }
    }

    /// One read from the socket into the request buffer; `Some` when the
    /// phase must stop reading (nothing more now, end of stream, error).
    fn read_http(&mut self, ctx: &mut LoopCtx) -> Option<Outcome> {
        match self.out.sock.read(&mut ctx.read_buf) {
            Ok(0) => Some(Outcome::Done),
            Ok(n) => {
                Counters::add(&ctx.counters().bytes_in, n as u64);
                self.http_bytes(&ctx.read_buf[..n], ctx);
                None
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.heard_handshake(ctx);
                Some(Outcome::Keep)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => None,
            Err(e) if crate::tls::is_handshake_failure(&e) => {
                Counters::add(&ctx.counters().tls_handshake_failures, 1);
                tracing::info!(peer = %self.peer, error = %e, "TLS handshake refused");
                Some(Outcome::Done)
            }
            Err(_) => Some(Outcome::Done),
        }
    }

    /// A TLS handshake under way counts as speaking: the silent-socket
    /// deadline gives way to the handshake timeout, which the handshake
    /// and the request share.
    fn heard_handshake(&mut self, ctx: &LoopCtx) {
        if let Phase::Http(h) = &mut self.phase {
            if !h.spoke && self.out.sock.heard() {
                h.spoke = true;
                h.deadline = ctx.now + ctx.global.config.handshake_timeout;
            }
        }
    }

    /// Appends inbound bytes to the request buffer.
    fn http_bytes(&mut self, data: &[u8], ctx: &LoopCtx) {
        let Phase::Http(h) = &mut self.phase else {
            return;
        };
        h.buf.extend_from_slice(data);
        if !h.spoke {
            // The silent-socket deadline gives way to the handshake timeout
            // once the peer speaks.
            h.spoke = true;
            h.deadline = ctx.now + ctx.global.config.handshake_timeout;
        }
    }

    /// Acts on the buffered bytes: true if a request was answered or the
    /// phase changed, false if more bytes are needed.
    fn serve_buffered(&mut self, ctx: &mut LoopCtx) -> bool {
        let Phase::Http(h) = &mut self.phase else {
            return true;
        };
        if h.buf.is_empty() {
            return false;
        }
        let head = match http::parse_head(&h.buf, h.peer, ctx.global.config.max_http_body) {
            Err(e) => {
                self.fail(e, ctx);
                return true;
            }
            Ok(None) => return false,
            Ok(Some(head)) => head,
        };
        if head.upgrade {
            self.upgrade(head, ctx);
            return true;
        }
        if self.answered_early(&head, ctx) || !self.reserve_body(&head, ctx) {
            return true;
        }
        self.complete_body(head, ctx)
    }

    /// Shows a new request's head to `Handler::on_http_head` (before any of
    /// its body is buffered on purpose); true if that answered it.
    fn answered_early(&mut self, head: &Head, ctx: &mut LoopCtx) -> bool {
        let Phase::Http(h) = &mut self.phase else {
            return true;
        };
        if h.checked {
            return false;
        }
        h.checked = true;
        let handler = &ctx.handler;
        let early = guarded("on_http_head", || handler.on_http_head(&head.request));
        let Some(response) = early.flatten() else {
            return false;
        };
        Counters::add(&ctx.counters().refused_before_body, 1);
        Counters::add(&ctx.counters().http_requests, 1);
        h.buf = Vec::new();
        self.respond(&response, false, head.request.method == "HEAD", ctx);
        true
    }

    /// Holds the request's buffered body bytes against `max_http_buffer`;
    /// false if that answered the request (503).
    fn reserve_body(&mut self, head: &Head, ctx: &mut LoopCtx) -> bool {
        let Phase::Http(h) = &mut self.phase else {
            return false;
        };
        let held = if head.chunked {
            h.buf.len() - head.len
        } else {
            head.body_len
        };
        let budget = h.budget.get_or_insert_with(|| ctx.global.body_budget());
        if budget.grow_to(held) {
            return true;
        }
        Counters::add(&ctx.counters().body_budget_refusals, 1);
        tracing::debug!(peer = %h.peer, held, "max_http_buffer in use: 503");
        h.buf = Vec::new();
        let body = "server busy: request bodies in flight exceed max_http_buffer; retry\n";
        let response = HttpResponse::text(503, body).header("Retry-After", "1");
        self.respond(&response, false, head.request.method == "HEAD", ctx);
        false
    }

    /// Serves the request if its body is complete; true if it was answered.
    fn complete_body(&mut self, head: Head, ctx: &mut LoopCtx) -> bool {
        let Phase::Http(h) = &mut self.phase else {
            return true;
        };
        if !head.chunked {
            let total = head.len + head.body_len;
            if h.buf.len() < total {
                return false;
            }
            let body = Bytes::copy_from_slice(&h.buf[head.len..total]);
            self.serve(head, body, total, ctx);
            return true;
        }
        let max = ctx.global.config.max_http_body;
        let chunked = h.chunked.get_or_insert_with(Default::default);
        match chunked.advance(&h.buf[head.len..], max) {
            Err(e) => self.fail(e, ctx),
            Ok(Some(used)) => {
                let body = std::mem::take(&mut chunked.body);
                let used = head.len + used;
                self.serve(head, Bytes::from(body), used, ctx);
            }
            Ok(None) => return false,
        }
        true
    }

    /// Continues in the phase an HTTP request led to.
    fn after_http(&mut self, ctx: &mut LoopCtx) -> Outcome {
        match self.phase {
            Phase::Http(_) => Outcome::Keep,
            Phase::Open(_) => {
                // Bytes may have arrived behind the upgrade request; edge
                // triggering will not tell again.
                if self.flush(ctx).is_err() {
                    return self.close_ws(1006, "", Ending::Reset, CloseHow::Drop, ctx);
                }
                self.read_ws(ctx)
            }
            Phase::Closing(_) => self.drive_closing(ctx),
        }
    }

    /// Answers a request that cannot be served, and closes.
    pub(super) fn fail(&mut self, e: HttpError, ctx: &mut LoopCtx) {
        Counters::add(&ctx.counters().handshake_failures, 1);
        let mut head_only = false;
        if let Phase::Http(h) = &self.phase {
            tracing::debug!(peer = %h.peer, status = e.status, what = e.what, "bad request");
            // The request may not have parsed; its method is its first token.
            head_only = http::is_head_request(&h.buf);
        }
        self.respond(&e.response(), false, head_only, ctx);
    }

    /// Queues a response; without keep-alive the connection starts closing.
    /// The answer to a `HEAD` request (`head_only`) is the head alone: its
    /// `Content-Length` is that of the body it would carry, and no body
    /// byte is written, so a keep-alive peer reads the next response where
    /// it expects it.
    pub(super) fn respond(
        &mut self,
        response: &HttpResponse,
        keep_alive: bool,
        head_only: bool,
        ctx: &mut LoopCtx,
    ) {
        let keep_alive = keep_alive && !ctx.stopping;
        self.out.push(response.encode_head(keep_alive));
        if !response.body.is_empty() && !head_only {
            self.out.push(response.body.clone());
        }
        match &mut self.phase {
            Phase::Http(h) if keep_alive => {
                h.served += 1;
                h.deadline = ctx.now + ctx.global.config.handshake_timeout;
            }
            _ => self.start_closing(ctx),
        }
    }

    /// Serves a plain request whose body is complete; the request took
    /// `used` bytes of the buffer.
    fn serve(&mut self, head: Head, body: Bytes, used: usize, ctx: &mut LoopCtx) {
        let Phase::Http(h) = &mut self.phase else {
            return;
        };
        h.buf.drain(..used);
        if h.buf.is_empty() {
            h.buf = Vec::new();
        }
        // The next request on this connection starts afresh.
        h.checked = false;
        h.chunked = None;
        h.budget = None;
        Counters::add(&ctx.counters().http_requests, 1);
        let handler = &ctx.handler;
        let response = guarded("on_http", || handler.on_http(&head.request, body))
            .unwrap_or_else(|| HttpResponse::text(500, "internal error\n"));
        let head_only = head.request.method == "HEAD";
        self.respond(&response, head.keep_alive, head_only, ctx);
    }

    /// The Http phase's timer: drops a socket whose request did not come in
    /// time; the deadline otherwise.
    pub(super) fn http_deadline(&mut self, ctx: &mut LoopCtx) -> ControlFlow<Outcome, Instant> {
        let Phase::Http(h) = &self.phase else {
            return ControlFlow::Break(Outcome::Keep);
        };
        if ctx.now < h.deadline {
            return ControlFlow::Continue(h.deadline);
        }
        if !h.spoke {
            Counters::add(&ctx.counters().silent_timeouts, 1);
            tracing::debug!(peer = %h.peer, "silent socket: dropped");
        } else if !h.buf.is_empty() || h.served == 0 {
            Counters::add(&ctx.counters().handshake_timeouts, 1);
            tracing::debug!(peer = %h.peer, "handshake timeout");
        }
        ControlFlow::Break(Outcome::Done)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::connection::testing::{Rig, UPGRADE};
    use crate::connection::Outcome;

    #[test]
    fn a_keep_alive_request_then_an_upgrade_on_one_connection() {
        let mut rig = Rig::new(Config::default());
        assert_eq!(
            rig.send(b"GET /up HTTP/1.1\r\nHost: x\r\n\r\n"),
            Outcome::Keep
        );
        let answer = String::from_utf8(rig.written()).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(
            answer.ends_with("Connection: keep-alive\r\n\r\nup\n"),
            "{answer}"
        );
        assert!(!rig.conn.is_open());

        assert_eq!(rig.send(UPGRADE), Outcome::Keep);
        let answer = String::from_utf8(rig.written()).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
            "{answer}"
        );
        assert!(answer.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(rig.conn.is_open());
    }

    #[test]
    fn pipelined_requests_are_answered_one_at_a_time_in_order() {
        let mut rig = Rig::new(Config::default());
        rig.sock().room = 0;
        let two = b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nConnection: close\r\n\r\n";
        assert_eq!(rig.send(two), Outcome::Keep);
        assert!(rig.written().is_empty());
        // The first answer waits for the socket; the second is not served
        // until it is written.
        assert_eq!(rig.writable(usize::MAX), Outcome::Keep);
        let answers = String::from_utf8(rig.written()).unwrap();
        let heads: Vec<_> = answers.match_indices("HTTP/1.1 200 OK").collect();
        assert_eq!(heads.len(), 2, "{answers}");
        assert!(
            answers.ends_with("Connection: close\r\n\r\nup\n"),
            "{answers}"
        );
        assert!(rig.sock().is_shut(), "the second asked to close");
    }

    #[test]
    fn a_malformed_request_is_answered_400_and_closed() {
        let mut rig = Rig::new(Config::default());
        assert_eq!(rig.send(b"\x16\x03\x01 nonsense\r\n\r\n"), Outcome::Keep);
        let answer = String::from_utf8(rig.written()).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{answer}"
        );
        assert!(rig.sock().is_shut());
    }
}
