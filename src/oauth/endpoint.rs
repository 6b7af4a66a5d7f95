//! The OAuth endpoints' I/O: client authentication against the store with
//! throttling and equal-cost failures, token issuance, revocation and the
//! RFC 8414 metadata document.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use serde_json::json;
use time::OffsetDateTime;

use super::throttle::{self, ThrottleConfig};
use super::{
    error_response, parse_revocation_request, parse_token_request, resolve_scopes,
    revocation_response, token_response, OAuthError, OAuthResponse, OUTCOME_ISSUED,
};
use crate::audit::{Audit, Event};
use crate::bus::Bus;
use crate::cache::Invalidation;
use crate::hashing::{HashError, Hasher};
use crate::metrics::Metrics;
use crate::model::{SaStatus, TokenRecord};
use crate::secret::{new_access_token, sha256, token_hash};
use crate::store::{ClientLookup, Issuer, Store, StoreError, TokenPut};

/// How long a verified (client id, secret, current hash) stays trusted.
const VERIFIED_TTL: Duration = Duration::from_secs(300);
const VERIFIED_MAX: usize = 10_000;
/// `last_used_at` is written at most this often per credential.
const TOUCH_EVERY_SECS: i64 = 60;
const RETRY_AFTER_SECS: u64 = 1;
/// Audit actions of refused token and revocation requests.
const ISSUE_FAILED: &str = "token.issue_failed";
const REVOKE_FAILED: &str = "token.revoke_failed";

/// Which check refused a client whose answer is `invalid_client`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FailureCause {
    /// No credential has this client id (never issued, or deleted with its account).
    UnknownClient,
    /// The secret matches neither the current nor a previous secret in its grace period.
    WrongSecret,
    /// The secret is right but the service account is disabled.
    Disabled,
    /// The secret is right but the source address is outside the account's
    /// `ip_allowlist`.
    SourceNotAllowed,
    /// The account holds `max_live_tokens` live tokens (429 `slow_down`).
    LiveTokenCap,
    /// The account was issued `token_issue_limit` tokens in its window
    /// (429 `slow_down`).
    IssueLimit,
    /// Too many failures from this source, for this client or at all, in
    /// the throttle window (429 `slow_down`, before any verification).
    Throttled,
    /// The secret was right, but the credential was rotated or deleted, or
    /// the account disabled or deleted, before the token could be stored.
    ChangedMeanwhile,
}

impl FailureCause {
    fn as_str(self) -> &'static str {
        match self {
            FailureCause::UnknownClient => "unknown_client",
            FailureCause::WrongSecret => "wrong_secret",
            FailureCause::Disabled => "service_account_disabled",
            FailureCause::SourceNotAllowed => "source_not_allowed",
            FailureCause::LiveTokenCap => "max_live_tokens",
            FailureCause::IssueLimit => "token_issue_limit",
            FailureCause::Throttled => "throttled",
            FailureCause::ChangedMeanwhile => "changed_meanwhile",
        }
    }
}

/// Whether a client's source address must be in its account's
/// `ip_allowlist` for the request (issuing) or may be anywhere (revoking).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    MustBeAllowed,
    Any,
}

/// What the proxy hands over from the HTTP request.
pub struct OAuthInput<'a> {
    pub content_type: Option<&'a [u8]>,
    pub authorization: Vec<&'a [u8]>,
    pub body: &'a [u8],
    pub source: IpAddr,
}

/// The token endpoint's settings from the config.
pub struct TokenSettings {
    pub resources: Vec<String>,
    pub ttl_seconds: u64,
    /// The bound of an account's own token lifetime.
    pub max_ttl_seconds: u64,
    pub throttle: ThrottleConfig,
    pub public_url: String,
}

pub struct TokenEndpoint {
    store: Arc<dyn Store>,
    hasher: Arc<Hasher>,
    audit: Audit,
    /// Revocations evict cached decisions in every instance.
    bus: Arc<Bus>,
    resources: Vec<String>,
    /// `resources` and `admin`: what a token request may name.
    grantable: Vec<String>,
    ttl_seconds: u64,
    max_ttl_seconds: u64,
    throttle: ThrottleConfig,
    public_url: String,
    /// SHA-256 of (client id, secret, current hash) → when it verified.
    verified: Mutex<HashMap<[u8; 32], Instant>>,
    /// credential id → the last `last_used_at` this process wrote.
    touched: Mutex<HashMap<String, i64>>,
    /// The throttle window and the (client, source) throttle keys whose
    /// refusal was audited in it ([`TokenEndpoint::throttled`]).
    throttled_audited: Mutex<(i64, HashSet<String>)>,
}

