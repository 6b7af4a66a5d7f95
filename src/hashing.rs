//! argon2id work off the async reactor: a semaphore bounds how many hashes
//! run at once on tokio's blocking pool, so a flood of bad secrets queues
//! here instead of starving proxied traffic.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use crate::secret::{self, HashParams};

/// A PHC hash of a random value, verified when the client is unknown so that
/// an unknown client costs the same as a wrong secret.
const DUMMY_SECRET: &str = "tg_sk_dummy-secret-for-equal-timing-0000000000000";

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("hashing failed: {0}")]
    Failed(String),
}

pub struct Hasher {
    params: HashParams,
    permits: Arc<Semaphore>,
    dummy_hash: String,
}

impl Hasher {
    pub fn new(params: HashParams, max_concurrent: usize) -> Result<Hasher, HashError> {
        let dummy = SecretString::from(DUMMY_SECRET);
        let dummy_hash =
            secret::hash_secret(&dummy, &params).map_err(|e| HashError::Failed(e.to_string()))?;
        Ok(Hasher {
            params,
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            dummy_hash,
        })
    }

    pub fn params(&self) -> HashParams {
        self.params
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| HashError::Failed("hasher closed".into()))?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| HashError::Failed(e.to_string()))
    }

    /// Hashes a secret with the configured parameters.
    pub async fn hash(&self, secret: &SecretString) -> Result<String, HashError> {
        let secret = secret.clone();
        let params = self.params;
        self.run(move || secret::hash_secret(&secret, &params))
            .await?
            .map_err(|e| HashError::Failed(e.to_string()))
    }

    /// Verifies a secret against every candidate hash (current and, during a
    /// grace period, previous); true when one matches.
    pub async fn verify_any(&self, secret: &str, candidates: Vec<String>) -> bool {
        let secret = SecretString::from(secret.to_string());
        self.run(move || {
            candidates
                .iter()
                .any(|phc| secret::verify_secret(secret.expose_secret(), phc))
        })
        .await
        .unwrap_or(false)
    }

    /// Spends one verification on the dummy hash (unknown client).
    pub async fn verify_dummy(&self, secret: &str) {
        let _ = self.verify_any(secret, vec![self.dummy_hash.clone()]).await;
    }
}
