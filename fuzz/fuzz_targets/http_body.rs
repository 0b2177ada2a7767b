//! HTTP request bodies: `POST /v1/check` bodies into the request type, then
//! a decision; the bodies of settle, release and the quota admin routes
//! (terms checked as the config checks them); and lease and reservation
//! ids, as a client could send any text, redeemed.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use weir::config::overrides::compile_terms;
use weir::engine::CheckRequest;
use weir::server::check::CheckBody;
use weir::server::own_quotas::{CreditBody, OwnQuotasBody, ResetBody};
use weir::server::release::ReleaseBody;
use weir::server::settle::SettleBody;
use weir::server::tickets::Kind;

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = serde_json::from_slice::<CheckBody>(data) {
        if let Ok(request) = CheckRequest::try_from(body) {
            let _ = common::engine().check(&request);
            let _ = common::engine().explain(&request);
        }
    }
    let _ = serde_json::from_slice::<SettleBody>(data);
    let _ = serde_json::from_slice::<ReleaseBody>(data);
    let _ = serde_json::from_slice::<CreditBody>(data);
    let _ = serde_json::from_slice::<ResetBody>(data);
    if let Ok(quotas) = serde_json::from_slice::<OwnQuotasBody>(data) {
        for own in quotas.values() {
            let _ = compile_terms(&own.terms());
        }
    }
    let app = common::app();
    let id = String::from_utf8_lossy(data);
    for kind in [Kind::Lease, Kind::Reservation] {
        let _ = app.tickets.redeem(app, kind, &id, 1_800_000_000_000_000_000);
    }
});
