//! The admin key check (docs/contract.md §4): configured argon2id hashes
//! and the plain `TOLLGATE_ADMIN_KEY`, behind a per-source throttle of
//! failed attempts.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::{Arc, RwLock};

use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use super::error::AdminError;
use crate::config::AdminKey;
use crate::hashing::{HashError, Hasher};
use crate::proxy::netaddr::throttle_bucket;
use crate::secret::sha256;

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
        }
    }

    /// Reserves one attempt for the source, counted as a failure until it
    /// succeeds: `Err(retry_after)` once `ADMIN_MAX_FAILURES` are counted in
    /// the current window, before any verification. Fails closed.
    fn reserve(&self, source: Option<IpAddr>, now: i64) -> Result<Option<(i64, IpNet)>, u64> {
        // Without hashed keys no attempt costs argon2 work to throttle.
        let Some(source) = source.filter(|_| !self.keys.is_empty()) else {
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
    ) -> Result<String, AdminError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let slot = self
            .reserve(source, now)
            .map_err(|retry_after| AdminError::Throttled { retry_after })?;
        let outcome = match bearer(authorization) {
            Some(key) => self.verify(key).await,
            None => Ok(None),
        };
        if !matches!(outcome, Ok(None)) {
            self.forgive(slot);
        }
        outcome?.ok_or(AdminError::Unauthorized)
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