fn unavailable(m: &Metrics, op: &'static str, e: &StoreError) -> OAuthError {
    m.store_error(op);
    tracing::warn!(op, error = %e, "token endpoint store call failed");
    OAuthError::TemporarilyUnavailable {
        retry_after_secs: RETRY_AFTER_SECS,
    }
}

/// The verified-secret cache's key: (client id, secret, current hash), so
/// a rotated, disabled or deleted credential is never served from memory.
fn verified_key(client: &ClientLookup, client_id: &str, secret: &str) -> [u8; 32] {
    sha256(&[
        client_id.as_bytes(),
        secret.as_bytes(),
        client.credential.secret_hash.as_bytes(),
    ])
}

fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

impl TokenEndpoint {
    pub fn new(
        store: Arc<dyn Store>,
        hasher: Arc<Hasher>,
        audit: Audit,
        bus: Arc<Bus>,
        settings: TokenSettings,
    ) -> TokenEndpoint {
        TokenEndpoint {
            store,
            hasher,
            audit,
            bus,
            grantable: crate::scope::grantable_resources(&settings.resources),
            resources: settings.resources,
            ttl_seconds: settings.ttl_seconds,
            max_ttl_seconds: settings.max_ttl_seconds,
            throttle: settings.throttle,
            public_url: settings.public_url,
            verified: Mutex::new(HashMap::new()),
            touched: Mutex::new(HashMap::new()),
            throttled_audited: Mutex::new((0, HashSet::new())),
        }
    }

    /// `POST /api/auth/oauth2/token`.
    pub async fn token(&self, input: OAuthInput<'_>) -> OAuthResponse {
        self.token_with_outcome(input).await.0
    }

    /// [`TokenEndpoint::token`] and its metric outcome (`issued`,
    /// `too_many_tokens`, …), for the access log.
    pub async fn token_with_outcome(&self, input: OAuthInput<'_>) -> (OAuthResponse, &'static str) {
        let m = Metrics::get();
        let started = Instant::now();
        let (resp, outcome) = match self.issue(&input).await {
            Ok(resp) => (resp, OUTCOME_ISSUED),
            Err(e) => (error_response(&e), e.outcome()),
        };
        m.token_outcome(outcome);
        m.token_issue_duration
            .observe(started.elapsed().as_secs_f64());
        (resp, outcome)
    }

    async fn issue(&self, input: &OAuthInput<'_>) -> Result<OAuthResponse, OAuthError> {
        let req = parse_token_request(input.content_type, &input.authorization, input.body)
            .inspect_err(|e| self.log_failure(ISSUE_FAILED, None, e))?;
        let client = self
            .authenticate(
                ISSUE_FAILED,
                &req.client_id,
                req.client_secret.expose_secret(),
                input.source,
                Source::MustBeAllowed,
            )
            .await?;
        let sa = &client.service_account;
        let cred = &client.credential;
        if !sa.policy.allows(input.source) {
            // The same answer as a wrong secret: a leaked secret tried from
            // elsewhere learns nothing; the audit event says why.
            let e = OAuthError::InvalidClient;
            self.audit_failure(
                ISSUE_FAILED,
                &client,
                &e,
                Some(FailureCause::SourceNotAllowed),
            )
            .await;
            return Err(e);
        }
        // `admin:*` only when asked for by name: a token asked for without
        // `scope` never carries the management capability.
        let known = match req.scope {
            Some(_) => &self.grantable,
            None => &self.resources,
        };
        let scopes = match resolve_scopes(req.scope.as_deref(), &sa.scopes, known) {
            Ok(s) => s,
            Err(e) => {
                self.audit_failure(ISSUE_FAILED, &client, &e, None).await;
                return Err(e);
            }
        };
        let token = new_access_token();
        let now = now_unix();
        let ttl = sa.policy.token_ttl(self.ttl_seconds, self.max_ttl_seconds);
        let record = TokenRecord {
            organization_id: sa.organization_id.clone(),
            service_account_id: sa.id.clone(),
            client_id: cred.client_id.clone(),
            scopes: scopes.clone(),
            expires_at: now + ttl as i64,
            allowed_sources: sa.policy.request_allowlist(),
            header_values: Default::default(),
        };
        let hash = token_hash(token.expose_secret());
        self.store_token(&client, &hash, &record, ttl).await?;
        self.touch(&client, now);
        self.audit
            .record(Event {
                organization_id: Some(&sa.organization_id),
                actor: &cred.client_id,
                action: "token.issue",
                target: Some(&sa.id),
                outcome: "success",
                details: json!({
                    "credential_id": cred.id,
                    "scopes": scopes,
                    "expires_in": ttl,
                    "auth_method": req.auth_method.as_str(),
                }),
            })
            .await;
        Ok(token_response(&token, ttl, &scopes))
    }

