//! A real `redis-server` on a free loopback port, killed when dropped.
//! `make test` installs Debian's redis-server; `WEIR_REDIS_SERVER` names
//! another binary.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::nodes::free_tcp_port;

/// One redis-server process, with persistence off: what weir saves is all
/// it holds.
pub struct Redis {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Redis {
    /// Starts a server on a free port.
    pub fn start() -> Self {
        Self::start_on(free_tcp_port())
    }

    /// Starts a server on `port`, and waits until it answers.
    pub fn start_on(port: u16) -> Self {
        let binary = std::env::var("WEIR_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(&binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{binary} starts (make test installs redis-server): {e}"));
        let redis = Self {
            child: Some(child),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while redis.connection().is_none() {
            assert!(Instant::now() < deadline, "redis-server answers on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    /// `redis://127.0.0.1:port/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn connection(&self) -> Option<redis::Connection> {
        let client = redis::Client::open(self.url()).ok()?;
        client.get_connection_with_timeout(Duration::from_secs(1)).ok()
    }

    /// Runs one command.
    pub fn query<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> T {
        let mut connection = self.connection().expect("redis answers");
        command.query(&mut connection).expect("redis command succeeds")
    }

    /// `GET key` as bytes.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.query(redis::cmd("GET").arg(key))
    }

    /// `SET key value`, keeping its TTL.
    pub fn set(&self, key: &str, value: &[u8]) {
        self.query::<()>(redis::cmd("SET").arg(key).arg(value).arg("KEEPTTL"));
    }

    /// Kills the server at once.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
