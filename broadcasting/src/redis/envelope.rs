//! The wire format of an event on Redis: binary-safe, length-prefixed.
//!
//! ```text
//! magic    3 bytes  "RTB"
//! version  1 byte   1
//! origin   u16 BE length, then that many bytes (UTF-8 node id)
//! channel  u32 BE length, then that many bytes (UTF-8)
//! name     u32 BE length, then that many bytes (UTF-8)
//! payload  every remaining byte, verbatim
//! ```
//!
//! Lengths make every field exact: names with newlines, NULs or any other
//! byte, and payloads of any bytes, round-trip unchanged. The channel is
//! inside the envelope (not only in the Redis channel name, which serves
//! routing) so a receiver never reparses it. Anything that does not parse
//! (another magic, another version, a short field, a field that is not
//! UTF-8) is refused with `None`; the driver counts and logs it.

use bytes::Bytes;

/// The first bytes of every envelope.
pub(crate) const MAGIC: &[u8; 3] = b"RTB";
/// The format version written and accepted.
pub(crate) const VERSION: u8 = 1;

/// A decoded envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope {
    /// The node id of the publishing driver.
    pub(crate) origin: String,
    /// The event's channel.
    pub(crate) channel: String,
    /// The event's name.
    pub(crate) name: String,
    /// The event's payload.
    pub(crate) payload: Bytes,
}

/// Packs an event. `None` if a field is too long for its length prefix
/// (origin over 64 KiB, channel or name over 4 GiB).
pub(crate) fn encode(origin: &str, channel: &str, name: &str, payload: &[u8]) -> Option<Vec<u8>> {
    let origin_len = u16::try_from(origin.len()).ok()?;
    let channel_len = u32::try_from(channel.len()).ok()?;
    let name_len = u32::try_from(name.len()).ok()?;
    let mut out = Vec::with_capacity(
        4 + 2 + 4 + 4 + origin.len() + channel.len() + name.len() + payload.len(),
    );
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&origin_len.to_be_bytes());
    out.extend_from_slice(origin.as_bytes());
    out.extend_from_slice(&channel_len.to_be_bytes());
    out.extend_from_slice(channel.as_bytes());
    out.extend_from_slice(&name_len.to_be_bytes());
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(payload);
    Some(out)
}

/// A cursor over received bytes.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn text(&mut self, n: usize) -> Option<String> {
        std::str::from_utf8(self.take(n)?).ok().map(str::to_owned)
    }

    fn u16(&mut self) -> Option<usize> {
        let b = self.take(2)?;
        Some(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    fn u32(&mut self) -> Option<usize> {
        let b = self.take(4)?;
        usize::try_from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])).ok()
    }
}

/// Unpacks an envelope; `None` for anything but a well-formed version 1.
pub(crate) fn decode(bytes: &[u8]) -> Option<Envelope> {
    let mut r = Reader(bytes);
    if r.take(3)? != MAGIC || r.take(1)? != [VERSION] {
        return None;
    }
    let n = r.u16()?;
    let origin = r.text(n)?;
    let n = r.u32()?;
    let channel = r.text(n)?;
    let n = r.u32()?;
    let name = r.text(n)?;
    Some(Envelope {
        origin,
        channel,
        name,
        payload: Bytes::copy_from_slice(r.0),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_field_round_trips_exactly() {
        let payload: Vec<u8> = (0..=255).chain(0..=255).collect();
        let name = "Odd\nname\0with ✓ and \"quotes\"";
        let bytes = encode("node-1", "app/presence-x", name, &payload).unwrap();
        let e = decode(&bytes).unwrap();
        assert_eq!(e.origin, "node-1");
        assert_eq!(e.channel, "app/presence-x");
        assert_eq!(e.name, name);
        assert_eq!(&e.payload[..], &payload[..]);
        let empty = decode(&encode("", "", "", b"").unwrap()).unwrap();
        assert_eq!((empty.origin.as_str(), empty.payload.len()), ("", 0));
    }

    #[test]
    fn foreign_truncated_and_future_envelopes_are_refused() {
        let bytes = encode("n", "c", "e", b"p").unwrap();
        for cut in 0..bytes.len() - 1 {
            assert_eq!(decode(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut future = bytes.clone();
        future[3] = 2;
        assert_eq!(decode(&future), None);
        assert_eq!(decode(b"{\"event\":\"x\"}"), None);
        let mut bad_utf8 = encode("n", "c", "e", b"").unwrap();
        let at = bad_utf8.len() - 1; // the name's only byte
        bad_utf8[at] = 0xff;
        assert_eq!(decode(&bad_utf8), None);
    }
}
