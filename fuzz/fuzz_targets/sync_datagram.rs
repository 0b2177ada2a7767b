//! Counter-sync datagrams: from strangers (sealed or not), and from a peer
//! that holds the secret but sends any body at all.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use weir_cluster::frame::Sealer;

static SEALER: LazyLock<Sealer> = LazyLock::new(|| Sealer::new(&[b"fuzzing-cluster-secret-0123"], "fuzz"));

fuzz_target!(|data: &[u8]| {
    let _ = SEALER.open(data);
    // The same bytes as the body of an authentic datagram: only the
    // decoder and its bounds stand between them and the store.
    let mut sealed = Vec::new();
    SEALER.seal_sync_body(data, &mut sealed);
    let _ = SEALER.open(&sealed);
});
