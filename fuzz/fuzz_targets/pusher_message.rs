#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| testkit::fuzz::pusher_message(data));
