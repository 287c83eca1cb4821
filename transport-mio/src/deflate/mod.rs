//! permessage-deflate (RFC 7692): the negotiation (`negotiate.rs`), the
//! outbound compression shared by every recipient, and the inbound
//! inflation with the message-size limit applied to the inflated size.
//!
//! # Outbound: compressed once per broadcast
//!
//! The server always compresses without context takeover (it answers every
//! accepted offer with `server_no_context_takeover`): each message is
//! compressed on its own, as one raw deflate stream ended by a sync flush
//! whose trailing `00 00 ff ff` is stripped (RFC 7692 §7.2.1). Its bytes
//! therefore depend only on the message and the window size, never on the
//! connection, so a broadcast is compressed once and the same `Bytes` go to
//! every recipient (R31): the frame's second encode-once slot
//! ([`Frame::compressed_with`]) holds the form for the 15-bit window,
//! which is what browsers and Node's `ws` negotiate. A client that asks for
//! a smaller window (`server_max_window_bits` < 15, rare) gets its frames
//! compressed for it alone, on its loop. No connection holds deflate state
//! for sending: the compressors are per thread ([`compress`]), reset before
//! each message (about 380 KB each, created on first use: one per loop for
//! the 15-bit window, at most seven if clients ask for every window size). Frames whose payload is under the connection's threshold
//! (`Config::compression_threshold`) go out uncompressed (RSV1 clear), from
//! the ordinary encode-once slot; every other frame is compressed, even
//! one that deflate does not shrink.
//!
//! # Inbound: inflated once complete, bounded by the size limit
//!
//! A message whose first frame has RSV1 set is assembled compressed (its
//! compressed size bounded a little above the size limit, see
//! [`max_compressed`]) and inflated when its last frame arrives
//! ([`Inflater::inflate`]), with `00 00 ff ff` appended. The output buffer
//! never grows past the size limit plus one byte: a message that inflates
//! beyond the limit (a decompression bomb) ends the session with 1009 once
//! that byte is produced. While the client keeps its compression context
//! across messages (no `client_no_context_takeover`), the connection keeps
//! an inflate context, created lazily by the first compressed message (so
//! a client that compresses nothing, such as `ws` below its 1 KiB
//! threshold, costs nothing); with `client_no_context_takeover` every
//! message is inflated by the loop thread's shared inflater, reset first.
//! UTF-8 of a compressed text message is validated after inflation, not as
//! its bytes arrive. Corrupt deflate data closes with 1007.
//!
//! # Backend
//!
//! flate2 over `zlib-rs` (pure Rust, no C): unlike the miniz_oxide backend
//! it honours a window size below 15 bits, so an offer with
//! `server_max_window_bits` can be accepted instead of declined.
//!
//! [`Frame::compressed_with`]: realtime::Frame::compressed_with

mod negotiate;

use std::cell::RefCell;

use bytes::{BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use realtime::Frame;

pub(crate) use self::negotiate::{negotiate, Params};

/// The tail a sync flush ends with, stripped when sending and appended
/// before inflating (RFC 7692 §7.2.1, §7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The smallest window zlib can compress raw deflate with (a request for
/// 8 would silently use 9, beyond what the client allowed).
pub(crate) const MIN_SERVER_WINDOW: u8 = 9;

/// The window every common client leaves the server: its compressed form
/// is the one cached in the frame.
pub(crate) const DEFAULT_WINDOW: u8 = 15;

/// How a connection's outbound frames are encoded once compression is
/// negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outbound {
    /// Window bits to compress with (9..=15).
    pub(crate) window: u8,
    /// Payloads shorter than this go uncompressed (a `u32`, so that the
    /// parameters fit in 8 bytes of the connection).
    pub(crate) threshold: u32,
}

/// The encoded bytes of `frame` for a connection with `deflate` (or
/// none): the shared uncompressed form, the shared compressed form for
/// the default window, or (other windows) a compressed form for this
/// recipient alone.
pub(crate) fn wire(frame: &Frame, deflate: Option<Outbound>) -> Bytes {
    match deflate {
        Some(d) if frame.payload().len() >= d.threshold as usize => {
            if d.window == DEFAULT_WINDOW {
                frame
                    .compressed_with(|f| encode_compressed(f, DEFAULT_WINDOW))
                    .clone()
            } else {
                encode_compressed(frame, d.window)
            }
        }
        _ => frame.encoded_with(crate::codec::encode_frame).clone(),
    }
}

/// The bytes the transport writes for `frame` to a connection that
/// negotiated permessage-deflate with a `window`-bit server window (`None`:
/// not negotiated) and `threshold`, as the drain gets them: from the
/// frame's encode-once slots, so a second call for the same frame and
/// parameters (9..=14 excepted) returns the same buffer. For benchmarks
/// and tests outside the crate.
#[doc(hidden)]
pub fn encode_for_recipient(frame: &Frame, window: Option<u8>, threshold: u32) -> Bytes {
    wire(frame, window.map(|window| Outbound { window, threshold }))
}

/// Encodes `frame` as one final frame with RSV1 set and its payload
/// compressed with a `window`-bit window, even when deflate does not make
/// it shorter (as `ws` does: a few bytes lost on incompressible payloads
/// over the threshold, no second encoding). The uncompressed frame (from
/// the shared slot) only if compression fails, which negotiated
/// parameters never make it do.
pub(crate) fn encode_compressed(frame: &Frame, window: u8) -> Bytes {
    let payload = frame.payload();
    match compress(payload, window) {
        Some(deflated) => {
            let mut out = BytesMut::with_capacity(deflated.len() + 10);
            crate::codec::put_header(&mut out, 0x40 | frame.kind().opcode(), deflated.len());
            out.put_slice(&deflated);
            out.freeze()
        }
        None => frame.encoded_with(crate::codec::encode_frame).clone(),
    }
}

