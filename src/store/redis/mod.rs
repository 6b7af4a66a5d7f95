//! The Redis backend. The registry lives in hashes under one hash tag
//! (`{reg}`), tokens are plain keys with a TTL indexed per account, and every
//! multi-key change is one Lua script or MULTI/EXEC, so it is all-or-nothing.
//!
//! Key layout (`P` = `store.key_prefix`; ids never contain `:`):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:{reg}:sa:<org>` | hash | sa id → ServiceAccount JSON |
//! | `P:{reg}:cred:<org>:<sa>` | hash | credential id → StoredCredential JSON |
//! | `P:{reg}:client` | hash | client id → `"<org> <sa> <cred>"` |
//! | `P:{reg}:ws:<org>` | hash | workspace id → Workspace JSON |
//! | `P:{reg}:env` | hash | environment id → Environment JSON (ids are global) |
//! | `P:{reg}:wsenv:<org>:<ws>` | set | environment ids of the workspace |
//! | `P:{reg}:mem:<org>:<ws>` | hash | sa id → Membership JSON |
//! | `P:{reg}:samem:<org>:<sa>` | set | workspaces the account is a member of |
//! | `P:{reg}:satok:<org>:<sa>` | zset | token hashes scored by expiry (unix ms) |
//! | `P:{reg}:toksa:<org>` | set | accounts that may have live tokens |
//! | `P:{reg}:tokorg` | set | organizations that may have live tokens |
//! | `P:{reg}:audit:<org>` | zset | event ids, score 0 (lexical = time order) |
//! | `P:{reg}:auditd:<org>` | hash | event id → AuditEvent JSON |
//! | `P:tok:<hash>` | string | TokenRecord JSON, `EX` = token TTL |
//! | `P:{thr:<window>}:<key>` | string | failure counter, expires after two windows |
//!
//! Every script and transaction stays within one hash slot on a Redis
//! Cluster: registry scripts touch only `{reg}` keys (some build those names
//! at run time, which Redis allows within the slot of the declared keys),
//! and one throttle window's counters share their own tag. Token keys carry
//! no tag so they spread over the whole cluster; on a single server the
//! operations that join a token with the registry (issue, lookup, revoke)
//! are one script each, and on a cluster they take two or more round trips,
//! ordered so that no live token is ever missing from its account's index
//! (see the `cluster_*` methods).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use deadpool::managed::PoolError;
use deadpool_redis::redis::{self, Cmd, RedisError, Script};
use serde::de::DeserializeOwned;
use serde::Serialize;

use self::link::{ping_cluster_masters, Conn, GetError, Lane, Link};
use super::{
    window_index, AccessFacts, ClientLookup, EnvPutOutcome, MemberPutOutcome, PutOutcome, Store,
    StoreError, StoreResult,
};
use crate::model::{
    AuditEvent, Environment, EnvironmentRef, Membership, ServiceAccount, StoredCredential,
    TokenRecord, Workspace,
};
use crate::scope::Role;

mod link;

pub struct RedisStore {
    link: Link,
    keys: Keys,
    scripts: Scripts,
    timeout: Duration,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("key_prefix", &self.keys.prefix)
            .field("cluster", &self.link.is_cluster())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What one store call sends.
enum Call<'a> {
    Cmd(&'a Cmd),
    Pipe(&'a redis::Pipeline),
    Script(&'a redis::ScriptInvocation<'a>),
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

    fn cluster(&self) -> bool {
        self.link.is_cluster()
    }

    /// Runs one store call (connection included) within the timeout.
    async fn bounded<T>(&self, fut: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Timeout),
        }
    }

    async fn conn(&self, op: &'static str, lane: Lane) -> StoreResult<Conn> {
        self.link.get(lane).await.map_err(|e| match e {
            GetError::Pool(e) => pool_error(op, e),
            GetError::Redis(e) => redis_error(op, e),
        })
    }

    /// One command on the control lane (see [`Lane`]).
    async fn query<T: redis::FromRedisValue>(&self, op: &'static str, cmd: &Cmd) -> StoreResult<T> {
        self.query_on(Lane::Control, op, cmd).await
    }

    async fn query_on<T: redis::FromRedisValue>(
        &self,
        lane: Lane,
        op: &'static str,
        cmd: &Cmd,
    ) -> StoreResult<T> {
        self.call(lane, op, Call::Cmd(cmd)).await
    }