    /// Stores the token, under the account's `max_live_tokens` and
    /// `token_issue_limit` when it has them, and only if the credential the
    /// secret was verified against is unchanged and its account still
    /// active ([`Issuer`]), in one atomic store step: a request that began
    /// before a rotation, a deletion or a disable gets `invalid_client`
    /// rather than a token the revocation that came with it missed.
    async fn store_token(
        &self,
        client: &ClientLookup,
        hash: &str,
        record: &TokenRecord,
        ttl: u64,
    ) -> Result<(), OAuthError> {
        let limits = client.service_account.policy.token_limits();
        let unavailable = |e| unavailable(Metrics::get(), "put_token", &e);
        let issuer = Some(Issuer {
            credential_id: &client.credential.id,
            generation: client.credential.generation,
            account_record: &client.account_record,
        });
        let put = if limits.is_none() {
            let stored = self
                .store
                .put_token(hash, record, ttl, issuer)
                .await
                .map_err(unavailable)?;
            if stored {
                TokenPut::Stored
            } else {
                TokenPut::IssuerChanged
            }
        } else {
            self.store
                .put_token_limited(hash, record, ttl, limits, issuer)
                .await
                .map_err(unavailable)?
        };
        let (e, cause) = match put {
            TokenPut::Stored => return Ok(()),
            TokenPut::IssuerChanged => (OAuthError::InvalidClient, FailureCause::ChangedMeanwhile),
            TokenPut::TooManyLive { retry_after_ms } => (
                OAuthError::TooManyTokens {
                    retry_after_secs: retry_after_ms.div_ceil(1000),
                },
                FailureCause::LiveTokenCap,
            ),
            TokenPut::IssueRateLimited { retry_after_ms } => (
                OAuthError::IssueRateLimited {
                    retry_after_secs: retry_after_ms.div_ceil(1000),
                },
                FailureCause::IssueLimit,
            ),
        };
        self.audit_failure(ISSUE_FAILED, client, &e, Some(cause))
            .await;
        Err(e)
    }

    /// `POST /api/auth/oauth2/revoke` (RFC 7009): 200 for any well-formed,
    /// authenticated request; the token goes only if it is the client's.
    /// The answer to a token or revocation request whose body is over the
    /// limit (read no further): counted, timed and logged as a failed
    /// request like every other refusal.
    pub fn refuse_oversized(&self, revoke: bool, started: Instant) -> OAuthResponse {
        let e = OAuthError::BodyTooLarge;
        if revoke {
            self.log_failure(REVOKE_FAILED, None, &e);
        } else {
            self.log_failure(ISSUE_FAILED, None, &e);
            let m = Metrics::get();
            m.token_outcome(e.outcome());
            m.token_issue_duration
                .observe(started.elapsed().as_secs_f64());
        }
        error_response(&e)
    }

    pub async fn revoke(&self, input: OAuthInput<'_>) -> OAuthResponse {
        match self.revoke_inner(&input).await {
            Ok(()) => revocation_response(),
            Err(e) => error_response(&e),
        }
    }

