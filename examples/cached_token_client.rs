//! A service-account client that fetches a token once and reuses it until
//! shortly before it expires — the way every caller of tollgate should
//! behave, instead of asking the token endpoint before each call.
//!
//! Usage (against `make dev`, which prints the values):
//!
//! ```text
//! TOLLGATE_URL=http://127.0.0.1:8080 \
//! TOLLGATE_CLIENT_ID=sa_... TOLLGATE_CLIENT_SECRET=tg_sk_... \
//!   cargo run --example cached_token_client -- /api/v1/service-account/whoami
//! ```
//!
//! It calls the given path five times and prints each status; only the first
//! call asks for a token. A 401 `invalid_token` (the token was revoked) makes
//! it drop the cached token and try once more with a new one.

use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde::Deserialize;

/// Renew this long before the token's announced expiry, so a request never
/// leaves with a token that expires on the way.
const RENEW_MARGIN: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

struct CachedToken {
    value: String,
    renew_at: Instant,
}

struct TokenClient {
    http: Client,
    base: String,
    client_id: String,
    client_secret: String,
    cached: Option<CachedToken>,
}

impl TokenClient {
    /// The cached token, or a new one from the token endpoint
    /// (`client_secret_basic`).
    async fn token(&mut self) -> Result<String, Box<dyn std::error::Error>> {
        if let Some(t) = &self.cached {
            if Instant::now() < t.renew_at {
                return Ok(t.value.clone());
            }
        }
        let answer = self
            .http
            .post(format!("{}/api/auth/oauth2/token", self.base))
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await?;
        if !answer.status().is_success() {
            return Err(format!("token endpoint answered {}", answer.status()).into());
        }
        let token: TokenResponse = answer.json().await?;
        let lifetime = Duration::from_secs(token.expires_in).saturating_sub(RENEW_MARGIN);
        eprintln!("fetched a new token, valid for {} s", token.expires_in);
        self.cached = Some(CachedToken {
            value: token.access_token.clone(),
            renew_at: Instant::now() + lifetime,
        });
        Ok(token.access_token)
    }

    /// GET `path` with the cached token; on 401 fetch a new one and retry once.
    async fn get(&mut self, path: &str) -> Result<StatusCode, Box<dyn std::error::Error>> {
        for _ in 0..2 {
            let token = self.token().await?;
            let answer = self
                .http
                .get(format!("{}{}", self.base, path))
                .bearer_auth(token)
                .send()
                .await?;
            if answer.status() != StatusCode::UNAUTHORIZED {
                return Ok(answer.status());
            }
            self.cached = None;
        }
        Ok(StatusCode::UNAUTHORIZED)
    }
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("set {name} (see the usage at the top of this file)"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/api/v1/service-account/whoami".to_owned());
    let mut client = TokenClient {
        http: Client::builder().timeout(Duration::from_secs(10)).build()?,
        base: env("TOLLGATE_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".to_owned()),
        client_id: env("TOLLGATE_CLIENT_ID")?,
        client_secret: env("TOLLGATE_CLIENT_SECRET")?,
        cached: None,
    };
    for _ in 0..5 {
        println!("GET {path}: {}", client.get(&path).await?);
    }
    Ok(())
}
