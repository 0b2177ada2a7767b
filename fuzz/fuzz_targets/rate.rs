//! Rate strings ("10/s", "100 per day") and periods ("15m").
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir::limiter::rate::parse_period;
use weir::limiter::Rate;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(rate) = text.parse::<Rate>() {
            // A parsed rate prints as one that parses to itself.
            assert_eq!(rate.to_string().parse::<Rate>().ok(), Some(rate));
        }
        let _ = parse_period(text, "duration");
    }
});
