//! One function per fuzz target in `fuzz/fuzz_targets/`, each a one-line
//! call there. Each takes arbitrary bytes, never trusts them, and panics
//! only when the code under test breaks a property; [`crate::replay`] runs
//! the committed inputs through the same functions on stable Rust.

/// A sequence of Hub operations checked step by step against a reference
/// model. The input format and what is compared: [`crate::hub_ops`].
///
/// # Panics
///
/// When the Hub and the model disagree; the message lists the decoded
/// steps and the input.
pub fn hub_ops(data: &[u8]) {
    crate::hub_ops::run(data);
}

/// Byte 0 (low 4 bits) is the length of the member id that follows (lossy
/// UTF-8; the channel is `presence-<id>`); the rest is the member's info.
/// Every JSON presence frame is valid JSON, and valid-JSON info is
/// embedded byte for byte (R10); `is_json` agrees with a grammar checker.
///
/// # Panics
///
/// When a frame or `is_json` breaks one of these properties.
pub fn presence_info(data: &[u8]) {
    crate::presence_info::run(data);
}

/// Any bytes (lossy UTF-8) as a channel name: `classify_channel` agrees with
/// a byte-prefix reference (R5), and a Hub treats the channel accordingly:
/// the authorizer is asked exactly for private and presence channels, with
/// that type, and only presence joins send a roster.
///
/// # Panics
///
/// When the classification or the Hub's treatment of the channel differs.
pub fn channel_name(data: &[u8]) {
    crate::channel_name::run(data);
}

/// Up to 16 client messages (separated by NUL bytes) through the Pusher
/// protocol parser and dispatcher of `realtime-server`, on one connection
/// of a fresh node with a second connection beside it: never panics.
pub fn pusher_message(data: &[u8]) {
    realtime_server::fuzz_pusher_message(data);
}

/// Byte 0: flags (bit 0: sign the request with the development app's
/// secret); then `METHOD PATH?QUERY\nBODY` through the HTTP API of
/// `realtime-server`: never panics, and a signed request is never refused
/// as unauthenticated (401).
///
/// # Panics
///
/// When a signed request is answered 401.
pub fn http_api(data: &[u8]) {
    let status = realtime_server::fuzz_http_api(data);
    let signed = data.first().is_some_and(|f| f & 1 != 0);
    assert!(
        !(signed && status == 401),
        "a signed request was answered 401: {:?}",
        String::from_utf8_lossy(data)
    );
}

/// A client's byte stream through `realtime-mio`: its request parser and
/// frame decoder alone, then one whole connection state machine over an
/// in-memory socket (`realtime_mio::fuzz_connection`): an HTTP request head
/// (the handshake), then WebSocket frames. Byte 0: bits 0-4 the read chunk
/// size - 1, bits 5-7 the maximum message size class. Never panics, the
/// decoder's output is bounded by its input, and the connection opens at
/// most one WebSocket session and tells the application of its end
/// exactly once. (Allocation is bounded by libFuzzer's `-malloc_limit_mb`
/// in `fuzz/run.sh`.)
///
/// # Panics
///
/// When the decoder yields more units than the frame bytes can hold, or a
/// session is opened more than once or not closed exactly once.
pub fn ws_stream(data: &[u8]) {
    let Some((&config, stream)) = data.split_first() else {
        return;
    };
    let chunk = 1 + usize::from(config & 0x1f);
    let max_message = 16usize << (3 * usize::from(config >> 5)).min(20);
    let _ = realtime_mio::fuzz_parse_request(stream);
    let frames = stream
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(stream, |end| &stream[end + 4..]);
    let out = realtime_mio::fuzz_decode(frames, chunk, max_message);
    // Every decoded unit consumed at least one frame header (2 bytes), and
    // at most one violation ends the stream.
    assert!(
        out.len() <= frames.len() / 2 + 1,
        "{} units from {} bytes",
        out.len(),
        frames.len()
    );
    let (opened, closed) = realtime_mio::fuzz_connection(data);
    assert!(opened <= 1, "{opened} sessions on one connection");
    assert_eq!(closed, opened, "sessions opened {opened}, closed {closed}");
}
