//! The WebSocket frame codec (RFC 6455 §5), server side: an incremental
//! decoder for masked client frames and encoders for unmasked server frames.
//!
//! # Why not tungstenite's `WebSocketContext`
//!
//! tungstenite's context owns a read buffer of `read_buffer_size` for the
//! connection's whole life and writes through its own output buffer. Here
//! the event loop reads into one scratch buffer per loop and feeds the bytes
//! to this decoder, which keeps only what it must between reads: up to 14
//! header bytes inline, the payload of an unfinished message (bounded by the
//! maximum message size) and of an unfinished control frame (≤ 125 bytes).
//! An idle connection holds no buffer at all. Outbound, a server frame is
//! encoded once into [`Bytes`] ([`encode_frame`]) and that same buffer is
//! written to every recipient (R31). tungstenite still provides the
//! handshake's accept key, and the test clients.
//!
//! # Decoding
//!
//! [`Decoder::feed`] consumes any slice of input (frames may be split at
//! any byte) and reports each complete message, ping, pong and close to a
//! sink, and each non-final data frame as a [`Inbound::Fragment`] (it
//! counts as activity). Payloads are unmasked as they arrive and appended
//! to the message being assembled; a finished message is handed over as
//! `Bytes` without a copy. Violations are typed ([`Violation`]) and map to
//! close codes: protocol errors 1002, oversized messages 1009 (checked
//! against the frame header, before buffering), invalid UTF-8 1007. The
//! decoder never panics on input; after a violation or a close frame it
//! must not be fed again.
//!
//! # UTF-8, fail fast
//!
//! A text message is validated as its bytes arrive, not when it completes
//! (Autobahn 6.4.*): `utf8_valid` marks the end of the prefix known to be
//! valid. Each append validates from there; `Utf8Error::error_len()` tells
//! an input that ends inside a character (`None`: valid so far, the
//! incomplete character is validated again with the next bytes, at most 3
//! bytes re-read) from one that can never be valid (`Some`: 1007 now, even
//! mid-frame). Every byte is thus validated once, plus at most 3 per append.
//!
//! # Compressed messages
//!
//! With permessage-deflate negotiated ([`Decoder::with_deflate`]), RSV1 on
//! the first frame of a text or binary message marks it compressed; RSV1
//! anywhere else (control frames, continuations, or without negotiation) is
//! a protocol error, 1002. A compressed message is assembled as it came,
//! its compressed size bounded by `deflate::max_compressed`, and inflated
//! when complete (`crate::deflate`): the size limit (1009) applies to the
//! inflated size, UTF-8 is checked on the inflated text, corrupt deflate
//! data is 1007.

use bytes::{BufMut, Bytes, BytesMut};
use realtime::{Frame, MessageType};

use flate2::Decompress;

use crate::deflate::{self, Inflate, InflateError, Inflater};

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Largest control-frame payload (RFC 6455 §5.5).
const MAX_CONTROL: usize = 125;

/// One complete inbound unit.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Inbound {
    /// A data message, fragments joined.
    Message(MessageType, Bytes),
    /// A ping, with its payload (to echo in the pong).
    Ping(Bytes),
    /// A pong.
    Pong,
    /// A non-final data frame: part of a message still being assembled.
    Fragment,
    /// A close frame, with its code and reason if it had any.
    Close(Option<(u16, String)>),
}

/// Why the peer's input was refused, with the close code it earns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Violation {
    /// A framing or sequencing error: 1002.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// A message over the maximum size: 1009.
    #[error("message too big")]
    TooBig,
    /// A text message or close reason that is not UTF-8: 1007.
    #[error("invalid UTF-8")]
    InvalidUtf8,
    /// A compressed message that is not valid deflate data: 1007.
    #[error("invalid compressed data")]
    BadDeflate,
}

impl Violation {
    /// The close code to send.
    pub(crate) fn close_code(self) -> u16 {
        match self {
            Self::Protocol(_) => 1002,
            Self::TooBig => 1009,
            Self::InvalidUtf8 | Self::BadDeflate => 1007,
        }
    }

    /// The close reason to send.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::Protocol(what) => what,
            Self::TooBig => "message too big",
            Self::InvalidUtf8 => "invalid UTF-8",
            Self::BadDeflate => "invalid compressed data",
        }
    }
}

/// Whether to keep decoding after handing a unit to the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Stop,
}

