//! The Redis backend. The registry lives in hashes under one hash tag,
//! tokens are plain keys with a TTL indexed per account, and every
//! multi-key change is one Lua script or MULTI/EXEC, so it is all-or-nothing.
//!
//! - [`keys`]: the key layout, every key and channel name;
//! - [`scripts`]: the Lua scripts, one `.lua` file each;
//! - [`cluster`]: what differs on a Redis Cluster (slots, the paths that
//!   take several round trips there, and pinging every master);
//! - `call`: one call within the timeout, and its errors;
//! - `codec`: records and script answers on the wire;
//! - `link`: the connections (a pool, or a shared cluster connection).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis;

use self::codec::{access_facts, decode, encode, unpack};
use self::keys::{client_ref, client_ref_prefix, Keys};
use self::link::{Lane, Link};
use self::scripts::Scripts;
use super::{
    window_index, ClientLookup, EnvPutOutcome, Issuer, MemberPutOutcome, PutOutcome, QuotaGrant,
    QuotaLimits, QuotaUsed, RateGrant, Store, StoreError, StoreResult, TokenLimits, TokenPut,
};
use crate::limits::AccountLimits;
use crate::model::{
    AccessFacts, AuditEvent, Environment, Membership, ServiceAccount, StoredAdminKey,
    StoredCredential, TokenRecord, Workspace,
};

mod admin_keys;
mod call;
mod cluster;
mod codec;
mod keys;
mod limits;
mod link;
mod scripts;

pub(crate) use self::keys::invalidation_channel;

pub struct RedisStore {
    link: Link,
    keys: Keys,
    scripts: Scripts,
    timeout: Duration,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("key_prefix", &self.keys.prefix())
            .field("cluster", &self.link.is_cluster())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Prepares a pool for one Redis server; no connection is made until the
    /// first call, so the process starts (and reports not ready) while Redis
    /// is down and recovers by itself when it comes back. Every call,
    /// connection set-up included, is bounded by `timeout`.
    pub fn connect(
        url: &str,
        key_prefix: &str,
        timeout: Duration,
        pool_size: usize,
    ) -> StoreResult<RedisStore> {
        Ok(RedisStore::over(
            Link::single(url, timeout, pool_size)?,
            key_prefix,
            timeout,
        ))
    }

    /// The same store on a Redis Cluster reached through any of `urls`;
    /// lazy and bounded like [`RedisStore::connect`].
    pub fn connect_cluster(
        urls: &[String],
        key_prefix: &str,
        timeout: Duration,
    ) -> StoreResult<RedisStore> {
        Ok(RedisStore::over(
            Link::cluster(urls, timeout)?,
            key_prefix,
            timeout,
        ))
    }

    fn over(link: Link, key_prefix: &str, timeout: Duration) -> RedisStore {
        RedisStore {
            link,
            keys: Keys::new(key_prefix),
            scripts: Scripts::new(),
            timeout,
        }
    }

    /// The last two keys and four arguments of a token write: the
    /// account's sa and cred hashes (in the registry's slot, as the token
    /// index is) and the issuer check's sa id, credential id, generation
    /// (`""`: no check) and account record. See lib/issuer.lua.
    fn issuer_check(
        &self,
        inv: &mut redis::ScriptInvocation<'_>,
        rec: &TokenRecord,
        issuer: Option<Issuer<'_>>,
    ) {
        let (org, sa) = (&rec.organization_id, &rec.service_account_id);
        inv.key(self.keys.sa(org))
            .key(self.keys.cred(org, sa))
            .arg(sa)
            .arg(issuer.map_or("", |i| i.credential_id))
            .arg(issuer.map(|i| i.generation.to_string()).unwrap_or_default())
            .arg(issuer.map_or("", |i| i.account_record));
    }

