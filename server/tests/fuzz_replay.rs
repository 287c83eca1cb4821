//! Replays the committed fuzz inputs of the server targets
//! (`fuzz/seeds/<target>/`, `fuzz/regressions/<target>/`) through the
//! server's fuzz hooks on stable Rust: none may panic.

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

fn replay(target: &str, hook: fn(&[u8])) {
    let seeds = inputs("seeds", target);
    assert!(!seeds.is_empty(), "no seeds under fuzz/seeds/{target}/");
    for path in seeds.iter().chain(&inputs("regressions", target)) {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let result = std::panic::catch_unwind(|| hook(&data));
        assert!(result.is_ok(), "{target}: {} panics", path.display());
    }
}

#[test]
fn pusher_message_seeds_and_regressions_replay() {
    replay("pusher_message", realtime_server::fuzz_pusher_message);
}

#[test]
fn http_api_seeds_and_regressions_replay() {
    replay("http_api", realtime_server::fuzz_http_api);
}