    async fn pipe<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        pipe: &redis::Pipeline,
    ) -> StoreResult<T> {
        self.pipe_on(Lane::Control, op, pipe).await
    }

    async fn pipe_on<T: redis::FromRedisValue>(
        &self,
        lane: Lane,
        op: &'static str,
        pipe: &redis::Pipeline,
    ) -> StoreResult<T> {
        self.call(lane, op, Call::Pipe(pipe)).await
    }

    async fn invoke<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        inv: &redis::ScriptInvocation<'_>,
    ) -> StoreResult<T> {
        self.invoke_on(Lane::Control, op, inv).await
    }

    async fn invoke_on<T: redis::FromRedisValue>(
        &self,
        lane: Lane,
        op: &'static str,
        inv: &redis::ScriptInvocation<'_>,
    ) -> StoreResult<T> {
        self.call(lane, op, Call::Script(inv)).await
    }

    /// One call within the timeout. A connection that failed at the
    /// transport level is dropped; a shared one whose call timed out is
    /// replaced for the next call (see [`Link::timed_out`]).
    async fn call<T: redis::FromRedisValue>(
        &self,
        lane: Lane,
        op: &'static str,
        call: Call<'_>,
    ) -> StoreResult<T> {
        // The serial of the shared connection used, 0 for none.
        let used = AtomicU64::new(0);
        let result = self
            .bounded(async {
                let mut conn = self.conn(op, lane).await?;
                used.store(conn.serial().unwrap_or(0), Ordering::Relaxed);
                let result = match call {
                    Call::Cmd(cmd) => cmd.query_async(&mut conn).await,
                    Call::Pipe(pipe) => pipe.query_async(&mut conn).await,
                    Call::Script(inv) => inv.invoke_async(&mut conn).await,
                };
                self.link
                    .settle(conn, result)
                    .map_err(|e| redis_error(op, e))
            })
            .await;
        if matches!(result, Err(StoreError::Timeout)) {
            let serial = used.load(Ordering::Relaxed);
            self.link.timed_out((serial != 0).then_some(serial));
        }
        result
    }

    async fn hget<T: DeserializeOwned>(
        &self,
        op: &'static str,
        key: &str,
        field: &str,
        what: &'static str,
    ) -> StoreResult<Option<T>> {
        let raw: Option<String> = self
            .query(op, redis::cmd("HGET").arg(key).arg(field))
            .await?;
        raw.map(|r| decode(what, &r)).transpose()
    }

    /// Every value of a hash, in field order.
    async fn hvals_sorted<T: DeserializeOwned>(
        &self,
        op: &'static str,
        key: &str,
        what: &'static str,
    ) -> StoreResult<Vec<T>> {
        let all: BTreeMap<String, String> = self.query(op, redis::cmd("HGETALL").arg(key)).await?;
        all.values().map(|raw| decode(what, raw)).collect()
    }
}

/// Key names; see the module documentation.
struct Keys {
    prefix: String,
    /// `P:{reg}:`
    reg: String,
    /// The names every authorization look-up uses, built once.
    env: String,
    mem_prefix: String,
    tok_prefix: String,
}

impl Keys {
    fn new(prefix: &str) -> Keys {
        let reg = format!("{prefix}:{{reg}}:");
        Keys {
            prefix: prefix.to_string(),
            env: format!("{reg}env"),
            mem_prefix: format!("{reg}mem:"),
            tok_prefix: format!("{prefix}:tok:"),
            reg,
        }
    }
    fn sa(&self, org: &str) -> String {
        format!("{}sa:{org}", self.reg)
    }
    fn cred(&self, org: &str, sa: &str) -> String {
        format!("{}cred:{org}:{sa}", self.reg)
    }
    fn client(&self) -> String {
        format!("{}client", self.reg)
    }
    fn ws(&self, org: &str) -> String {
        format!("{}ws:{org}", self.reg)
    }
    fn env(&self) -> &str {
        &self.env
    }
    fn wsenv(&self, org: &str, ws: &str) -> String {
        format!("{}wsenv:{org}:{ws}", self.reg)
    }
    fn mem_prefix(&self) -> &str {
        &self.mem_prefix
    }
    fn mem(&self, org: &str, ws: &str) -> String {
        format!("{}mem:{org}:{ws}", self.reg)
    }
    fn samem_prefix(&self, org: &str) -> String {
        format!("{}samem:{org}:", self.reg)
    }
    fn samem(&self, org: &str, sa: &str) -> String {
        format!("{}samem:{org}:{sa}", self.reg)
    }
    fn satok_prefix(&self, org: &str) -> String {
        format!("{}satok:{org}:", self.reg)
    }
    fn satok(&self, org: &str, sa: &str) -> String {
        format!("{}satok:{org}:{sa}", self.reg)
    }
    fn toksa_prefix(&self) -> String {
        format!("{}toksa:", self.reg)
    }
    fn toksa(&self, org: &str) -> String {
        format!("{}toksa:{org}", self.reg)
    }
    fn tokorg(&self) -> String {
        format!("{}tokorg", self.reg)
    }
    fn audit(&self, org: &str) -> String {
        format!("{}audit:{org}", self.reg)
    }
    fn auditd(&self, org: &str) -> String {
        format!("{}auditd:{org}", self.reg)
    }
    fn tok_prefix(&self) -> &str {
        &self.tok_prefix
    }
    fn tok(&self, hash: &str) -> String {
        let mut key = String::with_capacity(self.tok_prefix.len() + hash.len());
        key.push_str(&self.tok_prefix);
        key.push_str(hash);
        key
    }
    /// One window's counters share a slot, so recording a failure (several
    /// counters) is one transaction on a Redis Cluster too.
    fn thr(&self, window: i64, key: &str) -> String {
        format!("{}:{{thr:{window}}}:{key}", self.prefix)
    }
}

