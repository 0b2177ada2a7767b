//! A binary-protocol connection as a client could drive it: the bytes are
//! the whole stream, length prefixes included, served by the real
//! connection loop (framing, dispatch, replies encoded from the engine's
//! decisions) until they run out.
#![no_main]

mod common;

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use weir::server::binary::{serve_connection, BinaryLimits};

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime")
});

fuzz_target!(|data: &[u8]| {
    let stream = tokio::io::join(data, tokio::io::sink());
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let _ = RUNTIME.block_on(serve_connection(stream, common::app(), BinaryLimits::default(), stopped));
});
