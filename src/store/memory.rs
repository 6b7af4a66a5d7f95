//! The embedded store: everything in one mutex-guarded map set. Same
//! behaviour as Redis, nothing persists. For `serve --dev` and trials.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use super::{
    quota_fit, window_index, ClientLookup, EnvPutOutcome, Issuer, MemberPutOutcome, PutOutcome,
    QuotaGrant, QuotaLimits, QuotaUsed, RateGrant, Store, StoreError, StoreResult, TokenLimits,
    TokenPut,
};
use crate::limits::{AccountLimits, Period};
use crate::model::{
    AccessFacts, AuditEvent, Environment, EnvironmentRef, EnvironmentRole, Membership, SaStatus,
    ServiceAccount, StoredAdminKey, StoredCredential, TokenRecord, Workspace,
};

type Key2 = (String, String);
type Key3 = (String, String, String);

#[derive(Default)]
struct State {
    accounts: BTreeMap<Key2, ServiceAccount>,
    credentials: BTreeMap<Key3, StoredCredential>,
    clients: HashMap<String, Key3>,
    workspaces: BTreeMap<Key2, Workspace>,
    environments: BTreeMap<String, Environment>,
    memberships: BTreeMap<Key3, Membership>,
    /// token hash → (record, expiry in unix seconds)
    tokens: HashMap<String, (TokenRecord, i64)>,
    puts_since_sweep: u32,
    counters: HashMap<(String, i64), u64>,
    audit: HashMap<String, BTreeMap<String, AuditEvent>>,
    admin_keys: BTreeMap<String, StoredAdminKey>,
    /// Rate-limit counters: bucket → (end of its window in ms, count).
    rate: HashMap<String, (i64, u64)>,
    /// Quota counters: (org, sa, period label) → count.
    quota: HashMap<Key3, u64>,
    account_limits: BTreeMap<Key2, AccountLimits>,
    /// (org, sa) → its token issuances (unix ms) within its issue window.
    issued: HashMap<Key2, VecDeque<i64>>,
}

#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

fn now_unix() -> i64 {
    now_ms().div_euclid(1000)
}

// The one wall-clock read of this store (clippy.toml's team rule).
#[allow(clippy::disallowed_methods)]
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn k2(a: &str, b: &str) -> Key2 {
    (a.to_string(), b.to_string())
}

fn k3(a: &str, b: &str, c: &str) -> Key3 {
    (a.to_string(), b.to_string(), c.to_string())
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> StoreResult<T> {
        let mut guard = self
            .state
            .lock()
            .map_err(|_| StoreError::Unavailable("memory store lock poisoned".into()))?;
        Ok(f(&mut guard))
    }
}

impl State {
    /// The issuer check of a token write (see [`Issuer`]).
    fn issuer_holds(&self, rec: &TokenRecord, issuer: Option<Issuer<'_>>) -> bool {
        let Some(issuer) = issuer else {
            return true;
        };
        let (org, sa) = (&rec.organization_id, &rec.service_account_id);
        self.accounts
            .get(&k2(org, sa))
            .is_some_and(|a| a.status == SaStatus::Active && record_of(a) == issuer.account_record)
            && self
                .credentials
                .get(&k3(org, sa, issuer.credential_id))
                .is_some_and(|c| c.generation == issuer.generation)
    }

    fn insert_token(&mut self, hash: &str, rec: &TokenRecord, ttl_secs: u64, now: i64) {
        self.puts_since_sweep += 1;
        if self.puts_since_sweep >= 1024 {
            self.puts_since_sweep = 0;
            self.tokens.retain(|_, (_, exp)| *exp > now);
        }
        self.tokens
            .insert(hash.to_string(), (rec.clone(), now + ttl_secs as i64));
    }

    fn live_token(&self, hash: &str, now: i64) -> Option<&TokenRecord> {
        self.tokens
            .get(hash)
            .filter(|(_, exp)| *exp > now)
            .map(|(rec, _)| rec)
    }

    fn remove_tokens_where(&mut self, pred: impl Fn(&TokenRecord) -> bool) -> u64 {
        let now = now_unix();
        let before = self.tokens.len();
        let mut live_removed = 0;
        self.tokens.retain(|_, (rec, exp)| {
            if pred(rec) {
                if *exp > now {
                    live_removed += 1;
                }
                false
            } else {
                true
            }
        });
        debug_assert!(self.tokens.len() <= before);
        live_removed
    }

