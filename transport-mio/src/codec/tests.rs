use super::*;

/// A masked client frame.
fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    unmask(&mut out[start..], mask, 0);
    out
}

fn decode(input: &[u8], chunk: usize) -> Result<Vec<Inbound>, Violation> {
    let mut d = Decoder::default();
    let mut out = Vec::new();
    for piece in input.chunks(chunk) {
        d.feed(piece, 1 << 16, &mut |u| {
            out.push(u);
            Flow::Continue
        })?;
    }
    Ok(out)
}

#[test]
fn frames_split_at_every_byte_decode_alike() {
    let mut input = client_frame(true, OP_TEXT, b"hello");
    input.extend(client_frame(false, OP_BINARY, &[1; 300]));
    input.extend(client_frame(true, OP_PING, b"p"));
    input.extend(client_frame(
        true,
        OP_CONTINUATION,
        &[2; 70_000 - 300 - 65_000],
    ));
    input.extend(client_frame(true, OP_CLOSE, &[0x03, 0xE8, b'o', b'k']));
    let mut binary = vec![1u8; 300];
    binary.extend(vec![2u8; 4_700]);
    let expected = vec![
        Inbound::Message(MessageType::Text, Bytes::from_static(b"hello")),
        Inbound::Fragment,
        Inbound::Ping(Bytes::from_static(b"p")),
        Inbound::Message(MessageType::Binary, Bytes::from(binary)),
        Inbound::Close(Some((1000, "ok".into()))),
    ];
    for chunk in [1, 2, 3, 7, 64, 8192] {
        assert_eq!(decode(&input, chunk).unwrap(), expected, "chunk {chunk}");
    }
}

/// Feeds `input` in chunks of `chunk` bytes; returns what was decoded
/// and, on a violation, the input offset at which the feed that
/// reported it ended (the end of the chunk holding the offending byte).
fn decode_until_error(input: &[u8], chunk: usize) -> (Vec<Inbound>, Option<(usize, Violation)>) {
    let mut d = Decoder::default();
    let mut out = Vec::new();
    let mut fed = 0;
    for piece in input.chunks(chunk) {
        fed += piece.len();
        let result = d.feed(piece, 1 << 16, &mut |u| {
            out.push(u);
            Flow::Continue
        });
        if let Err(v) = result {
            return (out, Some((fed, v)));
        }
    }
    (out, None)
}

/// The end of the chunk (of `chunk` bytes) that holds byte `at`.
fn chunk_end(at: usize, chunk: usize, len: usize) -> usize {
    ((at / chunk + 1) * chunk).min(len)
}

const CHUNKS: [usize; 8] = [1, 2, 3, 4, 5, 7, 13, 64];

#[test]
fn invalid_utf8_in_a_fragmented_text_message_fails_at_the_bad_byte() {
    // Autobahn 6.4.1: valid first fragment, a second one that makes the
    // text invalid (U+110000 is out of range: 0x90 after 0xF4 is the
    // first byte that cannot be UTF-8), a valid third one that must not
    // be waited for.
    let first = client_frame(false, OP_TEXT, "κόσμε".as_bytes());
    let second = client_frame(false, OP_CONTINUATION, &[0xf4, 0x90, 0x80, 0x80]);
    let third = client_frame(true, OP_CONTINUATION, b"edited");
    let bad = first.len() + 6 + 1;
    let input = [first, second, third].concat();
    for chunk in CHUNKS {
        let (units, err) = decode_until_error(&input, chunk);
        assert_eq!(
            err,
            Some((chunk_end(bad, chunk, input.len()), Violation::InvalidUtf8)),
            "chunk {chunk}"
        );
        assert_eq!(units, vec![Inbound::Fragment], "chunk {chunk}");
    }
}

#[test]
fn invalid_utf8_in_one_text_frame_fails_before_the_frame_ends() {
    // A single frame arriving in pieces: 0xFF cannot start a character;
    // after 0xE2 an ASCII byte ends a character too early.
    for (payload, bad_at) in [
        ([&[b'x'; 100][..], &[0xff], &[b'y'; 100]].concat(), 100),
        ([&[b'x'; 40][..], &[0xe2, b'a'], &[b'y'; 100]].concat(), 41),
    ] {
        let input = client_frame(true, OP_TEXT, &payload);
        let header = input.len() - payload.len();
        for chunk in CHUNKS {
            let (units, err) = decode_until_error(&input, chunk);
            let at = chunk_end(header + bad_at, chunk, input.len());
            assert!(at < input.len(), "the error comes before the frame ends");
            assert_eq!(err, Some((at, Violation::InvalidUtf8)), "chunk {chunk}");
            assert!(units.is_empty());
        }
    }
}

