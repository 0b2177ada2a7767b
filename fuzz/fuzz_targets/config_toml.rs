//! Config files (and `PUT /v1/config` bodies): parsed and compiled.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir::config::Config;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::parse(text);
    }
});
