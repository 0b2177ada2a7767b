//! A binary-protocol frame as a client could send it: parsed, its body
//! decoded as every request type of both versions, and a decoded check
//! decided by an engine.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use weir::engine::CheckRequest;
use weir::protocol::{decode, Frame, Hello, WireCheck, WireCheck2, WireRelease, WireSettle};

fuzz_target!(|data: &[u8]| {
    // A frame as read from the socket after its length prefix.
    let Ok(frame) = Frame::parse(data) else {
        return;
    };
    let _ = decode::<Hello>(&frame.body);
    let _ = decode::<WireRelease>(&frame.body);
    let _ = decode::<WireSettle>(&frame.body);
    let _ = decode::<Vec<WireCheck2>>(&frame.body);
    if let Ok(check) = decode::<WireCheck2>(&frame.body) {
        if let Ok(request) = CheckRequest::try_from(check.check) {
            let _ = common::engine().check(&request);
        }
    }
    if let Ok(checks) = decode::<Vec<WireCheck>>(&frame.body) {
        let requests: Result<Vec<CheckRequest>, _> = checks.into_iter().map(CheckRequest::try_from).collect();
        if let Ok(requests) = requests {
            let _ = common::engine().check_batch(&requests);
        }
    }
    if let Ok(check) = decode::<WireCheck>(&frame.body) {
        if let Ok(request) = CheckRequest::try_from(check) {
            let _ = common::engine().check(&request);
            let _ = common::engine().refund(&request);
        }
    }
});
