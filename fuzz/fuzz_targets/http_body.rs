//! `POST /v1/check` bodies: JSON into the request type, then a decision.
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use weir::clock::ManualClock;
use weir::config::Config;
use weir::engine::{CheckRequest, Engine};
use weir::server::check::CheckBody;

static ENGINE: LazyLock<Engine> = LazyLock::new(|| {
    Engine::new(
        Config::builtin(),
        Arc::new(ManualClock::new(1_800_000_000_000_000_000)),
    )
});

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<CheckBody>(data) else {
        return;
    };
    if let Ok(request) = CheckRequest::try_from(body) {
        let _ = ENGINE.check(&request);
        let _ = ENGINE.explain(&request);
    }
});
