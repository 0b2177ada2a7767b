//! What the fuzz targets that decide share: one engine with the built-in
//! config and a clock that never moves, so every input starts alike.

use std::sync::{Arc, LazyLock};

use weir::clock::ManualClock;
use weir::config::Config;
use weir::engine::Engine;

static ENGINE: LazyLock<Engine> = LazyLock::new(|| {
    Engine::new(
        Config::builtin(),
        Arc::new(ManualClock::new(1_800_000_000_000_000_000)),
    )
});

/// The shared engine.
pub fn engine() -> &'static Engine {
    &ENGINE
}
