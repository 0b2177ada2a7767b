//! Gossip datagrams: from strangers, and authentic ones with any plaintext.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use weir_cluster::frame::Sealer;
use weir_cluster::gossip::open_message;

static SEALER: LazyLock<Sealer> = LazyLock::new(|| Sealer::new(&[b"fuzzing-cluster-secret-0123"], "fuzz"));

fuzz_target!(|data: &[u8]| {
    let _ = SEALER.open_gossip(data);
    let mut sealed = Vec::new();
    SEALER.seal_gossip(data, &mut sealed);
    if let Ok(plain) = SEALER.open_gossip(&sealed) {
        // The piece header and chitchat's own decoder, as a receiver runs
        // them on an authentic single-piece message.
        let _ = open_message(&plain);
    }
});