    fn remove_memberships_where(&mut self, pred: impl Fn(&Key3) -> bool) {
        self.memberships.retain(|k, _| !pred(k));
    }
}

fn range_of<V: Clone>(map: &BTreeMap<Key2, V>, org: &str) -> Vec<V> {
    map.range(k2(org, "")..)
        .take_while(|((o, _), _)| o == org)
        .map(|(_, v)| v.clone())
        .collect()
}

#[async_trait]
impl Store for MemoryStore {
    async fn ping(&self) -> StoreResult<()> {
        self.with(|_| ())
    }

    async fn create_service_account(
        &self,
        sa: &ServiceAccount,
        cred: &StoredCredential,
    ) -> StoreResult<()> {
        self.with(|s| {
            s.accounts
                .insert(k2(&sa.organization_id, &sa.id), sa.clone());
            let key = k3(&cred.organization_id, &cred.service_account_id, &cred.id);
            s.clients.insert(cred.client_id.clone(), key.clone());
            s.credentials.insert(key, cred.clone());
        })
    }

    async fn get_service_account(
        &self,
        org: &str,
        id: &str,
    ) -> StoreResult<Option<ServiceAccount>> {
        self.with(|s| s.accounts.get(&k2(org, id)).cloned())
    }

    async fn list_service_accounts(&self, org: &str) -> StoreResult<Vec<ServiceAccount>> {
        self.with(|s| range_of(&s.accounts, org))
    }

    async fn get_service_account_for_update(
        &self,
        org: &str,
        id: &str,
    ) -> StoreResult<Option<(ServiceAccount, String)>> {
        self.with(|s| {
            s.accounts
                .get(&k2(org, id))
                .map(|sa| (sa.clone(), record_of(sa)))
        })
    }

    async fn update_service_account(&self, sa: &ServiceAccount, read: &str) -> StoreResult<bool> {
        self.with(
            |s| match s.accounts.get_mut(&k2(&sa.organization_id, &sa.id)) {
                Some(slot) if record_of(slot) == read => {
                    *slot = sa.clone();
                    true
                }
                _ => false,
            },
        )
    }

    async fn delete_service_account(&self, org: &str, id: &str) -> StoreResult<bool> {
        self.with(|s| {
            if s.accounts.remove(&k2(org, id)).is_none() {
                return false;
            }
            let creds: Vec<Key3> = s
                .credentials
                .keys()
                .filter(|(o, a, _)| o == org && a == id)
                .cloned()
                .collect();
            for key in creds {
                if let Some(c) = s.credentials.remove(&key) {
                    s.clients.remove(&c.client_id);
                }
            }
            s.remove_memberships_where(|(o, _, a)| o == org && a == id);
            s.account_limits.remove(&k2(org, id));
            true
        })
    }

    async fn put_credential(
        &self,
        cred: &StoredCredential,
        expected: Option<u64>,
    ) -> StoreResult<bool> {
        self.with(|s| {
            if !s
                .accounts
                .contains_key(&k2(&cred.organization_id, &cred.service_account_id))
            {
                return false;
            }
            let key = k3(&cred.organization_id, &cred.service_account_id, &cred.id);
            if s.credentials.get(&key).map(|c| c.generation) != expected {
                return false;
            }
            s.clients.insert(cred.client_id.clone(), key.clone());
            s.credentials.insert(key, cred.clone());
            true
        })
    }

    async fn get_credential(
        &self,
        org: &str,
        sa: &str,
        id: &str,
    ) -> StoreResult<Option<StoredCredential>> {
        self.with(|s| s.credentials.get(&k3(org, sa, id)).cloned())
    }

    async fn list_credentials(&self, org: &str, sa: &str) -> StoreResult<Vec<StoredCredential>> {
        self.with(|s| {
            s.credentials
                .range(k3(org, sa, "")..)
                .take_while(|((o, a, _), _)| o == org && a == sa)
                .map(|(_, c)| c.clone())
                .collect()
        })
    }

    async fn delete_credential(&self, org: &str, sa: &str, id: &str) -> StoreResult<bool> {
        self.with(|s| match s.credentials.remove(&k3(org, sa, id)) {
            Some(c) => {
                s.clients.remove(&c.client_id);
                true
            }
            None => false,
        })
    }

