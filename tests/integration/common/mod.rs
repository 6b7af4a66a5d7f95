//! The harness of the integration suite (`crate::common`).
//!
//! It starts real things on free loopback ports — the tollgate binary, an echo
//! upstream — and tears them down on drop; each test isolates its Redis keys
//! with a unique prefix, so one Redis (started by `make test`) serves them all.

// tests/common: what the suite shares with other test binaries.
#[path = "../../common/mod.rs"]
mod shared;

mod admin;
mod cluster;
mod echo;
mod pair;
mod pki;
mod raw;
mod routes;
mod scripted;
mod tollgate;
mod world;

use std::time::Duration;

use shared::free_ports_apart;

pub use admin::Admin;
pub use cluster::RedisCluster;
pub use echo::{EchoUpstream, RecordedRequest};
pub use pair::{workflow_member, workflow_status, Pair, WORKFLOWS_POLICY};
pub use pki::{curl, s_client, PemPair, Pki};
pub use raw::{raw_http, raw_http_until_close, try_raw_http, RawConnection, RawResponse};
pub use reqwest::header::HeaderMap;
pub use reqwest::{Method, StatusCode};
pub use routes::*;
pub use scripted::ScriptedUpstream;
pub use serde_json::{json, Value};
pub use shared::{free_port, PrivateRedis, IO_TIMEOUT};
pub use tollgate::{metric_samples, metric_value, StoreKind, Tollgate, TollgateOptions};
pub use world::World;

/// A Redis-backed instance with [`tools_read_policy`] and `backend` at `upstream`.
pub fn tools_read_options(upstream: &str, role: Option<&str>) -> TollgateOptions {
    TollgateOptions::new()
        .upstream("backend", &[upstream])
        .policy("tools-read.toml", tools_read_policy(role))
}

/// [`tools_read_options`] whose upstream nothing listens on: for suites
/// that never reach it.
pub fn tools_read_unreachable(role: Option<&str>) -> TollgateOptions {
    tools_read_options(&dead_addr(), role)
}

/// The admin API's path of organization `org`.
pub fn org_path(org: &str) -> String {
    format!("/v1/organizations/{org}")
}

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

/// `v[key]` as a string; panics naming the key when it is not one.
pub fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string in {v}"))
}

/// The `WWW-Authenticate` challenge of a denial without a token.
pub const REALM: &str = "Bearer realm=\"tollgate\"";

/// A Redis key prefix no other test uses: `tgtest:<16 hex digits>`.
pub fn unique_prefix() -> String {
    format!("tgtest:{:016x}", rand::random::<u64>())
}

/// An id valid as an organization, workspace or environment id, unique per call.
pub fn unique_id(kind: &str) -> String {
    format!("{kind}-{:012x}", rand::random::<u64>() >> 16)
}

/// A free port `p` such that `p + offset` is free too, both given out as
/// [`free_port`] gives ports (a Redis Cluster node also listens on its port
/// + 10000, for its bus).
pub fn free_port_pair(offset: u16) -> u16 {
    free_ports_apart(Some(offset))
}

/// Where `needle` first occurs in `haystack` (the echo upstream and the
/// raw client look for the end of a head this way).
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A loopback address nothing listens on (for connect-refused tests).
pub fn dead_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// The Redis Cluster the suite runs against instead, when
/// `TOLLGATE_TEST_REDIS_CLUSTER_URLS` (comma-separated node URLs) is set:
/// `make test` runs the registry, token and enforcement suites a second time
/// that way. Every tollgate the harness starts then uses the cluster.
pub fn cluster_urls() -> Option<Vec<String>> {
    let urls = std::env::var("TOLLGATE_TEST_REDIS_CLUSTER_URLS").ok()?;
    let urls: Vec<String> = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(String::from)
        .collect();
    (!urls.is_empty()).then_some(urls)
}

/// A connection to the test Redis, or to the test cluster when the suite
/// runs against one (commands are routed by key either way).
pub enum TestConnection {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for TestConnection {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            TestConnection::Single(c) => c.req_packed_command(cmd),
            TestConnection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            TestConnection::Single(c) => c.req_packed_commands(cmd, offset, count),
            TestConnection::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            TestConnection::Single(c) => c.get_db(),
            TestConnection::Cluster(c) => c.get_db(),
        }
    }
}

/// An async connection to the test Redis or cluster (for tests that inspect keys).
pub async fn redis_connection() -> TestConnection {
    if let Some(urls) = cluster_urls() {
        let client = redis::cluster::ClusterClient::new(urls).expect("cluster URLs");
        let conn = tokio::time::timeout(IO_TIMEOUT, client.get_async_connection())
            .await
            .expect("connecting to the test cluster timed out")
            .expect("connect to the test cluster");
        return TestConnection::Cluster(conn);
    }
    TestConnection::Single(node_connection(&redis_url()).await)
}

async fn node_connection(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).expect("a Redis URL");
    tokio::time::timeout(IO_TIMEOUT, client.get_multiplexed_async_connection())
        .await
        .expect("connecting to the test Redis timed out")
        .expect("connect to the test Redis")
}

/// Every key in the test Redis (every node of the test cluster) matching
/// `pattern` (SCAN, so it is safe on a shared server).
pub async fn redis_keys(pattern: &str) -> Vec<String> {
    let nodes = cluster_urls().unwrap_or_else(|| vec![redis_url()]);
    let mut keys = Vec::new();
    for node in nodes {
        let mut conn = node_connection(&node).await;
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
