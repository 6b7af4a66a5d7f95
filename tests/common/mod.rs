//! What every test binary may share: free loopback ports and a Redis of a
//! test's own. `tests/store.rs` uses it as `mod common;`; the integration
//! suite (`tests/integration/`) builds its harness on it.

mod private_redis;

use std::net::{Ipv4Addr, TcpListener};
use std::time::Duration;

pub use private_redis::PrivateRedis;

/// Bound on any single network step the harness takes (connect, write, read).
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A loopback port that was free a moment ago, for a server started later.
///
/// Picked below the kernel's ephemeral range (32768 and up by default), and
/// never twice in one test process: a port the kernel hands out itself (to
/// a server bound to port 0, or as a connection's source port) can then
/// never be one given here, nor can two tests get the same one. With
/// `bind :0` instead, a parallel test's echo server once took a port between
/// the pick and tollgate's bind.
pub fn free_port() -> u16 {
    free_ports_apart(None)
}

/// Hands out free ports for [`free_port`]; with `offset`, `p + offset` is
/// free and given out too.
pub fn free_ports_apart(offset: Option<u16>) -> u16 {
    const LOW: u16 = 10_000;
    const HIGH: u16 = 32_000;
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let span = HIGH - LOW - offset.unwrap_or(0);
    let usable =
        |p: u16| !given.contains(&p) && TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok();
    for _ in 0..10_000 {
        let port = LOW + rand::random::<u16>() % span;
        let second = offset.map(|o| port + o);
        if usable(port) && second.is_none_or(usable) {
            given.push(port);
            given.extend(second);
            return port;
        }
    }
    panic!("no free loopback port between {LOW} and {HIGH}")
}