    async fn find_client(&self, client_id: &str) -> StoreResult<Option<ClientLookup>> {
        self.with(|s| {
            let key = s.clients.get(client_id)?;
            let credential = s
                .credentials
                .get(key)
                .filter(|c| c.client_id == client_id)?
                .clone();
            let service_account = s.accounts.get(&k2(&key.0, &key.1))?.clone();
            Some(ClientLookup {
                account_record: record_of(&service_account),
                credential,
                service_account,
            })
        })
    }

    async fn touch_credentials(&self, used: &[(String, String, String, i64)]) -> StoreResult<()> {
        self.with(|s| {
            for (org, sa, id, at) in used {
                if let Some(c) = s.credentials.get_mut(&k3(org, sa, id)) {
                    c.last_used_at = time::OffsetDateTime::from_unix_timestamp(*at).ok();
                }
            }
        })
    }

    async fn put_workspace(&self, ws: &Workspace) -> StoreResult<PutOutcome> {
        self.with(|s| {
            match s
                .workspaces
                .insert(k2(&ws.organization_id, &ws.id), ws.clone())
            {
                Some(_) => PutOutcome::Updated,
                None => PutOutcome::Created,
            }
        })
    }

    async fn get_workspace(&self, org: &str, id: &str) -> StoreResult<Option<Workspace>> {
        self.with(|s| s.workspaces.get(&k2(org, id)).cloned())
    }

    async fn list_workspaces(&self, org: &str) -> StoreResult<Vec<Workspace>> {
        self.with(|s| range_of(&s.workspaces, org))
    }

    async fn delete_workspace(&self, org: &str, id: &str) -> StoreResult<bool> {
        self.with(|s| {
            if s.workspaces.remove(&k2(org, id)).is_none() {
                return false;
            }
            s.environments
                .retain(|_, e| !(e.organization_id == org && e.workspace_id == id));
            s.remove_memberships_where(|(o, w, _)| o == org && w == id);
            true
        })
    }

    async fn put_environment(&self, env: &Environment) -> StoreResult<EnvPutOutcome> {
        self.with(|s| match s.environments.get(&env.id) {
            _ if !s
                .workspaces
                .contains_key(&k2(&env.organization_id, &env.workspace_id)) =>
            {
                EnvPutOutcome::WorkspaceMissing
            }
            Some(e)
                if e.organization_id != env.organization_id
                    || e.workspace_id != env.workspace_id =>
            {
                EnvPutOutcome::Conflict
            }
            existing => {
                let outcome = if existing.is_some() {
                    EnvPutOutcome::Updated
                } else {
                    EnvPutOutcome::Created
                };
                s.environments.insert(env.id.clone(), env.clone());
                outcome
            }
        })
    }

    async fn get_environment(&self, id: &str) -> StoreResult<Option<Environment>> {
        self.with(|s| s.environments.get(id).cloned())
    }

    async fn list_environments(&self, org: &str, ws: &str) -> StoreResult<Vec<Environment>> {
        self.with(|s| {
            s.environments
                .values()
                .filter(|e| e.organization_id == org && e.workspace_id == ws)
                .cloned()
                .collect()
        })
    }

    async fn delete_environment(&self, org: &str, ws: &str, id: &str) -> StoreResult<bool> {
        self.with(|s| match s.environments.get(id) {
            Some(e) if e.organization_id == org && e.workspace_id == ws => {
                s.environments.remove(id);
                true
            }
            _ => false,
        })
    }

    async fn put_membership(&self, org: &str, m: &Membership) -> StoreResult<MemberPutOutcome> {
        self.with(|s| {
            if !s.workspaces.contains_key(&k2(org, &m.workspace_id)) {
                return MemberPutOutcome::WorkspaceMissing;
            }
            if !s.accounts.contains_key(&k2(org, &m.service_account_id)) {
                return MemberPutOutcome::ServiceAccountMissing;
            }
            match s
                .memberships
                .insert(k3(org, &m.workspace_id, &m.service_account_id), m.clone())
            {
                Some(_) => MemberPutOutcome::Updated,
                None => MemberPutOutcome::Created,
            }
        })
    }

    async fn get_membership(
        &self,
        org: &str,
        ws: &str,
        sa: &str,
    ) -> StoreResult<Option<Membership>> {
        self.with(|s| s.memberships.get(&k3(org, ws, sa)).cloned())
    }

