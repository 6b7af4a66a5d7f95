//! The store conformance suite against both backends (the memory store
//! needs no Redis), then the Redis backend against a real Redis: bounded
//! failures when Redis is down or silent, recovery, corrupt records, and no
//! plain token at rest. Needs `TOLLGATE_TEST_REDIS_URL`; every test works
//! under its own random key prefix, so tests share one server in parallel.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use tollgate::ids::{new_client_id, new_id};
use tollgate::model::TokenRecord;
use tollgate::scope::{default_resources, ScopeSet};
use tollgate::secret::{expose, new_access_token, token_hash, ACCESS_TOKEN_PREFIX};
use tollgate::store::memory::MemoryStore;
use tollgate::store::redis::RedisStore;
use tollgate::store::{Store, StoreError};

#[path = "store/conformance.rs"]
mod conformance;

fn redis_url() -> String {
    std::env::var("TOLLGATE_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!(
            "TOLLGATE_TEST_REDIS_URL is not set: run `make test`, which starts a \
             throwaway Redis and sets it (never point it at a Redis holding data)"
        )
    })
}

fn unique_prefix() -> String {
    format!("tgtest-{}", new_id())
}

fn store_at(url: &str, prefix: &str, timeout: Duration) -> RedisStore {
    RedisStore::connect(url, prefix, timeout, 4).expect("a pool is built without connecting")
}

async fn raw_connection() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .expect("valid url")
        .get_multiplexed_async_connection()
        .await
        .expect("test Redis is reachable")
}

/// A loopback port with nothing listening on it.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn record(org: &str, sa: &str) -> TokenRecord {
    TokenRecord {
        organization_id: org.to_string(),
        service_account_id: sa.to_string(),
        client_id: new_client_id(),
        scopes: ScopeSet::parse_all(["tools:write", "knowledge:read"], &default_resources())
            .expect("valid scopes"),
        expires_at: 1_900_000_000,
        allowed_sources: None,
        header_values: Default::default(),
    }
}

#[tokio::test]
async fn memory_store_passes_the_conformance_suite() {
    conformance::run_all(&MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_passes_the_conformance_suite() {
    let store = store_at(&redis_url(), &unique_prefix(), Duration::from_secs(2));
    conformance::run_all(&store).await;
}

#[tokio::test]
async fn unreachable_redis_fails_fast_and_construction_does_not_need_it() {
    let timeout = Duration::from_millis(300);
    let url = format!("redis://127.0.0.1:{}/0", closed_port());
    let store = store_at(&url, &unique_prefix(), timeout);
    for _ in 0..3 {
        let started = Instant::now();
        let err = store.ping().await.expect_err("nothing listens there");
        assert!(
            matches!(err, StoreError::Unavailable(_) | StoreError::Timeout),
            "{err:?}"
        );
        assert!(started.elapsed() < timeout + Duration::from_millis(200));
        let started = Instant::now();
        let err = store
            .lookup_access(&token_hash("tg_at_x"), Some("env"))
            .await
            .expect_err("nothing listens there");
        assert!(
            matches!(err, StoreError::Unavailable(_) | StoreError::Timeout),
            "{err:?}"
        );
        assert!(started.elapsed() < timeout + Duration::from_millis(200));
    }
}

#[tokio::test]
async fn silent_redis_times_out_within_the_bound() {
    // Accepts connections, reads what it is sent, never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = sock.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                }
            });
        }
    });
    let timeout = Duration::from_millis(300);
    let store = store_at(&format!("redis://127.0.0.1:{port}/0"), "silent", timeout);
    let hash = token_hash("tg_at_x");
    for round in 0..3 {
        let started = Instant::now();
        let err = match round {
            0 => store.ping().await.expect_err("no answer"),
            1 => store.get_token(&hash).await.expect_err("no answer"),
            _ => store
                .lookup_access(&hash, Some("env"))
                .await
                .expect_err("no answer"),
        };
        let took = started.elapsed();
        assert!(matches!(err, StoreError::Timeout), "{err:?}");
        assert!(
            took < timeout + Duration::from_millis(100),
            "took {took:?} for a {timeout:?} bound"
        );
    }
}

