//! The admin key check (docs/contract.md §4): configured argon2id hashes
//! and the plain `TOLLGATE_ADMIN_KEY`, keys made through the API (§4.1,
//! `tg_ak_<id>_<secret>`, argon2id-hashed in the store) and service-account
//! tokens holding `admin:*`, behind a per-source throttle of failed
//! attempts. The answer is the caller as a [`Principal`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::{Arc, RwLock};

use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use super::error::AdminError;
use super::principal::{Principal, Reach, Via};
use crate::config::AdminKey;
use crate::hashing::{HashError, Hasher};
use crate::ids::is_valid_generated_id;
use crate::model::SaStatus;
use crate::proxy::netaddr::throttle_bucket;
use crate::scope::{Action, Scope, ADMIN_RESOURCE};
use crate::secret::{looks_like_access_token, sha256, token_hash, ACCESS_TOKEN_PREFIX};
use crate::store::Store;

/// What a key made through the admin API starts with; then its 26-character
/// id, `_`, and 43 random characters.
pub(crate) const ADMIN_KEY_PREFIX: &str = "tg_ak_";

/// `last_used_at` of a stored key is written at most this often.
const TOUCH_EVERY_SECS: i64 = 60;

/// Failed admin authentications allowed per source address (IPv6 by /64)
/// in a fixed window; further attempts get 429 `slow_down` with
/// `Retry-After` before any verification.
const ADMIN_MAX_FAILURES: u32 = 10;
const ADMIN_WINDOW_SECS: i64 = 60;

/// Verifies admin keys: configured argon2id hashes and the plain
/// `TOLLGATE_ADMIN_KEY`. Keys that verified once are remembered by their
/// SHA-256 so a call does not pay argon2 each time.
pub(crate) struct AdminKeys {
    keys: Vec<AdminKey>,
    env_key_digest: Option<[u8; 32]>,
    verified: RwLock<HashMap<[u8; 32], String>>,
    hasher: Arc<Hasher>,
    /// (window, source bucket) → failed or pending verifications.
    failures: Mutex<HashMap<(i64, IpNet), u32>>,
    /// Keys made through the API and management tokens; `None` in tests
    /// of the configured keys alone.
    store: Option<Arc<dyn Store>>,
    /// SHA-256 of a presented stored key → the hash it verified against;
    /// the record is read on every call, so a revoked key stops at once.
    verified_stored: RwLock<HashMap<[u8; 32], String>>,
    /// Stored key id → the last `last_used_at` written by this process.
    touched: Mutex<HashMap<String, i64>>,
}

impl AdminKeys {
    pub(crate) fn new(
        keys: Vec<AdminKey>,
        env_key: Option<&SecretString>,
        hasher: Arc<Hasher>,
    ) -> AdminKeys {
        AdminKeys {
            keys,
            env_key_digest: env_key.map(|k| sha256(&[b"admin", k.expose_secret().as_bytes()])),
            verified: RwLock::new(HashMap::new()),
            hasher,
            failures: Mutex::new(HashMap::new()),
            store: None,
            verified_stored: RwLock::new(HashMap::new()),
            touched: Mutex::new(HashMap::new()),
        }
    }

    /// Accepts keys made through the API and management tokens too.
    pub(crate) fn with_store(mut self, store: Arc<dyn Store>) -> AdminKeys {
        self.store = Some(store);
        self
    }