    fn cluster(&self) -> bool {
        self.link.is_cluster()
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn ping(&self) -> StoreResult<()> {
        if self.cluster() {
            return self.cluster_ping().await;
        }
        let _: String = self.query("ping", &redis::cmd("PING")).await?;
        Ok(())
    }

    async fn create_service_account(
        &self,
        sa: &ServiceAccount,
        cred: &StoredCredential,
    ) -> StoreResult<()> {
        let k = &self.keys;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HSET")
            .arg(k.sa(&sa.organization_id))
            .arg(&sa.id)
            .arg(encode("service account", sa)?)
            .ignore()
            .cmd("HSET")
            .arg(k.cred(&cred.organization_id, &cred.service_account_id))
            .arg(&cred.id)
            .arg(encode("credential", cred)?)
            .ignore()
            .cmd("HSET")
            .arg(k.client())
            .arg(&cred.client_id)
            .arg(client_ref(
                &cred.organization_id,
                &cred.service_account_id,
                &cred.id,
            ))
            .ignore();
        self.pipe("create_service_account", &pipe).await
    }

    async fn get_service_account(
        &self,
        org: &str,
        id: &str,
    ) -> StoreResult<Option<ServiceAccount>> {
        self.hget(
            "get_service_account",
            &self.keys.sa(org),
            id,
            "service account",
        )
        .await
    }

    async fn list_service_accounts(&self, org: &str) -> StoreResult<Vec<ServiceAccount>> {
        self.hvals_sorted(
            "list_service_accounts",
            &self.keys.sa(org),
            "service account",
        )
        .await
    }

    async fn get_service_account_for_update(
        &self,
        org: &str,
        id: &str,
    ) -> StoreResult<Option<(ServiceAccount, String)>> {
        let raw: Option<String> = self
            .query(
                "get_service_account",
                redis::cmd("HGET").arg(self.keys.sa(org)).arg(id),
            )
            .await?;
        raw.map(|r| decode("service account", &r).map(|sa| (sa, r)))
            .transpose()
    }

    async fn update_service_account(&self, sa: &ServiceAccount, read: &str) -> StoreResult<bool> {
        let n: i64 = self
            .invoke(
                "update_service_account",
                self.scripts
                    .update_sa
                    .key(self.keys.sa(&sa.organization_id))
                    .arg(&sa.id)
                    .arg(encode("service account", sa)?)
                    .arg(read),
            )
            .await?;
        Ok(n == 1)
    }

    async fn delete_service_account(&self, org: &str, id: &str) -> StoreResult<bool> {
        let k = &self.keys;
        let n: i64 = self
            .invoke(
                "delete_service_account",
                self.scripts
                    .delete_sa
                    .key(k.sa(org))
                    .key(k.cred(org, id))
                    .key(k.client())
                    .key(k.samem(org, id))
                    .arg(id)
                    .arg(k.mem_org_prefix(org))
                    .arg(client_ref_prefix(org, id)),
            )
            .await?;
        if n == 1 {
            // The account's limits go with it (ids are never reused, so a
            // failure here leaves only an unreachable record).
            self.limits_delete(org, id).await?;
        }
        Ok(n == 1)
    }

    async fn put_credential(
        &self,
        cred: &StoredCredential,
        expected: Option<u64>,
    ) -> StoreResult<bool> {
        let k = &self.keys;
        let (org, sa) = (&cred.organization_id, &cred.service_account_id);
        let n: i64 = self
            .invoke(
                "put_credential",
                self.scripts
                    .put_cred
                    .key(k.sa(org))
                    .key(k.cred(org, sa))
                    .key(k.client())
                    .arg(sa)
                    .arg(&cred.id)
                    .arg(encode("credential", cred)?)
                    .arg(&cred.client_id)
                    .arg(client_ref(org, sa, &cred.id))
                    .arg(expected.map(|g| g.to_string()).unwrap_or_default()),
            )
            .await?;
        Ok(n == 1)
    }

    async fn get_credential(
        &self,
        org: &str,
        sa: &str,
        id: &str,
    ) -> StoreResult<Option<StoredCredential>> {
        self.hget("get_credential", &self.keys.cred(org, sa), id, "credential")
            .await
    }

    async fn list_credentials(&self, org: &str, sa: &str) -> StoreResult<Vec<StoredCredential>> {
        self.hvals_sorted("list_credentials", &self.keys.cred(org, sa), "credential")
            .await
    }

    async fn delete_credential(&self, org: &str, sa: &str, id: &str) -> StoreResult<bool> {
        let k = &self.keys;
        let n: i64 = self
            .invoke(
                "delete_credential",
                self.scripts
                    .delete_cred
                    .key(k.cred(org, sa))
                    .key(k.client())
                    .arg(id)
                    .arg(client_ref(org, sa, id)),
            )
            .await?;
        Ok(n == 1)
    }

    async fn find_client(&self, client_id: &str) -> StoreResult<Option<ClientLookup>> {
        let found: Vec<String> = self
            .invoke_on(
                Lane::Request,
                "find_client",
                self.scripts
                    .find_client
                    .key(self.keys.client())
                    .arg(client_id)
                    .arg(self.keys.cred_root())
                    .arg(self.keys.sa_root()),
            )
            .await?;
        let [cred, sa] = found.as_slice() else {
            return Ok(None);
        };
        let credential: StoredCredential = decode("credential", cred)?;
        let service_account: ServiceAccount = decode("service account", sa)?;
        // A stale index entry must not hand out another client's credential.
        if credential.client_id != client_id
            || credential.organization_id != service_account.organization_id
            || credential.service_account_id != service_account.id
        {
            return Ok(None);
        }
        Ok(Some(ClientLookup {
            credential,
            service_account,
            account_record: sa.clone(),
        }))
    }

    async fn touch_credentials(&self, used: &[(String, String, String, i64)]) -> StoreResult<()> {
        if used.is_empty() {
            return Ok(());
        }
        // The latest use per credential.
        let mut latest: BTreeMap<(&str, &str, &str), i64> = BTreeMap::new();
        for (org, sa, id, at) in used {
            let slot = latest
                .entry((org.as_str(), sa.as_str(), id.as_str()))
                .or_insert(*at);
            *slot = (*slot).max(*at);
        }
        let mut read = redis::pipe();
        for (org, sa, id) in latest.keys() {
            read.cmd("HGET").arg(self.keys.cred(org, sa)).arg(*id);
        }
        let current: Vec<Option<String>> = self
            .pipe_on(Lane::Request, "touch_credentials", &read)
            .await?;
        let mut inv = self.scripts.touch_creds.prepare_invoke();
        let mut any = false;
        for (((org, sa, id), at), old) in latest.iter().zip(current) {
            let Some(old) = old else { continue };
            let mut cred: StoredCredential = decode("credential", &old)?;
            cred.last_used_at = time::OffsetDateTime::from_unix_timestamp(*at).ok();
            inv.key(self.keys.cred(org, sa))
                .arg(*id)
                .arg(old)
                .arg(encode("credential", &cred)?);
            any = true;
        }
        if any {
            let _: i64 = self
                .invoke_on(Lane::Request, "touch_credentials", &inv)
                .await?;
        }
        Ok(())
    }

    async fn put_workspace(&self, ws: &Workspace) -> StoreResult<PutOutcome> {
        let added: i64 = self
            .query(
                "put_workspace",
                redis::cmd("HSET")
                    .arg(self.keys.ws(&ws.organization_id))
                    .arg(&ws.id)
                    .arg(encode("workspace", ws)?),
            )
            .await?;
        Ok(if added == 1 {
            PutOutcome::Created
        } else {
            PutOutcome::Updated
        })
    }

    async fn get_workspace(&self, org: &str, id: &str) -> StoreResult<Option<Workspace>> {
        self.hget("get_workspace", &self.keys.ws(org), id, "workspace")
            .await
    }

    async fn list_workspaces(&self, org: &str) -> StoreResult<Vec<Workspace>> {
        self.hvals_sorted("list_workspaces", &self.keys.ws(org), "workspace")
            .await
    }

    async fn delete_workspace(&self, org: &str, id: &str) -> StoreResult<bool> {
        let k = &self.keys;
        let n: i64 = self
            .invoke(
                "delete_workspace",
                self.scripts
                    .delete_ws
                    .key(k.ws(org))
                    .key(k.env())
                    .key(k.wsenv(org, id))
                    .key(k.mem(org, id))
                    .arg(id)
                    .arg(k.samem_prefix(org))
                    .arg(org),
            )
            .await?;
        Ok(n == 1)
    }

    async fn put_environment(&self, env: &Environment) -> StoreResult<EnvPutOutcome> {
        let k = &self.keys;
        let n: i64 = self
            .invoke(
                "put_environment",
                self.scripts
                    .put_env
                    .key(k.env())
                    .key(k.wsenv(&env.organization_id, &env.workspace_id))
                    .key(k.ws(&env.organization_id))
                    .arg(&env.id)
                    .arg(encode("environment", env)?)
                    .arg(&env.organization_id)
                    .arg(&env.workspace_id),
            )
            .await?;
        match n {
            0 => Ok(EnvPutOutcome::Created),
            1 => Ok(EnvPutOutcome::Updated),
            2 => Ok(EnvPutOutcome::Conflict),
            3 => Ok(EnvPutOutcome::WorkspaceMissing),
            _ => Err(StoreError::Corrupt("environment record".into())),
        }
    }

    async fn get_environment(&self, id: &str) -> StoreResult<Option<Environment>> {
        self.hget("get_environment", self.keys.env(), id, "environment")
            .await
    }

    async fn list_environments(&self, org: &str, ws: &str) -> StoreResult<Vec<Environment>> {
        let raw: Vec<String> = self
            .invoke(
                "list_environments",
                self.scripts
                    .list_envs
                    .key(self.keys.env())
                    .key(self.keys.wsenv(org, ws)),
            )
            .await?;
        let mut envs = raw
            .iter()
            .map(|r| decode::<Environment>("environment", r))
            .collect::<StoreResult<Vec<_>>>()?;
        envs.retain(|e| e.organization_id == org && e.workspace_id == ws);
        envs.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(envs)
    }

    async fn delete_environment(&self, org: &str, ws: &str, id: &str) -> StoreResult<bool> {
        let k = &self.keys;
        let n: i64 = self
            .invoke(
                "delete_environment",
                self.scripts
                    .delete_env
                    .key(k.env())
                    .key(k.wsenv(org, ws))
                    .arg(id)
                    .arg(org)
                    .arg(ws),
            )
            .await?;
        Ok(n == 1)
    }

    async fn put_membership(&self, org: &str, m: &Membership) -> StoreResult<MemberPutOutcome> {
        let k = &self.keys;
        let n: i64 = self
            .invoke(
                "put_membership",
                self.scripts
                    .put_member
                    .key(k.ws(org))
                    .key(k.sa(org))
                    .key(k.mem(org, &m.workspace_id))
                    .key(k.samem(org, &m.service_account_id))
                    .arg(&m.workspace_id)
                    .arg(&m.service_account_id)
                    .arg(encode("membership", m)?),
            )
            .await?;
        match n {
            0 => Ok(MemberPutOutcome::Created),
            1 => Ok(MemberPutOutcome::Updated),
            2 => Ok(MemberPutOutcome::WorkspaceMissing),
            3 => Ok(MemberPutOutcome::ServiceAccountMissing),
            _ => Err(StoreError::Corrupt("membership put answer".into())),
        }
    }

    async fn get_membership(
        &self,
        org: &str,
        ws: &str,
        sa: &str,
    ) -> StoreResult<Option<Membership>> {
        self.hget("get_membership", &self.keys.mem(org, ws), sa, "membership")
            .await
    }

    async fn list_memberships(&self, org: &str, ws: &str) -> StoreResult<Vec<Membership>> {
        self.hvals_sorted("list_memberships", &self.keys.mem(org, ws), "membership")
            .await
    }

    async fn delete_membership(&self, org: &str, ws: &str, sa: &str) -> StoreResult<bool> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HDEL")
            .arg(self.keys.mem(org, ws))
            .arg(sa)
            .cmd("SREM")
            .arg(self.keys.samem(org, sa))
            .arg(ws)
            .ignore();
        let (removed,): (i64,) = self.pipe("delete_membership", &pipe).await?;
        Ok(removed == 1)
    }

