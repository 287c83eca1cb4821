use flate2::{Compress, Compression, Decompress, FlushCompress};
use realtime::Frame;

use super::*;

/// What a client compressing with context takeover sends: each message
/// sync-flushed by the same compressor, the tail stripped.
fn client_messages(messages: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut c = Compress::new(Compression::default(), false);
    messages
        .iter()
        .map(|m| {
            let mut out = Vec::with_capacity(m.len() + 64);
            let start = c.total_in();
            while c.total_in() - start < m.len() as u64 || out.len() == out.capacity() {
                let done = (c.total_in() - start) as usize;
                out.reserve(64);
                c.compress_vec(&m[done..], &mut out, FlushCompress::Sync)
                    .unwrap();
            }
            assert!(out.ends_with(&TAIL));
            out.truncate(out.len() - 4);
            out
        })
        .collect()
}

/// Inflates one message with a fresh connection's inflater.
struct Once(Option<Box<Decompress>>, Inflate);

impl Once {
    fn inflate(&mut self, data: &[u8], max: usize) -> Result<Vec<u8>, InflateError> {
        Inflater {
            mode: self.1,
            context: &mut self.0,
        }
        .inflate(data, max)
    }
}

fn inflater(no_context: bool) -> Once {
    Once(
        None,
        if no_context {
            Inflate::Shared
        } else {
            Inflate::Own
        },
    )
}

fn json(n: usize) -> Vec<u8> {
    let mut s = String::from("{\"event\":\"price\",\"data\":[");
    let mut i = 0;
    while s.len() < n {
        s.push_str(&format!("{{\"id\":{i},\"symbol\":\"ABC\",\"bid\":1.{i}}},"));
        i += 1;
    }
    s.push_str("0]}");
    s.into_bytes()
}

#[test]
fn every_window_size_compresses_what_a_15_bit_inflater_reads_back() {
    let data = json(5_000);
    for window in MIN_SERVER_WINDOW..=DEFAULT_WINDOW {
        let deflated = compress(&data, window).unwrap();
        assert!(deflated.len() < data.len() / 2, "window {window}");
        assert!(!deflated.ends_with(&TAIL));
        let back = inflater(true).inflate(&deflated, 1 << 20).unwrap();
        assert_eq!(back, data, "window {window}");
    }
    assert_eq!(compress(&data, 8), None);
}

#[test]
fn a_client_with_context_takeover_is_inflated_by_a_context_of_its_own() {
    let first = json(600);
    let wire = client_messages(&[&first, &first]);
    // The second message refers back to the first: it is much shorter.
    assert!(wire[1].len() < wire[0].len() / 4);
    let mut context = None;
    let mut inflater = Inflater {
        mode: Inflate::Own,
        context: &mut context,
    };
    assert_eq!(inflater.inflate(&wire[0], 1 << 16).unwrap(), first);
    assert_eq!(inflater.inflate(&wire[1], 1 << 16).unwrap(), first);
    assert!(context.is_some());
    // Without takeover no context is kept, and the shared inflater is reset
    // per message: the back-reference cannot be resolved.
    let mut context = None;
    let mut shared = Inflater {
        mode: Inflate::Shared,
        context: &mut context,
    };
    assert_eq!(shared.inflate(&wire[0], 1 << 16).unwrap(), first);
    assert_ne!(shared.inflate(&wire[1], 1 << 16), Ok(first));
    assert!(context.is_none());
}

#[test]
fn a_decompression_bomb_stops_at_the_size_limit() {
    let bomb = compress(&vec![0u8; 16 << 20], DEFAULT_WINDOW).unwrap();
    assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
    for no_context in [true, false] {
        let got = inflater(no_context).inflate(&bomb, 64 * 1024);
        assert_eq!(got, Err(InflateError::TooBig));
    }
    // Exactly at the limit is allowed.
    let exact = compress(&vec![7u8; 4096], DEFAULT_WINDOW).unwrap();
    assert_eq!(inflater(true).inflate(&exact, 4096).unwrap().len(), 4096);
    assert_eq!(
        inflater(true).inflate(&exact, 4095),
        Err(InflateError::TooBig)
    );
}

#[test]
fn corrupt_deflate_data_is_refused() {
    // Block type 3 is reserved.
    assert_eq!(
        inflater(true).inflate(&[0xff, 0xff, 0xff], 1024),
        Err(InflateError::Corrupt)
    );
}

#[test]
fn a_broadcast_is_compressed_once_and_the_bytes_shared() {
    let frame = Frame::text(json(2_000)).unwrap();
    let d = Some(Outbound {
        window: DEFAULT_WINDOW,
        threshold: 256u32,
    });
    let a = wire(&frame, d);
    let b = wire(&frame.clone(), d);
    assert_eq!(a.as_ptr(), b.as_ptr());
    assert_eq!(a[0], 0xC1, "FIN, RSV1, text");
    assert!(a.len() < frame.wire_len() / 2);
    // Uncompressed recipients share the other slot, untouched by this.
    let plain = wire(&frame, None);
    assert_eq!(plain[0], 0x81);
    assert_eq!(plain.as_ptr(), wire(&frame, None).as_ptr());
    // A smaller window is compressed per recipient, readable all the same.
    let small = Some(Outbound {
        window: 10,
        threshold: 256u32,
    });
    let c = wire(&frame, small);
    assert_ne!(c.as_ptr(), a.as_ptr());
    assert_eq!(c[0], 0xC1);
}

#[test]
fn small_frames_go_uncompressed_and_larger_ones_compressed_even_if_longer() {
    let d = Some(Outbound {
        window: DEFAULT_WINDOW,
        threshold: 256u32,
    });
    let small = Frame::text("x".repeat(255)).unwrap();
    assert_eq!(wire(&small, d)[0], 0x81);
    // Bytes deflate cannot shrink (a xorshift stream).
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..1000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let frame = Frame::binary(noise);
    let w = wire(&frame, d);
    assert_eq!(w[0], 0xC2);
    assert!(w.len() > frame.wire_len());
}