    /// Reserves one attempt for the source, counted as a failure until it
    /// succeeds: `Err(retry_after)` once `ADMIN_MAX_FAILURES` are counted in
    /// the current window, before any verification. Fails closed.
    fn reserve(
        &self,
        source: Option<IpAddr>,
        now: i64,
        stored: bool,
    ) -> Result<Option<(i64, IpNet)>, u64> {
        // Without hashed keys no attempt costs argon2 work to throttle; a
        // stored key or token is always throttled (it costs a store read
        // and argon2 work).
        let Some(source) = source.filter(|_| stored || !self.keys.is_empty()) else {
            return Ok(None);
        };
        let window = now.div_euclid(ADMIN_WINDOW_SECS);
        let retry = u64::try_from(ADMIN_WINDOW_SECS - now.rem_euclid(ADMIN_WINDOW_SECS))
            .unwrap_or(1)
            .max(1);
        let key = (window, throttle_bucket(source));
        let Ok(mut failures) = self.failures.lock() else {
            return Err(retry);
        };
        failures.retain(|(w, _), _| *w >= window);
        let count = failures.entry(key).or_insert(0);
        if *count >= ADMIN_MAX_FAILURES {
            return Err(retry);
        }
        *count += 1;
        Ok(Some(key))
    }

    fn forgive(&self, key: Option<(i64, IpNet)>) {
        if let (Some(key), Ok(mut failures)) = (key, self.failures.lock()) {
            if let Some(n) = failures.get_mut(&key) {
                *n = n.saturating_sub(1);
            }
        }
    }

    /// The name of the key presented, `None` for no key of ours, or an
    /// error when it could not be verified (the hashing queue is full).
    async fn verify(&self, presented: &str) -> Result<Option<String>, HashError> {
        if presented.is_empty() || presented.len() > 1024 {
            return Ok(None);
        }
        let digest = sha256(&[b"admin", presented.as_bytes()]);
        if let Some(env) = &self.env_key_digest {
            if bool::from(env.ct_eq(&digest)) {
                return Ok(Some("env".to_string()));
            }
        }
        if let Ok(cache) = self.verified.read() {
            if let Some(name) = cache.get(&digest) {
                return Ok(Some(name.clone()));
            }
        }
        for key in &self.keys {
            if self
                .hasher
                .verify_any(presented, vec![key.hash.clone()])
                .await?
            {
                if let Ok(mut cache) = self.verified.write() {
                    cache.insert(digest, key.name.clone());
                }
                return Ok(Some(key.name.clone()));
            }
        }
        Ok(None)
    }

