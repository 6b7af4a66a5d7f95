//! What is specific to a Redis Cluster. The registry's keys share the
//! `{reg}` hash tag, so every registry script and transaction stays within
//! one slot (some scripts build key names at run time, which Redis allows
//! within the slot of the declared keys), and one throttle window's counters
//! share their own tag (`{thr:<window>}`). Token keys carry no tag so they
//! spread over the whole cluster: on a single server the operations that
//! join a token with the registry (issue, lookup, revoke) are one script
//! each, and on a cluster they take two or more round trips, the paths
//! here. Readiness asks every master, routing a `PING` to each node that
//! serves slots. The names themselves are built in [`super::keys`].

use deadpool_redis::redis::cluster_async::ClusterConnection;
use deadpool_redis::redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use deadpool_redis::redis::{self, RedisError, RedisResult, Value};

use super::call::redis_error;
use super::codec::{access_facts, decode};
use super::link::{Conn, Lane};
use super::RedisStore;
use crate::model::{AccessFacts, TokenRecord};
use crate::store::{StoreError, StoreResult};

/// How many token keys one cluster revocation step deletes.
const REVOKE_CHUNK: isize = 500;

/// What a cluster revocation leaves at a token key it found indexed but not
/// yet written (its issuer between the index step and the key step): the
/// issuer's `SET … NX` then fails and the token is refused, rather than
/// written live after the revocation with its index entry gone. Readers
/// take it for no token. Not JSON, so never a token record.
pub(super) const REVOKED: &str = "-";

/// Whether a token key's value is a token, not [`REVOKED`].
pub(super) fn is_token(raw: &str) -> bool {
    raw != REVOKED
}

/// Redis Cluster paths for the operations that touch token keys. Token keys
/// are spread over every slot, the registry lives in the `{reg}` slot, and
/// no script or transaction may span two slots, so these take two or more
/// round trips, ordered so that a failure half-way never leaves a live token
/// outside its account's index (where a revocation could not find it).
impl RedisStore {
    /// The second step of issuing a token on a cluster: the token key, in
    /// its own slot, once its account's index holds it. False when a
    /// revocation came between the two steps (it left [`REVOKED`] there):
    /// nothing is written and the token's index entry is taken out.
    pub(super) async fn cluster_set_token(
        &self,
        hash: &str,
        json: String,
        ttl: u64,
        org: &str,
        sa: &str,
    ) -> StoreResult<bool> {
        let set: Option<String> = self
            .query_on(
                Lane::Request,
                "put_token",
                redis::cmd("SET")
                    .arg(self.keys.tok(hash))
                    .arg(json)
                    .arg("EX")
                    .arg(ttl)
                    .arg("NX"),
            )
            .await?;
        if set.is_some() {
            return Ok(true);
        }
        let _: i64 = self
            .query(
                "put_token",
                redis::cmd("ZREM").arg(self.keys.satok(org, sa)).arg(hash),
            )
            .await?;
        Ok(false)
    }

    /// Every master answers, not just one node.
    pub(super) async fn cluster_ping(&self) -> StoreResult<()> {
        self.bounded(async {
            let conn = self.conn("ping", Lane::Control).await?;
            let Conn::Cluster(mut cluster) = conn else {
                return Err(StoreError::Unavailable("ping: not a cluster".into()));
            };
            let result = ping_cluster_masters(&mut cluster).await;
            self.link
                .settle(Conn::Cluster(cluster), result)
                .map_err(|e| redis_error("ping", e))
        })
        .await
    }

    pub(super) async fn cluster_lookup_access(
        &self,
        hash: &str,
        environment: Option<&str>,
    ) -> StoreResult<AccessFacts> {
        let raw: Option<String> = self
            .query_on(
                Lane::Request,
                "lookup_access",
                redis::cmd("GET").arg(self.keys.tok(hash)),
            )
            .await?;
        let Some(raw) = raw.filter(|r| is_token(r)) else {
            return access_facts(None, None, std::iter::empty());
        };
        let token: TokenRecord = decode("token", &raw)?;
        let Some(env_id) = environment else {
            return access_facts(Some(token), None, std::iter::empty());
        };
        let registry: Vec<Option<String>> = self
            .invoke_on(
                Lane::Request,
                "lookup_access",
                self.scripts
                    .lookup_registry
                    .key(self.keys.env())
                    .arg(env_id)
                    .arg(self.keys.mem_prefix())
                    .arg(&token.service_account_id),
            )
            .await?;
        access_facts(Some(token), Some(env_id), registry.into_iter())
    }

    pub(super) async fn cluster_revoke_token(
        &self,
        hash: &str,
        org: &str,
        sa: &str,
    ) -> StoreResult<bool> {
        let k = &self.keys;
        let raw: Option<String> = self
            .query("revoke_token", redis::cmd("GET").arg(k.tok(hash)))
            .await?;
        let Some(raw) = raw else {
            return Ok(false);
        };
        let Ok(rec) = serde_json::from_str::<TokenRecord>(&raw) else {
            return Ok(false);
        };
        if rec.organization_id != org || rec.service_account_id != sa {
            return Ok(false);
        }
        let deleted: i64 = self
            .query("revoke_token", redis::cmd("DEL").arg(k.tok(hash)))
            .await?;
        let _: i64 = self
            .query(
                "revoke_token",
                redis::cmd("ZREM").arg(k.satok(org, sa)).arg(hash),
            )
            .await?;
        Ok(deleted == 1)
    }

