//! Every fuzz target's committed inputs (`fuzz/seeds/<target>/`,
//! `fuzz/regressions/<target>/`) replayed through `testkit::fuzz` on
//! stable Rust, a deterministic pseudo-random sweep of the Hub oracles,
//! and the transport's handshake seed, so the properties the fuzz targets
//! check hold in every `cargo test`.

use testkit::fuzz;
use testkit::replay::{fuzz_dir, pseudo_random_inputs, replay, TARGETS};

#[test]
fn hub_ops_seeds_and_regressions_replay() {
    replay("hub_ops", fuzz::hub_ops);
}

#[test]
fn presence_info_seeds_and_regressions_replay() {
    replay("presence_info", fuzz::presence_info);
}

#[test]
fn channel_name_seeds_and_regressions_replay() {
    replay("channel_name", fuzz::channel_name);
}

#[test]
fn pusher_message_seeds_and_regressions_replay() {
    replay("pusher_message", fuzz::pusher_message);
}

#[test]
fn http_api_seeds_and_regressions_replay() {
    replay("http_api", fuzz::http_api);
}

#[test]
fn ws_stream_seeds_and_regressions_replay() {
    replay("ws_stream", fuzz::ws_stream);
}

#[test]
fn every_seed_and_regression_directory_belongs_to_a_replayed_target() {
    for kind in ["seeds", "regressions"] {
        let entries = std::fs::read_dir(fuzz_dir().join(kind))
            .unwrap_or_else(|e| panic!("fuzz/{kind}/: {e}"));
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(
                TARGETS.contains(&name.as_str()),
                "fuzz/{kind}/{name}/ is not a target replayed here"
            );
        }
    }
}

#[test]
fn hub_ops_model_agrees_on_pseudo_random_sequences() {
    for input in pseudo_random_inputs(0x5eed_0001, 3_000, 160) {
        fuzz::hub_ops(&input);
    }
}

#[test]
fn presence_info_holds_on_pseudo_random_bytes() {
    for input in pseudo_random_inputs(0x5eed_0002, 3_000, 64) {
        fuzz::presence_info(&input);
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
        fuzz::channel_name(&input);
    }
}

#[test]
fn the_handshake_seed_parses_as_an_upgrade() {
    let path = fuzz_dir().join("seeds/ws_stream/handshake_only");
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(realtime_mio::fuzz_parse_request(&data[1..]), 101);
}

#[test]
fn signed_http_seeds_pass_the_signature_check_and_unsigned_ones_do_not() {
    let read = |name: &str| {
        let path = fuzz_dir().join("seeds/http_api").join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    // Signed by the hook: the routes behind the check answer.
    assert_eq!(realtime_server::fuzz_http_api(&read("events")), 200);
    assert_eq!(realtime_server::fuzz_http_api(&read("channels")), 200);
    assert_eq!(realtime_server::fuzz_http_api(&read("wrong_method")), 405);
    // The same request unsigned, with a made-up signature: refused.
    assert_eq!(
        realtime_server::fuzz_http_api(&read("events_unsigned")),
        401
    );
}