    async fn put_token(
        &self,
        hash: &str,
        rec: &TokenRecord,
        ttl_secs: u64,
        issuer: Option<Issuer<'_>>,
    ) -> StoreResult<bool> {
        let k = &self.keys;
        let (org, sa) = (&rec.organization_id, &rec.service_account_id);
        let ttl = ttl_secs.max(1);
        let json = encode("token", rec)?;
        let script = if self.cluster() {
            &self.scripts.index_token
        } else {
            &self.scripts.put_token
        };
        let mut inv = script.prepare_invoke();
        inv.key(k.satok(org, sa))
            .key(k.toksa(org))
            .key(k.tokorg())
            .arg(ttl)
            .arg(hash)
            .arg(sa)
            .arg(org);
        if !self.cluster() {
            inv.key(k.tok(hash)).arg(&json);
        }
        self.issuer_check(&mut inv, rec, issuer);
        let stored: i64 = self.invoke_on(Lane::Request, "put_token", &inv).await?;
        if stored != 1 {
            return Ok(false);
        }
        if self.cluster() {
            // Indexed first: a token that exists can always be found by a
            // revocation. If the second step fails, the index holds a hash
            // that never became a token, which costs nothing; if a
            // revocation came between the steps, the token is refused.
            return self.cluster_set_token(hash, json, ttl, org, sa).await;
        }
        Ok(true)
    }

