//! Replays the committed fuzz inputs on stable Rust, in every `cargo test`
//! (`tests/fuzz_replay.rs`): the hand-made seeds under
//! `fuzz/seeds/<target>/` and the inputs that once found a bug under
//! `fuzz/regressions/<target>/`, each through the target's function in
//! [`crate::fuzz`].

use std::path::{Path, PathBuf};

/// Every fuzz target, as named in `fuzz/Cargo.toml` and [`crate::fuzz`].
pub const TARGETS: [&str; 6] = [
    "hub_ops",
    "presence_info",
    "channel_name",
    "pusher_message",
    "http_api",
    "ws_stream",
];

/// The `fuzz/` directory of the workspace.
pub fn fuzz_dir() -> PathBuf {
    // testkit/ sits at the workspace root, beside fuzz/.
    Path::new(env!("CARGO_MANIFEST_DIR")).with_file_name("fuzz")
}

/// Every file under `fuzz/<kind>/<target>/` (`kind` is `seeds` or
/// `regressions`), sorted; none if the directory does not exist.
pub fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `target`'s function `hook` on every seed and regression input of
/// `target`, each under `catch_unwind`.
///
/// # Panics
///
/// When `target` has no seeds (a replay of nothing proves nothing), when
/// an input cannot be read, or when `hook` panics on any input; the message
/// names every failing file.
pub fn replay(target: &str, hook: fn(&[u8])) {
    let seeds = inputs("seeds", target);
    assert!(!seeds.is_empty(), "no seeds under fuzz/seeds/{target}/");
    let mut failed = Vec::new();
    for path in seeds.iter().chain(&inputs("regressions", target)) {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if std::panic::catch_unwind(|| hook(&data)).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(failed.is_empty(), "{target} fails on {failed:#?}");
}

/// `count` reproducible pseudo-random inputs shorter than `max_len` bytes
/// (xorshift64* from `seed`, no dependency), for a deterministic sweep
/// beside the committed inputs.
pub fn pseudo_random_inputs(seed: u64, count: usize, max_len: usize) -> Vec<Vec<u8>> {
    let mut state = seed;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    (0..count)
        .map(|_| {
            let len = (next() as usize) % max_len;
            (0..len).map(|_| next() as u8).collect()
        })
        .collect()
}