    /// Deletes the account's tokens a chunk at a time, then takes the chunk
    /// out of the index; counts the tokens that were still live.
    pub(super) async fn cluster_revoke_sa(&self, org: &str, sa: &str) -> StoreResult<u64> {
        const OP: &str = "revoke_service_account_tokens";
        let k = &self.keys;
        let index = k.satok(org, sa);
        let mut revoked = 0u64;
        loop {
            let scored: Vec<(String, f64)> = self
                .query(
                    OP,
                    redis::cmd("ZRANGE")
                        .arg(&index)
                        .arg(0)
                        .arg(REVOKE_CHUNK - 1)
                        .arg("WITHSCORES"),
                )
                .await?;
            let hashes: Vec<String> = scored.iter().map(|(h, _)| h.clone()).collect();
            revoked += self.cluster_revoke_keys(&scored).await?;
            let mut unindex = self.scripts.unindex_sa.key(&index);
            unindex.key(k.toksa(org)).arg(sa);
            for h in &hashes {
                unindex.arg(h);
            }
            let _: i64 = self.invoke(OP, &unindex).await?;
            if hashes.len() < REVOKE_CHUNK as usize {
                return Ok(revoked);
            }
        }
    }

    /// Deletes the token keys of indexed hashes (with their expiry, the
    /// index's score), one atomic step each that never deletes another
    /// revocation's [`REVOKED`] marker. A hash indexed but with no key yet
    /// (its issuer between its two steps) and still before its expiry gets
    /// the marker (`SET … NX`), so that the issuer's write fails; a key
    /// written in the meantime is deleted. How many live tokens it deleted.
    async fn cluster_revoke_keys(&self, scored: &[(String, f64)]) -> StoreResult<u64> {
        const OP: &str = "revoke_service_account_tokens";
        let now_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        let mut deleted = 0;
        for (hash, expires_ms) in scored {
            let key = self.keys.tok(hash);
            let revoke = || self.scripts.revoke_tok.key(&key);
            let n: i64 = self.invoke(OP, &revoke()).await?;
            if n != 0 {
                deleted += u64::from(n == 1);
                continue;
            }
            // The score is the expiry by Redis's clock; a second more
            // covers a small skew with this one.
            let left_ms = *expires_ms as i128 - now_ms + 1000;
            if left_ms <= 0 {
                continue;
            }
            let set: Option<String> = self
                .query(
                    OP,
                    redis::cmd("SET")
                        .arg(&key)
                        .arg(REVOKED)
                        .arg("PX")
                        .arg(left_ms as u64)
                        .arg("NX"),
                )
                .await?;
            if set.is_none() {
                let n: i64 = self.invoke(OP, &revoke()).await?;
                deleted += u64::from(n == 1);
            }
        }
        Ok(deleted)
    }

    pub(super) async fn cluster_revoke_org(&self, org: &str) -> StoreResult<u64> {
        const OP: &str = "revoke_organization_tokens";
        let k = &self.keys;
        let accounts: Vec<String> = self
            .query(OP, redis::cmd("SMEMBERS").arg(k.toksa(org)))
            .await?;
        let mut revoked = 0;
        for sa in &accounts {
            revoked += self.cluster_revoke_sa(org, sa).await?;
        }
        let _: i64 = self
            .invoke(
                OP,
                self.scripts
                    .unindex_org
                    .key(k.toksa(org))
                    .key(k.tokorg())
                    .arg(org),
            )
            .await?;
        Ok(revoked)
    }
}

/// Every node that serves slots must answer: a cluster missing a master
/// cannot serve the keys of its slots. (A `PING` fanned out to all primaries
/// would skip a node whose connection is gone and report success.)
async fn ping_cluster_masters(conn: &mut ClusterConnection) -> RedisResult<()> {
    let slots = conn
        .route_command(
            redis::cmd("CLUSTER").arg("SLOTS").clone(),
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
        )
        .await?;
    let mut masters: Vec<(String, u16)> = Vec::new();
    if let Value::Array(ranges) = slots {
        for range in ranges {
            let Value::Array(fields) = range else {
                continue;
            };
            // [start, end, [host, port, id, ...] (the master), replicas...]
            let Some(Value::Array(node)) = fields.get(2) else {
                continue;
            };
            let host = match node.first() {
                Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                Some(Value::SimpleString(s)) => s.clone(),
                _ => continue,
            };
            let Some(Value::Int(port)) = node.get(1) else {
                continue;
            };
            let Ok(port) = u16::try_from(*port) else {
                continue;
            };
            if !masters.contains(&(host.clone(), port)) {
                masters.push((host, port));
            }
        }
    }
    if masters.is_empty() {
        return Err(RedisError::from((
            redis::ErrorKind::Client,
            "the cluster reports no slots served",
        )));
    }
    for (host, port) in masters {
        conn.route_command(
            redis::cmd("PING"),
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port }),
        )
        .await?;
    }
    Ok(())
}