#[test]
fn characters_split_across_fragments_and_reads_are_valid() {
    // "a€!" with the euro sign (E2 82 AC) split across two fragments,
    // and a four-byte character in a frame of its own.
    let mut input = client_frame(false, OP_TEXT, b"a\xe2\x82");
    input.extend(client_frame(false, OP_CONTINUATION, b"\xac!"));
    input.extend(client_frame(true, OP_CONTINUATION, "𝄞".as_bytes()));
    for chunk in CHUNKS {
        let (units, err) = decode_until_error(&input, chunk);
        assert_eq!(err, None, "chunk {chunk}");
        assert_eq!(
            units,
            vec![
                Inbound::Fragment,
                Inbound::Fragment,
                Inbound::Message(MessageType::Text, Bytes::from("a€!𝄞"))
            ],
            "chunk {chunk}"
        );
    }
}

#[test]
fn a_text_message_ending_inside_a_character_is_invalid() {
    // Valid so far at every byte; invalid only once the message ends.
    let input = client_frame(true, OP_TEXT, &[b'a', 0xe2, 0x82]);
    for chunk in CHUNKS {
        let (_, err) = decode_until_error(&input, chunk);
        assert_eq!(
            err,
            Some((input.len(), Violation::InvalidUtf8)),
            "chunk {chunk}"
        );
    }
    // Binary messages are not validated.
    let input = client_frame(true, OP_BINARY, &[0xff, 0xe2]);
    assert_eq!(decode_until_error(&input, 1).1, None);
}

#[test]
fn unmask_agrees_with_the_bytewise_definition() {
    let mask = [1, 2, 3, 4];
    for offset in 0..4 {
        let mut a: Vec<u8> = (0..37).collect();
        let b: Vec<u8> = a
            .iter()
            .enumerate()
            .map(|(i, x)| x ^ mask[(offset + i) % 4])
            .collect();
        unmask(&mut a, mask, offset);
        assert_eq!(a, b);
    }
}

#[test]
fn violations_map_to_close_codes() {
    let code = |input: Vec<u8>| decode(&input, 5).unwrap_err().close_code();
    // Unmasked.
    assert_eq!(code(vec![0x81, 0x01, b'a']), 1002);
    // Reserved bits, reserved opcode, fragmented and long control frames.
    assert_eq!(code(client_frame(true, 0x41, b"a")), 1002);
    assert_eq!(code(client_frame(true, 0x3, b"a")), 1002);
    assert_eq!(code(client_frame(false, OP_PING, b"a")), 1002);
    assert_eq!(code(client_frame(true, OP_PING, &[0; 126])), 1002);
    // Continuation without a start; a new message inside a fragmented one.
    assert_eq!(code(client_frame(true, OP_CONTINUATION, b"a")), 1002);
    let mut two = client_frame(false, OP_TEXT, b"a");
    two.extend(client_frame(true, OP_TEXT, b"b"));
    assert_eq!(code(two), 1002);
    // Too big, checked on the header alone.
    let mut big = vec![0x82, 0x80 | 127];
    big.extend_from_slice(&(1u64 << 20).to_be_bytes());
    big.extend_from_slice(&[1, 2, 3, 4]);
    assert_eq!(code(big), 1009);
    // Invalid UTF-8 in text and in a close reason; a bad close code.
    assert_eq!(code(client_frame(true, OP_TEXT, &[0xff])), 1007);
    assert_eq!(code(client_frame(true, OP_CLOSE, &[3, 232, 0xff])), 1007);
    assert_eq!(code(client_frame(true, OP_CLOSE, &[3, 237])), 1002);
    assert_eq!(code(client_frame(true, OP_CLOSE, &[3])), 1002);
}

#[test]
fn decoder_holds_no_buffer_between_messages() {
    let mut d = Decoder::default();
    d.feed(&client_frame(true, OP_TEXT, b"x"), 100, &mut |_| {
        Flow::Continue
    })
    .unwrap();
    assert!(d.is_idle());
    assert_eq!(d.buffered(), 0);
}

#[test]
fn server_frames_use_the_shortest_length_form() {
    assert_eq!(&encode_text("a")[..2], &[0x81, 1]);
    let f = realtime::Frame::binary(vec![0u8; 200]);
    assert_eq!(&encode_frame(&f)[..4], &[0x82, 126, 0, 200]);
    let f = realtime::Frame::binary(vec![0u8; 70_000]);
    assert_eq!(encode_frame(&f)[1], 127);
    assert_eq!(&encode_close(1001, "bye")[..], b"\x88\x05\x03\xe9bye");
    assert_eq!(encode_close(1000, &"é".repeat(100)).len(), 2 + 124);
}

#[test]
fn fuzz_hook_survives_garbage() {
    let out = fuzz_decode(&[0xff; 64], 3, 1024);
    assert_eq!(out.last().map(String::as_str), Some("close 1002"));
}

/// A masked client frame with RSV1 set.
fn compressed_frame(fin: bool, opcode: u8, deflated: &[u8]) -> Vec<u8> {
    let mut f = client_frame(fin, opcode, deflated);
    f[0] |= 0x40;
    f
}

fn decode_deflate(input: &[u8], chunk: usize, max: usize) -> Result<Vec<Inbound>, Violation> {
    let mut d = Decoder::with_deflate(false);
    let mut out = Vec::new();
    for piece in input.chunks(chunk) {
        d.feed(piece, max, &mut |u| {
            out.push(u);
            Flow::Continue
        })?;
    }
    Ok(out)
}