/// The incremental decoder of one connection.
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    /// Header bytes of the frame being read, while incomplete.
    head: [u8; 14],
    head_len: u8,
    /// Inside a frame's payload (header complete).
    in_frame: bool,
    /// The current frame.
    opcode: u8,
    fin: bool,
    mask: [u8; 4],
    /// Position in the mask of the next payload byte.
    mask_pos: u8,
    remaining: u64,
    /// The data message being assembled, if one is in progress.
    message_kind: Option<MessageType>,
    message: Vec<u8>,
    /// For a text message: the length of `message`'s prefix known to be
    /// valid UTF-8 (what follows is at most an incomplete character).
    utf8_valid: usize,
    /// The payload of the control frame being read.
    control: Vec<u8>,
    /// The message being assembled is compressed (RSV1 on its first frame).
    compressed: bool,
    /// permessage-deflate, if negotiated (RSV1 is allowed on messages):
    /// which inflater reads compressed messages.
    inflate: Inflate,
    /// The connection's own inflate context (`Inflate::Own`), created by
    /// the first compressed message.
    context: Option<Box<Decompress>>,
}

impl Decoder {
    /// A decoder for a session with permessage-deflate negotiated; the
    /// client compresses each message alone if `client_no_context`.
    pub(crate) fn with_deflate(client_no_context: bool) -> Self {
        Self {
            inflate: if client_no_context {
                Inflate::Shared
            } else {
                Inflate::Own
            },
            ..Self::default()
        }
    }

    /// Whether the connection holds an inflate context of its own.
    #[cfg(test)]
    pub(crate) fn has_inflate_context(&self) -> bool {
        self.context.is_some()
    }

    /// Whether a partial frame or message is buffered.
    #[cfg(test)]
    pub(crate) fn is_idle(&self) -> bool {
        self.head_len == 0 && !self.in_frame && self.message_kind.is_none()
    }

