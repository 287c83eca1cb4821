#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| realtime::fuzzing::channel_name(data));