    async fn put_token_limited(
        &self,
        hash: &str,
        rec: &TokenRecord,
        ttl_secs: u64,
        limits: TokenLimits,
        issuer: Option<Issuer<'_>>,
    ) -> StoreResult<TokenPut> {
        let k = &self.keys;
        let (org, sa) = (&rec.organization_id, &rec.service_account_id);
        let ttl = ttl_secs.max(1);
        let json = encode("token", rec)?;
        let (per, window) = limits.issue_rate.unwrap_or((0, 0));
        let script = if self.cluster() {
            &self.scripts.index_token_limited
        } else {
            &self.scripts.put_token_limited
        };
        let mut inv = script.prepare_invoke();
        inv.key(k.satok(org, sa))
            .key(k.toksa(org))
            .key(k.tokorg())
            .key(k.issue(org, sa))
            .arg(ttl)
            .arg(hash)
            .arg(sa)
            .arg(org)
            .arg(limits.max_live.unwrap_or(0))
            .arg(per)
            .arg(window);
        if !self.cluster() {
            inv.key(k.tok(hash)).arg(&json);
        }
        self.issuer_check(&mut inv, rec, issuer);
        let answer: Vec<i64> = self.invoke_on(Lane::Request, "put_token", &inv).await?;
        let retry_after_ms = answer.get(1).copied().unwrap_or(0).max(0) as u64;
        match answer.first() {
            Some(0) => {}
            Some(1) => return Ok(TokenPut::TooManyLive { retry_after_ms }),
            Some(2) => return Ok(TokenPut::IssueRateLimited { retry_after_ms }),
            Some(3) => return Ok(TokenPut::IssuerChanged),
            _ => return Err(StoreError::Corrupt("put_token answer".into())),
        }
        if self.cluster() {
            // Indexed first, as in put_token; refused when a revocation
            // came between the steps.
            if !self.cluster_set_token(hash, json, ttl, org, sa).await? {
                return Ok(TokenPut::IssuerChanged);
            }
        }
        Ok(TokenPut::Stored)
    }