    /// Bytes held for unfinished frames and messages.
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.message.capacity() + self.control.capacity()
    }

    /// Consumes `input`, calling `sink` for each complete unit until it
    /// returns [`Flow::Stop`] (the rest of the input is then ignored).
    ///
    /// # Errors
    ///
    /// The first violation found; the connection must then be closed with
    /// its code.
    pub(crate) fn feed(
        &mut self,
        mut input: &[u8],
        max_message: usize,
        sink: &mut dyn FnMut(Inbound) -> Flow,
    ) -> Result<(), Violation> {
        loop {
            if !self.in_frame {
                if input.is_empty() {
                    return Ok(());
                }
                let taken = self.take_header(input, max_message)?;
                input = &input[taken..];
                if !self.in_frame {
                    // Header still incomplete: all input was consumed.
                    return Ok(());
                }
            }
            // `remaining` fits in usize: it was checked against the size
            // limits when the header was parsed.
            let n = usize::try_from(self.remaining)
                .unwrap_or(usize::MAX)
                .min(input.len());
            let dest = if self.opcode >= OP_CLOSE {
                &mut self.control
            } else {
                &mut self.message
            };
            let start = dest.len();
            dest.extend_from_slice(&input[..n]);
            unmask(&mut dest[start..], self.mask, usize::from(self.mask_pos));
            self.mask_pos = ((usize::from(self.mask_pos) + n) % 4) as u8;
            self.remaining -= n as u64;
            input = &input[n..];
            if self.opcode < OP_CLOSE
                && self.message_kind == Some(MessageType::Text)
                && !self.compressed
            {
                self.check_utf8()?;
            }
            if self.remaining > 0 {
                return Ok(());
            }
            self.in_frame = false;
            if let Some(unit) = self.complete(max_message)? {
                let is_close = matches!(unit, Inbound::Close(_));
                if sink(unit) == Flow::Stop || is_close {
                    return Ok(());
                }
            }
        }
    }

    /// Validates the text message's bytes appended since the last check
    /// (see the module docs): an error as soon as they cannot be UTF-8.
    fn check_utf8(&mut self) -> Result<(), Violation> {
        let unchecked = &self.message[self.utf8_valid..];
        match std::str::from_utf8(unchecked) {
            Ok(_) => self.utf8_valid = self.message.len(),
            // Ends inside a character: valid so far.
            Err(e) if e.error_len().is_none() => self.utf8_valid += e.valid_up_to(),
            Err(_) => return Err(Violation::InvalidUtf8),
        }
        Ok(())
    }

    /// Copies header bytes from `input`; parses the header once complete.
    /// Returns how many bytes were taken.
    fn take_header(&mut self, input: &[u8], max_message: usize) -> Result<usize, Violation> {
        let mut taken = 0;
        loop {
            let have = usize::from(self.head_len);
            let need = header_len(&self.head[..have]);
            if have >= need {
                break;
            }
            let n = (need - have).min(input.len() - taken);
            if n == 0 {
                return Ok(taken);
            }
            self.head[have..have + n].copy_from_slice(&input[taken..taken + n]);
            self.head_len += n as u8;
            taken += n;
            if have + n == 2 {
                // Validate what the first two bytes tell before waiting for
                // the rest of the header.
                self.check_start()?;
            }
        }
        self.parse_header(max_message)?;
        Ok(taken)
    }

    /// Checks the first two header bytes.
    fn check_start(&self) -> Result<(), Violation> {
        let (b0, b1) = (self.head[0], self.head[1]);
        let opcode = b0 & 0x0F;
        if b0 & 0x30 != 0 || (b0 & 0x40 != 0 && self.inflate == Inflate::Off) {
            return Err(Violation::Protocol("reserved bits set"));
        }
        if b0 & 0x40 != 0 && !matches!(opcode, OP_TEXT | OP_BINARY) {
            return Err(Violation::Protocol(
                "RSV1 on a control or continuation frame",
            ));
        }
        if b1 & 0x80 == 0 {
            return Err(Violation::Protocol("client frame not masked"));
        }
        let fin = b0 & 0x80 != 0;
        match opcode {
            OP_CONTINUATION | OP_TEXT | OP_BINARY => Ok(()),
            OP_CLOSE | OP_PING | OP_PONG => {
                if !fin {
                    Err(Violation::Protocol("fragmented control frame"))
                } else if usize::from(b1 & 0x7F) > MAX_CONTROL {
                    Err(Violation::Protocol("control frame too long"))
                } else {
                    Ok(())
                }
            }
            _ => Err(Violation::Protocol("reserved opcode")),
        }
    }

    /// Parses a complete header into the frame state.
    fn parse_header(&mut self, max_message: usize) -> Result<(), Violation> {
        let h = &self.head[..usize::from(self.head_len)];
        let (len, mask_at) = match h[1] & 0x7F {
            126 => (u64::from(u16::from_be_bytes([h[2], h[3]])), 4),
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&h[2..10]);
                let len = u64::from_be_bytes(b);
                if len >> 63 != 0 {
                    return Err(Violation::Protocol("frame length overflow"));
                }
                (len, 10)
            }
            n => (u64::from(n), 2),
        };
        let mut mask = [0u8; 4];
        mask.copy_from_slice(&h[mask_at..mask_at + 4]);
        let opcode = h[0] & 0x0F;
        let fin = h[0] & 0x80 != 0;
        match opcode {
            OP_CONTINUATION if self.message_kind.is_none() => {
                return Err(Violation::Protocol("continuation without a message"));
            }
            OP_TEXT | OP_BINARY if self.message_kind.is_some() => {
                return Err(Violation::Protocol("new message inside a fragmented one"));
            }
            OP_TEXT => self.message_kind = Some(MessageType::Text),
            OP_BINARY => self.message_kind = Some(MessageType::Binary),
            _ => {}
        }
        if matches!(opcode, OP_TEXT | OP_BINARY) {
            self.compressed = h[0] & 0x40 != 0;
        }
        if opcode < OP_CLOSE {
            let total = (self.message.len() as u64).saturating_add(len);
            let limit = if self.compressed {
                deflate::max_compressed(max_message)
            } else {
                max_message
            };
            if total > limit as u64 {
                return Err(Violation::TooBig);
            }
        }
        self.opcode = opcode;
        self.fin = fin;
        self.mask = mask;
        self.mask_pos = 0;
        self.remaining = len;
        self.head_len = 0;
        self.in_frame = true;
        Ok(())
    }

    /// A frame's payload is complete: yields a unit if one is finished.
    fn complete(&mut self, max_message: usize) -> Result<Option<Inbound>, Violation> {
        match self.opcode {
            OP_CLOSE => {
                let payload = std::mem::take(&mut self.control);
                parse_close(&payload).map(|c| Some(Inbound::Close(c)))
            }
            OP_PING => Ok(Some(Inbound::Ping(Bytes::from(std::mem::take(
                &mut self.control,
            ))))),
            OP_PONG => {
                self.control = Vec::new();
                Ok(Some(Inbound::Pong))
            }
            _ if !self.fin => Ok(Some(Inbound::Fragment)),
            _ => {
                let kind = self.message_kind.take().unwrap_or(MessageType::Binary);
                let mut data = std::mem::take(&mut self.message);
                let mut valid = std::mem::take(&mut self.utf8_valid);
                if std::mem::take(&mut self.compressed) {
                    data = self.inflate(&data, max_message)?;
                    if kind == MessageType::Text {
                        std::str::from_utf8(&data).map_err(|_| Violation::InvalidUtf8)?;
                    }
                    valid = data.len();
                }
                // Every byte was validated on arrival: a text message is
                // valid once no incomplete character is left at its end.
                if kind == MessageType::Text && valid != data.len() {
                    return Err(Violation::InvalidUtf8);
                }
                Ok(Some(Inbound::Message(kind, Bytes::from(data))))
            }
        }
    }
}