#[tokio::test]
async fn store_recovers_when_redis_comes_back_without_a_new_store() {
    let port = closed_port();
    let store = store_at(
        &format!("redis://127.0.0.1:{port}/0"),
        &unique_prefix(),
        Duration::from_millis(300),
    );
    assert!(store.ping().await.is_err());

    // "Redis comes back": a forwarder to the test Redis appears on that port.
    let target = redis::Client::open(redis_url())
        .expect("valid url")
        .get_connection_info()
        .addr()
        .to_string();
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("rebind the port");
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match store.ping().await {
            Ok(()) => break,
            Err(e) if Instant::now() > deadline => panic!("store did not recover: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert_eq!(
        store.get_token(&token_hash("tg_at_x")).await.ok(),
        Some(None)
    );
}

#[tokio::test]
async fn corrupt_records_are_errors_that_do_not_echo_the_value() {
    let prefix = unique_prefix();
    let store = store_at(&redis_url(), &prefix, Duration::from_secs(2));
    let mut raw = raw_connection().await;
    let hash = token_hash(expose(&new_access_token()));
    let leak = r#"{"o":12345678,"s":"tg_sk_do_not_echo"}"#;
    let _: () = raw
        .set_ex(format!("{prefix}:tok:{hash}"), leak, 60)
        .await
        .expect("set");
    let _: () = raw
        .hset(
            format!("{prefix}:{{reg}}:sa:org"),
            "sa",
            "tg_sk_do_not_echo",
        )
        .await
        .expect("hset");

    let errors = [
        store.get_token(&hash).await.expect_err("corrupt"),
        store.lookup_access(&hash, None).await.expect_err("corrupt"),
        store
            .lookup_access(&hash, Some("env"))
            .await
            .expect_err("corrupt"),
        store
            .list_service_accounts("org")
            .await
            .expect_err("corrupt"),
        store
            .get_service_account("org", "sa")
            .await
            .expect_err("corrupt"),
    ];
    for err in errors {
        assert_corrupt_without(&err, &["do_not_echo", "12345678", &hash]);
    }
}

/// A corrupt-record error whose text holds none of `hidden`.
fn assert_corrupt_without(err: &StoreError, hidden: &[&str]) {
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    let text = err.to_string();
    for h in hidden {
        assert!(!text.contains(h), "{text}");
    }
}

/// Every byte a key or value holds, for a plain-text search.
async fn contents(raw: &mut redis::aio::MultiplexedConnection, key: &str) -> Vec<Vec<u8>> {
    let kind: String = redis::cmd("TYPE")
        .arg(key)
        .query_async(raw)
        .await
        .expect("TYPE");
    let mut out: Vec<Vec<u8>> = vec![key.as_bytes().to_vec()];
    let items: Vec<Vec<u8>> = match kind.as_str() {
        "string" => vec![raw.get(key).await.expect("GET")],
        "hash" => raw.hgetall(key).await.expect("HGETALL"),
        "zset" => redis::cmd("ZRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(raw)
            .await
            .expect("ZRANGE"),
        "set" => raw.smembers(key).await.expect("SMEMBERS"),
        "none" => Vec::new(),
        other => panic!("unexpected key type {other} at {key}"),
    };
    out.extend(items);
    let dump: Option<Vec<u8>> = redis::cmd("DUMP")
        .arg(key)
        .query_async(raw)
        .await
        .expect("DUMP");
    out.extend(dump);
    out
}

async fn memory_usage(raw: &mut redis::aio::MultiplexedConnection, key: &str) -> u64 {
    let bytes: Option<u64> = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(key)
        .arg("SAMPLES")
        .arg(0)
        .query_async(raw)
        .await
        .expect("MEMORY USAGE");
    bytes.unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plain_token_is_at_rest_and_a_token_costs_little_memory() {
    // As long as the default prefix `tollgate`, so the memory figure is the
    // production one; org ids of 30 characters and two scopes.
    let prefix = format!("tg{}", &new_id()[..6]);
    let store = store_at(&redis_url(), &prefix, Duration::from_secs(2));
    let org = format!("org-{}", new_id());
    let accounts: Vec<String> = (0..10).map(|_| new_id()).collect();
    let mut secrets: HashSet<Vec<u8>> = HashSet::new();
    for i in 0..1000 {
        let plain = new_access_token();
        let plain = expose(&plain);
        let random = plain
            .strip_prefix(ACCESS_TOKEN_PREFIX)
            .expect("token prefix");
        secrets.insert(random.as_bytes().to_vec());
        store
            .put_token(
                &token_hash(plain),
                &record(&org, &accounts[i % accounts.len()]),
                900,
                None,
            )
            .await
            .expect("put_token");
    }
    let window = secrets.iter().next().map(|s| s.len()).expect("tokens");

    let mut raw = raw_connection().await;
    let mut keys: Vec<String> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut raw)
            .await
            .expect("SCAN");
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let token_keys: Vec<&String> = keys
        .iter()
        .filter(|k| k.starts_with(&format!("{prefix}:tok:")))
        .collect();
    assert_eq!(token_keys.len(), 1000);

    for key in &keys {
        for blob in contents(&mut raw, key).await {
            assert!(
                !blob
                    .windows(ACCESS_TOKEN_PREFIX.len())
                    .any(|w| w == ACCESS_TOKEN_PREFIX.as_bytes()),
                "a token prefix is stored under {key}"
            );
            assert!(
                !blob.windows(window).any(|w| secrets.contains(w)),
                "a plain token is stored under {key}"
            );
        }
    }

    let mut total = 0;
    for key in &keys {
        if key.contains(":tok:") || key.contains(":satok:") {
            total += memory_usage(&mut raw, key).await;
        }
    }
    let per_token = total / 1000;
    eprintln!("redis memory per live token (key, value, account index): {per_token} bytes");
    assert!(per_token <= 400, "{per_token} bytes per token");
    assert_eq!(
        store
            .revoke_organization_tokens(&org)
            .await
            .expect("revoke"),
        1000
    );
}

/// A connection of its own to the Redis at `url`.
async fn probe(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("valid url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

/// One section of `INFO` from the Redis at `url`.
async fn info(url: &str, section: &str) -> String {
    info_section(&mut probe(url).await, section).await
}

async fn info_section(conn: &mut redis::aio::MultiplexedConnection, section: &str) -> String {
    redis::cmd("INFO")
        .arg(section)
        .query_async(conn)
        .await
        .expect("INFO")
}

/// A number `field` of an `INFO` section.
async fn info_number(
    conn: &mut redis::aio::MultiplexedConnection,
    section: &str,
    field: &str,
) -> u64 {
    info_section(conn, section)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in INFO {section}"))
}

/// Calls made by one `INFO commandstats` snapshot, per command.
async fn command_calls(url: &str) -> std::collections::HashMap<String, u64> {
    info(url, "commandstats")
        .await
        .lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_string(), calls))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_is_one_command_and_checkouts_send_nothing() {
    let private = common::PrivateRedis::start();
    let store = store_at(&private.url(), &unique_prefix(), Duration::from_secs(2));
    let hash = token_hash(expose(&new_access_token()));
    store
        .put_token(&hash, &record("org", "sa"), 60, None)
        .await
        .expect("put");
    // Loads the script, so what follows is the steady state.
    store
        .lookup_access(&hash, Some("env"))
        .await
        .expect("lookup");

    let before = command_calls(&private.url()).await;
    let lookups = 40;
    let calls = (0..lookups).map(|_| store.lookup_access(&hash, Some("env")));
    for facts in futures_util::future::join_all(calls).await {
        assert!(facts.expect("lookup").token.is_some());
    }
    let after = command_calls(&private.url()).await;
    let delta = |name: &str| after.get(name).unwrap_or(&0) - before.get(name).unwrap_or(&0);
    assert_eq!(delta("evalsha"), lookups, "{after:?}");
    assert_eq!(delta("ping"), 0, "a checkout must not ping: {after:?}");
    assert_eq!(delta("unwatch"), 0, "{after:?}");
    assert_eq!(delta("script|load"), 0, "{after:?}");
}

#[tokio::test]
async fn after_a_redis_restart_at_most_one_call_fails() {
    let private = common::PrivateRedis::start();
    let store = store_at(&private.url(), &unique_prefix(), Duration::from_secs(2));
    // Several pooled connections, all cut by the restart.
    let pings = (0..4).map(|_| store.ping());
    for ping in futures_util::future::join_all(pings).await {
        ping.expect("ping");
    }
    private.stop();
    private.restart();
    // Until it has loaded its AOF, a restarted Redis answers LOADING to
    // everyone; the claim is about connections cut by the restart.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let fresh = store_at(&private.url(), &unique_prefix(), Duration::from_secs(2));
        if fresh.ping().await.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted Redis does not answer"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut failures = 0;
    for _ in 0..4 {
        if store.ping().await.is_err() {
            failures += 1;
        }
    }
    assert!(failures <= 1, "{failures} calls failed after the restart");
    assert!(store.ping().await.is_ok());
}

/// `used_memory` of a Redis, in bytes.
async fn used_memory(url: &str) -> i64 {
    info(url, "memory")
        .await
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory in INFO memory")
}

/// The whole cost of live tokens as Redis reports it (keys, values, expiry
/// entries, dictionaries and account indexes): 100,000 tokens over 1,000
/// accounts of one organization, on a Redis of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_live_tokens_cost_at_most_400_bytes_each() {
    const TOKENS: usize = 100_000;
    let private = common::PrivateRedis::start();
    let store = store_at(&private.url(), "tollgate", Duration::from_secs(10));
    let org = format!("org-{}", new_id());
    let accounts: Vec<String> = (0..1000).map(|_| new_id()).collect();
    let rec = |i: usize| record(&org, &accounts[i % accounts.len()]);
    store
        .put_token("warm-up", &rec(0), 900, None)
        .await
        .expect("put");
    let before = used_memory(&private.url()).await;
    for chunk in (1..=TOKENS).collect::<Vec<_>>().chunks(500) {
        let puts = chunk.iter().map(|i| {
            let hash = token_hash(&format!("tg_at_{i}"));
            let rec = rec(*i);
            let store = &store;
            async move { store.put_token(&hash, &rec, 900, None).await }
        });
        for put in futures_util::future::join_all(puts).await {
            put.expect("put_token");
        }
    }
    let after = used_memory(&private.url()).await;
    let per_token = (after - before) / TOKENS as i64;
    eprintln!("redis used_memory per live token at {TOKENS}: {per_token} bytes");
    assert!(per_token <= 400, "{per_token} bytes per token");
    assert_eq!(
        store.count_tokens().await.expect("count"),
        TOKENS as u64 + 1
    );
}

/// Clients connected to a private Redis, the asking connection included.
async fn connected_clients(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    info_number(conn, "clients", "connected_clients").await
}

/// A private Redis, a store on it with call timeout `timeout`, and the
/// hash of a live token stored through it.
async fn private_store_with_token(
    token: &str,
    timeout: Duration,
) -> (common::PrivateRedis, RedisStore, String) {
    let redis = common::PrivateRedis::start();
    let store = store_at(&redis.url(), &unique_prefix(), timeout);
    let hash = token_hash(token);
    store
        .put_token(&hash, &record("org", "sa"), 60, None)
        .await
        .expect("put_token");
    (redis, store, hash)
}

/// Requests' look-ups do not take a pooled connection each: every call on
/// one runtime shares one multiplexed connection (its commands pipelined),
/// and another runtime gets a connection of its own.
#[tokio::test]
async fn concurrent_look_ups_share_one_connection_per_runtime() {
    let (redis, store, hash) =
        private_store_with_token("tg_at_shared", Duration::from_secs(2)).await;
    let store = std::sync::Arc::new(store);
    let mut watcher = probe(&redis.url()).await;
    // The watcher, and the control lane's one pooled connection (put_token is
    // a request-lane call too, so maybe not even that).
    let before = connected_clients(&mut watcher).await;

    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let (store, hash) = (store.clone(), hash.clone());
        calls.spawn(async move { store.lookup_access(&hash, None).await });
    }
    while let Some(done) = calls.join_next().await {
        let facts = done.expect("task").expect("lookup_access");
        assert!(facts.token.is_some());
    }
    assert_eq!(
        connected_clients(&mut watcher).await,
        before,
        "64 concurrent look-ups on one runtime opened connections of their own"
    );

    // Counted while the other runtime is alive: its connection goes with it.
    let (other, url) = (store.clone(), redis.url());
    let during = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async move {
                for _ in 0..8 {
                    other
                        .lookup_access(&hash, None)
                        .await
                        .expect("lookup_access");
                }
                connected_clients(&mut probe(&url).await).await
            })
    })
    .join()
    .expect("the other runtime's thread");
    // Its look-ups' connection and its probe.
    assert_eq!(during, before + 2);
}

