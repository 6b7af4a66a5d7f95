//! Several tollgate instances sharing one Redis: tokens and admin changes
//! made through one are honoured by the other, and revocations and
//! membership removals reach an instance whose decision cache holds the old
//! answer well within `cache.ttl_ms` (pub/sub), or within the TTL when the
//! message is lost.

mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;

/// How fast an invalidation must reach the other instance. Far below the
/// cache TTL of the test config (1000 ms), so only pub/sub can meet it.
const PROPAGATION: Duration = Duration::from_millis(300);

async fn pair(cache_ttl_ms: u64) -> Pair {
    Pair::start(cache_ttl_ms, |opts| opts).await
}

#[tokio::test]
async fn a_token_issued_by_one_instance_works_on_the_other() {
    let p = pair(500).await;
    let (_, _, _, env, token) = workflow_member(&p.a).await;
    assert_eq!(workflow_status(&p.b, &env, &token).await, StatusCode::OK);
    let (status, _, body) =
        p.b.proxy_request(Method::GET, "/api/v1/service-account/whoami", Some(&token))
            .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn an_account_created_through_one_instance_gets_tokens_from_the_other() {
    let p = pair(500).await;
    let org = unique_id("org");
    let (_, client_id, secret) =
        p.a.admin()
            .create_service_account(&org, "shared", &["logs:read"])
            .await;
    let (status, body) = p.b.issue_token(&client_id, &secret, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "logs:read");
}

#[tokio::test]
async fn revocation_through_one_instance_reaches_the_others_cache_at_once() {
    let p = pair(1000).await;
    let (org, _, sa_id, env, token) = workflow_member(&p.a).await;
    // B now holds the token and membership in its cache.
    assert_eq!(workflow_status(&p.b, &env, &token).await, StatusCode::OK);
    p.a.admin().revoke_account_tokens(&org, &sa_id).await;
    eventually(
        PROPAGATION,
        "instance B refuses the revoked token",
        || async { workflow_status(&p.b, &env, &token).await == StatusCode::UNAUTHORIZED },
    )
    .await;
}

#[tokio::test]
async fn a_membership_removal_through_one_instance_reaches_the_others_cache_at_once() {
    let p = pair(1000).await;
    let (org, ws, sa_id, env, token) = workflow_member(&p.a).await;
    assert_eq!(workflow_status(&p.b, &env, &token).await, StatusCode::OK);
    let (status, body) =
        p.a.admin()
            .delete(&format!(
                "/v1/organizations/{org}/workspaces/{ws}/members/{sa_id}"
            ))
            .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    eventually(
        PROPAGATION,
        "instance B refuses the removed member",
        || async { workflow_status(&p.b, &env, &token).await == StatusCode::FORBIDDEN },
    )
    .await;
}

#[tokio::test]
async fn a_change_whose_message_is_lost_is_seen_within_the_cache_ttl() {
    let p = pair(1000).await;
    let (_, _, _, env, token) = workflow_member(&p.a).await;
    assert_eq!(workflow_status(&p.b, &env, &token).await, StatusCode::OK);
    // Delete the token behind tollgate's back: no invalidation is published.
    let prefix = p.a.key_prefix().expect("redis prefix").to_string();
    let mut conn = redis_connection().await;
    let keys = redis_keys(&format!("{prefix}:tok:*")).await;
    assert_eq!(keys.len(), 1, "one token stored: {keys:?}");
    let _: i64 = redis::cmd("DEL")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .expect("DEL");
    eventually(
        Duration::from_millis(1500),
        "instance B refuses the token once its cache entry expires",
        || async { workflow_status(&p.b, &env, &token).await == StatusCode::UNAUTHORIZED },
    )
    .await;
}

#[tokio::test]
async fn with_the_cache_disabled_a_revocation_is_refused_by_the_next_request() {
    let p = pair(0).await;
    let (org, _, sa_id, env, token) = workflow_member(&p.a).await;
    assert_eq!(workflow_status(&p.b, &env, &token).await, StatusCode::OK);
    p.a.admin().revoke_account_tokens(&org, &sa_id).await;
    assert_eq!(
        workflow_status(&p.b, &env, &token).await,
        StatusCode::UNAUTHORIZED
    );
}
