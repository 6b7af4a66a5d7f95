//! Identifier generation and validation.

use std::sync::atomic::{AtomicU64, Ordering};

use rand::RngCore;

const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A 26-character URL-safe random id (156 bits from the OS CSPRNG).
/// One random byte per character, of which the low six bits pick it: 64
/// divides 256, so every character stays uniform.
pub fn new_id() -> String {
    let mut bytes = [0u8; 26];
    rand::rng().fill_bytes(&mut bytes);
    let mut id = String::with_capacity(bytes.len());
    id.extend(bytes.iter().map(|b| URL_SAFE[usize::from(b & 63)] as char));
    id
}

/// `sa_` + 26 URL-safe characters.
pub fn new_client_id() -> String {
    format!("sa_{}", new_id())
}

/// Operator-chosen ids (organizations, workspaces, environments): `[A-Za-z0-9_-]{1,64}`.
pub fn is_valid_name_id(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(is_id_byte)
}

/// Generated ids (service accounts, credentials): exactly 26 URL-safe characters.
pub fn is_valid_generated_id(s: &str) -> bool {
    s.len() == 26 && s.bytes().all(is_id_byte)
}

pub fn is_valid_client_id(s: &str) -> bool {
    s.strip_prefix("sa_").is_some_and(is_valid_generated_id)
}

fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// A time-ordered id for audit events: 16 hex digits (milliseconds, then a
/// sequence within the millisecond) and 10 random URL-safe characters, so
/// that lexical order is time order, and creation order within one process
/// even for events of the same millisecond.
pub fn new_sortable_id(unix_millis: i64) -> String {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let at = (unix_millis.max(0) as u64) << SEQUENCE_BITS;
    let mut last = LAST.load(Ordering::Relaxed);
    let tick = loop {
        let next = at.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break next,
            Err(seen) => last = seen,
        }
    };
    let mut bytes = [0u8; 10];
    rand::rng().fill_bytes(&mut bytes);
    let mut id = format!("{tick:016x}");
    id.extend(bytes.iter().map(|b| URL_SAFE[usize::from(b & 63)] as char));
    id
}

/// 4,096 ids per millisecond before the sequence borrows the next one.
const SEQUENCE_BITS: u32 = 12;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_have_the_documented_shape() {
        let id = new_id();
        assert!(is_valid_generated_id(&id), "{id}");
        let client = new_client_id();
        assert!(is_valid_client_id(&client), "{client}");
        assert_ne!(new_id(), new_id());
    }

    #[test]
    fn operator_ids_are_checked_against_their_pattern() {
        assert!(is_valid_name_id("prod-eu_1"));
        assert!(is_valid_name_id(&"a".repeat(64)));
        assert!(!is_valid_name_id(&"a".repeat(65)));
        assert!(!is_valid_name_id(""));
        assert!(!is_valid_name_id("a/b"));
        assert!(!is_valid_name_id("a b"));
        assert!(!is_valid_name_id("é"));
    }

    #[test]
    fn sortable_ids_sort_by_time() {
        let a = new_sortable_id(1_000);
        let b = new_sortable_id(2_000);
        assert!(a < b);
        assert_eq!(a.len(), 26);
    }

    #[test]
    fn sortable_ids_of_one_millisecond_sort_in_creation_order() {
        let ids: Vec<String> = (0..5000).map(|_| new_sortable_id(3_000)).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        assert!(new_sortable_id(4_000_000) > ids[4999]);
    }
}
