//! The WebSocket opening handshake (RFC 6455 §4.2), server side: checks that
//! an upgrade request is a valid version-13 handshake and builds the
//! `101 Switching Protocols` answer.
//!
//! The request itself was read and parsed by the connection (`http.rs`),
//! without blocking; this module only decides. The one extension is
//! permessage-deflate (`crate::deflate`), negotiated when the configuration
//! allows it; no subprotocol is negotiated.
//!
//! [`fuzz_parse_request`] runs a request head through the parser and this
//! check: the status the transport would answer with.

use bytes::Bytes;

use std::net::SocketAddr;

use crate::deflate;
use crate::http::{self, HttpError, Request};

/// Validates an upgrade request; returns the `Sec-WebSocket-Accept` value.
///
/// # Errors
///
/// 400 for a malformed handshake (wrong method, missing or malformed key,
/// missing `Connection: Upgrade`), 426 for an unsupported version.
pub(crate) fn validate(req: &Request) -> Result<String, HttpError> {
    if req.method != "GET" {
        return Err(HttpError::new(400, "WebSocket upgrade needs GET"));
    }
    if !req.header_has_token("connection", "upgrade") {
        return Err(HttpError::new(400, "missing Connection: Upgrade"));
    }
    match req.header("sec-websocket-version").map(str::trim) {
        Some("13") => {}
        _ => return Err(HttpError::new(426, "unsupported WebSocket version")),
    }
    let key = req
        .header("sec-websocket-key")
        .map(str::trim)
        .ok_or(HttpError::new(400, "missing Sec-WebSocket-Key"))?;
    // A base64-encoded 16-byte nonce is 24 characters ending in "==".
    let well_formed = key.len() == 24
        && key.ends_with("==")
        && key[..22]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    if !well_formed {
        return Err(HttpError::new(400, "malformed Sec-WebSocket-Key"));
    }
    Ok(tungstenite::handshake::derive_accept_key(key.as_bytes()))
}

/// The permessage-deflate parameters to use, if `enabled` and the request
/// offers an acceptable set (every `Sec-WebSocket-Extensions` header, in
/// order).
pub(crate) fn deflate(req: &Request, enabled: bool) -> Option<deflate::Params> {
    if !enabled {
        return None;
    }
    deflate::negotiate(
        req.headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-extensions"))
            .map(|(_, value)| value.as_str()),
    )
}

/// The `101 Switching Protocols` response, accepting `deflate` if set.
pub(crate) fn switching_protocols(accept: &str, deflate: Option<&deflate::Params>) -> Bytes {
    let extensions = deflate.map_or(String::new(), |p| {
        format!("Sec-WebSocket-Extensions: {}\r\n", p.response())
    });
    Bytes::from(format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{extensions}\r\n"
    ))
}

/// Parses `input` as a request head, for fuzzing: the status the transport
/// would answer with (0 for an incomplete head, 200 for a valid one). Never
/// panics.
#[doc(hidden)]
pub fn fuzz_parse_request(input: &[u8]) -> u16 {
    let peer = SocketAddr::from(([127, 0, 0, 1], 0));
    match http::parse_head(input, peer, 1024 * 1024) {
        Ok(Some(head)) if head.upgrade => match validate(&head.request) {
            Ok(_) => 101,
            Err(e) => e.status,
        },
        Ok(Some(_)) => 200,
        Ok(None) => 0,
        Err(e) => e.status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> Request {
        Request {
            method: "GET".into(),
            path: "/".into(),
            query: String::new(),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            peer: "127.0.0.1:1".parse().unwrap(),
        }
    }

    #[test]
    fn rfc_sample_key_gets_the_rfc_accept_value() {
        let r = req(&[
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ]);
        assert_eq!(validate(&r).unwrap(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn bad_version_is_426_and_bad_key_is_400() {
        let r = req(&[
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "8"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ]);
        assert_eq!(validate(&r).unwrap_err().status, 426);
        let r = req(&[
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "short"),
        ]);
        assert_eq!(validate(&r).unwrap_err().status, 400);
    }
}