    async fn get_token(&self, hash: &str) -> StoreResult<Option<TokenRecord>> {
        let raw: Option<String> = self
            .query_on(
                Lane::Request,
                "get_token",
                redis::cmd("GET").arg(self.keys.tok(hash)),
            )
            .await?;
        raw.filter(|r| cluster::is_token(r))
            .map(|r| decode("token", &r))
            .transpose()
    }

    async fn revoke_token(&self, hash: &str, org: &str, sa: &str) -> StoreResult<bool> {
        if self.cluster() {
            return self.cluster_revoke_token(hash, org, sa).await;
        }
        let n: i64 = self
            .invoke(
                "revoke_token",
                self.scripts
                    .revoke_token
                    .key(self.keys.tok(hash))
                    .key(self.keys.satok(org, sa))
                    .arg(org)
                    .arg(sa)
                    .arg(hash),
            )
            .await?;
        Ok(n == 1)
    }

    async fn revoke_service_account_tokens(&self, org: &str, sa: &str) -> StoreResult<u64> {
        if self.cluster() {
            return self.cluster_revoke_sa(org, sa).await;
        }
        let n: u64 = self
            .invoke(
                "revoke_service_account_tokens",
                self.scripts
                    .revoke_sa
                    .key(self.keys.satok(org, sa))
                    .key(self.keys.toksa(org))
                    .arg(self.keys.tok_prefix())
                    .arg(sa),
            )
            .await?;
        Ok(n)
    }