thread_local! {
    /// One compressor per window size (9..=15), per thread, created when
    /// first used and reset before each message.
    static COMPRESSORS: RefCell<[Option<Compress>; 7]> = const { RefCell::new([const { None }; 7]) };
    /// The thread's inflater for clients without context takeover.
    static SHARED_INFLATER: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

/// Compresses `data` as one message without context takeover: raw deflate,
/// sync flush, the trailing `00 00 ff ff` stripped. `None` if the window is
/// out of range or deflate fails (neither happens with negotiated
/// parameters).
pub(crate) fn compress(data: &[u8], window: u8) -> Option<Vec<u8>> {
    if !(MIN_SERVER_WINDOW..=DEFAULT_WINDOW).contains(&window) {
        return None;
    }
    let slot = usize::from(window - MIN_SERVER_WINDOW);
    COMPRESSORS.with(|cell| {
        let mut compressors = cell.borrow_mut();
        let c = compressors[slot].get_or_insert_with(|| {
            Compress::new_with_window_bits(Compression::default(), false, window)
        });
        c.reset();
        let mut out = Vec::with_capacity(data.len() / 2 + 64);
        loop {
            let consumed = usize::try_from(c.total_in()).ok()?;
            c.compress_vec(&data[consumed..], &mut out, FlushCompress::Sync)
                .ok()?;
            let done = usize::try_from(c.total_in()).ok()? == data.len();
            if done && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity().max(64));
        }
        if !out.ends_with(&TAIL) {
            return None;
        }
        out.truncate(out.len() - TAIL.len());
        Some(out)
    })
}

/// The most compressed bytes a message may carry under `max_message`:
/// deflate can make incompressible data slightly longer (5 bytes per
/// stored block of 64 KiB, plus the flush).
pub(crate) fn max_compressed(max_message: usize) -> usize {
    max_message.saturating_add(max_message / 64 + 64)
}

/// Why an inflation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// The message inflates past the size limit: 1009.
    TooBig,
    /// Not valid deflate data: 1007.
    Corrupt,
}

/// The inbound side of one connection's permessage-deflate: which inflater
/// reads its messages. Kept in the decoder as one byte (the mode) and one
/// pointer (the context, see [`Inflater::context`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Inflate {
    /// Not negotiated: RSV1 is a protocol error.
    #[default]
    Off,
    /// The client resets its context per message: the thread's shared
    /// inflater, reset first.
    Shared,
    /// The client keeps its context: one of the connection's own.
    Own,
}

/// The inflater of one message: the connection's mode and its own
/// context slot (empty until the first compressed message needs it).
pub(crate) struct Inflater<'a> {
    pub(crate) mode: Inflate,
    pub(crate) context: &'a mut Option<Box<Decompress>>,
}

impl Inflater<'_> {
    /// Inflates one message's payload; at most `max` bytes of output.
    ///
    /// # Errors
    ///
    /// [`InflateError::TooBig`] past `max`, [`InflateError::Corrupt`] for
    /// bad data or when deflate was not negotiated.
    pub(crate) fn inflate(&mut self, data: &[u8], max: usize) -> Result<Vec<u8>, InflateError> {
        if self.mode == Inflate::Off {
            return Err(InflateError::Corrupt);
        }
        if self.mode == Inflate::Shared {
            SHARED_INFLATER.with(|cell| {
                let mut shared = cell.borrow_mut();
                let d = shared.get_or_insert_with(new_decompress);
                d.reset(false);
                inflate_into(d, data, max)
            })
        } else {
            let d = self
                .context
                .get_or_insert_with(|| Box::new(new_decompress()));
            inflate_into(d, data, max)
        }
    }
}

/// A raw inflater with the largest window, which reads any smaller one.
fn new_decompress() -> Decompress {
    Decompress::new_with_window_bits(false, DEFAULT_WINDOW)
}

/// Runs `data` and then [`TAIL`] through `d`; the output may not pass `max`
/// bytes and its buffer never exceeds `max + 1`.
fn inflate_into(d: &mut Decompress, data: &[u8], max: usize) -> Result<Vec<u8>, InflateError> {
    let limit = max.saturating_add(1);
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).clamp(64, limit));
    let mut ended = false;
    for input in [data, &TAIL[..]] {
        let start = d.total_in();
        while !ended {
            let consumed = usize::try_from(d.total_in() - start).unwrap_or(usize::MAX);
            let rest = input.get(consumed..).unwrap_or_default();
            let (in_before, out_before) = (d.total_in(), d.total_out());
            let status = d
                .decompress_vec(rest, &mut out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Corrupt)?;
            if out.len() > max {
                return Err(InflateError::TooBig);
            }
            ended = status == Status::StreamEnd;
            if out.len() == out.capacity() {
                // Output full: more may come. Grow, never past the limit.
                let grow = out.capacity().min(limit - out.len());
                out.reserve_exact(grow);
                continue;
            }
            let consumed = usize::try_from(d.total_in() - start).unwrap_or(usize::MAX);
            if consumed >= input.len() {
                break;
            }
            if d.total_in() == in_before && d.total_out() == out_before {
                // Neither input taken nor output made, with room for both.
                return Err(InflateError::Corrupt);
            }
        }
    }
    if ended {
        // The client ended its deflate stream (a final block): what it
        // sends next starts a new one.
        d.reset(false);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