    /// The name of the key in `Authorization: Bearer <key>`, checked behind
    /// the per-source failure throttle: 401 for no key of ours, 429 when
    /// the source failed too often, 503 when the key cannot be verified now.
    pub(crate) async fn authenticate(
        &self,
        authorization: &[Vec<u8>],
        source: Option<IpAddr>,
    ) -> Result<Principal, AdminError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let presented = bearer(authorization);
        let stored = self.store.is_some()
            && presented.is_some_and(|k| {
                k.starts_with(ADMIN_KEY_PREFIX) || k.starts_with(ACCESS_TOKEN_PREFIX)
            });
        // No key costs no verification and is not a guess: answered 401
        // without touching the source's failure budget, so that stray
        // requests (a browser's `/favicon.ico`, a probe) cannot use it up.
        let Some(key) = presented.filter(|k| !k.is_empty()) else {
            return Err(AdminError::Unauthorized);
        };
        let slot = self
            .reserve(source, now, stored)
            .map_err(|retry_after| AdminError::Throttled { retry_after })?;
        let outcome = self.identify(key, now, source).await;
        if !matches!(outcome, Ok(None)) {
            self.forgive(slot);
        }
        outcome?.ok_or(AdminError::Unauthorized)
    }

    /// A stored key, a management token, or else a configured key.
    async fn identify(
        &self,
        presented: &str,
        now: i64,
        source: Option<IpAddr>,
    ) -> Result<Option<Principal>, AdminError> {
        if let Some(store) = &self.store {
            if presented.starts_with(ADMIN_KEY_PREFIX) {
                if let Some(p) = self.stored_key(store.as_ref(), presented, now).await? {
                    return Ok(Some(p));
                }
            } else if looks_like_access_token(presented) {
                if let Some(p) = management_token(store.as_ref(), presented, now, source).await? {
                    return Ok(Some(p));
                }
            }
        }
        Ok(self
            .verify(presented)
            .await?
            .map(|name| Principal::operator(&name)))
    }

    /// The caller holding a key made through the API, read from the store
    /// on every call so that a revocation anywhere applies at once.
    async fn stored_key(
        &self,
        store: &dyn Store,
        presented: &str,
        now: i64,
    ) -> Result<Option<Principal>, AdminError> {
        let Some(id) = stored_key_id(presented) else {
            return Ok(None);
        };
        let Some(key) = store.get_admin_key(id).await.map_err(AdminError::Store)? else {
            return Ok(None);
        };
        let digest = sha256(&[b"stored admin key", presented.as_bytes()]);
        let known = self
            .verified_stored
            .read()
            .ok()
            .and_then(|cache| cache.get(&digest).cloned())
            .is_some_and(|hash| hash == key.secret_hash);
        if !known {
            if !self
                .hasher
                .verify_any(presented, vec![key.secret_hash.clone()])
                .await?
            {
                return Ok(None);
            }
            if let Ok(mut cache) = self.verified_stored.write() {
                cache.insert(digest, key.secret_hash.clone());
            }
        }
        // A workspace key ends with its workspace, and does not reach a
        // workspace of the same id made after it: the one it was made for
        // is known by its `created_at` (older keys: made no later than it).
        if let Some(ws) = &key.workspace_id {
            let alive = store
                .get_workspace(&key.organization_id, ws)
                .await
                .map_err(AdminError::Store)?
                .is_some_and(|w| match key.workspace_created_at {
                    Some(made) => w.created_at == made,
                    None => w.created_at <= key.created_at,
                });
            if !alive {
                return Ok(None);
            }
        }
        if self.due_for_touch(&key.id, now) {
            if let Err(e) = store.touch_admin_key(&key.id, now).await {
                tracing::warn!(error = %e, "admin key last_used_at not written");
            }
        }
        let reach = match &key.workspace_id {
            Some(ws) => Reach::Workspace {
                org: key.organization_id.clone(),
                ws: ws.clone(),
            },
            None => Reach::Organization(key.organization_id.clone()),
        };
        Ok(Some(Principal {
            actor: format!("admin:{}#{}", key.name, key.id),
            reach,
            via: Via::Key {
                stored: Some(key.id),
            },
        }))
    }

    fn due_for_touch(&self, id: &str, now: i64) -> bool {
        let Ok(mut touched) = self.touched.lock() else {
            return false;
        };
        match touched.get(id) {
            Some(last) if now - *last < TOUCH_EVERY_SECS => false,
            _ => {
                touched.insert(id.to_string(), now);
                true
            }
        }
    }
}

/// The key of the one `Authorization: Bearer` field.
fn bearer(authorization: &[Vec<u8>]) -> Option<&str> {
    let [value] = authorization else {
        return None;
    };
    let (scheme, key) = std::str::from_utf8(value).ok()?.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(key.trim())
}

/// The id part of `tg_ak_<id>_<secret>`.
fn stored_key_id(presented: &str) -> Option<&str> {
    let rest = presented.strip_prefix(ADMIN_KEY_PREFIX)?;
    let id = rest.get(..26)?;
    (is_valid_generated_id(id) && rest[26..].starts_with('_')).then_some(id)
}