/// A restart cuts the shared connection: at most the call that meets the
/// cut fails, and the next one connects afresh.
#[tokio::test]
async fn the_request_lane_connection_is_replaced_after_a_redis_restart() {
    let (redis, store, hash) =
        private_store_with_token("tg_at_restart", Duration::from_secs(2)).await;
    store
        .lookup_access(&hash, None)
        .await
        .expect("before the restart");
    redis.stop();
    redis.restart();
    // Until it has loaded its AOF, a restarted Redis answers LOADING to
    // everyone; the claim is about the connection cut by the restart.
    let deadline = Instant::now() + Duration::from_secs(10);
    while store_at(&redis.url(), &unique_prefix(), Duration::from_secs(2))
        .ping()
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the restarted Redis does not answer"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = store.lookup_access(&hash, None).await;
    if let Err(e) = &first {
        assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    }
    let facts = store
        .lookup_access(&hash, None)
        .await
        .expect("the call after the one that met the cut");
    // The private Redis keeps an append-only file, so the token survived.
    assert!(facts.token.is_some());
}

/// A store on the shared Redis under a fresh prefix, a raw connection to
/// write records behind its back, and the hash of a live token of `sa` in
/// `org`.
async fn store_with_token(
    org: &str,
    sa: &str,
) -> (
    String,
    RedisStore,
    redis::aio::MultiplexedConnection,
    String,
) {
    let prefix = unique_prefix();
    let store = store_at(&redis_url(), &prefix, Duration::from_secs(2));
    let hash = token_hash(expose(&new_access_token()));
    store
        .put_token(&hash, &record(org, sa), 60, None)
        .await
        .expect("put_token");
    (prefix, store, raw_connection().await, hash)
}

