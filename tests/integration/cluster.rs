//! The Redis Cluster backend (`store.cluster = true`) against a real
//! three-master cluster that each test starts on free loopback ports: the
//! store conformance suite (registry and tokens), where keys land, two
//! tollgate instances enforcing routes through it, and failing closed while
//! a master is down. `make test` also runs the admin, OAuth, enforcement,
//! forwarding and several-instance suites against a cluster.

use std::time::Duration;

use crate::common::*;
use reqwest::Method;
use tollgate::ids::new_client_id;
use tollgate::model::TokenRecord;
use tollgate::scope::{default_resources, ScopeSet};
use tollgate::secret::{expose, new_access_token, token_hash};
use tollgate::store::redis::RedisStore;
use tollgate::store::Store;

#[path = "../store/conformance.rs"]
mod conformance;

/// How fast an invalidation must reach the other instance (the cache TTL of
/// these tests is 1000 ms, so only pub/sub can meet it).
const PROPAGATION: Duration = Duration::from_millis(300);

fn cluster_store(cluster: &RedisCluster, prefix: &str) -> RedisStore {
    RedisStore::connect_cluster(&cluster.urls(), prefix, Duration::from_secs(2))
        .expect("a cluster client is built without connecting")
}

fn record(org: &str, sa: &str) -> TokenRecord {
    TokenRecord {
        organization_id: org.to_string(),
        service_account_id: sa.to_string(),
        client_id: new_client_id(),
        scopes: ScopeSet::parse_all(["workflows:read"], &default_resources())
            .expect("valid scopes"),
        expires_at: 1_900_000_000,
        allowed_sources: None,
        header_values: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_backend_passes_the_store_conformance_suite() {
    let cluster = RedisCluster::start();
    let store = cluster_store(&cluster, &unique_prefix());
    conformance::run_all(&store).await;
}

/// On a cluster a token is indexed first and its key written next. A
/// revocation between the two steps finds the hash indexed but no key: it
/// must leave the issuer unable to write the key afterwards, or a token
/// would live on, revoked but unindexed, where no revocation finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_between_a_tokens_two_steps_refuses_the_token() {
    let cluster = RedisCluster::start();
    let prefix = unique_prefix();
    let store = cluster_store(&cluster, &prefix);
    let (org, sa) = (unique_id("org"), unique_id("sa"));
    let hash = token_hash(expose(&new_access_token()));
    assert!(store
        .put_token(&hash, &record(&org, &sa), 900, None)
        .await
        .expect("put_token"));
    // The issuer between its steps: indexed, the key not written yet.
    assert_eq!(cluster.cli(&["DEL", &format!("{prefix}:tok:{hash}")]), "1");
    store
        .revoke_service_account_tokens(&org, &sa)
        .await
        .expect("revoke");
    // The issuer's steps, again: the key is not written, the token refused.
    assert!(
        !store
            .put_token(&hash, &record(&org, &sa), 900, None)
            .await
            .expect("put_token"),
        "a token written after its account's revocation"
    );
    assert!(store.get_token(&hash).await.expect("get").is_none());
    assert!(store
        .lookup_access(&hash, None)
        .await
        .expect("lookup")
        .token
        .is_none());
    assert_eq!(store.count_tokens().await.expect("count"), 0);
    // A second revocation that saw the hash indexed before the first took
    // it out (it is put back here, as that one's ZRANGE saw it) leaves the
    // first one's marker in place: the issuer is still refused.
    let expires_ms = (time::OffsetDateTime::now_utc().unix_timestamp() + 600) * 1000;
    assert_eq!(
        cluster.cli(&[
            "ZADD",
            &format!("{prefix}:{{reg}}:satok:{org}:{sa}"),
            &expires_ms.to_string(),
            &hash,
        ]),
        "1"
    );
    assert_eq!(
        store
            .revoke_service_account_tokens(&org, &sa)
            .await
            .expect("revoke"),
        0,
        "a marker is not a token"
    );
    assert!(
        !store
            .put_token(&hash, &record(&org, &sa), 900, None)
            .await
            .expect("put_token"),
        "a token written after two revocations"
    );
    // Other tokens of the account are issued as ever.
    let next = token_hash(expose(&new_access_token()));
    assert!(store
        .put_token(&next, &record(&org, &sa), 900, None)
        .await
        .expect("put_token"));
    assert!(store.get_token(&next).await.expect("get").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_spread_over_the_masters_while_the_registry_stays_in_one_slot() {
    let cluster = RedisCluster::start();
    let prefix = unique_prefix();
    let store = cluster_store(&cluster, &prefix);
    let org = unique_id("org");
    let accounts = [unique_id("sa"), unique_id("sa"), unique_id("sa")];
    let mut hashes = Vec::new();
    for i in 0..60 {
        let sa = &accounts[i % accounts.len()];
        let hash = token_hash(expose(&new_access_token()));
        store
            .put_token(&hash, &record(&org, sa), 900, None)
            .await
            .expect("put_token");
        hashes.push((hash, sa.clone()));
    }
    assert_eq!(store.count_tokens().await.expect("count"), 60);

    let tokens = cluster.keys_per_node(&format!("{prefix}:tok:"));
    assert_eq!(tokens.iter().sum::<usize>(), 60, "{tokens:?}");
    assert!(
        tokens.iter().all(|n| *n > 0),
        "60 token keys should reach every master: {tokens:?}"
    );
    let registry = cluster.keys_per_node(&format!("{prefix}:{{reg}}:"));
    assert_eq!(
        registry.iter().filter(|n| **n > 0).count(),
        1,
        "registry keys share one slot: {registry:?}"
    );

    // Revocations reach token keys on every master and empty the index.
    let (one, sa) = &hashes[0];
    assert!(store.revoke_token(one, &org, sa).await.expect("revoke"));
    assert!(!store.revoke_token(one, &org, sa).await.expect("again"));
    assert_eq!(
        store
            .revoke_service_account_tokens(&org, &accounts[1])
            .await
            .expect("revoke account"),
        20
    );
    assert_eq!(
        store
            .revoke_organization_tokens(&org)
            .await
            .expect("revoke org"),
        39
    );
    assert_eq!(store.count_tokens().await.expect("count"), 0);
    assert_eq!(
        cluster
            .keys_per_node(&format!("{prefix}:tok:"))
            .iter()
            .sum::<usize>(),
        0
    );
    for (hash, _) in &hashes {
        let facts = store.lookup_access(hash, None).await.expect("lookup");
        assert!(facts.token.is_none());
    }
}

async fn pair(cluster: &RedisCluster, cache_ttl_ms: u64) -> Pair {
    Pair::start(cache_ttl_ms, |opts| {
        opts.cluster(cluster.urls())
            .toml("[store]\ntimeout_ms = 1000\n")
    })
    .await
}

#[tokio::test]
async fn two_instances_on_a_cluster_share_tokens_and_revocations() {
    let cluster = RedisCluster::start();
    let p = pair(&cluster, 1000).await;
    let (org, ws, sa_id, env, token) = workflow_member(&p.a).await;
    assert_eq!(workflow_status(&p.b, &env, &token).await, StatusCode::OK);
    assert_eq!(
        workflow_status(&p.b, &unique_id("env"), &token).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        workflow_status(&p.b, &env, "tg_at_unknown").await,
        StatusCode::UNAUTHORIZED
    );

    // A second member: its membership removal through A reaches B.
    let (sa2, token2) = p.a.account_with_token(&org, &["workflows:read"]).await;
    p.a.admin().put_member(&org, &ws, &sa2, "member").await;
    assert_eq!(workflow_status(&p.b, &env, &token2).await, StatusCode::OK);
    let (status, body) =
        p.a.admin()
            .delete(&format!(
                "/v1/organizations/{org}/workspaces/{ws}/members/{sa2}"
            ))
            .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    eventually(PROPAGATION, "B refuses the removed member", || async {
        workflow_status(&p.b, &env, &token2).await == StatusCode::FORBIDDEN
    })
    .await;

    // Revoking the first account's tokens through A reaches B.
    p.a.admin().revoke_account_tokens(&org, &sa_id).await;
    eventually(PROPAGATION, "B refuses the revoked token", || async {
        workflow_status(&p.b, &env, &token).await == StatusCode::UNAUTHORIZED
    })
    .await;
}

#[tokio::test]
async fn with_the_cache_off_every_request_reads_the_cluster() {
    let cluster = RedisCluster::start();
    let p = pair(&cluster, 0).await;
    let (org, _, sa_id, env, token) = workflow_member(&p.a).await;
    for _ in 0..5 {
        assert_eq!(workflow_status(&p.b, &env, &token).await, StatusCode::OK);
    }
    p.a.admin().revoke_account_tokens(&org, &sa_id).await;
    assert_eq!(
        workflow_status(&p.b, &env, &token).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_master_down_fails_closed_and_its_return_needs_no_restart() {
    let cluster = RedisCluster::start();
    let echo = EchoUpstream::start();
    let tollgate = Tollgate::start(
        TollgateOptions::new()
            .cluster(cluster.urls())
            .policy("p.toml", WORKFLOWS_POLICY)
            .upstream("backend", &[echo.addr_string()])
            .toml("[cache]\nttl_ms = 0\n[store]\ntimeout_ms = 500\n"),
    )
    .await;
    let (_, _, _, env, token) = workflow_member(&tollgate).await;
    assert_eq!(
        workflow_status(&tollgate, &env, &token).await,
        StatusCode::OK
    );
    let before = echo.requests().len();

    let prefix = tollgate.key_prefix().expect("prefix").to_string();
    let key = format!("{prefix}:tok:{}", token_hash(&token));
    let node = cluster
        .node_holding(&key)
        .expect("the token key is on a master");
    cluster.stop_node(node);

    let started = std::time::Instant::now();
    let (status, headers, _) = tollgate
        .proxy_request(
            Method::GET,
            &format!("/api/v1/workflows/x?environmentId={env}"),
            Some(&token),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.contains_key("retry-after"));
    assert!(started.elapsed() < Duration::from_secs(2));
    let (status, _) = tollgate.admin().get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(echo.requests().len(), before, "nothing was forwarded");

    cluster.restart_node(node);
    eventually(
        Duration::from_secs(15),
        "requests succeed again once the master is back",
        || async { workflow_status(&tollgate, &env, &token).await == StatusCode::OK },
    )
    .await;
    let (status, _) = tollgate.admin().get("/readyz").await;
    assert_eq!(status, StatusCode::OK);
}
