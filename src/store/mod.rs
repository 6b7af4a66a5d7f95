//! Persistence of the registry, tokens, throttle counters and audit events.
//! One interface, two backends (`memory`, `redis`) that pass the same tests
//! (the conformance suite, `tests/store/conformance.rs`). Multi-key changes are all-or-nothing in both.

use async_trait::async_trait;

pub use crate::account_policy::{TokenLimits, TokenPut};
use crate::limits::AccountLimits;

use crate::model::{
    AccessFacts, AuditEvent, Environment, Membership, ServiceAccount, StoredAdminKey,
    StoredCredential, TokenRecord, Workspace,
};

pub mod memory;
pub mod redis;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or answered with an error.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The backend did not answer within `store.timeout_ms`.
    #[error("store did not answer in time")]
    Timeout,
    /// A stored value could not be decoded.
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Created,
    Updated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvPutOutcome {
    Created,
    Updated,
    /// The id already belongs to another workspace or organization.
    Conflict,
    /// The workspace does not exist (any more): nothing was written.
    WorkspaceMissing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberPutOutcome {
    Created,
    Updated,
    /// The workspace does not exist (any more): nothing was written.
    WorkspaceMissing,
    /// The service account does not exist (any more): nothing was written.
    ServiceAccountMissing,
}

/// A credential found by its client id, with the account that owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientLookup {
    pub credential: StoredCredential,
    pub service_account: ServiceAccount,
    /// The account's record as stored when it was looked up: a token is
    /// stored only while it is unchanged ([`Issuer`]).
    pub account_record: String,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Answers when the backend is reachable.
    async fn ping(&self) -> StoreResult<()>;

    /// Creates an account together with its first credential.
    async fn create_service_account(
        &self,
        sa: &ServiceAccount,
        cred: &StoredCredential,
    ) -> StoreResult<()>;
    async fn get_service_account(&self, org: &str, id: &str)
        -> StoreResult<Option<ServiceAccount>>;
    /// The account and its record as stored, to replace it with
    /// [`Store::update_service_account`] only if no other change came first.
    async fn get_service_account_for_update(
        &self,
        org: &str,
        id: &str,
    ) -> StoreResult<Option<(ServiceAccount, String)>>;
    /// Every account of the organization, sorted by id.
    async fn list_service_accounts(&self, org: &str) -> StoreResult<Vec<ServiceAccount>>;
    /// Replaces an existing account, only if its record is still `read`
    /// (from [`Store::get_service_account_for_update`]): false, and nothing
    /// written, when it no longer exists or another change came first, so
    /// that no change (a disable) is undone by one read before it.
    async fn update_service_account(&self, sa: &ServiceAccount, read: &str) -> StoreResult<bool>;
    /// Deletes an account, its credentials, their client ids and its memberships.
    async fn delete_service_account(&self, org: &str, id: &str) -> StoreResult<bool>;

    /// Inserts a credential of an existing account (and its client id
    /// index), or replaces it: `expected` is the `generation` the stored one
    /// must still have (the one read), `None` that it must not exist yet.
    /// False, and nothing written, when the account is gone or the
    /// credential is not as expected (changed or deleted meanwhile): a
    /// write from a stale read never undoes a rotation or brings a deleted
    /// credential back.
    async fn put_credential(
        &self,
        cred: &StoredCredential,
        expected: Option<u64>,
    ) -> StoreResult<bool>;
    async fn get_credential(
        &self,
        org: &str,
        sa: &str,
        id: &str,
    ) -> StoreResult<Option<StoredCredential>>;
    /// Every credential of the account, sorted by id.
    async fn list_credentials(&self, org: &str, sa: &str) -> StoreResult<Vec<StoredCredential>>;
    async fn delete_credential(&self, org: &str, sa: &str, id: &str) -> StoreResult<bool>;
    async fn find_client(&self, client_id: &str) -> StoreResult<Option<ClientLookup>>;
    /// Sets `last_used_at` of credentials that still exist (unix seconds).
    async fn touch_credentials(&self, used: &[(String, String, String, i64)]) -> StoreResult<()>;

    async fn put_workspace(&self, ws: &Workspace) -> StoreResult<PutOutcome>;
    async fn get_workspace(&self, org: &str, id: &str) -> StoreResult<Option<Workspace>>;
    async fn list_workspaces(&self, org: &str) -> StoreResult<Vec<Workspace>>;
    /// Deletes a workspace with its environments and memberships.
    async fn delete_workspace(&self, org: &str, id: &str) -> StoreResult<bool>;

    /// Creates or renames an environment of an existing workspace, checked in
    /// the same atomic step as the write (a workspace deleted meanwhile leaves
    /// no orphan); its id is globally unique.
    async fn put_environment(&self, env: &Environment) -> StoreResult<EnvPutOutcome>;
    async fn get_environment(&self, id: &str) -> StoreResult<Option<Environment>>;
    async fn list_environments(&self, org: &str, ws: &str) -> StoreResult<Vec<Environment>>;
    async fn delete_environment(&self, org: &str, ws: &str, id: &str) -> StoreResult<bool>;

    /// Creates or replaces a membership when both its workspace and its
    /// account exist, checked in the same atomic step as the write.
    async fn put_membership(&self, org: &str, m: &Membership) -> StoreResult<MemberPutOutcome>;
    async fn get_membership(
        &self,
        org: &str,
        ws: &str,
        sa: &str,
    ) -> StoreResult<Option<Membership>>;
    async fn list_memberships(&self, org: &str, ws: &str) -> StoreResult<Vec<Membership>>;
    async fn delete_membership(&self, org: &str, ws: &str, sa: &str) -> StoreResult<bool>;

    /// Stores a token record under its hash with a TTL, indexed by its
    /// account; with an `issuer`, only if it still holds (checked in the
    /// same atomic step): false, and nothing stored, when it does not, or
    /// (on a cluster) when the account's tokens were revoked while it was
    /// being stored.
    async fn put_token(
        &self,
        hash: &str,
        rec: &TokenRecord,
        ttl_secs: u64,
        issuer: Option<Issuer<'_>>,
    ) -> StoreResult<bool>;
    /// `put_token` unless the account is at a limit, checked in the same
    /// atomic step: `limits.max_live` live tokens, or `limits.issue_rate`
    /// issuances within its window (an issuance counts only when stored);
    /// and, with an `issuer`, only if it still holds.
    async fn put_token_limited(
        &self,
        hash: &str,
        rec: &TokenRecord,
        ttl_secs: u64,
        limits: TokenLimits,
        issuer: Option<Issuer<'_>>,
    ) -> StoreResult<TokenPut>;
    async fn get_token(&self, hash: &str) -> StoreResult<Option<TokenRecord>>;
    /// Deletes the token if it belongs to the given account.
    async fn revoke_token(&self, hash: &str, org: &str, sa: &str) -> StoreResult<bool>;
    /// Deletes every live token of the account; returns how many.
    async fn revoke_service_account_tokens(&self, org: &str, sa: &str) -> StoreResult<u64>;
    /// Deletes every live token of every account of the organization.
    async fn revoke_organization_tokens(&self, org: &str) -> StoreResult<u64>;
    /// Live tokens (may be approximate).
    async fn count_tokens(&self) -> StoreResult<u64>;
    /// Token, environment and membership for one request, in one round trip.
    async fn lookup_access(
        &self,
        hash: &str,
        environment: Option<&str>,
    ) -> StoreResult<AccessFacts>;

    /// Reserves one failure on every counter at once (fixed windows of
    /// `window_secs`), unless a counter has already reached its limit
    /// (`limits[i]` for `keys[i]`): then nothing is added and the answer is
    /// `false`. Atomic, so concurrent attempts cannot get past a limit
    /// between a read and a write.
    async fn reserve_failure(
        &self,
        keys: &[String],
        limits: &[u64],
        window_secs: u64,
        now_unix: i64,
    ) -> StoreResult<bool>;
    /// Takes back one reservation from every counter (never below zero):
    /// the attempt turned out not to be a failure.
    async fn forgive_failure(
        &self,
        keys: &[String],
        window_secs: u64,
        now_unix: i64,
    ) -> StoreResult<()>;
    /// The counts of the current window, one per key.
    async fn failure_counts(
        &self,
        keys: &[String],
        window_secs: u64,
        now_unix: i64,
    ) -> StoreResult<Vec<u64>>;

    /// Appends an event to the organization's log, keeping the newest `cap`.
    async fn append_audit(&self, org: &str, event: &AuditEvent, cap: usize) -> StoreResult<()>;
    /// Newest first, strictly older than `after` (an event id) when given;
    /// the bool says whether more remain.
    async fn list_audit(
        &self,
        org: &str,
        limit: usize,
        after: Option<&str>,
    ) -> StoreResult<(Vec<AuditEvent>, bool)>;

    /// Inserts or replaces an admin key made through the admin API (its
    /// `last_used_at` is not written here).
    async fn put_admin_key(&self, key: &StoredAdminKey) -> StoreResult<()>;
    /// A key by its id (ids are global), with its `last_used_at`.
    async fn get_admin_key(&self, id: &str) -> StoreResult<Option<StoredAdminKey>>;
    /// Every key of the organization, workspace keys included, sorted by id.
    async fn list_admin_keys(&self, org: &str) -> StoreResult<Vec<StoredAdminKey>>;
    /// Deletes the key if it belongs to the organization.
    async fn delete_admin_key(&self, org: &str, id: &str) -> StoreResult<bool>;
    /// Sets `last_used_at` (unix seconds) of a key that still exists.
    async fn touch_admin_key(&self, id: &str, at_unix: i64) -> StoreResult<()>;

    // Rate limits and quotas (`crate::limits`).

    /// Takes up to `want` units of the current fixed window (of
    /// `window_ms`, on the store's clock) of the counter `bucket`, never
    /// more than `limit` in one window over all callers. Atomic.
    async fn take_rate(
        &self,
        bucket: &str,
        want: u64,
        limit: u64,
        window_ms: u64,
    ) -> StoreResult<RateGrant>;
    /// Takes up to `want` requests of the account's daily and monthly
    /// quotas at once (periods of `now_unix`, UTC): both counters grow by
    /// what is granted, which fits under every limit given (`None`: no
    /// limit). Atomic.
    async fn take_quota(
        &self,
        org: &str,
        sa: &str,
        want: u64,
        limits: QuotaLimits,
        now_unix: i64,
    ) -> StoreResult<QuotaGrant>;
    /// What the account's quota counters of `now_unix`'s periods hold.
    async fn quota_usage(&self, org: &str, sa: &str, now_unix: i64) -> StoreResult<QuotaUsed>;
    /// Sets the account's limits; false when the account does not exist.
    async fn put_account_limits(
        &self,
        org: &str,
        sa: &str,
        limits: &AccountLimits,
    ) -> StoreResult<bool>;
    async fn get_account_limits(&self, org: &str, sa: &str) -> StoreResult<Option<AccountLimits>>;
    async fn delete_account_limits(&self, org: &str, sa: &str) -> StoreResult<bool>;
}

