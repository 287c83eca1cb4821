#![no_main]
//! A client's byte stream: an HTTP request head (the handshake), then
//! WebSocket frames, through `realtime-mio`'s parser and decoder. Byte 0:
//! bits 0-4 the read chunk size - 1, bits 5-7 the maximum message size
//! class. Kept in step with `transport-mio/tests/fuzz_replay.rs`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&config, stream)) = data.split_first() else { return };
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
    assert!(out.len() <= frames.len() / 2 + 1, "{} units from {} bytes", out.len(), frames.len());
});