    async fn list_memberships(&self, org: &str, ws: &str) -> StoreResult<Vec<Membership>> {
        self.with(|s| {
            s.memberships
                .range(k3(org, ws, "")..)
                .take_while(|((o, w, _), _)| o == org && w == ws)
                .map(|(_, m)| m.clone())
                .collect()
        })
    }

    async fn delete_membership(&self, org: &str, ws: &str, sa: &str) -> StoreResult<bool> {
        self.with(|s| s.memberships.remove(&k3(org, ws, sa)).is_some())
    }

    async fn put_token(
        &self,
        hash: &str,
        rec: &TokenRecord,
        ttl_secs: u64,
        issuer: Option<Issuer<'_>>,
    ) -> StoreResult<bool> {
        self.with(|s| {
            if !s.issuer_holds(rec, issuer) {
                return false;
            }
            s.insert_token(hash, rec, ttl_secs, now_unix());
            true
        })
    }

    async fn put_token_limited(
        &self,
        hash: &str,
        rec: &TokenRecord,
        ttl_secs: u64,
        limits: TokenLimits,
        issuer: Option<Issuer<'_>>,
    ) -> StoreResult<TokenPut> {
        self.with(|s| {
            if !s.issuer_holds(rec, issuer) {
                return TokenPut::IssuerChanged;
            }
            let now_ms = now_ms();
            let now = now_ms.div_euclid(1000);
            let (org, sa) = (&rec.organization_id, &rec.service_account_id);
            if let Some(max) = limits.max_live {
                let live = s.tokens.values().filter(|(r, exp)| {
                    *exp > now && r.organization_id == *org && r.service_account_id == *sa
                });
                let (count, oldest) = live.fold((0u64, i64::MAX), |(n, oldest), (_, exp)| {
                    (n + 1, oldest.min(*exp))
                });
                if count >= max {
                    let retry_after_ms = (oldest * 1000 - now_ms).max(0) as u64;
                    return TokenPut::TooManyLive { retry_after_ms };
                }
            }
            if let Some((per, window)) = limits.issue_rate {
                let log = s.issued.entry(k2(org, sa)).or_default();
                while log.front().is_some_and(|t| *t <= now_ms - window as i64) {
                    log.pop_front();
                }
                if log.len() as u64 >= per {
                    let first = log.front().copied().unwrap_or(now_ms);
                    let retry_after_ms = (first + window as i64 - now_ms).max(1) as u64;
                    return TokenPut::IssueRateLimited { retry_after_ms };
                }
                log.push_back(now_ms);
            }
            s.insert_token(hash, rec, ttl_secs, now);
            TokenPut::Stored
        })
    }

    async fn get_token(&self, hash: &str) -> StoreResult<Option<TokenRecord>> {
        self.with(|s| s.live_token(hash, now_unix()).cloned())
    }

    async fn revoke_token(&self, hash: &str, org: &str, sa: &str) -> StoreResult<bool> {
        self.with(|s| {
            let owned = s
                .live_token(hash, now_unix())
                .is_some_and(|r| r.organization_id == org && r.service_account_id == sa);
            if owned {
                s.tokens.remove(hash);
            }
            owned
        })
    }

    async fn revoke_service_account_tokens(&self, org: &str, sa: &str) -> StoreResult<u64> {
        self.with(|s| {
            s.remove_tokens_where(|r| r.organization_id == org && r.service_account_id == sa)
        })
    }

    async fn revoke_organization_tokens(&self, org: &str) -> StoreResult<u64> {
        self.with(|s| s.remove_tokens_where(|r| r.organization_id == org))
    }

    async fn count_tokens(&self) -> StoreResult<u64> {
        self.with(|s| {
            let now = now_unix();
            s.tokens.values().filter(|(_, exp)| *exp > now).count() as u64
        })
    }

    async fn lookup_access(
        &self,
        hash: &str,
        environment: Option<&str>,
    ) -> StoreResult<AccessFacts> {
        self.with(|s| {
            let token = s.live_token(hash, now_unix()).cloned();
            let environment = match (&token, environment) {
                (Some(tok), Some(env_id)) => {
                    let env = s.environments.get(env_id).map(EnvironmentRef::from);
                    let role = env.as_ref().and_then(|e| {
                        s.memberships
                            .get(&k3(
                                &e.organization_id,
                                &e.workspace_id,
                                &tok.service_account_id,
                            ))
                            .map(|m| m.role)
                    });
                    Some(Arc::new(EnvironmentRole {
                        environment: env.map(Arc::new),
                        role,
                    }))
                }
                _ => None,
            };
            AccessFacts {
                token: token.map(Arc::new),
                environment,
            }
        })
    }