/// What a token's secret was verified against, checked again when the
/// token is stored: the credential must still be there with this
/// `generation` (not rotated or deleted since) and its account's record
/// still the one read (not disabled, deleted or changed: scopes, allowlist).
/// A token request that began before such a change then cannot store its
/// token after it, where the revocation that came with it would have
/// missed it.
#[derive(Clone, Copy, Debug)]
pub struct Issuer<'a> {
    pub credential_id: &'a str,
    pub generation: u64,
    /// [`ClientLookup::account_record`].
    pub account_record: &'a str,
}

/// The answer of [`Store::take_rate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateGrant {
    /// Units granted, `0..=want`.
    pub granted: u64,
    /// The window's count after the grant.
    pub used: u64,
    /// Milliseconds until the window ends.
    pub reset_ms: u64,
}

/// The limits [`Store::take_quota`] counts against.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaLimits {
    pub daily: Option<u64>,
    pub monthly: Option<u64>,
}

/// The counts of an account's current day and month.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaUsed {
    pub daily: u64,
    pub monthly: u64,
}

/// The answer of [`Store::take_quota`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaGrant {
    pub granted: u64,
    /// The counts after the grant.
    pub used: QuotaUsed,
}

/// How many of `want` fit under every limit given `used` — the one rule of
/// both backends.
pub(crate) fn quota_fit(want: u64, limits: QuotaLimits, used: QuotaUsed) -> u64 {
    let left = |limit: Option<u64>, used: u64| limit.map_or(u64::MAX, |l| l.saturating_sub(used));
    want.min(left(limits.daily, used.daily))
        .min(left(limits.monthly, used.monthly))
}

/// The window a throttle counter of `now` belongs to.
pub(crate) fn window_index(now_unix: i64, window_secs: u64) -> i64 {
    now_unix.div_euclid(window_secs.max(1) as i64)
}
