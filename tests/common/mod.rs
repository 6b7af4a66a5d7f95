//! The one harness every integration test shares (`mod common;`).
//!
//! It starts real things on free loopback ports — the tollgate binary, an echo
//! upstream — and tears them down on drop; each test isolates its Redis keys
//! with a unique prefix, so one Redis (started by `make test`) serves them all.
// Each test file uses a different part of the harness.
#![allow(dead_code, unused_imports)]

mod admin;
mod echo;
mod private_redis;
mod raw;
mod tollgate;
mod world;

use std::net::{Ipv4Addr, TcpListener};
use std::time::Duration;

pub use admin::Admin;
pub use echo::{EchoBehavior, EchoUpstream, RecordedRequest};
pub use private_redis::PrivateRedis;
pub use raw::{
    raw_http, raw_http_string, raw_http_until_close, try_raw_http, RawConnection, RawResponse,
};
pub use reqwest::header::HeaderMap;
pub use reqwest::{Method, StatusCode};
pub use serde_json::{json, Value};
pub use tollgate::{metric_samples, metric_value, StoreKind, Tollgate, TollgateOptions};
pub use world::World;

/// Bound on any single network step the harness takes (connect, write, read).
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The Redis the tests share, from `TOLLGATE_TEST_REDIS_URL`.
pub fn redis_url() -> String {
    match std::env::var("TOLLGATE_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "TOLLGATE_TEST_REDIS_URL is not set. Run the tests with `make test`, which starts a \
             throwaway Redis, or point TOLLGATE_TEST_REDIS_URL at a Redis you can spare \
             (e.g. redis://127.0.0.1:6390/0); tests write only keys under their own prefix."
        ),
    }
}

/// A Redis key prefix no other test uses: `tgtest:<16 hex digits>`.
pub fn unique_prefix() -> String {
    format!("tgtest:{:016x}", rand::random::<u64>())
}

/// An id valid as an organization, workspace or environment id, unique per call.
pub fn unique_id(kind: &str) -> String {
    format!("{kind}-{:012x}", rand::random::<u64>() >> 16)
}

/// A loopback port that was free a moment ago (bind :0, read, release).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind 127.0.0.1:0 to find a free port")
}

/// A loopback address nothing listens on (for connect-refused tests).
pub fn dead_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// An async connection to the test Redis (for tests that inspect keys).
pub async fn redis_connection() -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(redis_url()).expect("TOLLGATE_TEST_REDIS_URL is a Redis URL");
    tokio::time::timeout(IO_TIMEOUT, client.get_multiplexed_async_connection())
        .await
        .expect("connecting to the test Redis timed out")
        .expect("connect to the test Redis")
}

/// Every key in the test Redis matching `pattern` (SCAN, so it is safe on a shared server).
pub async fn redis_keys(pattern: &str) -> Vec<String> {
    let mut conn = redis_connection().await;
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000);
        let step = scan.query_async::<(u64, Vec<String>)>(&mut conn);
        let (next, batch) = tokio::time::timeout(IO_TIMEOUT, step)
            .await
            .expect("SCAN on the test Redis timed out")
            .expect("SCAN on the test Redis");
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort();
    keys.dedup();
    keys
}

/// Polls `check` every 25 ms until it is true; panics with `what` after `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