/// The caller holding a live access token that carries `admin:read` or
/// `admin:write`, of an account that still exists, is active and is still
/// granted that scope (a management power ends with its grant, not only
/// with the token). A token without it is a 403, not a failed attempt.
async fn management_token(
    store: &dyn Store,
    presented: &str,
    now: i64,
    source: Option<IpAddr>,
) -> Result<Option<Principal>, AdminError> {
    let Some(token) = store
        .get_token(&token_hash(presented))
        .await
        .map_err(AdminError::Store)?
    else {
        return Ok(None);
    };
    if token.expires_at <= now {
        return Ok(None);
    }
    // An account with `ip_allowlist_on_requests` is held to its list here
    // as on every proxied request (the list travels in the token record).
    if crate::authorize::check_source(&token, source).is_err() {
        return Err(AdminError::Forbidden(
            "this token's account does not accept requests from this address",
        ));
    }
    let scope = |action| Scope {
        resource: ADMIN_RESOURCE.to_string(),
        action,
    };
    let (write, read) = (scope(Action::Write), scope(Action::Read));
    let Some(sa) = store
        .get_service_account(&token.organization_id, &token.service_account_id)
        .await
        .map_err(AdminError::Store)?
        .filter(|sa| sa.status == SaStatus::Active)
    else {
        return Ok(None);
    };
    let write = token.scopes.covers(&write) && sa.scopes.covers(&write);
    let read = token.scopes.covers(&read) && sa.scopes.covers(&read);
    if !read {
        return Err(AdminError::Forbidden(
            "this token carries neither admin:read nor admin:write",
        ));
    }
    Ok(Some(Principal {
        actor: token.client_id.clone(),
        reach: Reach::Organization(token.organization_id.clone()),
        via: Via::Token {
            service_account_id: token.service_account_id.clone(),
            write,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{StoredAdminKey, Workspace};
    use crate::secret::HashParams;
    use crate::store::memory::MemoryStore;

    /// A workspace key works on the workspace it was made for, known by
    /// its `created_at`, even when that reads later than the key's own
    /// (another instance's clock ahead), and not on one made again later.
    #[tokio::test]
    async fn a_workspace_key_is_checked_against_the_workspace_it_was_made_for() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let hasher = Arc::new(Hasher::new(HashParams::cheap(), 1, 8).expect("hasher"));
        let keys = AdminKeys::new(Vec::new(), None, hasher.clone()).with_store(store.clone());
        let at = |s| time::OffsetDateTime::from_unix_timestamp(s).expect("time");
        let workspace = |created| Workspace {
            id: "prod".into(),
            organization_id: "acme".into(),
            name: "prod".into(),
            created_at: at(created),
        };
        // The workspace's clock read 1,000 s later than the key's.
        store.put_workspace(&workspace(2_000)).await.expect("put");
        let id = crate::ids::new_id();
        let key = crate::secret::new_admin_key(&id);
        store
            .put_admin_key(&StoredAdminKey {
                id: id.clone(),
                organization_id: "acme".into(),
                workspace_id: Some("prod".into()),
                name: "prod admins".into(),
                secret_hash: hasher.hash(&key).await.expect("hash"),
                created_by: "admin:env".into(),
                created_at: at(1_000),
                last_used_at: None,
                workspace_created_at: Some(at(2_000)),
            })
            .await
            .expect("put key");
        let bearer = vec![format!("Bearer {}", key.expose_secret()).into_bytes()];
        let found = keys.authenticate(&bearer, None).await;
        assert!(found.is_ok(), "refused on its own workspace");
        // The workspace made again under the same id: another workspace.
        store.put_workspace(&workspace(3_000)).await.expect("put");
        assert!(matches!(
            keys.authenticate(&bearer, None).await,
            Err(AdminError::Unauthorized)
        ));
    }

    #[test]
    fn a_stored_key_names_its_id_before_an_underscore() {
        let id = "A".repeat(26);
        assert_eq!(
            stored_key_id(&format!("tg_ak_{id}_secret")),
            Some(id.as_str())
        );
        // Ids may hold `_` and `-`: the id is the first 26 characters.
        let awkward = "a_b-c".repeat(5) + "z";
        assert_eq!(
            stored_key_id(&format!("tg_ak_{awkward}_x")),
            Some(awkward.as_str())
        );
        for bad in [
            format!("tg_ak_{id}"),
            format!("tg_ak_{id}x"),
            format!("tg_sk_{id}_x"),
            "tg_ak_short_x".to_string(),
            format!("tg_ak_{}_x", "é".repeat(13)),
        ] {
            assert_eq!(stored_key_id(&bad), None, "{bad}");
        }
    }
}