    async fn revoke_organization_tokens(&self, org: &str) -> StoreResult<u64> {
        if self.cluster() {
            return self.cluster_revoke_org(org).await;
        }
        let n: u64 = self
            .invoke(
                "revoke_organization_tokens",
                self.scripts
                    .revoke_org
                    .key(self.keys.toksa(org))
                    .key(self.keys.tokorg())
                    .arg(self.keys.tok_prefix())
                    .arg(self.keys.satok_prefix(org))
                    .arg(org),
            )
            .await?;
        Ok(n)
    }

    /// Exact over the account indexes (one walk over every organization and
    /// account that has tokens); meant for a sampled gauge, not the hot path.
    async fn count_tokens(&self) -> StoreResult<u64> {
        self.invoke(
            "count_tokens",
            self.scripts
                .count_tokens
                .key(self.keys.tokorg())
                .arg(self.keys.toksa_prefix())
                .arg(self.keys.satok_root()),
        )
        .await
    }

    async fn lookup_access(
        &self,
        hash: &str,
        environment: Option<&str>,
    ) -> StoreResult<AccessFacts> {
        if self.cluster() {
            return self.cluster_lookup_access(hash, environment).await;
        }
        let packed: Vec<u8> = self
            .invoke_on(
                Lane::Request,
                "lookup_access",
                self.scripts
                    .lookup
                    .key(self.keys.tok(hash))
                    .key(self.keys.env())
                    .arg(environment.unwrap_or(""))
                    .arg(self.keys.mem_prefix()),
            )
            .await?;
        let values = unpack(&packed)
            .ok_or_else(|| StoreError::Corrupt("look-up answer (not a packing)".into()))?;
        let mut it = values.into_iter();
        let token = it
            .next()
            .map(|r| decode::<TokenRecord>("token", r))
            .transpose()?;
        access_facts(token, environment, it.map(|v| Some(v.to_string())))
    }

    async fn reserve_failure(
        &self,
        keys: &[String],
        limits: &[u64],
        window_secs: u64,
        now_unix: i64,
    ) -> StoreResult<bool> {
        if keys.is_empty() {
            return Ok(true);
        }
        let w = window_index(now_unix, window_secs);
        let keep = window_secs.max(1).saturating_mul(2);
        let mut inv = self.scripts.reserve_failure.prepare_invoke();
        for (key, limit) in keys.iter().zip(limits) {
            inv.key(self.keys.thr(w, key));
            inv.arg(*limit);
        }
        inv.arg(keep);
        let reserved: i64 = self
            .invoke_on(Lane::Request, "reserve_failure", &inv)
            .await?;
        Ok(reserved == 1)
    }

