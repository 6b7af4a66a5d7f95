//! The token endpoint's pure, per-request work: parsing a request (content
//! type, Basic or body credentials, form decoding) and resolving the
//! requested scopes against the account's grant. Run with `cargo bench --bench token`.

use std::hint::black_box;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion};
use tollgate::oauth::{parse_token_request, resolve_scopes};
use tollgate::scope::{default_resources, ScopeSet};

const FORM: &[u8] = b"application/x-www-form-urlencoded;charset=UTF-8";
const CLIENT_ID: &str = "sa_01J9Z3K8Q4W6E2R7T5Y1U3I0OP";
const SECRET: &str = "tg_sk_3q2-7wEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

fn parsing(c: &mut Criterion) {
    let basic = format!("Basic {}", STANDARD.encode(format!("{CLIENT_ID}:{SECRET}")));
    let basic_body = b"grant_type=client_credentials&scope=knowledge%3Aread+tools%3Awrite".to_vec();
    let post_body = format!(
        "grant_type=client_credentials&client_id={CLIENT_ID}&client_secret={SECRET}\
         &scope=knowledge:read%20tools:write%20logs:read"
    )
    .into_bytes();

    c.bench_function("parse client_secret_basic request", |b| {
        let auth = [basic.as_bytes()];
        b.iter(|| parse_token_request(Some(FORM), black_box(&auth), black_box(&basic_body)))
    });
    c.bench_function("parse client_secret_post request", |b| {
        b.iter(|| parse_token_request(Some(FORM), &[], black_box(&post_body)))
    });
}

fn scopes(c: &mut Criterion) {
    let resources = default_resources();
    let granted = ScopeSet::parse_all(
        [
            "chat:write",
            "knowledge:read",
            "tools:write",
            "logs:read",
            "workflows:write",
        ],
        &resources,
    )
    .expect("valid scopes");
    let requested: Vec<String> = ["tools:read", "knowledge:read", "logs:read", "tools:read"]
        .iter()
        .map(|s| s.to_string())
        .collect();

    c.bench_function("resolve omitted scope", |b| {
        b.iter(|| resolve_scopes(None, black_box(&granted), &resources))
    });
    c.bench_function("resolve four requested scopes", |b| {
        b.iter(|| resolve_scopes(Some(black_box(&requested)), black_box(&granted), &resources))
    });
}

fn request_to_scopes(c: &mut Criterion) {
    let resources = default_resources();
    let granted =
        ScopeSet::parse_all(["knowledge:read", "tools:write"], &resources).expect("valid scopes");
    let basic = format!("Basic {}", STANDARD.encode(format!("{CLIENT_ID}:{SECRET}")));
    let body = b"grant_type=client_credentials&scope=knowledge:read+tools:read".to_vec();
    c.bench_function("parse and resolve a basic request", |b| {
        let auth = [basic.as_bytes()];
        b.iter(|| {
            let req = parse_token_request(Some(FORM), black_box(&auth), black_box(&body))
                .expect("valid request");
            resolve_scopes(req.scope.as_deref(), &granted, &resources).expect("granted")
        })
    });
}

criterion_group!(benches, parsing, scopes, request_to_scopes);
criterion_main!(benches);