    async fn reserve_failure(
        &self,
        keys: &[String],
        limits: &[u64],
        window_secs: u64,
        now_unix: i64,
    ) -> StoreResult<bool> {
        self.with(|s| {
            let w = window_index(now_unix, window_secs);
            s.counters.retain(|(_, win), _| *win >= w - 1);
            let full = keys
                .iter()
                .zip(limits)
                .any(|(k, limit)| s.counters.get(&(k.clone(), w)).copied().unwrap_or(0) >= *limit);
            if full {
                return false;
            }
            for k in keys {
                *s.counters.entry((k.clone(), w)).or_insert(0) += 1;
            }
            true
        })
    }

    async fn forgive_failure(
        &self,
        keys: &[String],
        window_secs: u64,
        now_unix: i64,
    ) -> StoreResult<()> {
        self.with(|s| {
            let w = window_index(now_unix, window_secs);
            for k in keys {
                if let Some(n) = s.counters.get_mut(&(k.clone(), w)) {
                    *n = n.saturating_sub(1);
                }
            }
        })
    }

    async fn failure_counts(
        &self,
        keys: &[String],
        window_secs: u64,
        now_unix: i64,
    ) -> StoreResult<Vec<u64>> {
        self.with(|s| {
            let w = window_index(now_unix, window_secs);
            keys.iter()
                .map(|k| s.counters.get(&(k.clone(), w)).copied().unwrap_or(0))
                .collect()
        })
    }

    async fn append_audit(&self, org: &str, event: &AuditEvent, cap: usize) -> StoreResult<()> {
        self.with(|s| {
            let log = s.audit.entry(org.to_string()).or_default();
            log.insert(event.id.clone(), event.clone());
            while log.len() > cap {
                log.pop_first();
            }
        })
    }

    async fn list_audit(
        &self,
        org: &str,
        limit: usize,
        after: Option<&str>,
    ) -> StoreResult<(Vec<AuditEvent>, bool)> {
        self.with(|s| {
            let Some(log) = s.audit.get(org) else {
                return (Vec::new(), false);
            };
            let mut iter: Box<dyn Iterator<Item = &AuditEvent>> = match after {
                Some(cursor) => Box::new(log.range(..cursor.to_string()).rev().map(|(_, e)| e)),
                None => Box::new(log.values().rev()),
            };
            let items: Vec<AuditEvent> = iter.by_ref().take(limit).cloned().collect();
            let more = iter.next().is_some();
            (items, more)
        })
    }

    async fn put_admin_key(&self, key: &StoredAdminKey) -> StoreResult<()> {
        self.with(|s| {
            let last_used_at = s.admin_keys.get(&key.id).and_then(|k| k.last_used_at);
            let mut key = key.clone();
            key.last_used_at = last_used_at;
            s.admin_keys.insert(key.id.clone(), key);
        })
    }

    async fn get_admin_key(&self, id: &str) -> StoreResult<Option<StoredAdminKey>> {
        self.with(|s| s.admin_keys.get(id).cloned())
    }

    async fn list_admin_keys(&self, org: &str) -> StoreResult<Vec<StoredAdminKey>> {
        self.with(|s| {
            s.admin_keys
                .values()
                .filter(|k| k.organization_id == org)
                .cloned()
                .collect()
        })
    }

    async fn delete_admin_key(&self, org: &str, id: &str) -> StoreResult<bool> {
        self.with(|s| match s.admin_keys.get(id) {
            Some(k) if k.organization_id == org => s.admin_keys.remove(id).is_some(),
            _ => false,
        })
    }

    async fn touch_admin_key(&self, id: &str, at_unix: i64) -> StoreResult<()> {
        self.with(|s| {
            if let Some(k) = s.admin_keys.get_mut(id) {
                k.last_used_at = time::OffsetDateTime::from_unix_timestamp(at_unix).ok();
            }
        })
    }

