//! The token and revocation request parsers never panic on any content
//! type, Authorization header or body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::oauth::{parse_revocation_request, parse_token_request};

fuzz_target!(|data: &[u8]| {
    // Split the input into content type, authorization and body.
    let mut parts = data.splitn(3, |b| *b == 0);
    let content_type = parts.next().unwrap_or_default();
    let authorization = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let auth: Vec<&[u8]> = if authorization.is_empty() {
        vec![]
    } else {
        vec![authorization]
    };
    let _ = parse_token_request(Some(content_type), &auth, body);
    let _ = parse_revocation_request(Some(content_type), &auth, body);
    let _ = parse_token_request(Some(b"application/x-www-form-urlencoded"), &auth, body);
});