#[test]
fn compressed_messages_whole_or_fragmented_are_inflated() {
    let text = "compressible ".repeat(200);
    let deflated = crate::deflate::compress(text.as_bytes(), 15).unwrap();
    let (a, b) = deflated.split_at(deflated.len() / 2);
    let mut input = compressed_frame(true, OP_TEXT, &deflated);
    // RSV1 on the first frame only; a ping between the fragments.
    input.extend(compressed_frame(false, OP_BINARY, a));
    input.extend(client_frame(true, OP_PING, b""));
    input.extend(client_frame(true, OP_CONTINUATION, b));
    // An uncompressed message on the same session.
    input.extend(client_frame(true, OP_TEXT, b"plain"));
    let expected = vec![
        Inbound::Message(MessageType::Text, Bytes::from(text.clone())),
        Inbound::Fragment,
        Inbound::Ping(Bytes::new()),
        Inbound::Message(MessageType::Binary, Bytes::from(text.clone())),
        Inbound::Message(MessageType::Text, Bytes::from_static(b"plain")),
    ];
    for chunk in [1, 5, 8192] {
        assert_eq!(decode_deflate(&input, chunk, 1 << 16).unwrap(), expected);
    }
}

#[test]
fn rsv1_where_it_does_not_belong_is_a_protocol_error() {
    let deflated = crate::deflate::compress(b"hello hello hello", 15).unwrap();
    // Not negotiated.
    let err = decode(&compressed_frame(true, OP_TEXT, &deflated), 1).unwrap_err();
    assert_eq!(err.close_code(), 1002);
    // On a control frame.
    let err = decode_deflate(&compressed_frame(true, OP_PING, b""), 1, 1024).unwrap_err();
    assert_eq!(
        err,
        Violation::Protocol("RSV1 on a control or continuation frame")
    );
    // On a continuation.
    let mut input = client_frame(false, OP_TEXT, b"a");
    input.extend(compressed_frame(true, OP_CONTINUATION, b"b"));
    let err = decode_deflate(&input, 3, 1024).unwrap_err();
    assert_eq!(err.close_code(), 1002);
    // RSV2 and RSV3 stay reserved.
    let mut rsv2 = client_frame(true, OP_TEXT, b"a");
    rsv2[0] |= 0x20;
    assert_eq!(
        decode_deflate(&rsv2, 1, 1024).unwrap_err().close_code(),
        1002
    );
}

#[test]
fn a_compressed_message_over_the_limit_once_inflated_is_1009() {
    let bomb = crate::deflate::compress(&vec![b'a'; 1 << 20], 15).unwrap();
    assert!(bomb.len() < 4096);
    let input = compressed_frame(true, OP_TEXT, &bomb);
    let err = decode_deflate(&input, 8192, 64 * 1024).unwrap_err();
    assert_eq!(err.close_code(), 1009);
    // Compressed bytes far over the limit are refused from the header.
    let input = compressed_frame(true, OP_BINARY, &vec![0; 2000]);
    let err = decode_deflate(&input[..10], 1, 1000).unwrap_err();
    assert_eq!(err, Violation::TooBig);
}

#[test]
fn corrupt_or_non_utf8_compressed_messages_are_1007() {
    let input = compressed_frame(true, OP_BINARY, &[0xff, 0xff]);
    let err = decode_deflate(&input, 1, 1024).unwrap_err();
    assert_eq!(err, Violation::BadDeflate);
    assert_eq!(err.close_code(), 1007);
    let deflated = crate::deflate::compress(&[0xc3, 0x28, 0x41, 0x41], 15).unwrap();
    let err = decode_deflate(&compressed_frame(true, OP_TEXT, &deflated), 2, 1024).unwrap_err();
    assert_eq!(err, Violation::InvalidUtf8);
}

#[test]
fn garbage_compressed_payloads_end_in_a_close_code_never_a_panic() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut codes = std::collections::BTreeSet::new();
    for round in 0..2_000 {
        let len = (next() % 300) as usize;
        let mut payload: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if round % 3 == 0 {
            // A valid stream with bytes flipped.
            payload = crate::deflate::compress(&payload, 15).unwrap();
            if let Some(b) = payload.get_mut(len % 7) {
                *b ^= next() as u8 | 1;
            }
        }
        let opcode = if round % 2 == 0 { OP_TEXT } else { OP_BINARY };
        let input = compressed_frame(true, opcode, &payload);
        let chunk = 1 + (next() % 40) as usize;
        match decode_deflate(&input, chunk, 1024) {
            Ok(units) => assert!(units.len() <= 1),
            Err(v) => {
                codes.insert(v.close_code());
            }
        }
    }
    // Corrupt data and bad UTF-8 were both met, and nothing else.
    assert!(codes.contains(&1007), "{codes:?}");
    assert!(codes.iter().all(|c| [1007, 1009].contains(c)), "{codes:?}");
}