    async fn take_rate(
        &self,
        bucket: &str,
        want: u64,
        limit: u64,
        window_ms: u64,
    ) -> StoreResult<RateGrant> {
        let now = now_ms();
        let window = window_ms.max(1) as i64;
        // Each counter is kept with the end of its window: buckets of every
        // window length share the map, so only the end says which are over.
        let end = (now.div_euclid(window) + 1) * window;
        self.with(|s| {
            if s.rate.len() >= MAX_COUNTERS {
                // Counters of windows that have ended are worth nothing.
                s.rate.retain(|_, (e, _)| *e > now);
            }
            let entry = s.rate.entry(bucket.to_string()).or_insert((end, 0));
            if entry.0 != end {
                *entry = (end, 0);
            }
            let granted = want.min(limit.saturating_sub(entry.1));
            entry.1 += granted;
            RateGrant {
                granted,
                used: entry.1,
                reset_ms: (end - now) as u64,
            }
        })
    }

    async fn take_quota(
        &self,
        org: &str,
        sa: &str,
        want: u64,
        limits: QuotaLimits,
        now_unix: i64,
    ) -> StoreResult<QuotaGrant> {
        self.with(|s| {
            let keys = Period::ALL.map(|p| k3(org, sa, &p.label(now_unix)));
            if s.quota.len() >= MAX_COUNTERS {
                s.quota.retain(|k, _| keys.iter().any(|c| c.2 == k.2));
            }
            let used = QuotaUsed {
                daily: s.quota.get(&keys[0]).copied().unwrap_or(0),
                monthly: s.quota.get(&keys[1]).copied().unwrap_or(0),
            };
            let granted = quota_fit(want, limits, used);
            // Both periods count whichever has a limit, so that a quota set
            // later in the month starts from what was used.
            let after = QuotaUsed {
                daily: used.daily + granted,
                monthly: used.monthly + granted,
            };
            s.quota.insert(keys[0].clone(), after.daily);
            s.quota.insert(keys[1].clone(), after.monthly);
            QuotaGrant {
                granted,
                used: after,
            }
        })
    }

    async fn quota_usage(&self, org: &str, sa: &str, now_unix: i64) -> StoreResult<QuotaUsed> {
        self.with(|s| {
            let count = |p: Period| {
                s.quota
                    .get(&k3(org, sa, &p.label(now_unix)))
                    .copied()
                    .unwrap_or(0)
            };
            QuotaUsed {
                daily: count(Period::Daily),
                monthly: count(Period::Monthly),
            }
        })
    }

    async fn put_account_limits(
        &self,
        org: &str,
        sa: &str,
        limits: &AccountLimits,
    ) -> StoreResult<bool> {
        self.with(|s| {
            if !s.accounts.contains_key(&k2(org, sa)) {
                return false;
            }
            s.account_limits.insert(k2(org, sa), limits.clone());
            true
        })
    }

    async fn get_account_limits(&self, org: &str, sa: &str) -> StoreResult<Option<AccountLimits>> {
        self.with(|s| s.account_limits.get(&k2(org, sa)).cloned())
    }

    async fn delete_account_limits(&self, org: &str, sa: &str) -> StoreResult<bool> {
        self.with(|s| s.account_limits.remove(&k2(org, sa)).is_some())
    }
}

/// An account's record as `get_service_account_for_update` hands it out
/// and `update_service_account` compares it: its JSON, as Redis keeps it.
fn record_of(sa: &ServiceAccount) -> String {
    serde_json::to_string(sa).unwrap_or_default()
}

/// Past this many rate or quota counters, those of past windows are dropped.
const MAX_COUNTERS: usize = 100_000;

#[cfg(test)]
mod tests {
    use super::*;

    /// Buckets of several window lengths share the counters: dropping the
    /// past ones when the map is full must not drop a longer window's
    /// current counter (which would hand out its limit afresh).
    #[tokio::test]
    async fn a_full_counter_map_keeps_every_current_window() {
        let store = MemoryStore::new();
        let hour = 3_600_000;
        let first = store.take_rate("hourly", 5, 5, hour).await.expect("take");
        assert_eq!(first.granted, 5);
        for i in 0..MAX_COUNTERS {
            store
                .take_rate(&format!("per-second-{i}"), 1, 10, 1_000)
                .await
                .expect("take");
        }
        let again = store.take_rate("hourly", 5, 5, hour).await.expect("take");
        assert_eq!(again.granted, 0, "the hour's counter was dropped");
        assert_eq!(again.used, 5);
    }
}