/// The client-index value of a credential.
fn client_ref(org: &str, sa: &str, cred: &str) -> String {
    format!("{org} {sa} {cred}")
}

fn encode<T: Serialize>(what: &'static str, value: &T) -> StoreResult<String> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode {what} ({:?})", e.classify())))
}

/// The error text names the position only: serde's messages can quote the
/// stored value, which may be a hash.
fn decode<T: DeserializeOwned>(what: &'static str, raw: &str) -> StoreResult<T> {
    serde_json::from_str(raw).map_err(|e| {
        StoreError::Corrupt(format!(
            "{what} record ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })
}

/// Error texts carry the operation and the error's kind, never arguments.
fn redis_error(op: &'static str, e: RedisError) -> StoreError {
    if e.is_timeout() {
        return StoreError::Timeout;
    }
    let what = if e.is_connection_refusal() {
        "connection refused".to_string()
    } else if e.is_connection_dropped() {
        "connection dropped".to_string()
    } else if e.is_io_error() {
        "i/o error".to_string()
    } else if let Some(code) = e.code() {
        format!("server error {code}")
    } else {
        format!("{:?}", e.kind())
    };
    StoreError::Unavailable(format!("{op}: {what}"))
}

fn pool_error(op: &'static str, e: PoolError<RedisError>) -> StoreError {
    match e {
        PoolError::Timeout(_) => StoreError::Timeout,
        PoolError::Backend(e) => redis_error(op, e),
        PoolError::Closed => StoreError::Unavailable(format!("{op}: pool closed")),
        PoolError::NoRuntimeSpecified => StoreError::Unavailable(format!("{op}: no runtime")),
        PoolError::PostCreateHook(_) => {
            StoreError::Unavailable(format!("{op}: connection set-up failed"))
        }
    }
}

struct Scripts {
    update_sa: Script,
    delete_sa: Script,
    put_cred: Script,
    delete_cred: Script,
    find_client: Script,
    touch_creds: Script,
    delete_ws: Script,
    put_env: Script,
    put_member: Script,
    delete_env: Script,
    list_envs: Script,
    put_token: Script,
    index_token: Script,
    unindex_sa: Script,
    unindex_org: Script,
    revoke_token: Script,
    revoke_sa: Script,
    revoke_org: Script,
    count_tokens: Script,
    lookup: Script,
    lookup_registry: Script,
    append_audit: Script,
    list_audit: Script,
    reserve_failure: Script,
    forgive_failure: Script,
}

/// `now` in unix milliseconds from the server's clock, the clock that
/// expires the token keys.
const LUA_NOW_MS: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

/// Adds a token to its account's index. KEYS: satok zset, toksa set, tokorg
/// set. ARGV: ttl seconds, hash, sa id, org id. Needs `now`.
const LUA_INDEX_TOKEN: &str = r"
local ttl = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
redis.call('ZADD', KEYS[1], now + ttl * 1000, ARGV[2])
if redis.call('TTL', KEYS[1]) < ttl then redis.call('EXPIRE', KEYS[1], ttl) end
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[4])
";

/// `field(json, needle)`: a top-level string field of a record as
/// serde_json writes it, found by its `"name":"` needle. It replaces
/// `cjson.decode`, which builds a table of every field, on the hot look-up,
/// and searches with plain `string.find` rather than a Lua pattern, which is
/// tried at every position of the record (Redis's time per look-up, one at
/// a time with `redis-benchmark`: 7.3–8.5 µs with patterns, 5.2–5.8 with
/// this and `LUA_PACK`'s single concatenation; under load 11.3 and 7.7; the
/// three reads alone take ~3.3). The fields read are ids, which never
/// contain `"` or `\`; a `"` inside any other value is written `\"`, so the
/// needle cannot match inside one, and the first match is the field itself.
/// No match, or a value with an escape, reads as no field, which `env_role`
/// reports as an unreadable record.
const LUA_FIELD: &str = r#"
local function field(json, needle)
  local _, e = string.find(json, needle, 1, true)
  if not e then return nil end
  local close = string.find(json, '"', e + 1, true)
  if not close then return nil end
  local v = string.sub(json, e + 1, close - 1)
  if string.find(v, '\\', 1, true) then return nil end
  return v
end
"#;

/// `env_role(env hash, env id, membership prefix, sa id or nil)` answers
/// what a decision needs: the environment's organization and workspace
/// ids, then the account's role in that workspace. It answers nothing when
/// the environment is unknown, and no role when the account is unknown or
/// no member. An environment or membership record whose fields cannot be
/// read answers `''` in their place, which reads as a corrupt record. Ids
/// and the role, not whole records, cross the wire: the proxy then decodes
/// no JSON for them (a cache miss cost ~4,500 instructions less). Needs
/// `LUA_FIELD`.
const LUA_ENV_ROLE: &str = r#"
local function env_role(env_key, env_id, mem_prefix, sa)
  local env = redis.call('HGET', env_key, env_id)
  if not env then return end
  local org, ws = field(env, '"organization_id":"'), field(env, '"workspace_id":"')
  if not (org and ws) then return '' end
  if not sa then return org, ws end
  local m = redis.call('HGET', mem_prefix .. org .. ':' .. ws, sa)
  if not m then return org, ws end
  return org, ws, field(m, '"role":"') or ''
end
"#;

/// `pack(up to four strings)`: one string, each value as `<byte
/// length>:<bytes>` ([`unpack`] reads it), made in one concatenation rather
/// than through a table. The redis crate parses a reply value by value
/// through a general parser; one bulk string instead of an array of four
/// costs a cache miss ~3,500 instructions less.
const LUA_PACK: &str = r"
local function pack(a, b, c, d)
  if d then return #a .. ':' .. a .. #b .. ':' .. b .. #c .. ':' .. c .. #d .. ':' .. d end
  if c then return #a .. ':' .. a .. #b .. ':' .. b .. #c .. ':' .. c end
  if b then return #a .. ':' .. a .. #b .. ':' .. b end
  if a then return #a .. ':' .. a end
  return ''
end
";

/// The values `LUA_PACK` packed, in order; `None` if the answer is not a
/// packing of UTF-8 values.
fn unpack(mut packed: &[u8]) -> Option<Vec<&str>> {
    let mut values = Vec::with_capacity(4);
    while !packed.is_empty() {
        let colon = packed.iter().position(|&b| b == b':')?;
        let len: usize = std::str::from_utf8(&packed[..colon]).ok()?.parse().ok()?;
        let rest = &packed[colon + 1..];
        let value = rest.get(..len)?;
        values.push(std::str::from_utf8(value).ok()?);
        packed = &rest[len..];
    }
    Some(values)
}

impl Scripts {
    fn new() -> Scripts {
        let with_now = |body: &str| Script::new(&format!("{LUA_NOW_MS}{body}"));
        Scripts {
            // KEYS: sa hash. ARGV: sa id, json.
            update_sa: Script::new(
                r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1",
            ),
            // KEYS: sa hash, cred hash, client hash, samem set.
            // ARGV: sa id, membership key prefix of the org, client ref prefix.
            delete_sa: Script::new(
                r"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
local creds = redis.call('HGETALL', KEYS[2])
for i = 1, #creds, 2 do
  local ok, c = pcall(cjson.decode, creds[i + 1])
  if ok and type(c) == 'table' and type(c.client_id) == 'string'
     and redis.call('HGET', KEYS[3], c.client_id) == ARGV[3] .. creds[i] then
    redis.call('HDEL', KEYS[3], c.client_id)
  end
end
redis.call('DEL', KEYS[2])
for _, ws in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  redis.call('HDEL', ARGV[2] .. ws, ARGV[1])
end
redis.call('DEL', KEYS[4])
return 1",
            ),
            // KEYS: sa hash, cred hash, client hash.
            // ARGV: sa id, cred id, json, client id, client ref.
            put_cred: Script::new(
                r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
local old = redis.call('HGET', KEYS[2], ARGV[2])
if old then
  local ok, c = pcall(cjson.decode, old)
  if ok and type(c) == 'table' and type(c.client_id) == 'string' and c.client_id ~= ARGV[4]
     and redis.call('HGET', KEYS[3], c.client_id) == ARGV[5] then
    redis.call('HDEL', KEYS[3], c.client_id)
  end
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
return 1",
            ),
            // KEYS: cred hash, client hash. ARGV: cred id, client ref.
            delete_cred: Script::new(
                r"
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
local ok, c = pcall(cjson.decode, old)
if ok and type(c) == 'table' and type(c.client_id) == 'string'
   and redis.call('HGET', KEYS[2], c.client_id) == ARGV[2] then
  redis.call('HDEL', KEYS[2], c.client_id)
end
return 1",
            ),
            // KEYS: client hash. ARGV: client id, registry prefix.
            find_client: Script::new(
                r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return {} end
local org, sa, cred = string.match(v, '^(%S+) (%S+) (%S+)$')
if not org then return {} end
local c = redis.call('HGET', ARGV[2] .. 'cred:' .. org .. ':' .. sa, cred)
local s = redis.call('HGET', ARGV[2] .. 'sa:' .. org, sa)
if not c or not s then return {} end
return {c, s}",
            ),
            // KEYS: one cred hash per credential. ARGV: (id, old json, new json)
            // per credential; a value changed meanwhile is left alone.
            // KEYS: the counters. ARGV: one limit per key, then the expiry.
            reserve_failure: Script::new(
                r"
for i = 1, #KEYS do
  if tonumber(redis.call('GET', KEYS[i]) or '0') >= tonumber(ARGV[i]) then
    return 0
  end
end
for i = 1, #KEYS do
  redis.call('INCR', KEYS[i])
  redis.call('EXPIRE', KEYS[i], ARGV[#KEYS + 1])
end
return 1",
            ),
            // KEYS: the counters.
            forgive_failure: Script::new(
                r"
for i = 1, #KEYS do
  if tonumber(redis.call('GET', KEYS[i]) or '0') > 0 then
    redis.call('DECR', KEYS[i])
  end
end
return 0",
            ),
            touch_creds: Script::new(
                r"
local n = 0
for i = 1, #KEYS do
  local b = (i - 1) * 3
  if redis.call('HGET', KEYS[i], ARGV[b + 1]) == ARGV[b + 2] then
    redis.call('HSET', KEYS[i], ARGV[b + 1], ARGV[b + 3])
    n = n + 1
  end
end
return n",
            ),
            // KEYS: ws hash, env hash, wsenv set, mem hash.
            // ARGV: ws id, samem key prefix of the org, org id.
            delete_ws: Script::new(
                r"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
for _, id in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  local raw = redis.call('HGET', KEYS[2], id)
  if raw then
    local ok, e = pcall(cjson.decode, raw)
    if ok and type(e) == 'table' and e.organization_id == ARGV[3] and e.workspace_id == ARGV[1] then
      redis.call('HDEL', KEYS[2], id)
    end
  end
end
redis.call('DEL', KEYS[3])
for _, sa in ipairs(redis.call('HKEYS', KEYS[4])) do
  redis.call('SREM', ARGV[2] .. sa, ARGV[1])
end
redis.call('DEL', KEYS[4])
return 1",
            ),
            // KEYS: env hash, wsenv set, ws hash. ARGV: env id, json, org, ws.
            // 0 created, 1 updated, 2 conflict, 3 no such workspace,
            // -1 the stored record is corrupt.
            put_env: Script::new(
                r"
if redis.call('HEXISTS', KEYS[3], ARGV[4]) == 0 then return 3 end
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local outcome = 0
if cur then
  local ok, e = pcall(cjson.decode, cur)
  if not ok or type(e) ~= 'table' then return -1 end
  if e.organization_id ~= ARGV[3] or e.workspace_id ~= ARGV[4] then return 2 end
  outcome = 1
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return outcome",
            ),
            // KEYS: ws hash, sa hash, mem hash, samem set. ARGV: ws id, sa id, json.
            // 0 created, 1 updated, 2 no such workspace, 3 no such account.
            put_member: Script::new(
                r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 2 end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 then return 3 end
local added = redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
redis.call('SADD', KEYS[4], ARGV[1])
if added == 1 then return 0 end
return 1",
            ),
            // KEYS: env hash, wsenv set. ARGV: env id, org, ws.
            delete_env: Script::new(
                r"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return 0 end
local ok, e = pcall(cjson.decode, cur)
if not ok or type(e) ~= 'table' or e.organization_id ~= ARGV[2] or e.workspace_id ~= ARGV[3] then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[1])
return 1",
            ),
            // KEYS: env hash, wsenv set.
            list_envs: Script::new(
                r"
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local v = redis.call('HGET', KEYS[1], id)
  if v then out[#out + 1] = v end
end
return out",
            ),
            // KEYS: satok zset, toksa set, tokorg set, token key.
            // ARGV: ttl seconds, hash, sa id, org id, json.
            put_token: with_now(&format!(
                "{LUA_INDEX_TOKEN}redis.call('SET', KEYS[4], ARGV[5], 'EX', ttl)\nreturn 1"
            )),
            // Cluster: the index half of put_token (the token key lives in
            // another slot and is written next).
            index_token: with_now(&format!("{LUA_INDEX_TOKEN}return 1")),
            // Cluster: after the tokens themselves were deleted.
            // KEYS: satok zset, toksa set. ARGV: sa id, hash...
            unindex_sa: Script::new(
                r"
for i = 2, #ARGV do redis.call('ZREM', KEYS[1], ARGV[i]) end
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[1])
end
return 1",
            ),
            // Cluster: KEYS: toksa set, tokorg set. ARGV: org id.
            unindex_org: Script::new(
                r"
if redis.call('SCARD', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[1])
end
return 1",
            ),
            // KEYS: token key, satok zset. ARGV: org, sa, hash.
            revoke_token: Script::new(
                r"
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local ok, t = pcall(cjson.decode, v)
if not ok or type(t) ~= 'table' or t.o ~= ARGV[1] or t.s ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[3])
return 1",
            ),
            // KEYS: satok zset, toksa set. ARGV: token key prefix, sa id.
            // DEL answers 0 for an expired key: only live tokens are counted.
            revoke_sa: Script::new(
                r"
local n = 0
for _, h in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  n = n + redis.call('DEL', ARGV[1] .. h)
end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
return n",
            ),
            // KEYS: toksa set, tokorg set. ARGV: token key prefix, satok prefix, org.
            revoke_org: Script::new(
                r"
local n = 0
for _, sa in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local z = ARGV[2] .. sa
  for _, h in ipairs(redis.call('ZRANGE', z, 0, -1)) do
    n = n + redis.call('DEL', ARGV[1] .. h)
  end
  redis.call('DEL', z)
end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[3])
return n",
            ),
            // KEYS: tokorg set. ARGV: toksa prefix, registry prefix.
            // Sums live index entries; drops index entries with none left.
            count_tokens: with_now(
                r"
local n = 0
for _, org in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local s = ARGV[1] .. org
  for _, sa in ipairs(redis.call('SMEMBERS', s)) do
    local c = redis.call('ZCOUNT', ARGV[2] .. 'satok:' .. org .. ':' .. sa, '(' .. now, '+inf')
    if c == 0 then redis.call('SREM', s, sa) end
    n = n + c
  end
  if redis.call('SCARD', s) == 0 then redis.call('SREM', KEYS[1], org) end
end
return n",
            ),
            // KEYS: token key, env hash. ARGV: env id or '', membership prefix.
            // Answers, packed (`LUA_PACK`): nothing (no token), tok, or tok
            // and what env_role answers: org, ws or org, ws, role, or ''
            // when unreadable.
            lookup: Script::new(&format!(
                "{LUA_FIELD}{LUA_ENV_ROLE}{LUA_PACK}{}",
                r#"
local tok = redis.call('GET', KEYS[1])
if not tok then return '' end
if ARGV[1] == '' then return pack(tok) end
return pack(tok, env_role(KEYS[2], ARGV[1], ARGV[2], field(tok, '"s":"')))"#
            )),
            // Cluster: the registry half of lookup, once the token is known.
            // KEYS: env hash. ARGV: env id, membership prefix, sa id.
            // Answers what env_role answers, as a list: {}, {org, ws}, {org, ws, role} or {''}.
            lookup_registry: Script::new(&format!(
                "{LUA_FIELD}{LUA_ENV_ROLE}return {{env_role(KEYS[1], ARGV[1], ARGV[2], ARGV[3])}}"
            )),
            // KEYS: audit zset, auditd hash. ARGV: id, json, cap.
            append_audit: Script::new(
                r"
redis.call('ZADD', KEYS[1], 0, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local cap = tonumber(ARGV[3])
local n = redis.call('ZCARD', KEYS[1])
if n > cap then
  local old = redis.call('ZRANGE', KEYS[1], 0, n - cap - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - cap - 1)
  for _, id in ipairs(old) do redis.call('HDEL', KEYS[2], id) end
end
return 1",
            ),
            // KEYS: audit zset, auditd hash. ARGV: lex upper bound, limit.
            // Answers {more ('1'/'0'), json...}.
            list_audit: Script::new(
                r"
local lim = tonumber(ARGV[2])
local ids = redis.call('ZREVRANGEBYLEX', KEYS[1], ARGV[1], '-', 'LIMIT', 0, lim + 1)
local out = {}
if #ids > lim then out[1] = '1' else out[1] = '0' end
for i = 1, math.min(#ids, lim) do
  out[#out + 1] = redis.call('HGET', KEYS[2], ids[i]) or ''
end
return out",
            ),
        }
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn ping(&self) -> StoreResult<()> {
        if self.cluster() {
            return self
                .bounded(async {
                    let conn = self.conn("ping", Lane::Control).await?;
                    let Conn::Cluster(mut cluster) = conn else {
                        return Err(StoreError::Unavailable("ping: not a cluster".into()));
                    };
                    let result = ping_cluster_masters(&mut cluster).await;
                    self.link
                        .settle(Conn::Cluster(cluster), result)
                        .map_err(|e| redis_error("ping", e))
                })
                .await;
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

    async fn update_service_account(&self, sa: &ServiceAccount) -> StoreResult<bool> {
        let n: i64 = self
            .invoke(
                "update_service_account",
                self.scripts
                    .update_sa
                    .key(self.keys.sa(&sa.organization_id))
                    .arg(&sa.id)
                    .arg(encode("service account", sa)?),
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
                    .arg(format!("{}{org}:", k.mem_prefix()))
                    .arg(format!("{org} {id} ")),
            )
            .await?;
        Ok(n == 1)
    }

    async fn put_credential(&self, cred: &StoredCredential) -> StoreResult<bool> {
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
                    .arg(client_ref(org, sa, &cred.id)),
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
                    .arg(&self.keys.reg),
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

    async fn put_token(&self, hash: &str, rec: &TokenRecord, ttl_secs: u64) -> StoreResult<()> {
        let k = &self.keys;
        let (org, sa) = (&rec.organization_id, &rec.service_account_id);
        let ttl = ttl_secs.max(1);
        let json = encode("token", rec)?;
        if self.cluster() {
            // Index first: a token that exists can always be found by a
            // revocation. If the second step fails, the index holds a hash
            // that never became a token, which costs nothing.
            let _: i64 = self
                .invoke_on(
                    Lane::Request,
                    "put_token",
                    self.scripts
                        .index_token
                        .key(k.satok(org, sa))
                        .key(k.toksa(org))
                        .key(k.tokorg())
                        .arg(ttl)
                        .arg(hash)
                        .arg(sa)
                        .arg(org),
                )
                .await?;
            let _: () = self
                .query_on(
                    Lane::Request,
                    "put_token",
                    redis::cmd("SET")
                        .arg(k.tok(hash))
                        .arg(json)
                        .arg("EX")
                        .arg(ttl),
                )
                .await?;
            return Ok(());
        }
        let _: i64 = self
            .invoke_on(
                Lane::Request,
                "put_token",
                self.scripts
                    .put_token
                    .key(k.satok(org, sa))
                    .key(k.toksa(org))
                    .key(k.tokorg())
                    .key(k.tok(hash))
                    .arg(ttl)
                    .arg(hash)
                    .arg(sa)
                    .arg(org)
                    .arg(json),
            )
            .await?;
        Ok(())
    }

    async fn get_token(&self, hash: &str) -> StoreResult<Option<TokenRecord>> {
        let raw: Option<String> = self
            .query_on(
                Lane::Request,
                "get_token",
                redis::cmd("GET").arg(self.keys.tok(hash)),
            )
            .await?;
        raw.map(|r| decode("token", &r)).transpose()
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
                .arg(&self.keys.reg),
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

    async fn record_failure(
        &self,
        keys: &[String],
        window_secs: u64,
        now_unix: i64,
    ) -> StoreResult<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let w = window_index(now_unix, window_secs);
        let keep = window_secs.max(1).saturating_mul(2);
        let mut pipe = redis::pipe();
        pipe.atomic();
        for key in keys {
            let k = self.keys.thr(w, key);
            pipe.cmd("INCR").arg(&k).ignore();
            pipe.cmd("EXPIRE").arg(&k).arg(keep).ignore();
        }
        self.pipe_on(Lane::Request, "record_failure", &pipe).await
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
}

/// Completes the facts of a lookup from the registry's answer (see
/// `LUA_ENV_ROLE`): nothing, or the environment's organization and
/// workspace ids, then the account's role (each may be missing).
fn access_facts(
    token: Option<TokenRecord>,
    environment_id: Option<&str>,
    mut registry: impl Iterator<Item = Option<String>>,
) -> StoreResult<AccessFacts> {
    let unreadable = |what: &str| StoreError::Corrupt(format!("{what} record (unreadable ids)"));
    let environment = match (registry.next().flatten(), environment_id) {
        (None, _) => None,
        (Some(organization_id), Some(id)) => {
            let workspace_id = registry.next().flatten().unwrap_or_default();
            if organization_id.is_empty() || workspace_id.is_empty() {
                return Err(unreadable("environment"));
            }
            Some(EnvironmentRef {
                id: id.to_string(),
                workspace_id,
                organization_id,
                header_values: Default::default(),
            })
        }
        // An answer about an environment that was not asked for.
        (Some(_), None) => return Err(unreadable("environment")),
    };
    let role = registry
        .next()
        .flatten()
        .map(|r| Role::parse(&r).ok_or_else(|| unreadable("membership")))
        .transpose()?;
    Ok(AccessFacts {
        token,
        environment,
        role,
    })
}

/// How many token keys one cluster revocation step deletes.
const REVOKE_CHUNK: isize = 500;

/// Redis Cluster paths for the operations that touch token keys. Token keys
/// are spread over every slot, the registry lives in the `{reg}` slot, and
/// no script or transaction may span two slots, so these take two or more
/// round trips, ordered so that a failure half-way never leaves a live token
/// outside its account's index (where a revocation could not find it).
impl RedisStore {
    async fn cluster_lookup_access(
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
        let Some(raw) = raw else {
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

    async fn cluster_revoke_token(&self, hash: &str, org: &str, sa: &str) -> StoreResult<bool> {
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
    async fn cluster_revoke_sa(&self, org: &str, sa: &str) -> StoreResult<u64> {
        const OP: &str = "revoke_service_account_tokens";
        let k = &self.keys;
        let index = k.satok(org, sa);
        let mut revoked = 0u64;
        loop {
            let hashes: Vec<String> = self
                .query(
                    OP,
                    redis::cmd("ZRANGE")
                        .arg(&index)
                        .arg(0)
                        .arg(REVOKE_CHUNK - 1),
                )
                .await?;
            if !hashes.is_empty() {
                let mut del = redis::cmd("DEL");
                for h in &hashes {
                    del.arg(k.tok(h));
                }
                let n: u64 = self.query(OP, &del).await?;
                revoked += n;
            }
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

    async fn cluster_revoke_org(&self, org: &str) -> StoreResult<u64> {
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

#[cfg(test)]
mod tests {
    use super::unpack;

    /// What `LUA_PACK` does, for the tests.
    fn pack(values: &[&str]) -> Vec<u8> {
        values
            .iter()
            .flat_map(|v| format!("{}:{v}", v.len()).into_bytes())
            .collect()
    }

    #[test]
    fn unpack_reads_what_lua_pack_writes() {
        for values in [
            vec![],
            vec![""],
            vec!["a:b", "", "10:1:2:3:4:", "été", "{\"o\":\"x\"}"],
        ] {
            assert_eq!(unpack(&pack(&values)), Some(values));
        }
        assert_eq!(unpack(b"3:a:b2:\xc3\xa9"), Some(vec!["a:b", "é"]));
    }

    #[test]
    fn unpack_refuses_anything_else() {
        for bad in [
            b"3:ab".as_slice(),
            b"x:abc",
            b"abc",
            b"2:ab3",
            b"-1:a",
            b"1:\xff",
            b":a",
        ] {
            assert_eq!(unpack(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
