#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| realtime_server::fuzz_http_api(data));