/// The look-up reads only ids and the role out of the environment and
/// membership records; one whose ids or role cannot be read is a corrupt
/// record, reported without its contents, never an environment or a role.
#[tokio::test]
async fn unreadable_environment_or_membership_ids_on_a_look_up_are_corrupt() {
    let (prefix, store, mut raw, hash) = store_with_token("org", "sa").await;
    let envs = format!("{prefix}:{{reg}}:env");
    let good = r#"{"id":"env-ok","workspace_id":"ws","organization_id":"org","name":"n","created_at":"2026-01-01T00:00:00Z"}"#;
    let bad = r#"{"id":"env-bad","workspace_id":"tg_sk_do_not_echo","organization_id":12345678}"#;
    let _: () = raw.hset(&envs, "env-ok", good).await.expect("hset");
    let _: () = raw.hset(&envs, "env-bad", bad).await.expect("hset");
    // An escape in an id (never written by tollgate) is not unescaped.
    let escaped = r#"{"id":"env-esc","workspace_id":"w\"s","organization_id":"org"}"#;
    let _: () = raw.hset(&envs, "env-esc", escaped).await.expect("hset");
    let members = format!("{prefix}:{{reg}}:mem:org:ws");

    let _: () = raw
        .hset(&members, "sa", r#"{"role":"admin"}"#)
        .await
        .expect("hset");
    let facts = store
        .lookup_access(&hash, Some("env-ok"))
        .await
        .expect("a readable environment and membership");
    let seen = facts.environment.expect("the environment asked for");
    let env = seen.environment.as_ref().expect("the environment");
    assert_eq!(
        (
            env.id.as_str(),
            env.organization_id.as_str(),
            env.workspace_id.as_str()
        ),
        ("env-ok", "org", "ws")
    );
    assert_eq!(seen.role, Some(tollgate::scope::Role::Admin));

    let _: () = raw
        .hset(&members, "sa", r#"{"role":"tg_sk_do_not_echo"}"#)
        .await
        .expect("hset");
    let errors = [
        store
            .lookup_access(&hash, Some("env-bad"))
            .await
            .expect_err("unreadable environment"),
        store
            .lookup_access(&hash, Some("env-esc"))
            .await
            .expect_err("an escaped id"),
        store
            .lookup_access(&hash, Some("env-ok"))
            .await
            .expect_err("unreadable role"),
    ];
    for err in errors {
        assert_corrupt_without(&err, &["do_not_echo", "12345678"]);
    }
}

/// The look-up script packs its answer into one string: ids holding the
/// packing's separator, digits or multi-byte characters come back intact.
#[tokio::test]
async fn a_look_up_returns_awkward_ids_intact() {
    let (org, sa, ws, env) = ("o:1:", "12:sa", "3:é:", "env:9");
    let (prefix, store, mut raw, hash) = store_with_token(org, sa).await;
    let json = format!(r#"{{"id":"{env}","workspace_id":"{ws}","organization_id":"{org}"}}"#);
    let _: () = raw
        .hset(format!("{prefix}:{{reg}}:env"), env, json)
        .await
        .expect("hset");
    let _: () = raw
        .hset(
            format!("{prefix}:{{reg}}:mem:{org}:{ws}"),
            sa,
            r#"{"role":"member"}"#,
        )
        .await
        .expect("hset");
    let facts = store
        .lookup_access(&hash, Some(env))
        .await
        .expect("look-up");
    let token = facts.token.expect("the token");
    assert_eq!(
        (
            token.organization_id.as_str(),
            token.service_account_id.as_str()
        ),
        (org, sa)
    );
    let seen = facts.environment.expect("the environment asked for");
    let found = seen.environment.as_ref().expect("the environment");
    assert_eq!(
        (
            found.id.as_str(),
            found.workspace_id.as_str(),
            found.organization_id.as_str()
        ),
        (env, ws, org)
    );
    assert_eq!(seen.role, Some(tollgate::scope::Role::Member));
    let facts = store.lookup_access(&hash, None).await.expect("look-up");
    assert!(facts.token.is_some() && facts.environment.is_none());
    let missing = token_hash(expose(&new_access_token()));
    let facts = store
        .lookup_access(&missing, Some(env))
        .await
        .expect("look-up");
    assert!(facts.token.is_none() && facts.environment.is_none());
}

/// Connections the server has accepted so far, this probe's included.
async fn connections_received(url: &str) -> u64 {
    info_number(&mut probe(url).await, "stats", "total_connections_received").await
}

/// A request-lane call that times out leaves its shared connection behind:
/// a server that stopped answering without resetting the socket would
/// otherwise hold the lane at 503 until TCP gives up.
#[tokio::test]
async fn a_request_lane_call_that_times_out_replaces_the_shared_connection() {
    let (redis, store, hash) =
        private_store_with_token("tg_at_timeout", Duration::from_millis(200)).await;
    store.lookup_access(&hash, None).await.expect("before");
    let before = connections_received(&redis.url()).await;
    // One connection of its own, then the server sleeps.
    let blocked = redis.block_for(Duration::from_millis(700)).await;
    let err = store
        .lookup_access(&hash, None)
        .await
        .expect_err("a look-up while Redis sleeps");
    assert!(matches!(err, StoreError::Timeout), "{err:?}");
    blocked.await.expect("the DEBUG SLEEP task");
    store.lookup_access(&hash, None).await.expect("after");
    // The sleeper, the look-up's new connection, and this probe.
    assert_eq!(connections_received(&redis.url()).await, before + 3);
}
