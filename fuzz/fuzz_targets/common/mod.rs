//! What the fuzz targets that decide share: one engine with the built-in
//! config and a clock that never moves, so every input starts alike (and
//! the servers' shared state around another such engine).

use std::sync::{Arc, LazyLock};

use weir::clock::ManualClock;
use weir::config::Config;
use weir::config::source::ConfigSource;
use weir::engine::Engine;
use weir::server::App;

static ENGINE: LazyLock<Engine> = LazyLock::new(|| {
    Engine::new(
        Config::builtin(),
        Arc::new(ManualClock::new(1_800_000_000_000_000_000)),
    )
});

/// The shared engine.
#[allow(dead_code)]
pub fn engine() -> &'static Engine {
    &ENGINE
}

static APP: LazyLock<Arc<App>> = LazyLock::new(|| {
    let config = Config::builtin();
    let source = Arc::new(ConfigSource::none(&config));
    let clock = Arc::new(ManualClock::new(1_800_000_000_000_000_000));
    App::new(Arc::new(Engine::new(config, clock)), source, None, None)
});

/// The servers' shared state.
#[allow(dead_code)]
pub fn app() -> &'static App {
    &APP
}
