//! Replays the committed fuzz inputs (`fuzz/seeds/<target>/` and
//! `fuzz/regressions/<target>/`) through the core fuzz hooks on stable Rust,
//! and runs a short deterministic pseudo-random sweep of each hook, so the
//! properties the fuzz targets check hold in every `cargo test`.

use std::path::{Path, PathBuf};

use realtime::fuzzing;

/// Every file under `fuzz/<kind>/<target>/`, sorted.
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

/// Runs `hook` on every seed and regression input of `target`; there must
/// be seeds.
fn replay(target: &str, hook: fn(&[u8])) {
    let seeds = inputs("seeds", target);
    assert!(!seeds.is_empty(), "no seeds under fuzz/seeds/{target}/");
    for path in seeds.iter().chain(&inputs("regressions", target)) {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let result = std::panic::catch_unwind(|| hook(&data));
        assert!(result.is_ok(), "{target}: {} fails", path.display());
    }
}

/// xorshift64*: a reproducible byte stream, no dependency.
fn pseudo_random_inputs(seed: u64, count: usize, max_len: usize) -> Vec<Vec<u8>> {
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

#[test]
fn hub_ops_seeds_and_regressions_replay() {
    replay("hub_ops", fuzzing::hub_ops);
}

#[test]
fn presence_info_seeds_and_regressions_replay() {
    replay("presence_info", fuzzing::presence_info);
}

#[test]
fn channel_name_seeds_and_regressions_replay() {
    replay("channel_name", fuzzing::channel_name);
}

#[test]
fn hub_ops_model_agrees_on_pseudo_random_sequences() {
    for input in pseudo_random_inputs(0x5eed_0001, 3_000, 160) {
        fuzzing::hub_ops(&input);
    }
}

#[test]
fn presence_info_holds_on_pseudo_random_bytes() {
    for input in pseudo_random_inputs(0x5eed_0002, 3_000, 64) {
        fuzzing::presence_info(&input);
    }
}

#[test]
fn channel_name_holds_on_pseudo_random_bytes() {
    for mut input in pseudo_random_inputs(0x5eed_0003, 1_000, 24) {
        // Half of them start with a real prefix.
        let prefix: &[u8] = match input.first().map(|b| b % 4) {
            Some(0) => b"private-",
            Some(1) => b"presence-",
            _ => b"",
        };
        input.splice(0..0, prefix.iter().copied());
        fuzzing::channel_name(&input);
    }
}