    async fn revoke_inner(&self, input: &OAuthInput<'_>) -> Result<(), OAuthError> {
        let req = parse_revocation_request(input.content_type, &input.authorization, input.body)
            .inspect_err(|e| self.log_failure(REVOKE_FAILED, None, e))?;
        let client = self
            .authenticate(
                REVOKE_FAILED,
                &req.client_id,
                req.client_secret.expose_secret(),
                input.source,
                Source::Any,
            )
            .await?;
        let sa = &client.service_account;
        let hash = token_hash(req.token.expose_secret());
        let revoked = self
            .store
            .revoke_token(&hash, &sa.organization_id, &sa.id)
            .await
            .map_err(|e| unavailable(Metrics::get(), "revoke_token", &e))?;
        if revoked {
            self.bus.publish(Invalidation::Token(hash.clone())).await;
        }
        self.audit
            .record(Event {
                organization_id: Some(&sa.organization_id),
                actor: &client.credential.client_id,
                action: "token.revoke",
                target: Some(&sa.id),
                outcome: if revoked { "success" } else { "not_found" },
                details: json!({"reason": "client", "revoked": u64::from(revoked)}),
            })
            .await;
        Ok(())
    }

    /// `GET /.well-known/oauth-authorization-server` (RFC 8414).
    pub fn metadata(&self) -> serde_json::Value {
        json!({
            "issuer": self.public_url,
            "token_endpoint": format!("{}/api/auth/oauth2/token", self.public_url),
            "revocation_endpoint": format!("{}/api/auth/oauth2/revoke", self.public_url),
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "grant_types_supported": ["client_credentials"],
            "scopes_supported": self.scopes_supported(),
            "response_types_supported": [],
        })
    }

    fn scopes_supported(&self) -> Vec<String> {
        self.resources
            .iter()
            .flat_map(|r| [format!("{r}:read"), format!("{r}:write")])
            .collect()
    }

    /// Throttle check, look-up and secret verification. Every failure costs
    /// one argon2 verification (the dummy one for an unknown client) and
    /// answers with the same `invalid_client`. Failures are audited as
    /// `failed_action`.
    ///
    /// With [`Source::MustBeAllowed`], a right secret from outside the
    /// account's `ip_allowlist` is verified and counted exactly as a wrong
    /// one (the caller answers `invalid_client`): never through the warm
    /// path, and never forgiven. Otherwise the throttle was an oracle: from
    /// a refused address, a right secret left the failure count as it was
    /// and a wrong one raised it.
    async fn authenticate(
        &self,
        failed_action: &'static str,
        client_id: &str,
        secret: &str,
        source: IpAddr,
        check: Source,
    ) -> Result<ClientLookup, OAuthError> {
        let refused_source = |client: &ClientLookup| {
            check == Source::MustBeAllowed && !client.service_account.policy.allows(source)
        };
        let m = Metrics::get();
        let now = now_unix();
        let found = self
            .store
            .find_client(client_id)
            .await
            .map_err(|e| unavailable(m, "find_client", &e))?;
        let keys = throttle::keys(Some(client_id), source, now, &self.throttle);
        let key_list = [keys.client_source.clone(), keys.source.clone()];
        // A secret verified against the credential's current hash within
        // the last minutes needs no argon2 work, so it is not reserved as a
        // possible failure (a warm client's concurrent requests would
        // otherwise throttle each other); a source already at its limit is
        // refused all the same.
        if let Some(client) = &found {
            if client.service_account.status == SaStatus::Active
                && !refused_source(client)
                && self.recently_verified(client, client_id, secret)
            {
                let counts = self
                    .store
                    .failure_counts(&key_list, self.throttle.window_seconds, now)
                    .await
                    .map_err(|e| unavailable(m, "failure_counts", &e))?;
                let counts = throttle::FailureCounts {
                    client_source: counts.first().copied().unwrap_or(0),
                    source: counts.get(1).copied().unwrap_or(0),
                };
                if let Some(retry_after_secs) = throttle::verdict(counts, &self.throttle, now) {
                    let e = OAuthError::SlowDown { retry_after_secs };
                    self.throttled(failed_action, found.as_ref(), client_id, &keys, &e)
                        .await;
                    return Err(e);
                }
                return found.ok_or(OAuthError::InvalidClient);
            }
        }
        // The attempt is counted as a failure before any work and forgiven
        // if it succeeds, in one atomic step with the limit check: however
        // many arrive at once, no more than the limit reach argon2.
        let limits = [
            self.throttle.max_failures_per_client_source,
            self.throttle.max_failures_per_source,
        ];
        let reserved = self
            .store
            .reserve_failure(&key_list, &limits, self.throttle.window_seconds, now)
            .await
            .map_err(|e| unavailable(m, "reserve_failure", &e))?;
        if !reserved {
            let e = OAuthError::SlowDown {
                retry_after_secs: throttle::retry_after(&self.throttle, now),
            };
            self.throttled(failed_action, found.as_ref(), client_id, &keys, &e)
                .await;
            return Err(e);
        }
        let outcome = self
            .verify_client(failed_action, found, client_id, secret)
            .await;
        let counted = match &outcome {
            Err(OAuthError::InvalidClient) => true,
            Ok(client) => refused_source(client),
            Err(_) => false,
        };
        if !counted {
            // Success, or no verdict (overload, store trouble): not a failure.
            if let Err(err) = self
                .store
                .forgive_failure(&key_list, self.throttle.window_seconds, now)
                .await
            {
                m.store_error("forgive_failure");
                tracing::warn!(error = %err, "token endpoint store call failed");
            }
        }
        outcome
    }

