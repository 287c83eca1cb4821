//! Frames: the immutable, shared unit that travels from a broadcast to every
//! recipient's outbox.
//!
//! A [`Frame`] is one heap allocation (`Arc`) holding the message type, the
//! payload ([`Bytes`]) and a write-once slot where a transport caches the
//! frame's encoded wire form. Fanning a frame out to N clients clones the
//! `Arc` N times; the first transport to write it encodes it and every other
//! recipient reuses those bytes (R31).
//!
//! A second write-once slot holds the frame's *compressed* wire form
//! (permessage-deflate, RFC 7692), for the recipients that negotiated it:
//! the transport compresses each message on its own (no context carried
//! from one message to the next), so one compressed encoding serves every
//! recipient with the same parameters. The slot is keyed by nothing: a
//! transport stores in it the form for its common parameter set (the
//! 15-bit window every browser uses) and encodes rarer parameter sets per
//! recipient. A frame nobody compresses leaves the slot empty: the
//! uncompressed path costs what it did.

use std::sync::OnceLock;

use bytes::Bytes;

use crate::sync::Arc;

/// The two data message types, matching WebSocket opcodes 0x1 and 0x2 (R1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// UTF-8 text (opcode 0x1).
    Text,
    /// Opaque bytes (opcode 0x2).
    Binary,
}

/// Alias kept for transports that speak of "kinds" of message.
pub type MessageKind = MessageType;

impl MessageType {
    /// The WebSocket opcode of this message type.
    pub fn opcode(self) -> u8 {
        match self {
            Self::Text => 0x1,
            Self::Binary => 0x2,
        }
    }
}

struct FrameInner {
    kind: MessageType,
    payload: Bytes,
    encoded: OnceLock<Bytes>,
    compressed: OnceLock<Bytes>,
}

/// An immutable message, cheap to clone, shared by every recipient.
///
/// # Examples
///
/// ```
/// use realtime::{Frame, MessageType};
///
/// let f = Frame::text("hello").unwrap();
/// assert_eq!(f.kind(), MessageType::Text);
/// assert_eq!(&f.payload()[..], b"hello");
///
/// // A transport encodes once; later calls reuse the cached bytes.
/// let wire = f.encoded_with(|f| [&[0x81, 5][..], f.payload()].concat().into());
/// assert_eq!(wire.len(), 7);
/// assert!(Frame::text(vec![0xff]).is_err());
/// ```
#[derive(Clone)]
pub struct Frame(Arc<FrameInner>);

impl Frame {
    /// A text frame.
    ///
    /// # Errors
    ///
    /// [`crate::Error::InvalidUtf8`] if the payload is not UTF-8 (R1).
    pub fn text(payload: impl IntoPayload) -> crate::Result<Self> {
        let payload = payload.into_payload();
        if std::str::from_utf8(&payload).is_err() {
            return Err(crate::Error::InvalidUtf8);
        }
        Ok(Self::new(MessageType::Text, payload))
    }

    /// A text frame from a `String`, which is UTF-8 by construction.
    pub fn from_string(s: impl Into<String>) -> Self {
        Self::new(MessageType::Text, Bytes::from(s.into()))
    }

    /// A binary frame.
    pub fn binary(payload: impl IntoPayload) -> Self {
        Self::new(MessageType::Binary, payload.into_payload())
    }

    fn new(kind: MessageType, payload: Bytes) -> Self {
        Self(Arc::new(FrameInner {
            kind,
            payload,
            encoded: OnceLock::new(),
            compressed: OnceLock::new(),
        }))
    }

    /// The message type.
    pub fn kind(&self) -> MessageType {
        self.0.kind
    }

    /// The payload.
    pub fn payload(&self) -> &Bytes {
        &self.0.payload
    }

    /// The payload as text, for text frames.
    pub fn as_str(&self) -> Option<&str> {
        match self.0.kind {
            // Text frames are validated at construction.
            MessageType::Text => std::str::from_utf8(&self.0.payload).ok(),
            MessageType::Binary => None,
        }
    }

