#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| realtime::fuzzing::presence_info(data));
