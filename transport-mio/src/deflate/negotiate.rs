//! The permessage-deflate negotiation (RFC 7692 §5, §7.1): reads the
//! client's offers from `Sec-WebSocket-Extensions` and picks the first one
//! the server can honour, or none.
//!
//! An offer is declined when it has an unknown parameter, a parameter
//! twice, a value where none belongs (or none where one must be), a window
//! size outside 8..=15 or written otherwise than as a plain number, or a
//! `server_max_window_bits` of 8 (zlib cannot compress raw deflate with a
//! 256-byte window). The answer always carries `server_no_context_takeover`
//! (the server compresses each message alone, so one compressed form serves
//! every recipient), `client_no_context_takeover` if the client offered it
//! (then no inflate context is kept for the connection), and the
//! `server_max_window_bits` the client asked for, if it did.
//! `client_max_window_bits` is never answered: the inflater's 15-bit window
//! reads whatever window the client uses (§7.1.2.2 lets the server omit it).

use super::{DEFAULT_WINDOW, MIN_SERVER_WINDOW};

/// The parameters agreed for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Params {
    /// Window bits the server compresses with (`server_max_window_bits`,
    /// 15 unless the client asked for less).
    pub(crate) server_window: u8,
    /// The client asked for `server_max_window_bits` (echoed back).
    server_window_asked: bool,
    /// The client compresses each message alone
    /// (`client_no_context_takeover`).
    pub(crate) client_no_context: bool,
}

impl Params {
    /// The `Sec-WebSocket-Extensions` value that accepts these parameters.
    pub(crate) fn response(&self) -> String {
        let mut s = String::from("permessage-deflate; server_no_context_takeover");
        if self.client_no_context {
            s.push_str("; client_no_context_takeover");
        }
        if self.server_window_asked {
            s.push_str(&format!("; server_max_window_bits={}", self.server_window));
        }
        s
    }
}

/// The first acceptable permessage-deflate offer among the values of the
/// request's `Sec-WebSocket-Extensions` headers, in order; `None` if there
/// is none.
pub(crate) fn negotiate<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Params> {
    values
        .into_iter()
        .flat_map(|v| v.split(','))
        .find_map(accept_offer)
}

/// The parameters of one offer (`name; param; param=value`), if the server
/// accepts it.
fn accept_offer(offer: &str) -> Option<Params> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case("permessage-deflate") {
        return None;
    }
    let mut params = Params {
        server_window: DEFAULT_WINDOW,
        server_window_asked: false,
        client_no_context: false,
    };
    let (mut seen_snct, mut seen_cnct, mut seen_smwb, mut seen_cmwb) = (false, false, false, false);
    for part in parts {
        let (name, value) = match part.split_once('=') {
            Some((n, v)) => (n.trim(), Some(unquote(v.trim())?)),
            None => (part, None),
        };
        let seen = match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" if value.is_none() => &mut seen_snct,
            "client_no_context_takeover" if value.is_none() => {
                params.client_no_context = true;
                &mut seen_cnct
            }
            "server_max_window_bits" => {
                let bits = window_bits(value?)?;
                if bits < MIN_SERVER_WINDOW {
                    return None;
                }
                params.server_window = bits;
                params.server_window_asked = true;
                &mut seen_smwb
            }
            "client_max_window_bits" => {
                if let Some(v) = value {
                    window_bits(v)?;
                }
                &mut seen_cmwb
            }
            _ => return None,
        };
        if std::mem::replace(seen, true) {
            return None;
        }
    }
    Some(params)
}

/// A value without its quotes (a quoted-string form of a token, §5.2).
fn unquote(v: &str) -> Option<&str> {
    match v.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"'),
        None => Some(v),
    }
}

/// A window size: `8` to `15`, digits only, no leading zero (§7.1.2).
fn window_bits(v: &str) -> Option<u8> {
    if v.is_empty() || v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bits: u8 = v.parse().ok()?;
    (8..=15).contains(&bits).then_some(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(values: &[&str]) -> Option<String> {
        negotiate(values.iter().copied()).map(|p| p.response())
    }

    #[test]
    fn the_browser_offer_is_accepted_without_server_context_takeover() {
        let p = negotiate(["permessage-deflate; client_max_window_bits"]).unwrap();
        assert_eq!(p.server_window, 15);
        assert!(!p.client_no_context);
        assert_eq!(
            p.response(),
            "permessage-deflate; server_no_context_takeover"
        );
    }

    #[test]
    fn client_no_context_takeover_and_a_server_window_are_echoed() {
        assert_eq!(
            answer(&["permessage-deflate; client_no_context_takeover; server_max_window_bits=10"]),
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10"
                    .into()
            )
        );
        assert_eq!(
            answer(&[
                "PerMessage-Deflate; server_max_window_bits=\"12\"; server_no_context_takeover"
            ]),
            Some(
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=12".into()
            )
        );
    }

    #[test]
    fn offers_that_cannot_be_honoured_are_declined_and_the_next_one_taken() {
        for bad in [
            "permessage-deflate; server_max_window_bits=8",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; mystery",
            "x-webkit-deflate-frame",
            "",
        ] {
            assert_eq!(answer(&[bad]), None, "{bad}");
        }
        // The first acceptable offer wins, across commas and headers.
        let p = negotiate([
            "permessage-deflate; server_max_window_bits=8, permessage-deflate; client_no_context_takeover",
            "permessage-deflate",
        ])
        .unwrap();
        assert!(p.client_no_context);
        let p = negotiate(["foo", "permessage-deflate; server_max_window_bits=9"]).unwrap();
        assert_eq!(p.server_window, 9);
    }
}