    /// Look-up and secret verification once the attempt is reserved.
    async fn verify_client(
        &self,
        failed_action: &'static str,
        found: Option<ClientLookup>,
        client_id: &str,
        secret: &str,
    ) -> Result<ClientLookup, OAuthError> {
        let verdict = match found {
            None => {
                self.hasher
                    .verify_dummy(client_id, secret)
                    .await
                    .map_err(|e| self.overloaded(failed_action, client_id, &e))?;
                Err((None, FailureCause::UnknownClient))
            }
            Some(client) => {
                let matches = self
                    .secret_matches(&client, client_id, secret)
                    .await
                    .map_err(|e| self.overloaded(failed_action, client_id, &e))?;
                match (matches, client.service_account.status) {
                    (true, SaStatus::Active) => Ok(client),
                    (true, _) => Err((Some(client), FailureCause::Disabled)),
                    (false, _) => Err((Some(client), FailureCause::WrongSecret)),
                }
            }
        };
        match verdict {
            Ok(client) => Ok(client),
            Err((client, cause)) => {
                let e = OAuthError::InvalidClient;
                match client {
                    Some(c) => self.audit_failure(failed_action, &c, &e, Some(cause)).await,
                    None => self.log_unknown_client(failed_action, client_id),
                }
                Err(e)
            }
        }
    }

    /// Whether `secret` verified against the credential's current hash
    /// within `VERIFIED_TTL`.
    fn recently_verified(&self, client: &ClientLookup, client_id: &str, secret: &str) -> bool {
        let key = verified_key(client, client_id, secret);
        self.verified.lock().is_ok_and(|cache| {
            cache
                .get(&key)
                .is_some_and(|at| at.elapsed() < VERIFIED_TTL)
        })
    }

    async fn secret_matches(
        &self,
        client: &ClientLookup,
        client_id: &str,
        secret: &str,
    ) -> Result<bool, HashError> {
        let cred = &client.credential;
        // Only an active account's secret is taken from memory: a disabled
        // one's is verified in full, so that its refusal takes as long as
        // a wrong secret's and does not confirm a leaked secret.
        if client.service_account.status == SaStatus::Active
            && self.recently_verified(client, client_id, secret)
        {
            return Ok(true);
        }
        let key = verified_key(client, client_id, secret);
        if self
            .hasher
            .verify_any(secret, vec![cred.secret_hash.clone()])
            .await?
        {
            if let Ok(mut cache) = self.verified.lock() {
                if cache.len() >= VERIFIED_MAX {
                    cache.retain(|_, at| at.elapsed() < VERIFIED_TTL);
                    if cache.len() >= VERIFIED_MAX {
                        cache.clear();
                    }
                }
                cache.insert(key, Instant::now());
            }
            return Ok(true);
        }
        // The previous secret during a rotation grace period; not cached.
        // Only a secret that could be it is verified: a wrong one then costs
        // one verification, as for an unknown client, and its timing does
        // not tell that the client exists and is mid-rotation.
        match (&cred.previous_secret_hash, cred.previous_secret_expires_at) {
            (Some(_), _)
                if cred
                    .previous_secret_check
                    .as_deref()
                    .is_some_and(|check| check != crate::secret::secret_check(secret)) =>
            {
                Ok(false)
            }
            (Some(prev), Some(until)) if until > OffsetDateTime::now_utc() => {
                self.hasher.verify_any(secret, vec![prev.clone()]).await
            }
            _ => Ok(false),
        }
    }

