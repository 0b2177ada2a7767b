//! `POST /v1/check` bodies: JSON into the request type, then a decision.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use weir::engine::CheckRequest;
use weir::server::check::CheckBody;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<CheckBody>(data) else {
        return;
    };
    if let Ok(request) = CheckRequest::try_from(body) {
        let _ = common::engine().check(&request);
        let _ = common::engine().explain(&request);
    }
});
