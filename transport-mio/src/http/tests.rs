use super::*;

fn peer() -> SocketAddr {
    "127.0.0.1:1".parse().unwrap()
}

#[test]
fn parses_a_post_with_body_length_and_query() {
    let raw = b"POST /apps/1/events?auth_key=k&x=a%20b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
    let head = parse_head(raw, peer(), 1024).unwrap().unwrap();
    assert_eq!(head.request.method, "POST");
    assert_eq!(head.request.path, "/apps/1/events");
    assert_eq!(head.request.query_param("x").as_deref(), Some("a b"));
    assert_eq!(head.body_len, 5);
    assert_eq!(&raw[head.len..], b"hello");
    assert!(head.keep_alive);
    assert!(!head.upgrade);
}

#[test]
fn chunked_bodies_decode_at_every_split_and_with_trailers() {
    let enc = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
    let full = enc.len() - 4;
    for cut in 0..full {
        assert_eq!(decode_chunked(&enc[..cut], 64).unwrap(), None, "cut {cut}");
    }
    let (body, used) = decode_chunked(enc, 64).unwrap().unwrap();
    assert_eq!((body.as_slice(), used), (&b"hello world"[..], full));
    let (body, used) = decode_chunked(b"0\r\n\r\n", 64).unwrap().unwrap();
    assert_eq!((body.len(), used), (0, 5));
}

#[test]
fn chunked_bodies_are_bounded_and_malformed_ones_refused() {
    assert_eq!(
        decode_chunked(b"5\r\nhello\r\n0\r\n\r\n", 4)
            .unwrap_err()
            .status,
        413
    );
    assert_eq!(decode_chunked(b"zz\r\n", 64).unwrap_err().status, 400);
    assert_eq!(decode_chunked(b"2\r\nabXY", 64).unwrap_err().status, 400);
    assert_eq!(
        decode_chunked(b"ffffffffffffffff\r\n", 64)
            .unwrap_err()
            .status,
        413
    );
    let raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n";
    assert_eq!(parse_head(raw, peer(), 64).unwrap_err().status, 400);
    let raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n";
    assert_eq!(parse_head(raw, peer(), 64).unwrap_err().status, 501);
    let raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert!(parse_head(raw, peer(), 64).unwrap().unwrap().chunked);
}

#[test]
fn incomplete_head_waits_and_garbage_is_400() {
    assert!(parse_head(b"GET / HTTP/1.1\r\nHo", peer(), 10)
        .unwrap()
        .is_none());
    assert_eq!(
        parse_head(b"\x16\x03\x01garbage\r\n\r\n", peer(), 10)
            .unwrap_err()
            .status,
        400
    );
}

#[test]
fn content_length_is_digits_only() {
    let with = |v: &str| {
        let raw = format!("POST / HTTP/1.1\r\nContent-Length: {v}\r\n\r\n");
        parse_head(raw.as_bytes(), peer(), 1024).map(|h| h.map(|h| h.body_len))
    };
    assert_eq!(with("3").unwrap(), Some(3));
    assert_eq!(with("003").unwrap(), Some(3));
    assert_eq!(with("0").unwrap(), Some(0));
    for bad in [
        "+3",
        "-3",
        "3 3",
        "3,3",
        "3, 3",
        "0x10",
        "3.0",
        "1e2",
        "\u{661}",
        "99999999999999999999999999",
    ] {
        assert_eq!(
            with(bad).unwrap_err().status,
            400,
            "Content-Length: {bad:?}"
        );
    }
    // An empty value.
    let raw = b"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n";
    assert_eq!(parse_head(raw, peer(), 1024).unwrap_err().status, 400);
    let raw = b"POST / HTTP/1.1\r\nContent-Length:   \r\n\r\n";
    assert_eq!(parse_head(raw, peer(), 1024).unwrap_err().status, 400);
}

#[test]
fn repeated_content_length_must_agree() {
    let raw = b"POST / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 4\r\n\r\n";
    assert_eq!(parse_head(raw, peer(), 1024).unwrap_err().status, 400);
    let raw = b"POST / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\n";
    assert_eq!(parse_head(raw, peer(), 1024).unwrap().unwrap().body_len, 3);
    let raw = b"POST / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: +3\r\n\r\n";
    assert_eq!(parse_head(raw, peer(), 1024).unwrap_err().status, 400);
}

#[test]
fn head_requests_are_recognised_by_their_method_token() {
    assert!(is_head_request(b"HEAD /up HTTP/1.1\r\n"));
    assert!(!is_head_request(b"GET /up HTTP/1.1\r\n"));
    assert!(!is_head_request(b"head /up HTTP/1.1\r\n"));
    assert!(!is_head_request(b"HEADER / HTTP/1.1\r\n"));
}

#[test]
fn oversized_body_is_413() {
    let raw = b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n";
    assert_eq!(parse_head(raw, peer(), 10).unwrap_err().status, 413);
}

#[test]
fn oversized_head_is_431() {
    let mut raw = b"GET / HTTP/1.1\r\nX: ".to_vec();
    raw.resize(MAX_HEAD + 10, b'a');
    assert_eq!(parse_head(&raw, peer(), 10).unwrap_err().status, 431);
}

#[test]
fn connection_tokens_decide_keep_alive_and_upgrade() {
    let raw = b"GET /ws HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n\r\n";
    let head = parse_head(raw, peer(), 0).unwrap().unwrap();
    assert!(head.upgrade);
    let raw = b"GET / HTTP/1.0\r\n\r\n";
    assert!(!parse_head(raw, peer(), 0).unwrap().unwrap().keep_alive);
}

#[test]
fn response_head_strips_injected_newlines() {
    let head = HttpResponse::new(200, "x")
        .header("X-A", "1\r\nEvil: yes")
        .encode_head(false);
    let text = std::str::from_utf8(&head).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(text.contains("X-A: 1  Evil: yes\r\n"));
    assert!(text.ends_with("Content-Length: 1\r\nConnection: close\r\n\r\n"));
}

#[test]
fn chunked_decoding_resumes_where_it_stopped() {
    // A body of 1-byte chunks fed one byte at a time: each call
    // resumes at the first incomplete chunk (the work per call is
    // what the call adds, not the whole buffer).
    let mut enc = Vec::new();
    for b in b"hello world" {
        enc.extend_from_slice(b"1\r\n");
        enc.push(*b);
        enc.extend_from_slice(b"\r\n");
    }
    enc.extend_from_slice(b"0\r\n\r\n");
    let mut c = Chunked::default();
    for end in 1..enc.len() {
        assert_eq!(c.advance(&enc[..end], 64).unwrap(), None, "at {end}");
        assert!(c.at <= end);
    }
    assert_eq!(c.advance(&enc, 64).unwrap(), Some(enc.len()));
    assert_eq!(c.body, b"hello world");
}
