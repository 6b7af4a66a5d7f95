//! Several tollgate instances sharing one Redis: tokens and admin changes
//! made through one are honoured by the other, and revocations and
//! membership removals reach an instance whose decision cache holds the old
//! answer well within `cache.ttl_ms` (pub/sub), or within the TTL when the
//! message is lost or the subscription is down (a lost subscription also
//! clears the cache).

use std::time::Duration;

use crate::common::*;
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
    revocation_through_a_reaches_b_at_once(&p).await;
}

/// A new member's token, cached by B, revoked through A: B refuses it
/// within [`PROPAGATION`].
async fn revocation_through_a_reaches_b_at_once(p: &Pair) {
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
    delete_the_token(&mut conn, keys).await;
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

/// Deletes the one stored token (its key among `keys`) behind tollgate's
/// back: no invalidation is published.
async fn delete_the_token(conn: &mut impl redis::aio::ConnectionLike, keys: Vec<String>) {
    assert_eq!(keys.len(), 1, "one token stored: {keys:?}");
    let _: i64 = redis::cmd("DEL")
        .arg(&keys[0])
        .query_async(conn)
        .await
        .expect("DEL");
}

/// One Redis command on the private server; its answer does not matter.
async fn redis_admin(conn: &mut redis::aio::MultiplexedConnection, args: &[&str]) {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let _: redis::Value = cmd.query_async(conn).await.expect("redis command");
}

#[tokio::test]
async fn a_lost_subscription_clears_the_cache_and_entries_then_live_at_most_the_ttl() {
    // A Redis of its own: the test takes pub/sub away from every client.
    let redis = PrivateRedis::start();
    const TTL: Duration = Duration::from_millis(1000);
    let p = Pair::start(TTL.as_millis() as u64, |o| o.redis_url(redis.url())).await;
    let client = redis::Client::open(redis.url()).expect("a Redis URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the private Redis");
    let (_, _, _, env, token) = workflow_member(&p.a).await;
    assert_eq!(workflow_status(&p.b, &env, &token).await, StatusCode::OK);
    let cached_at = std::time::Instant::now();

    // The token goes behind tollgate's back (no message), then the
    // subscriptions are lost and cannot come back: no channel is allowed.
    let prefix = p.a.key_prefix().expect("redis prefix").to_string();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:tok:*"))
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    delete_the_token(&mut conn, keys).await;
    redis_admin(&mut conn, &["ACL", "SETUSER", "default", "resetchannels"]).await;
    redis_admin(&mut conn, &["CLIENT", "KILL", "TYPE", "pubsub"]).await;
    // B cleared its cache when the subscription went: the deleted token is
    // refused long before its cache entry would have expired.
    eventually(
        TTL,
        "instance B forgets what it cached when its subscription is lost",
        || async { workflow_status(&p.b, &env, &token).await == StatusCode::UNAUTHORIZED },
    )
    .await;
    assert!(
        cached_at.elapsed() < TTL,
        "refused after {:?}: by expiry, not because the cache was cleared",
        cached_at.elapsed()
    );

    // While the subscription is down, a revocation through A reaches B
    // only as its cache entry expires.
    let (org, _, sa_id, env, second) = workflow_member(&p.a).await;
    assert_eq!(workflow_status(&p.b, &env, &second).await, StatusCode::OK);
    let cached_at = std::time::Instant::now();
    p.a.admin().revoke_account_tokens(&org, &sa_id).await;
    eventually(
        TTL + Duration::from_millis(1000),
        "instance B refuses the revoked token once its cache entry expires",
        || async { workflow_status(&p.b, &env, &second).await == StatusCode::UNAUTHORIZED },
    )
    .await;
    assert!(
        cached_at.elapsed() >= TTL - Duration::from_millis(300),
        "refused after {:?}: sooner than the TTL, so not by expiry",
        cached_at.elapsed()
    );

    // Channels allowed again: B subscribes anew and revocations reach it
    // at once again.
    redis_admin(&mut conn, &["ACL", "SETUSER", "default", "allchannels"]).await;
    let channel = format!("{prefix}:invalidate");
    eventually(
        Duration::from_secs(5),
        "both instances subscribe again",
        || async {
            let (_, n): (String, i64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&channel)
                .query_async(&mut conn.clone())
                .await
                .expect("PUBSUB NUMSUB");
            n == 2
        },
    )
    .await;
    revocation_through_a_reaches_b_at_once(&p).await;
}