    /// Coalesced `last_used_at`: written when the stored value is older than
    /// a minute, in the background.
    fn touch(&self, client: &ClientLookup, now: i64) {
        let cred = &client.credential;
        let stored = cred.last_used_at.map(|t| t.unix_timestamp()).unwrap_or(0);
        if now - stored < TOUCH_EVERY_SECS {
            return;
        }
        if let Ok(mut touched) = self.touched.lock() {
            if touched
                .get(&cred.id)
                .is_some_and(|at| now - *at < TOUCH_EVERY_SECS)
            {
                return;
            }
            if touched.len() > VERIFIED_MAX {
                touched.clear();
            }
            touched.insert(cred.id.clone(), now);
        }
        let store = self.store.clone();
        let used = vec![(
            cred.organization_id.clone(),
            cred.service_account_id.clone(),
            cred.id.clone(),
            now,
        )];
        tokio::spawn(async move {
            if let Err(e) = store.touch_credentials(&used).await {
                Metrics::get().store_error("touch_credentials");
                tracing::debug!(error = %e, "last_used_at not written");
            }
        });
    }

    /// `cause` says which authentication check failed, for the operator
    /// reading the audit log; the client only ever sees `invalid_client`.
    async fn audit_failure(
        &self,
        action: &'static str,
        client: &ClientLookup,
        e: &OAuthError,
        cause: Option<FailureCause>,
    ) {
        let sa = &client.service_account;
        let mut details = json!({"reason": e.code(), "credential_id": client.credential.id});
        if let (Some(cause), Some(map)) = (cause, details.as_object_mut()) {
            map.insert("cause".into(), cause.as_str().into());
        }
        self.audit
            .record(Event {
                organization_id: Some(&sa.organization_id),
                actor: &client.credential.client_id,
                action,
                target: Some(&sa.id),
                outcome: "failure",
                details,
            })
            .await;
    }

    /// A throttled attempt (`slow_down`, refused before any verification).
    /// For a known client it goes to the organization's audit trail once
    /// per (client, source) and throttle window in this process, with
    /// cause `throttled`, so that the trail shows the attack going on
    /// after its counted failures; the repeats are only logged, so that a
    /// flood of them cannot push the organization's other events out of
    /// its bounded trail. An unknown client's is only logged.
    async fn throttled(
        &self,
        action: &'static str,
        found: Option<&ClientLookup>,
        client_id: &str,
        keys: &throttle::ThrottleKeys,
        e: &OAuthError,
    ) {
        let first = found.is_some()
            && self.throttled_audited.lock().is_ok_and(|mut audited| {
                let (window, seen) = &mut *audited;
                if *window != keys.expires_at {
                    *window = keys.expires_at;
                    seen.clear();
                }
                // Bounded: past it, further ones in the window are logged only.
                seen.len() < VERIFIED_MAX && seen.insert(keys.client_source.clone())
            });
        match found {
            Some(client) if first => {
                self.audit_failure(action, client, e, Some(FailureCause::Throttled))
                    .await
            }
            _ => self.log_failure(action, Some(client_id), e),
        }
    }

    fn log_unknown_client(&self, action: &'static str, client_id: &str) {
        let client = Some(client_id)
            .filter(|c| crate::ids::is_valid_client_id(c))
            .unwrap_or("-");
        let cause = FailureCause::UnknownClient.as_str();
        tracing::info!(target: "audit", actor = client, action, outcome = "failure", reason = "invalid_client", cause, "audit event");
    }

    /// A failure without an organization is only logged. The client id is
    /// logged only when it has the shape of one of ours.
    /// No verification could be made (the hashing queue is full, or its
    /// threads are gone): the client is neither accepted nor counted as
    /// failing; the refusal is logged like one before the client look-up.
    fn overloaded(&self, action: &'static str, client_id: &str, e: &HashError) -> OAuthError {
        tracing::debug!(error = %e, "token endpoint could not verify a secret");
        let refused = OAuthError::Overloaded {
            retry_after_secs: RETRY_AFTER_SECS,
        };
        self.log_failure(action, Some(client_id), &refused);
        refused
    }

    fn log_failure(&self, action: &'static str, client_id: Option<&str>, e: &OAuthError) {
        let client = client_id
            .filter(|c| crate::ids::is_valid_client_id(c))
            .unwrap_or("-");
        tracing::info!(target: "audit", actor = client, action, outcome = "failure", reason = e.code(), "audit event");
    }
}