    async fn forgive_failure(
        &self,
        keys: &[String],
        window_secs: u64,
        now_unix: i64,
    ) -> StoreResult<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let w = window_index(now_unix, window_secs);
        let mut inv = self.scripts.forgive_failure.prepare_invoke();
        for key in keys {
            inv.key(self.keys.thr(w, key));
        }
        let _: i64 = self
            .invoke_on(Lane::Request, "forgive_failure", &inv)
            .await?;
        Ok(())
    }

    async fn failure_counts(
        &self,
        keys: &[String],
        window_secs: u64,
        now_unix: i64,
    ) -> StoreResult<Vec<u64>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let w = window_index(now_unix, window_secs);
        let mut cmd = redis::cmd("MGET");
        for key in keys {
            cmd.arg(self.keys.thr(w, key));
        }
        let counts: Vec<Option<u64>> = self.query_on(Lane::Request, "failure_counts", &cmd).await?;
        Ok(counts.into_iter().map(|c| c.unwrap_or(0)).collect())
    }

    async fn append_audit(&self, org: &str, event: &AuditEvent, cap: usize) -> StoreResult<()> {
        let _: i64 = self
            .invoke_on(
                Lane::Request,
                "append_audit",
                self.scripts
                    .append_audit
                    .key(self.keys.audit(org))
                    .key(self.keys.auditd(org))
                    .arg(&event.id)
                    .arg(encode("audit event", event)?)
                    .arg(cap),
            )
            .await?;
        Ok(())
    }

    async fn list_audit(
        &self,
        org: &str,
        limit: usize,
        after: Option<&str>,
    ) -> StoreResult<(Vec<AuditEvent>, bool)> {
        let upper = match after {
            Some(cursor) => format!("({cursor}"),
            None => "+".to_string(),
        };
        let raw: Vec<String> = self
            .invoke(
                "list_audit",
                self.scripts
                    .list_audit
                    .key(self.keys.audit(org))
                    .key(self.keys.auditd(org))
                    .arg(upper)
                    .arg(limit),
            )
            .await?;
        let mut it = raw.into_iter();
        let more = it.next().as_deref() == Some("1");
        let events = it
            .filter(|r| !r.is_empty())
            .map(|r| decode::<AuditEvent>("audit event", &r))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((events, more))
    }

    async fn put_admin_key(&self, key: &StoredAdminKey) -> StoreResult<()> {
        self.admin_key_put(key).await
    }

    async fn get_admin_key(&self, id: &str) -> StoreResult<Option<StoredAdminKey>> {
        self.admin_key_get(id).await
    }

    async fn list_admin_keys(&self, org: &str) -> StoreResult<Vec<StoredAdminKey>> {
        self.admin_key_list(org).await
    }

    async fn delete_admin_key(&self, org: &str, id: &str) -> StoreResult<bool> {
        self.admin_key_delete(org, id).await
    }

    async fn touch_admin_key(&self, id: &str, at_unix: i64) -> StoreResult<()> {
        self.admin_key_touch(id, at_unix).await
    }

    async fn take_rate(
        &self,
        bucket: &str,
        want: u64,
        limit: u64,
        window_ms: u64,
    ) -> StoreResult<RateGrant> {
        self.rate_take(bucket, want, limit, window_ms).await
    }

    async fn take_quota(
        &self,
        org: &str,
        sa: &str,
        want: u64,
        limits: QuotaLimits,
        now_unix: i64,
    ) -> StoreResult<QuotaGrant> {
        self.quota_take(org, sa, want, limits, now_unix).await
    }

    async fn quota_usage(&self, org: &str, sa: &str, now_unix: i64) -> StoreResult<QuotaUsed> {
        self.quota_read(org, sa, now_unix).await
    }

    async fn put_account_limits(
        &self,
        org: &str,
        sa: &str,
        limits: &AccountLimits,
    ) -> StoreResult<bool> {
        self.limits_put(org, sa, limits).await
    }

    async fn get_account_limits(&self, org: &str, sa: &str) -> StoreResult<Option<AccountLimits>> {
        self.limits_get(org, sa).await
    }

    async fn delete_account_limits(&self, org: &str, sa: &str) -> StoreResult<bool> {
        self.limits_delete(org, sa).await
    }
}
