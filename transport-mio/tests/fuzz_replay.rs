//! Replays the committed `ws_stream` fuzz inputs (`fuzz/seeds/ws_stream/`,
//! `fuzz/regressions/ws_stream/`) through the transport's fuzz hooks on
//! stable Rust: handshake parsing and frame decoding never panic and stay
//! bounded by their input.

use std::path::{Path, PathBuf};

fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// The body of `fuzz/fuzz_targets/ws_stream.rs`; keep the two in step.
fn ws_stream(data: &[u8]) {
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
    assert!(
        out.len() <= frames.len() / 2 + 1,
        "{} units from {} bytes",
        out.len(),
        frames.len()
    );
}

#[test]
fn ws_stream_seeds_and_regressions_replay() {
    let seeds = inputs("seeds", "ws_stream");
    assert!(!seeds.is_empty(), "no seeds under fuzz/seeds/ws_stream/");
    for path in seeds.iter().chain(&inputs("regressions", "ws_stream")) {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let result = std::panic::catch_unwind(|| ws_stream(&data));
        assert!(result.is_ok(), "ws_stream: {} panics", path.display());
    }
}

#[test]
fn the_handshake_seed_parses_as_an_upgrade() {
    let data = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/ws_stream/handshake_only"),
    )
    .unwrap_or_default();
    assert_eq!(realtime_mio::fuzz_parse_request(&data[1..]), 101);
}
