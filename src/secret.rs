//! Secrets, tokens and their hashes. Plain secrets live only in
//! `SecretString`, whose Debug output is redacted; the store sees hashes.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

pub const CLIENT_SECRET_PREFIX: &str = "tg_sk_";
pub const ACCESS_TOKEN_PREFIX: &str = "tg_at_";
/// 32 random bytes in unpadded base64url.
const RANDOM_PART_LEN: usize = 43;

fn random_part() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A new client secret: `tg_sk_` + 256 bits from the OS CSPRNG.
pub fn new_client_secret() -> SecretString {
    SecretString::from(format!("{CLIENT_SECRET_PREFIX}{}", random_part()))
}

/// A 16-bit check of a client secret, stored beside its hash: a presented
/// secret whose check differs cannot be that secret. It lets a rotation's
/// previous secret be verified (argon2) only for a secret that could be it,
/// so that a wrong secret costs one verification whether or not its
/// credential is in a grace period. Sixteen bits of a SHA-256 say nothing
/// useful about a 256-bit random secret.
pub fn secret_check(secret: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"tollgate secret check\0")
        .chain_update(secret.as_bytes())
        .finalize();
    format!("{:02x}{:02x}", digest[0], digest[1])
}

/// A new access token: `tg_at_` + 256 bits from the OS CSPRNG.
pub fn new_access_token() -> SecretString {
    SecretString::from(format!("{ACCESS_TOKEN_PREFIX}{}", random_part()))
}

/// A new admin key for the stored key `id`: `tg_ak_<id>_` + 256 bits from
/// the OS CSPRNG. The id lets the key be found without trying every hash.
pub fn new_admin_key(id: &str) -> SecretString {
    SecretString::from(format!("tg_ak_{id}_{}", random_part()))
}

/// Whether a presented bearer value has the shape of one of our tokens;
/// anything else is refused without a store look-up.
pub fn looks_like_access_token(token: &str) -> bool {
    token.strip_prefix(ACCESS_TOKEN_PREFIX).is_some_and(|rest| {
        rest.len() == RANDOM_PART_LEN
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// The store key of a token: the first 128 bits of its SHA-256, unpadded
/// base64url (22 characters). Tokens carry 256 random bits, so the stored
/// hash reveals nothing usable and two live tokens never share one; the
/// shorter key and index entry save about 45 bytes of Redis per live token.
pub fn token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(&Sha256::digest(token.as_bytes())[..TOKEN_HASH_BYTES])
}

const TOKEN_HASH_BYTES: usize = 16;

/// argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for HashParams {
    /// OWASP's argon2id recommendation (19 MiB, 2 passes, 1 lane).
    fn default() -> Self {
        HashParams {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("argon2 parameters are invalid: {0}")]
pub struct HashParamsError(String);

impl HashParams {
    /// Parameters that make hashing fast, for tests.
    #[cfg(test)]
    pub(crate) fn cheap() -> HashParams {
        HashParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    }

    fn argon2(&self) -> Result<Argon2<'static>, HashParamsError> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| HashParamsError(e.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    pub fn validate(&self) -> Result<(), HashParamsError> {
        self.argon2().map(|_| ())
    }
}

/// Hashes a secret into an argon2id PHC string.
pub fn hash_secret(secret: &SecretString, params: &HashParams) -> Result<String, HashParamsError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| HashParamsError(e.to_string()))?;
    let hash = params
        .argon2()?
        .hash_password(secret.expose_secret().as_bytes(), &salt)
        .map_err(|e| HashParamsError(e.to_string()))?;
    Ok(hash.to_string())
}

/// Verifies a secret against a PHC string (its own parameters apply).
/// A malformed hash verifies nothing.
pub fn verify_secret(secret: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(secret.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Whether a string is an argon2id PHC hash (for config validation).
pub fn is_argon2id_phc(phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| h.algorithm.as_str() == "argon2id")
}

/// SHA-256 of arbitrary bytes, as raw bytes: used for in-memory cache keys
/// so that no plain secret is kept as a map key.
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

pub fn expose(secret: &SecretString) -> &str {
    secret.expose_secret()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_tokens_carry_256_random_bits_and_their_prefix() {
        let s = new_client_secret();
        assert!(expose(&s).starts_with("tg_sk_"));
        assert_eq!(expose(&s).len(), 6 + 43);
        let t = new_access_token();
        assert!(looks_like_access_token(expose(&t)));
        assert_ne!(expose(&new_access_token()), expose(&t));
    }

    #[test]
    fn a_secret_check_is_four_hex_digits_fixed_per_secret() {
        let s = new_client_secret();
        let check = secret_check(expose(&s));
        assert_eq!(check.len(), 4);
        assert!(check.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(check, secret_check(expose(&s)));
        // 64 secrets: their checks are not all one value.
        let checks: std::collections::HashSet<String> = (0..64)
            .map(|_| secret_check(expose(&new_client_secret())))
            .collect();
        assert!(checks.len() > 1);
    }

    #[test]
    fn debug_output_of_a_secret_is_redacted() {
        let s = new_client_secret();
        assert!(!format!("{s:?}").contains(expose(&s)));
    }

    #[test]
    fn hashed_secret_verifies_and_wrong_secret_does_not() {
        let s = new_client_secret();
        let phc = hash_secret(&s, &HashParams::cheap()).expect("hash");
        assert!(phc.starts_with("$argon2id$"));
        assert!(is_argon2id_phc(&phc));
        assert!(verify_secret(expose(&s), &phc));
        assert!(!verify_secret("tg_sk_wrong", &phc));
        assert!(!verify_secret(expose(&s), "not a hash"));
    }

    #[test]
    fn token_shape_check_rejects_foreign_values() {
        assert!(!looks_like_access_token("tg_at_short"));
        assert!(!looks_like_access_token(&format!(
            "tg_sk_{}",
            "a".repeat(43)
        )));
        assert!(!looks_like_access_token(&format!(
            "tg_at_{}",
            "a/".repeat(21)
        )));
    }

    #[test]
    fn token_hash_is_stable_and_hides_the_token() {
        let t = "tg_at_abc";
        assert_eq!(token_hash(t), token_hash(t));
        assert!(!token_hash(t).contains("abc"));
        assert_eq!(token_hash(t).len(), 22);
    }
}