    /// The frame's length on the wire as a server sends it: the payload plus
    /// the unmasked WebSocket header (2, 4 or 10 bytes). Outboxes bound a
    /// client's pending output by this measure (R34).
    pub fn wire_len(&self) -> usize {
        let len = self.0.payload.len();
        let header = if len < 126 {
            2
        } else if len <= 0xffff {
            4
        } else {
            10
        };
        len + header
    }

    /// The transport's encoded form of this frame, computed by `encode` the
    /// first time and shared by every later caller (R31). A frame is meant
    /// for one wire format; every transport of a process must encode alike.
    pub fn encoded_with(&self, encode: impl FnOnce(&Frame) -> Bytes) -> &Bytes {
        self.0.encoded.get_or_init(|| encode(self))
    }

    /// The transport's compressed encoding of this frame, computed by
    /// `encode` the first time and shared by every later caller, like
    /// [`Frame::encoded_with`]. The transport keeps one compressed form
    /// per frame (its common parameter set, see the module docs).
    ///
    /// # Examples
    ///
    /// ```
    /// use realtime::Frame;
    ///
    /// let f = Frame::text("hello").unwrap();
    /// let a = f.compressed_with(|_| bytes::Bytes::from_static(b"z")).clone();
    /// let b = f.compressed_with(|_| unreachable!("encoded once")).clone();
    /// assert_eq!(a.as_ptr(), b.as_ptr());
    /// ```
    pub fn compressed_with(&self, encode: impl FnOnce(&Frame) -> Bytes) -> &Bytes {
        self.0.compressed.get_or_init(|| encode(self))
    }

    /// Whether two handles point to the same shared frame.
    pub fn ptr_eq(a: &Frame, b: &Frame) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

/// Frames are equal when their type and payload are.
impl PartialEq for Frame {
    fn eq(&self, other: &Self) -> bool {
        self.0.kind == other.0.kind && self.0.payload == other.0.payload
    }
}

impl Eq for Frame {}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Frame");
        d.field("kind", &self.0.kind);
        match self.as_str() {
            Some(s) => d.field("payload", &s),
            None => d.field("payload", &self.0.payload),
        };
        d.finish()
    }
}

/// Anything that can become a frame payload or opaque credentials without
/// the caller spelling out a conversion: byte slices, strings, vectors,
/// [`Bytes`], and `()` / `None` for "nothing".
///
/// Owned buffers (`Vec<u8>`, `String`, `Bytes`) are moved without a copy;
/// borrowed ones are copied once.
pub trait IntoPayload {
    /// Converts into shared bytes.
    fn into_payload(self) -> Bytes;
}

impl IntoPayload for Bytes {
    fn into_payload(self) -> Bytes {
        self
    }
}
impl IntoPayload for Vec<u8> {
    fn into_payload(self) -> Bytes {
        Bytes::from(self)
    }
}
impl IntoPayload for String {
    fn into_payload(self) -> Bytes {
        Bytes::from(self)
    }
}
impl IntoPayload for &[u8] {
    fn into_payload(self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
}
impl<const N: usize> IntoPayload for &[u8; N] {
    fn into_payload(self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
}
impl IntoPayload for &str {
    fn into_payload(self) -> Bytes {
        Bytes::copy_from_slice(self.as_bytes())
    }
}
impl IntoPayload for &String {
    fn into_payload(self) -> Bytes {
        Bytes::copy_from_slice(self.as_bytes())
    }
}
impl IntoPayload for &Vec<u8> {
    fn into_payload(self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
}
impl IntoPayload for &Bytes {
    fn into_payload(self) -> Bytes {
        self.clone()
    }
}
impl IntoPayload for () {
    fn into_payload(self) -> Bytes {
        Bytes::new()
    }
}
impl IntoPayload for Option<&[u8]> {
    fn into_payload(self) -> Bytes {
        self.map(Bytes::copy_from_slice).unwrap_or_default()
    }
}