impl Decoder {
    /// Inflates a complete compressed message (see the module docs).
    fn inflate(&mut self, data: &[u8], max_message: usize) -> Result<Vec<u8>, Violation> {
        let mut inflater = Inflater {
            mode: self.inflate,
            context: &mut self.context,
        };
        inflater.inflate(data, max_message).map_err(|e| match e {
            InflateError::TooBig => Violation::TooBig,
            InflateError::Corrupt => Violation::BadDeflate,
        })
    }
}

/// Header length implied by the bytes seen so far (at least 2).
fn header_len(seen: &[u8]) -> usize {
    let Some(&b1) = seen.get(1) else {
        return 2;
    };
    let ext = match b1 & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
    2 + ext + mask
}

/// Parses a close frame's payload (RFC 6455 §5.5.1, §7.4).
fn parse_close(payload: &[u8]) -> Result<Option<(u16, String)>, Violation> {
    match payload {
        [] => Ok(None),
        [_] => Err(Violation::Protocol("one-byte close payload")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !close_code_allowed(code) {
                return Err(Violation::Protocol("invalid close code"));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| Violation::InvalidUtf8)?;
            Ok(Some((code, reason.to_owned())))
        }
    }
}

/// Close codes a peer may send (RFC 6455 §7.4.1, IANA registry).
fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// XORs `buf` with the mask, starting at mask position `offset`.
pub(crate) fn unmask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut rotated = [0u8; 4];
    for (i, m) in rotated.iter_mut().enumerate() {
        *m = mask[(offset + i) % 4];
    }
    let mut chunks = buf.chunks_exact_mut(4);
    for chunk in &mut chunks {
        for (b, m) in chunk.iter_mut().zip(rotated) {
            *b ^= m;
        }
    }
    for (b, m) in chunks.into_remainder().iter_mut().zip(rotated) {
        *b ^= m;
    }
}

/// Writes a server (unmasked) frame header; `opcode` may carry RSV1
/// (`0x40`).
pub(crate) fn put_header(out: &mut BytesMut, opcode: u8, len: usize) {
    out.put_u8(0x80 | opcode);
    if len < 126 {
        out.put_u8(len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.put_u8(126);
        out.put_u16(len);
    } else {
        out.put_u8(127);
        out.put_u64(len as u64);
    }
}

/// One unmasked frame: header and payload in one buffer.
fn frame_bytes(opcode: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 10);
    put_header(&mut out, opcode, payload.len());
    out.put_slice(payload);
    out.freeze()
}

/// Encodes a Hub frame as one unmasked, final WebSocket frame. Server frames
/// are unmasked, so the bytes are the same for every recipient: use it with
/// [`Frame::encoded_with`] to encode a broadcast once (R31).
///
/// # Examples
///
/// ```
/// use realtime::Frame;
///
/// let f = Frame::text("hi").unwrap();
/// let wire = f.encoded_with(realtime_mio::encode_frame);
/// assert_eq!(&wire[..], b"\x81\x02hi");
/// ```
pub fn encode_frame(frame: &Frame) -> Bytes {
    frame_bytes(frame.kind().opcode(), frame.payload())
}

/// A ping frame.
pub(crate) fn encode_ping(payload: &[u8]) -> Bytes {
    frame_bytes(OP_PING, &payload[..payload.len().min(MAX_CONTROL)])
}

/// A pong frame echoing a ping's payload.
pub(crate) fn encode_pong(payload: &[u8]) -> Bytes {
    frame_bytes(OP_PONG, &payload[..payload.len().min(MAX_CONTROL)])
}

/// A close frame; the reason is cut to fit a control frame, at a character
/// boundary.
pub(crate) fn encode_close(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(MAX_CONTROL - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    frame_bytes(OP_CLOSE, &payload)
}

/// A text frame (for refusals, outside any Hub).
pub(crate) fn encode_text(text: &str) -> Bytes {
    frame_bytes(OP_TEXT, text.as_bytes())
}

/// Decodes `input` as a client byte stream, for fuzzing: runs the decoder
/// over it in chunks of `chunk` bytes and returns what it produced, ending
/// with the violation's close code if any. Never panics.
#[doc(hidden)]
pub fn fuzz_decode(input: &[u8], chunk: usize, max_message: usize) -> Vec<String> {
    let mut decoder = Decoder::default();
    let mut out = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        let mut sink = |unit: Inbound| {
            out.push(format!("{unit:?}"));
            Flow::Continue
        };
        if let Err(v) = decoder.feed(piece, max_message, &mut sink) {
            out.push(format!("close {}", v.close_code()));
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests;
