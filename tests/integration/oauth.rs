//! docs/contract.md §3 against the real binary and a real Redis: the token endpoint
//! (client authentication, form rules, scopes, failures, throttling, grace
//! periods), revocation (RFC 7009), metadata (RFC 8414) and whoami. Every
//! test that obtains a token or secret also checks it never reached the logs.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;

const TOKEN_PATH: &str = "/api/auth/oauth2/token";
const REVOKE_PATH: &str = "/api/auth/oauth2/revoke";
const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";
const WHOAMI_PATH: &str = "/api/v1/service-account/whoami";
const FORM: &str = "application/x-www-form-urlencoded";
const GRANT: &str = "grant_type=client_credentials";
/// Throttle limits no test here reaches.
const UNTHROTTLED: &str =
    "[throttle]\nmax_failures_per_client_source = 1000\nmax_failures_per_source = 1000";

/// An instance with one placeholder route: the policy loader refuses an empty
/// policy directory, and these tests need no route of their own.
fn options() -> TollgateOptions {
    TollgateOptions::new()
        .upstream("unused", &[dead_addr()])
        .policy(
            "unused.toml",
            "[[route]]\nname = \"unused\"\nmethods = [\"GET\"]\npath = \"/unused\"\n\
             upstream = \"unused\"\nauth = \"none\"\n",
        )
}

/// `tollgate_token_requests_total{outcome}` in this `/metrics` text.
fn counted_token_requests(metrics: &str, outcome: &str) -> Option<f64> {
    metric_value(
        metrics,
        "tollgate_token_requests_total",
        &[("outcome", outcome)],
    )
}

/// One service account with its first credential, in its own organization.
struct Account {
    org: String,
    sa_id: String,
    client_id: String,
    secret: String,
}

impl Account {
    async fn create(tollgate: &Tollgate, scopes: &[&str]) -> Account {
        Account::create_in(tollgate, &unique_id("org"), scopes).await
    }

    async fn create_in(tollgate: &Tollgate, org: &str, scopes: &[&str]) -> Account {
        let (sa, client_id, secret) = tollgate
            .admin()
            .create_service_account(org, &unique_id("sa"), scopes)
            .await;
        Account {
            org: org.to_string(),
            sa_id: sa["id"].as_str().expect("sa id").to_string(),
            client_id,
            secret,
        }
    }

    fn sa_path(&self) -> String {
        format!(
            "/v1/organizations/{}/service-accounts/{}",
            self.org, self.sa_id
        )
    }

    /// The id of the credential holding `client_id`.
    async fn credential_id(&self, tollgate: &Tollgate, client_id: &str) -> String {
        let (status, body) = tollgate
            .admin()
            .get(&format!("{}/credentials", self.sa_path()))
            .await;
        assert_eq!(status, StatusCode::OK, "list credentials: {body}");
        body["data"]
            .as_array()
            .expect("data")
            .iter()
            .find(|c| c["client_id"] == client_id)
            .and_then(|c| c["id"].as_str())
            .unwrap_or_else(|| panic!("no credential for {client_id} in {body}"))
            .to_string()
    }

    fn basic(&self) -> String {
        basic(&self.client_id, &self.secret)
    }
}

/// An answer with its body kept as bytes, for byte-level comparisons.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or("").to_string()
    }

    fn token(&self) -> String {
        let body = self.json();
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("{} without access_token: {body}", self.status))
            .to_string()
    }

    #[track_caller]
    fn assert_error(&self, status: StatusCode, error: &str) {
        assert_eq!(
            (self.status, self.error().as_str()),
            (status, error),
            "body: {:?}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.header("cache-control"), Some("no-store"));
    }
}

/// `Basic base64(id:secret)` exactly as given (no form-encoding added).
fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

/// A POST on the proxy listener with a chosen content type, Authorization
/// and extra headers, and the body sent verbatim.
async fn post(
    tollgate: &Tollgate,
    path: &str,
    content_type: Option<&str>,
    authorization: Option<&str>,
    headers: &[(&str, &str)],
    body: impl Into<Vec<u8>>,
) -> Answer {
    let mut request = tollgate
        .http()
        .post(tollgate.proxy_url(path))
        .body(body.into());
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    if let Some(auth) = authorization {
        request = request.header("authorization", auth);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("POST failed");
    Answer {
        status: response.status(),
        headers: response.headers().clone(),
        body: response.bytes().await.expect("read body"),
    }
}

/// The token endpoint with a form body and optional raw Authorization.
async fn token(tollgate: &Tollgate, authorization: Option<&str>, body: &str) -> Answer {
    post(tollgate, TOKEN_PATH, Some(FORM), authorization, &[], body).await
}

/// The token endpoint as seen from `source` (through a trusted proxy's X-Forwarded-For).
async fn token_from(tollgate: &Tollgate, source: &str, authorization: &str) -> Answer {
    let xff = [("x-forwarded-for", source)];
    post(
        tollgate,
        TOKEN_PATH,
        Some(FORM),
        Some(authorization),
        &xff,
        GRANT,
    )
    .await
}

async fn revoke(tollgate: &Tollgate, authorization: Option<&str>, body: &str) -> Answer {
    post(tollgate, REVOKE_PATH, Some(FORM), authorization, &[], body).await
}

async fn whoami(tollgate: &Tollgate, token: Option<&str>) -> (StatusCode, HeaderMap, Value) {
    tollgate
        .proxy_request(Method::GET, WHOAMI_PATH, token)
        .await
}

/// A valid-looking client id nobody was given.
fn unknown_client_id() -> String {
    let random: String = (0..26)
        .map(|_| {
            let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
            alphabet[rand::random_range(0..alphabet.len())] as char
        })
        .collect();
    format!("sa_{random}")
}

/// Fails when any of `secrets` appears anywhere in the process output.
#[track_caller]
fn assert_never_logged(tollgate: &Tollgate, secrets: &[&str]) {
    let logs = tollgate.logs();
    assert!(!logs.is_empty(), "the process logged nothing at all");
    for secret in secrets {
        assert!(!secret.is_empty());
        assert!(
            !logs.contains(secret),
            "a secret or token appears in the logs"
        );
    }
}

/// Waits until the current throttle window has at least `needed` left, so a
/// test's failures cannot straddle two fixed windows.
#[allow(clippy::disallowed_methods)] // the throttle's windows follow the wall clock
async fn fresh_window(window_seconds: u64, needed: Duration) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    let into =
        Duration::from_millis((now.as_millis() % (u128::from(window_seconds) * 1000)) as u64);
    let left = Duration::from_secs(window_seconds) - into;
    if left < needed {
        tokio::time::sleep(left + Duration::from_millis(50)).await;
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Token requests with `a` and with `b`, interleaved 15 times, each
/// answered 401: the median time of each and their ratio (a / b).
async fn timed_refusals(tollgate: &Tollgate, a: &str, b: &str) -> (Duration, Duration, f64) {
    let (mut a_times, mut b_times) = (Vec::new(), Vec::new());
    for _ in 0..15 {
        for (auth, times) in [(a, &mut a_times), (b, &mut b_times)] {
            let started = Instant::now();
            let answer = token(tollgate, Some(auth), GRANT).await;
            times.push(started.elapsed());
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        }
    }
    let (a_median, b_median) = (median(a_times), median(b_times));
    (
        a_median,
        b_median,
        a_median.as_secs_f64() / b_median.as_secs_f64(),
    )
}

// §3.1 client authentication

#[tokio::test]
async fn client_secret_basic_issues_a_token() {
    let tollgate = Tollgate::start(options()).await;
    let account = Account::create(&tollgate, &["tools:read"]).await;

    let answer = token(&tollgate, Some(&account.basic()), GRANT).await;

    assert_eq!(answer.status, StatusCode::OK);
    let access_token = answer.token();
    let (status, _, me) = whoami(&tollgate, Some(&access_token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["clientId"], account.client_id.as_str());
    assert_never_logged(&tollgate, &[&account.secret, &access_token]);
}

#[tokio::test]
async fn basic_credentials_are_form_urldecoded_as_rfc_6749_says() {
    let tollgate = Tollgate::start(options()).await;
    let account = Account::create(&tollgate, &["tools:read"]).await;
    // Percent-encode every `_` and `-`, and the letter `s`: a conforming
    // client may encode more than it must, and we must decode all of it.
    let encode = |s: &str| {
        s.chars()
            .map(|c| match c {
                '_' => "%5F".to_string(),
                '-' => "%2d".to_string(),
                's' => "%73".to_string(),
                c => c.to_string(),
            })
            .collect::<String>()
    };
    let (id, secret) = (encode(&account.client_id), encode(&account.secret));
    assert_ne!(id, account.client_id);
    assert_ne!(secret, account.secret);

    let answer = token(&tollgate, Some(&basic(&id, &secret)), GRANT).await;

    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    let (status, _, me) = whoami(&tollgate, Some(&answer.token())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["clientId"], account.client_id.as_str());
    assert_never_logged(&tollgate, &[&account.secret, &answer.token()]);
}

#[tokio::test]
async fn client_secret_post_issues_a_token() {
    let tollgate = Tollgate::start(options()).await;
    let account = Account::create(&tollgate, &["tools:read"]).await;

    let (status, _, body) = tollgate
        .token_request(
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &account.client_id),
                ("client_secret", &account.secret),
            ],
        )
        .await;

    assert_eq!(status, StatusCode::OK, "{body}");
    let access_token = body["access_token"].as_str().expect("token");
    let (status, _, me) = whoami(&tollgate, Some(access_token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["clientId"], account.client_id.as_str());
    assert_never_logged(&tollgate, &[&account.secret, access_token]);
}

#[tokio::test]
async fn basic_and_a_body_client_secret_together_are_invalid_request() {
    let tollgate = Tollgate::start(options()).await;
    let account = Account::create(&tollgate, &["tools:read"]).await;
    let body = format!("{GRANT}&client_secret={}", account.secret);

    let answer = token(&tollgate, Some(&account.basic()), &body).await;

    answer.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert_never_logged(&tollgate, &[&account.secret]);
}

#[tokio::test]
async fn a_body_client_id_next_to_basic_must_equal_the_basic_id() {
    let tollgate = Tollgate::start(options()).await;
    let account = Account::create(&tollgate, &["tools:read"]).await;
    let other = Account::create(&tollgate, &["tools:read"]).await;

    let same = format!("{GRANT}&client_id={}", account.client_id);
    let answer = token(&tollgate, Some(&account.basic()), &same).await;
    assert_eq!(answer.status, StatusCode::OK);

    let different = format!("{GRANT}&client_id={}", other.client_id);
    let answer = token(&tollgate, Some(&account.basic()), &different).await;
    answer.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert_never_logged(&tollgate, &[&account.secret, &other.secret]);
}

// §3.1 form rules

#[tokio::test]
async fn form_content_type_may_carry_parameters_and_other_types_are_invalid_request() {
    let tollgate = Tollgate::start(options()).await;
    let account = Account::create(&tollgate, &["tools:read"]).await;
    let auth = account.basic();

    for ct in [
        "application/x-www-form-urlencoded;charset=UTF-8",
        "application/x-www-form-urlencoded; charset=utf-8",
        "Application/X-WWW-Form-Urlencoded",
    ] {
        let answer = post(&tollgate, TOKEN_PATH, Some(ct), Some(&auth), &[], GRANT).await;
        assert_eq!(answer.status, StatusCode::OK, "{ct}");
    }
    let json_body = r#"{"grant_type":"client_credentials"}"#;
    for (ct, body) in [
        (Some("application/json"), json_body),
        (Some("text/plain"), GRANT),
        (Some("multipart/form-data; boundary=x"), GRANT),
        (None, GRANT),
    ] {
        let answer = post(&tollgate, TOKEN_PATH, ct, Some(&auth), &[], body).await;
        answer.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
}

#[tokio::test]
async fn a_body_over_16_kib_is_refused_and_one_of_16_kib_is_not() {
    let tollgate = Tollgate::start(options()).await;
    let account = Account::create(&tollgate, &["tools:read"]).await;
    let auth = account.basic();
    // An unknown parameter pads the body: unknown parameters are ignored.
    let padded = |len: usize| {
        let head = format!("{GRANT}&padding=");
        format!("{head}{}", "a".repeat(len - head.len()))
    };

    let at_limit = token(&tollgate, Some(&auth), &padded(16 * 1024)).await;
    assert_eq!(at_limit.status, StatusCode::OK);

    let over = token(&tollgate, Some(&auth), &padded(16 * 1024 + 1)).await;
    assert!(
        over.status == StatusCode::PAYLOAD_TOO_LARGE || over.status == StatusCode::BAD_REQUEST,
        "{}",
        over.status
    );
    assert_eq!(over.error(), "invalid_request");
    assert_eq!(over.header("cache-control"), Some("no-store"));

    // The same over a raw, chunked body, where no Content-Length warns ahead.
    let chunk = "a".repeat(4096);
    let mut raw = format!(
        "POST {TOKEN_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\n\
         Authorization: {auth}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    raw.push_str(&format!("{:x}\r\n{GRANT}&padding=\r\n", GRANT.len() + 9));
    for _ in 0..5 {
        raw.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    raw.push_str("0\r\n\r\n");
    let response = RawResponse::fetch(tollgate.proxy_addr(), raw).await;
    assert!([400, 413].contains(&response.status), "{}", response.status);
    assert_eq!(response.json()["error"], "invalid_request");
}

/// Sends a request head, then waits up to `wait` for an interim or final
/// answer before sending `body` (as a client honouring `Expect` does);
/// returns what came before the body was sent and the whole exchange.
async fn exchange_expecting_continue(
    tollgate: &Tollgate,
    head: &str,
    body: &str,
    wait: Duration,
) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(tollgate.proxy_addr())
        .await
        .expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write head");
    let mut buf = vec![0u8; 8192];
    let early = match tokio::time::timeout(wait, stream.read(&mut buf)).await {
        Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        _ => String::new(),
    };
    if early.starts_with("HTTP/1.1 100") || early.is_empty() {
        stream.write_all(body.as_bytes()).await.expect("write body");
    }
    let mut all = early.clone();
    while !all.contains("\r\n\r\n{") || !all.ends_with('}') {
        match tokio::time::timeout(IO_TIMEOUT, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => all.push_str(&String::from_utf8_lossy(&buf[..n])),
            _ => break,
        }
    }
    (early, all)
}

#[tokio::test]
async fn a_client_expecting_100_continue_gets_it_at_once() {
    let tollgate = Tollgate::start(options()).await;
    let account = Account::create(&tollgate, &["tools:read"]).await;
    let head = format!(
        "POST {TOKEN_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\n\
         Authorization: {}\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        account.basic(),
        GRANT.len()
    );

    let started = Instant::now();
    let (early, all) =
        exchange_expecting_continue(&tollgate, &head, GRANT, Duration::from_secs(2)).await;

    assert!(early.starts_with("HTTP/1.1 100 Continue"), "{early:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    let response = RawResponse::parse(all.as_bytes()).expect("a final response");
    assert_eq!(response.status, 200, "{all}");
    let issued = response.json()["access_token"]
        .as_str()
        .expect("token")
        .to_string();
    assert_never_logged(&tollgate, &[&account.secret, &issued]);
}

#[tokio::test]
async fn an_announced_body_over_the_limit_is_refused_before_it_is_sent() {
    let tollgate = Tollgate::start(options()).await;
    let head = format!(
        "POST {TOKEN_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\n\
         Content-Length: 1000000\r\nExpect: 100-continue\r\n\r\n"
    );

    let (early, _) =
        exchange_expecting_continue(&tollgate, &head, "", Duration::from_secs(2)).await;

    let response = RawResponse::parse(early.as_bytes()).expect("an answer before the body");
    assert!([400, 413].contains(&response.status), "{early}");
    assert_eq!(response.json()["error"], "invalid_request");
}

#[tokio::test]
async fn grant_type_is_required_and_must_be_client_credentials() {
    let tollgate = Tollgate::start(options()).await;
    let account = Account::create(&tollgate, &["tools:read"]).await;
    let auth = account.basic();

    for body in ["", "scope=tools:read", "grant_type="] {
        let answer = token(&tollgate, Some(&auth), body).await;
        answer.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    for grant in [
        "password",
        "authorization_code",
        "refresh_token",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "Client_Credentials",
    ] {
        let body = format!(
            "grant_type={}",
            form_urlencoded::byte_serialize(grant.as_bytes()).collect::<String>()
        );
        let answer = token(&tollgate, Some(&auth), &body).await;
        answer.assert_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
}

#[tokio::test]
async fn a_resource_parameter_is_invalid_target() {
    let tollgate = Tollgate::start(options()).await;
    let account = Account::create(&tollgate, &["tools:read"]).await;

    let body = format!("{GRANT}&resource=https%3A%2F%2Fapi.example.com%2F");
    let answer = token(&tollgate, Some(&account.basic()), &body).await;

    answer.assert_error(StatusCode::BAD_REQUEST, "invalid_target");
}

#[tokio::test]
async fn a_repeated_parameter_is_invalid_request_even_when_one_value_is_empty() {
    let tollgate = Tollgate::start(options()).await;
    let account = Account::create(&tollgate, &["tools:read", "logs:read"]).await;
    let auth = account.basic();

    for body in [
        format!("{GRANT}&{GRANT}"),
        format!("{GRANT}&scope=tools:read&scope=logs:read"),
        format!("{GRANT}&scope=&scope=tools:read"),
        format!("{GRANT}&scope=tools:read&scope="),
        format!("grant_type=&{GRANT}"),
        format!("{GRANT}&resource=&resource="),
    ] {
        let answer = token(&tollgate, Some(&auth), &body).await;
        answer.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    let post_repeat = format!(
        "{GRANT}&client_id={id}&client_id={id}&client_secret={}",
        account.secret,
        id = account.client_id
    );
    let answer = token(&tollgate, None, &post_repeat).await;
    answer.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert_never_logged(&tollgate, &[&account.secret]);
}

#[tokio::test]
async fn empty_values_count_as_omitted_and_unknown_parameters_are_ignored() {
    let tollgate = Tollgate::start(options()).await;
    let account = Account::create(&tollgate, &["tools:read", "logs:write"]).await;
    let auth = account.basic();

    let answer = token(&tollgate, Some(&auth), &format!("{GRANT}&scope=&resource=")).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["scope"], "logs:write tools:read");

    let body = format!("{GRANT}&audience=x&foo=bar&state=1&client_secret=&token_type_hint=y");
    let answer = token(&tollgate, Some(&auth), &body).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
}

/// Asserts that `method` on the built-in endpoint `path` gets 405
/// `invalid_request` with this `Allow`.
async fn assert_method_not_allowed(
    tollgate: &Tollgate,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    allow: &str,
) {
    let mut request = tollgate
        .http()
        .request(method.clone(), tollgate.proxy_url(path));
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request");
    assert_eq!(
        response.status(),
        StatusCode::METHOD_NOT_ALLOWED,
        "{method} {path}"
    );
    assert_eq!(
        response
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok()),
        Some(allow)
    );
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"], "invalid_request");
}

#[tokio::test]
async fn the_token_endpoints_take_only_post() {
    let tollgate = Tollgate::start(options()).await;

    for path in [TOKEN_PATH, REVOKE_PATH] {
        for method in [Method::GET, Method::PUT, Method::DELETE] {
            assert_method_not_allowed(&tollgate, method, path, None, "POST").await;
        }
    }
}

#[tokio::test]
async fn metadata_and_whoami_answer_get_and_head_only() {
    let tollgate = Tollgate::start(options()).await;
    let account = Account::create(&tollgate, &["tools:read"]).await;
    let issued = token(&tollgate, Some(&account.basic()), GRANT)
        .await
        .token();

    for path in [METADATA_PATH, WHOAMI_PATH] {
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
            assert_method_not_allowed(&tollgate, method, path, Some(&issued), "GET, HEAD").await;
        }
        // HEAD: GET's status and headers, no body; the connection stays usable.
        let client = tollgate.http();
        let head = client
            .head(tollgate.proxy_url(path))
            .bearer_auth(&issued)
            .send()
            .await
            .expect("HEAD");
        assert_eq!(head.status(), StatusCode::OK, "HEAD {path}");
        assert!(head.bytes().await.expect("HEAD body").is_empty());
        let get = client
            .get(tollgate.proxy_url(path))
            .bearer_auth(&issued)
            .send()
            .await
            .expect("GET after HEAD");
        assert_eq!(get.status(), StatusCode::OK, "GET {path}");
        let body: Value = get.json().await.expect("JSON");
        assert!(body.is_object(), "{body}");
    }
}

#[tokio::test]
async fn credentials_in_the_query_string_are_neither_used_nor_logged() {
    let tollgate = Tollgate::start(options()).await;
    let account = Account::create(&tollgate, &["tools:read"]).await;
    let issued = token(&tollgate, Some(&account.basic()), GRANT)
        .await
        .token();

    let query = format!(
        "?grant_type=client_credentials&client_id={}&client_secret={}",
        account.client_id, account.secret
    );
    let path = format!("{TOKEN_PATH}{query}");
    let answer = post(&tollgate, &path, Some(FORM), None, &[], "").await;
    answer.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    let answer = post(&tollgate, &path, Some(FORM), None, &[], GRANT).await;
    answer.assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    // A token in a URL is refused on every path, the built-in ones too.
    let answer = post(
        &tollgate,
        &format!("{REVOKE_PATH}?access_token={issued}"),
        Some(FORM),
        Some(&account.basic()),
        &[],
        format!("token={issued}"),
    )
    .await;
    answer.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    let (status, _, _) = whoami(&tollgate, Some(&issued)).await;
    assert_eq!(status, StatusCode::OK);
    assert_never_logged(&tollgate, &[&account.secret, &issued]);
}

// §3.1 scopes

#[tokio::test]
async fn an_omitted_scope_grants_every_scope_of_the_account() {
    let tollgate = Tollgate::start(options()).await;
    let account = Account::create(&tollgate, &["tools:write", "knowledge:read"]).await;

    let answer = token(&tollgate, Some(&account.basic()), GRANT).await;

    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["scope"], "knowledge:read tools:write");
    let (_, _, me) = whoami(&tollgate, Some(&answer.token())).await;
    assert_eq!(me["scopes"], json!(["knowledge:read", "tools:write"]));
}

#[tokio::test]
async fn requested_scopes_are_normalised_and_deduplicated() {
    let tollgate = Tollgate::start(options()).await;
    let account = Account::create(&tollgate, &["tools:write", "knowledge:read", "logs:read"]).await;

    let body = format!("{GRANT}&scope=tools:write++knowledge:read%20tools:write");
    let answer = token(&tollgate, Some(&account.basic()), &body).await;

    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(answer.json()["scope"], "knowledge:read tools:write");
    let (_, _, me) = whoami(&tollgate, Some(&answer.token())).await;
    assert_eq!(me["scopes"], json!(["knowledge:read", "tools:write"]));
}

#[tokio::test]
async fn a_write_grant_covers_a_read_request_and_the_token_carries_only_read() {
    let tollgate = Tollgate::start(options()).await;
    let account = Account::create(&tollgate, &["tools:write"]).await;

    let body = format!("{GRANT}&scope=tools:read");
    let answer = token(&tollgate, Some(&account.basic()), &body).await;

    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["scope"], "tools:read");
    let (_, _, me) = whoami(&tollgate, Some(&answer.token())).await;
    assert_eq!(me["scopes"], json!(["tools:read"]));
}

#[tokio::test]
async fn scopes_not_granted_unknown_or_malformed_are_invalid_scope() {
    let tollgate = Tollgate::start(options()).await;
    let account = Account::create(&tollgate, &["tools:read", "knowledge:write"]).await;
    let auth = account.basic();

    for scope in [
        "tools:write",
        "logs:read",
        "tools:read logs:read",
        "payroll:read",
        "tools:delete",
        "tools",
        "tools:read:x",
        ":read",
        "TOOLS:READ",
        "%20",
        "tools:read\tknowledge:read",
    ] {
        let encoded: String = form_urlencoded::byte_serialize(scope.as_bytes()).collect();
        let encoded = if scope == "%20" {
            "%20".to_string()
        } else {
            encoded
        };
        let answer = token(&tollgate, Some(&auth), &format!("{GRANT}&scope={encoded}")).await;
        answer.assert_error(StatusCode::BAD_REQUEST, "invalid_scope");
    }
    let metrics = tollgate.metrics().await;
    assert_eq!(
        counted_token_requests(&metrics, "invalid_scope"),
        Some(11.0)
    );
}

// §3.1 failures

#[tokio::test]
async fn every_client_authentication_failure_gets_the_same_401() {
    let tollgate = Tollgate::start(options()).await;
    let admin = tollgate.admin();
    let good = Account::create(&tollgate, &["tools:read"]).await;
    let disabled = Account::create(&tollgate, &["tools:read"]).await;
    let deleted = Account::create(&tollgate, &["tools:read"]).await;
    let (status, body) = admin
        .patch(&disabled.sa_path(), json!({"status": "disabled"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = admin.delete(&deleted.sa_path()).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, second) = admin
        .post(
            &format!("{}/credentials", good.sa_path()),
            json!({"name": "second"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    let (second_id, second_client, second_secret) = (
        second["id"].as_str().expect("id").to_string(),
        second["client_id"].as_str().expect("client_id").to_string(),
        second["client_secret"]
            .as_str()
            .expect("secret")
            .to_string(),
    );
    assert_eq!(
        token(
            &tollgate,
            Some(&basic(&second_client, &second_secret)),
            GRANT
        )
        .await
        .status,
        StatusCode::OK
    );
    let (status, _) = admin
        .delete(&format!("{}/credentials/{second_id}", good.sa_path()))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let unknown = unknown_client_id();
    let cases = [
        ("unknown client", basic(&unknown, &good.secret)),
        ("malformed client id", basic("nobody", &good.secret)),
        ("wrong secret", basic(&good.client_id, "tg_sk_wrong")),
        (
            "another account's secret",
            basic(&good.client_id, &disabled.secret),
        ),
        ("disabled account", disabled.basic()),
        ("deleted account", deleted.basic()),
        ("deleted credential", basic(&second_client, &second_secret)),
        ("empty secret", basic(&good.client_id, "")),
        ("not base64", "Basic !!!".to_string()),
        ("another scheme", "Bearer tg_at_x".to_string()),
    ];
    let mut answers = Vec::new();
    for (case, auth) in &cases {
        answers.push((*case, token(&tollgate, Some(auth), GRANT).await));
    }
    let post_body = format!(
        "{GRANT}&client_id={}&client_secret=tg_sk_wrong",
        good.client_id
    );
    answers.push((
        "wrong secret in the body",
        token(&tollgate, None, &post_body).await,
    ));
    answers.push(("no credentials at all", token(&tollgate, None, GRANT).await));

    let (_, first) = &answers[0];
    for (case, answer) in &answers {
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{case}");
        assert_eq!(
            answer.header("www-authenticate"),
            Some("Basic realm=\"tollgate\""),
            "{case}"
        );
        assert_eq!(answer.header("cache-control"), Some("no-store"), "{case}");
        assert_eq!(
            answer.header("content-type"),
            first.header("content-type"),
            "{case}"
        );
        assert_eq!(answer.body, first.body, "{case}: the body differs");
    }
    assert_eq!(first.error(), "invalid_client");
    let secrets = [
        &good.secret,
        &disabled.secret,
        &deleted.secret,
        &second_secret,
    ];
    for answer in answers.iter().map(|(_, a)| a) {
        let text = String::from_utf8_lossy(&answer.body);
        assert!(secrets.iter().all(|s| !text.contains(s.as_str())));
    }
    let secrets: Vec<&str> = secrets.iter().map(|s| s.as_str()).collect();
    assert_never_logged(&tollgate, &secrets);
    let metrics = tollgate.metrics().await;
    assert_eq!(
        counted_token_requests(&metrics, "invalid_client"),
        Some(answers.len() as f64)
    );
}

#[tokio::test]
async fn an_unknown_client_costs_as_much_time_as_a_wrong_secret() {
    // Realistic argon2 parameters, and limits high enough not to throttle.
    let opts = options().argon2_at_default_cost("").toml(UNTHROTTLED);
    let tollgate = Tollgate::start(opts).await;
    let account = Account::create(&tollgate, &["tools:read"]).await;
    let unknown = basic(&unknown_client_id(), "tg_sk_wrong");
    let wrong = basic(&account.client_id, "tg_sk_wrong");

    let (unknown_median, wrong_median, ratio) = timed_refusals(&tollgate, &unknown, &wrong).await;
    assert!(
        (0.5..=2.0).contains(&ratio),
        "unknown client {unknown_median:?} vs wrong secret {wrong_median:?}"
    );
    assert!(
        unknown_median > Duration::from_millis(2),
        "an unknown client is answered in {unknown_median:?}: no argon2 work was done"
    );
}

/// A token request that began before a rotation (its credential looked up
/// as it was) cannot store a token after the rotation and the revocation
/// that comes with it (`revoke_on = ["rotate"]`). One hashing thread makes
/// the order certain: wrong secrets fill its queue, the rotation's new
/// secret is hashed next, and the request's verification of the old secret
/// (against the credential it looked up before) runs after it, so the
/// request reaches the store after the revocation.
#[tokio::test]
async fn a_token_request_begun_before_a_rotation_stores_no_token_after_it() {
    let opts = options()
        .argon2_at_default_cost("max_concurrent = 1\nmax_queued = 1000")
        .toml(UNTHROTTLED)
        .toml("[tokens]\nrevoke_on = [\"rotate\"]");
    let tollgate = Tollgate::start(opts).await;
    let account = Account::create(&tollgate, &["tools:read"]).await;
    let mut busy = tokio::task::JoinSet::new();
    for i in 0..12 {
        let addr = tollgate.proxy_addr();
        let auth = basic(&unknown_client_id(), &format!("tg_sk_wrong_{i}"));
        busy.spawn(async move { token_at(addr, &auth).await.0 });
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let rotation = {
        let admin = tollgate.admin();
        let path = format!("{}/rotate-secret", account.sa_path());
        tokio::spawn(async move { admin.post(&path, json!({})).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, token) = token_at(tollgate.proxy_addr(), &account.basic()).await;
    let (rotated, body) = rotation.await.expect("rotation task");
    assert_eq!(rotated, StatusCode::OK, "{body}");
    while busy.join_next().await.is_some() {}
    if let Some(token) = token {
        let (status, _, _) = whoami(&tollgate, Some(&token)).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "a token of a request begun before the rotation outlived its revocation"
        );
    }
    assert_eq!(status, 401, "the request was answered {status}");
    // Refused because the credential changed under it, not because its
    // secret was already the old one when it looked the client up (then
    // the order above did not happen and nothing was tested).
    let (_, events) = tollgate
        .admin()
        .get(&format!(
            "/v1/organizations/{}/audit-events?limit=50",
            account.org
        ))
        .await;
    let causes: Vec<&str> = events["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|e| e["action"] == "token.issue_failed")
        .map(|e| e["details"]["cause"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(causes, ["changed_meanwhile"], "{events}");
}

/// A token request on a raw connection: the status and the access token.
async fn token_at(addr: std::net::SocketAddr, authorization: &str) -> (u16, Option<String>) {
    let answer = RawResponse::fetch(
        addr,
        format!(
            "POST {TOKEN_PATH} HTTP/1.1\r\nHost: t\r\nAuthorization: {authorization}\r\n\
             Content-Type: {FORM}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{GRANT}",
            GRANT.len()
        ),
    )
    .await;
    let token = (answer.status == 200)
        .then(|| answer.json()["access_token"].as_str().map(str::to_string))
        .flatten();
    (answer.status, token)
}

/// A disabled account's right secret, remembered from when it last worked,
/// costs what a wrong secret costs: a fast refusal would confirm a leaked
/// secret of a disabled account.
#[tokio::test]
async fn a_disabled_accounts_remembered_secret_costs_as_much_as_a_wrong_one() {
    let opts = options().argon2_at_default_cost("").toml(UNTHROTTLED);
    let tollgate = Tollgate::start(opts).await;
    let account = Account::create(&tollgate, &["tools:read"]).await;
    let right = account.basic();
    // Verified once: remembered for the warm path.
    assert_eq!(
        token(&tollgate, Some(&right), GRANT).await.status,
        StatusCode::OK
    );
    let (status, _) = tollgate
        .admin()
        .patch(&account.sa_path(), json!({"status": "disabled"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let wrong = basic(&account.client_id, "tg_sk_wrong");
    let (right_median, wrong_median, ratio) = timed_refusals(&tollgate, &right, &wrong).await;
    assert!(
        (0.5..=2.0).contains(&ratio),
        "disabled account's right secret {right_median:?} vs a wrong one {wrong_median:?}"
    );
}

/// During a rotation's grace period a wrong secret is tried against the
/// previous secret too; it must still cost what an unknown client costs,
/// or its timing tells that the client exists and is mid-rotation. Both
/// secrets still work.
#[tokio::test]
async fn a_wrong_secret_during_a_rotation_grace_period_costs_as_much_as_an_unknown_client() {
    let opts = options().argon2_at_default_cost("").toml(UNTHROTTLED);
    let tollgate = Tollgate::start(opts).await;
    let account = Account::create(&tollgate, &["tools:read"]).await;
    let (status, rotated) = tollgate
        .admin()
        .post(
            &format!("{}/rotate-secret", account.sa_path()),
            serde_json::json!({"grace_seconds": 3600}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_secret = rotated["client_secret"].as_str().expect("secret");
    for secret in [account.secret.as_str(), new_secret] {
        let answer = token(&tollgate, Some(&basic(&account.client_id, secret)), GRANT).await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    }
    let unknown = basic(&unknown_client_id(), "tg_sk_wrong");
    let wrong = basic(&account.client_id, "tg_sk_wrong");
    // Two verifications against one would make this about 0.5.
    let (unknown_median, wrong_median, ratio) = timed_refusals(&tollgate, &unknown, &wrong).await;
    assert!(
        (0.7..=1.5).contains(&ratio),
        "unknown client {unknown_median:?} vs wrong secret in a grace period {wrong_median:?}"
    );
}

// §3.1 success

#[tokio::test]
async fn a_token_answer_has_exactly_the_documented_fields_and_is_not_cached() {
    let tollgate = Tollgate::start(options()).await;
    let account = Account::create(&tollgate, &["tools:write", "knowledge:read"]).await;

    let answer = token(&tollgate, Some(&account.basic()), GRANT).await;

    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    assert_eq!(answer.header("pragma"), Some("no-cache"));
    assert!(answer
        .header("content-type")
        .is_some_and(|ct| ct.starts_with("application/json")));
    let body = answer.json();
    let access_token = answer.token();
    assert_eq!(
        body,
        json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 900,
            "scope": "knowledge:read tools:write",
        })
    );
    let random = access_token.strip_prefix("tg_at_").expect("tg_at_ prefix");
    // ≥ 256 bits: at least 43 base64url characters.
    assert!(random.len() >= 43, "{access_token}");
    assert!(random
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    let again = token(&tollgate, Some(&account.basic()), GRANT).await;
    assert_ne!(again.token(), access_token);
    assert_never_logged(&tollgate, &[&account.secret, &access_token, &again.token()]);
}

#[tokio::test]
async fn tokens_live_exactly_the_configured_ttl() {
    let tollgate = Tollgate::start(options().toml("[tokens]\nttl_seconds = 2")).await;
    let account = Account::create(&tollgate, &["tools:read"]).await;

    let answer = token(&tollgate, Some(&account.basic()), GRANT).await;
    let issued = Instant::now();

    assert_eq!(answer.json()["expires_in"], 2);
    let access_token = answer.token();
    let (status, _, _) = whoami(&tollgate, Some(&access_token)).await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2100).saturating_sub(issued.elapsed())).await;
    let (status, headers, body) = whoami(&tollgate, Some(&access_token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "invalid_token");
    assert_eq!(
        headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer realm=\"tollgate\", error=\"invalid_token\"")
    );
}

// §3.1 throttling

const TRUSTING_LOCALHOST: &str = "[proxy]\ntrusted_proxies = [\"127.0.0.1/32\"]";

#[tokio::test]
async fn failures_for_one_client_from_one_source_throttle_only_that_pair() {
    let opts = options().toml(TRUSTING_LOCALHOST).toml(
        "[throttle]\nwindow_seconds = 3600\nmax_failures_per_client_source = 3\n\
         max_failures_per_source = 100",
    );
    let tollgate = Tollgate::start(opts).await;
    let victim = Account::create(&tollgate, &["tools:read"]).await;
    let bystander = Account::create(&tollgate, &["tools:read"]).await;
    let wrong = basic(&victim.client_id, "tg_sk_wrong");
    fresh_window(3600, Duration::from_secs(30)).await;

    for _ in 0..3 {
        let answer = token_from(&tollgate, "198.51.100.7", &wrong).await;
        answer.assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    // The fourth attempt is refused, even with the right secret.
    let refused = token_from(&tollgate, "198.51.100.7", &victim.basic()).await;
    refused.assert_error(StatusCode::TOO_MANY_REQUESTS, "slow_down");
    let retry_after: u64 = refused
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=3600).contains(&retry_after), "{retry_after}");

    // The legitimate client from its own address is not locked out …
    let own = token_from(&tollgate, "203.0.113.20", &victim.basic()).await;
    assert_eq!(own.status, StatusCode::OK);
    // … and another client from the flooding address is not either.
    let other = token_from(&tollgate, "198.51.100.7", &bystander.basic()).await;
    assert_eq!(other.status, StatusCode::OK);
    let metrics = tollgate.metrics().await;
    assert_eq!(counted_token_requests(&metrics, "slow_down"), Some(1.0));
    assert_never_logged(&tollgate, &[&victim.secret, &own.token(), &other.token()]);
}

#[tokio::test]
async fn failures_from_one_source_throttle_every_client_there() {
    let opts = options().toml(TRUSTING_LOCALHOST).toml(
        "[throttle]\nwindow_seconds = 3600\nmax_failures_per_client_source = 100\n\
         max_failures_per_source = 5",
    );
    let tollgate = Tollgate::start(opts).await;
    let account = Account::create(&tollgate, &["tools:read"]).await;
    fresh_window(3600, Duration::from_secs(30)).await;

    for _ in 0..5 {
        let sprayed = basic(&unknown_client_id(), "tg_sk_guess");
        let answer = token_from(&tollgate, "198.51.100.8", &sprayed).await;
        answer.assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }

    let there = token_from(&tollgate, "198.51.100.8", &account.basic()).await;
    there.assert_error(StatusCode::TOO_MANY_REQUESTS, "slow_down");
    assert!(there.header("retry-after").is_some());
    let elsewhere = token_from(&tollgate, "198.51.100.9", &account.basic()).await;
    assert_eq!(elsewhere.status, StatusCode::OK);
}

#[tokio::test]
async fn x_forwarded_for_from_an_untrusted_peer_does_not_change_the_source() {
    let opts = options().toml(
        "[throttle]\nwindow_seconds = 3600\nmax_failures_per_client_source = 3\n\
         max_failures_per_source = 100",
    );
    let tollgate = Tollgate::start(opts).await;
    let account = Account::create(&tollgate, &["tools:read"]).await;
    let wrong = basic(&account.client_id, "tg_sk_wrong");
    fresh_window(3600, Duration::from_secs(30)).await;

    for n in 0..3 {
        let answer = token_from(&tollgate, &format!("192.0.2.{n}"), &wrong).await;
        answer.assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }

    // Every one of those came from 127.0.0.1, whatever the header said.
    let answer = token_from(&tollgate, "192.0.2.200", &account.basic()).await;
    answer.assert_error(StatusCode::TOO_MANY_REQUESTS, "slow_down");
    let answer = token(&tollgate, Some(&account.basic()), GRANT).await;
    answer.assert_error(StatusCode::TOO_MANY_REQUESTS, "slow_down");
}

#[tokio::test]
async fn default_limits_are_ten_per_client_and_source_and_fifty_per_source() {
    let tollgate = Tollgate::start(options().toml(TRUSTING_LOCALHOST)).await;
    let account = Account::create(&tollgate, &["tools:read"]).await;
    let wrong = basic(&account.client_id, "tg_sk_wrong");
    fresh_window(60, Duration::from_secs(20)).await;

    for _ in 0..10 {
        let answer = token_from(&tollgate, "198.51.100.10", &wrong).await;
        answer.assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let answer = token_from(&tollgate, "198.51.100.10", &account.basic()).await;
    answer.assert_error(StatusCode::TOO_MANY_REQUESTS, "slow_down");

    // Another source: 49 failures spread over clients still leave it open …
    for _ in 0..49 {
        let sprayed = basic(&unknown_client_id(), "tg_sk_guess");
        let answer = token_from(&tollgate, "198.51.100.11", &sprayed).await;
        answer.assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let answer = token_from(&tollgate, "198.51.100.11", &account.basic()).await;
    assert_eq!(answer.status, StatusCode::OK);
    // … the 50th closes it for every client.
    let sprayed = basic(&unknown_client_id(), "tg_sk_guess");
    let answer = token_from(&tollgate, "198.51.100.11", &sprayed).await;
    answer.assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    let answer = token_from(&tollgate, "198.51.100.11", &account.basic()).await;
    answer.assert_error(StatusCode::TOO_MANY_REQUESTS, "slow_down");
}

#[tokio::test]
async fn a_throttled_request_is_refused_before_any_argon2_work() {
    let opts = options().argon2_at_default_cost("").toml(
        "[throttle]\nwindow_seconds = 3600\nmax_failures_per_client_source = 3\n\
         max_failures_per_source = 100",
    );
    let tollgate = Tollgate::start(opts).await;
    let account = Account::create(&tollgate, &["tools:read"]).await;
    let wrong = basic(&account.client_id, "tg_sk_wrong");
    fresh_window(3600, Duration::from_secs(60)).await;

    let mut failing = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let answer = token(&tollgate, Some(&wrong), GRANT).await;
        failing.push(started.elapsed());
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    let mut throttled = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let answer = token(&tollgate, Some(&wrong), GRANT).await;
        throttled.push(started.elapsed());
        assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
    }

    let (failing, throttled) = (median(failing), median(throttled));
    assert!(
        throttled * 2 < failing,
        "a 429 took {throttled:?}, a 401 with argon2 work {failing:?}"
    );
}

#[tokio::test]
async fn concurrent_wrong_secrets_cannot_get_past_the_limit() {
    // The attempt is reserved atomically before argon2: 120 at once for one
    // client from one source get at most the limit's 10 answers with argon2
    // work, every other one is refused with 429.
    let opts = options()
        .argon2_at_default_cost("max_queued = 256")
        .toml(TRUSTING_LOCALHOST);
    let tollgate = Tollgate::start(opts).await;
    let account = Account::create(&tollgate, &["tools:read"]).await;
    fresh_window(60, Duration::from_secs(30)).await;

    let mut requests = spawn_token_requests(&tollgate, wrong_secrets(&account, 120));
    let (mut unauthorized, mut refused, mut other) = (0, 0, Vec::new());
    while let Some(done) = requests.join_next().await {
        let (status, retry_after, _) = done.expect("request task");
        match status {
            StatusCode::UNAUTHORIZED => unauthorized += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(retry_after.is_some(), "429 without Retry-After");
                refused += 1;
            }
            s => other.push(s),
        }
    }
    assert!(other.is_empty(), "unexpected answers: {other:?}");
    assert!(
        unauthorized <= 10,
        "{unauthorized} wrong secrets reached argon2 ({refused} refused)"
    );
    assert_eq!(unauthorized + refused, 120);
    // The legitimate client from its own address still gets its token.
    let own = token_from(&tollgate, "203.0.113.21", &account.basic()).await;
    assert_eq!(own.status, StatusCode::OK);
}

/// Sends these `Authorization` values at once; each answer's time.
async fn times_concurrent(tollgate: &Tollgate, authorizations: Vec<String>) -> Vec<Duration> {
    let mut requests = tokio::task::JoinSet::new();
    for authorization in authorizations {
        let request = tollgate
            .http()
            .post(tollgate.proxy_url(TOKEN_PATH))
            .header("content-type", FORM)
            .header("authorization", authorization.as_str())
            .body(GRANT);
        requests.spawn(async move {
            let started = Instant::now();
            let response = request.send().await.expect("token request");
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            started.elapsed()
        });
    }
    let mut times = Vec::new();
    while let Some(done) = requests.join_next().await {
        times.push(done.expect("request task"));
    }
    times
}

#[tokio::test]
async fn concurrent_unknown_client_ids_cost_what_known_ones_with_wrong_secrets_do() {
    // The same secret sent at once for different unknown client ids must not
    // share one dummy verification, or a known id among them stands out.
    const N: usize = 8;
    let opts = options()
        .argon2_at_default_cost("max_concurrent = 1\nmax_queued = 64")
        .toml(
            "[throttle]\nwindow_seconds = 3600\nmax_failures_per_client_source = 100\n\
             max_failures_per_source = 1000",
        );
    let tollgate = Tollgate::start(opts).await;
    let mut accounts = Vec::new();
    for _ in 0..N {
        accounts.push(Account::create(&tollgate, &["tools:read"]).await);
    }
    fresh_window(3600, Duration::from_secs(120)).await;
    let secret = "tg_sk_the-same-guess";

    // Alternating rounds, so that load from elsewhere hits both alike.
    let (mut unknown, mut known) = (Vec::new(), Vec::new());
    for round in 0..3 {
        let secret = format!("{secret}-{round}");
        let batch = (0..N)
            .map(|_| basic(&unknown_client_id(), &secret))
            .collect();
        unknown.extend(times_concurrent(&tollgate, batch).await);
        let batch = accounts
            .iter()
            .map(|a| basic(&a.client_id, &secret))
            .collect();
        known.extend(times_concurrent(&tollgate, batch).await);
    }
    let (unknown, known) = (median(unknown), median(known));
    assert!(
        unknown * 2 > known && known * 2 > unknown,
        "median with unknown ids {unknown:?}, with known ids and a wrong secret {known:?}"
    );
}

/// Token requests with these `Authorization` values, sent at once; each
/// task answers the status, the `Retry-After` value and the JSON body.
fn spawn_token_requests(
    tollgate: &Tollgate,
    authorizations: impl IntoIterator<Item = String>,
) -> tokio::task::JoinSet<(StatusCode, Option<String>, Value)> {
    let mut requests = tokio::task::JoinSet::new();
    for authorization in authorizations {
        let request = tollgate
            .http()
            .post(tollgate.proxy_url(TOKEN_PATH))
            .header("content-type", FORM)
            .header("authorization", authorization.as_str())
            .body(GRANT);
        requests.spawn(async move {
            let response = request.send().await.expect("token request");
            let status = response.status();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body: Value = response.json().await.expect("JSON");
            (status, retry_after, body)
        });
    }
    requests
}

/// argon2 at the default cost, one verification at a time and one more
/// waiting, with these `[throttle]` settings.
fn one_hash_at_a_time(throttle: &str) -> TollgateOptions {
    options()
        .argon2_at_default_cost("max_concurrent = 1\nmax_queued = 1")
        .toml(format!("[throttle]\n{throttle}"))
}

/// `n` different wrong secrets for the account, as `Authorization` values.
fn wrong_secrets(account: &Account, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| basic(&account.client_id, &format!("tg_sk_wrong-{i}")))
        .collect()
}

#[tokio::test]
async fn identical_token_requests_at_once_share_one_argon2_verification() {
    const CONCURRENT: usize = 16;
    // One verification at a time and one waiting: verified one by one,
    // most of these requests would be refused with 503.
    let tollgate = Tollgate::start(one_hash_at_a_time(
        "max_failures_per_client_source = 1000\nmax_failures_per_source = 1000",
    ))
    .await;
    let account = Account::create(&tollgate, &["tools:read"]).await;

    // A fleet starting at once with one credential, none verified yet.
    let mut fleet = spawn_token_requests(&tollgate, vec![account.basic(); CONCURRENT]);
    let mut tokens = std::collections::HashSet::new();
    while let Some(done) = fleet.join_next().await {
        let (status, _, body) = done.expect("task");
        assert_eq!(status, StatusCode::OK, "{body}");
        tokens.insert(body["access_token"].as_str().expect("a token").to_string());
    }
    assert_eq!(
        tokens.len(),
        CONCURRENT,
        "each request gets a token of its own"
    );

    // The same wrong secret many times over: each one refused as a wrong
    // secret, none for want of hashing capacity.
    let wrong = basic(&account.client_id, "tg_sk_wrong");
    let mut guesses = spawn_token_requests(&tollgate, vec![wrong; CONCURRENT]);
    while let Some(done) = guesses.join_next().await {
        let (status, _, body) = done.expect("task");
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["error"], "invalid_client");
    }
    // And an unknown client likewise (it costs what a wrong secret does).
    let unknown = basic(&unknown_client_id(), "tg_sk_wrong");
    let mut unknowns = spawn_token_requests(&tollgate, vec![unknown; CONCURRENT]);
    while let Some(done) = unknowns.join_next().await {
        let (status, _, body) = done.expect("task");
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_secrets_does_not_starve_other_requests() {
    const FLOOD: usize = 60;
    let opts = options().argon2_at_default_cost("").toml(UNTHROTTLED);
    let tollgate = Tollgate::start(opts).await;
    let account = Account::create(&tollgate, &["tools:read"]).await;
    let issued = token(&tollgate, Some(&account.basic()), GRANT)
        .await
        .token();

    // Distinct secrets, as from a guesser: identical requests would share
    // one verification.
    let flood_started = Instant::now();
    let mut flood = spawn_token_requests(&tollgate, wrong_secrets(&account, FLOOD));
    let mut latencies = Vec::new();
    while latencies.len() < 10 || !flood.is_empty() && latencies.len() < 200 {
        let started = Instant::now();
        let (status, _, _) = whoami(&tollgate, Some(&issued)).await;
        latencies.push(started.elapsed());
        assert_eq!(status, StatusCode::OK);
        while let Some(done) = flood.try_join_next() {
            assert_eq!(done.expect("flood task").0, StatusCode::UNAUTHORIZED);
        }
    }
    while let Some(done) = flood.join_next().await {
        assert_eq!(done.expect("flood task").0, StatusCode::UNAUTHORIZED);
    }
    let flood_took = flood_started.elapsed();

    let samples = latencies.len();
    let (typical, worst) = (
        median(latencies.clone()),
        *latencies.iter().max().expect("samples"),
    );
    assert!(
        typical < flood_took / 5 && typical < Duration::from_millis(150),
        "whoami took {typical:?} (median of {samples}, worst {worst:?}) during a {flood_took:?} flood"
    );
    assert_never_logged(&tollgate, &[&account.secret, &issued]);
}

#[tokio::test]
async fn with_the_hashing_queue_full_a_token_request_gets_503_at_once_and_counts_no_failure() {
    const CONCURRENT: usize = 12;
    let tollgate = Tollgate::start(one_hash_at_a_time(
        "window_seconds = 3600\nmax_failures_per_client_source = 12\n\
         max_failures_per_source = 1000",
    ))
    .await;
    let account = Account::create(&tollgate, &["tools:read"]).await;
    fresh_window(3600, Duration::from_secs(60)).await;
    let overloaded = |text: &str| counted_token_requests(text, "overloaded").unwrap_or(0.0);
    let before = overloaded(&tollgate.metrics().await);

    // One verification runs, one waits: the rest are answered at once.
    let mut flood = spawn_token_requests(&tollgate, wrong_secrets(&account, CONCURRENT));
    let mut refused = 0;
    while let Some(done) = flood.join_next().await {
        let (status, retry_after, body) = done.expect("task");
        match status {
            StatusCode::UNAUTHORIZED => assert_eq!(body["error"], "invalid_client"),
            StatusCode::SERVICE_UNAVAILABLE => {
                refused += 1;
                assert_eq!(body["error"], "temporarily_unavailable", "{body}");
                assert!(retry_after.is_some(), "503 without Retry-After");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(refused >= 1, "no request was refused");
    let after = overloaded(&tollgate.metrics().await);
    assert_eq!(after - before, refused as f64);
    // Each refusal is logged as a failed request (not stored: see README).
    let logged = || {
        tollgate
            .logs()
            .lines()
            .filter(|l| l.contains("token.issue_failed") && l.contains("temporarily_unavailable"))
            .count()
    };
    eventually(
        Duration::from_secs(5),
        "every refusal is logged",
        || async { logged() >= refused },
    )
    .await;
    assert_eq!(logged(), refused);

    // A refusal is not a failed authentication: with at most 11 failures
    // (CONCURRENT - refused) below the limit of 12, the client is not
    // throttled, as it would be if the refusals counted too (every attempt
    // is reserved as a failure first, so the limit must let all 12 in). And the queue drains: the right secret
    // is accepted.
    token(&tollgate, Some(&account.basic()), GRANT)
        .await
        .token();
}

// §3.1 rotation grace period and last_used_at

#[tokio::test]
async fn a_rotated_secret_keeps_working_for_the_grace_period_only() {
    let tollgate = Tollgate::start(options()).await;
    let account = Account::create(&tollgate, &["tools:read"]).await;
    let cred = account.credential_id(&tollgate, &account.client_id).await;
    // Warm the verified-secret cache with the old secret.
    assert_eq!(
        token(&tollgate, Some(&account.basic()), GRANT).await.status,
        StatusCode::OK
    );

    let (status, rotated) = tollgate
        .admin()
        .post(
            &format!("{}/credentials/{cred}/rotate-secret", account.sa_path()),
            json!({"grace_seconds": 2}),
        )
        .await;
    let rotated_at = Instant::now();
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_secret = rotated["client_secret"].as_str().expect("new secret");
    let new_auth = basic(&account.client_id, new_secret);

    let old = token(&tollgate, Some(&account.basic()), GRANT).await;
    assert_eq!(
        old.status,
        StatusCode::OK,
        "old secret within the grace period"
    );
    let new = token(&tollgate, Some(&new_auth), GRANT).await;
    assert_eq!(new.status, StatusCode::OK);

    tokio::time::sleep(Duration::from_millis(2200).saturating_sub(rotated_at.elapsed())).await;
    let old_after = token(&tollgate, Some(&account.basic()), GRANT).await;
    old_after.assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    assert_eq!(
        old_after.header("www-authenticate"),
        Some("Basic realm=\"tollgate\"")
    );
    assert_eq!(
        token(&tollgate, Some(&new_auth), GRANT).await.status,
        StatusCode::OK
    );
    // A token issued under the old secret lives on until it expires.
    let (status, _, _) = whoami(&tollgate, Some(&old.token())).await;
    assert_eq!(status, StatusCode::OK);
    assert_never_logged(
        &tollgate,
        &[&account.secret, new_secret, &old.token(), &new.token()],
    );
}

#[tokio::test]
async fn a_rotated_secret_without_grace_stops_working_at_once() {
    let tollgate = Tollgate::start(options()).await;
    let account = Account::create(&tollgate, &["tools:read"]).await;
    assert_eq!(
        token(&tollgate, Some(&account.basic()), GRANT).await.status,
        StatusCode::OK
    );

    let (status, rotated) = tollgate
        .admin()
        .post(&format!("{}/rotate-secret", account.sa_path()), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");

    let old = token(&tollgate, Some(&account.basic()), GRANT).await;
    old.assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    let new_secret = rotated["client_secret"].as_str().expect("new secret");
    let new = token(
        &tollgate,
        Some(&basic(&account.client_id, new_secret)),
        GRANT,
    )
    .await;
    assert_eq!(new.status, StatusCode::OK);
}

#[tokio::test]
async fn issuing_a_token_sets_the_credentials_last_used_at() {
    let tollgate = Tollgate::start(options()).await;
    let account = Account::create(&tollgate, &["tools:read"]).await;
    let cred = account.credential_id(&tollgate, &account.client_id).await;
    let cred_path = format!("{}/credentials/{cred}", account.sa_path());
    let (_, before) = tollgate.admin().get(&cred_path).await;
    assert_eq!(before["last_used_at"], Value::Null, "{before}");
    let issued_at = time::OffsetDateTime::now_utc() - time::Duration::seconds(1);

    assert_eq!(
        token(&tollgate, Some(&account.basic()), GRANT).await.status,
        StatusCode::OK
    );

    let admin = tollgate.admin();
    eventually(Duration::from_secs(5), "last_used_at is set", || {
        let admin = admin.clone();
        let cred_path = cred_path.clone();
        async move {
            let (_, cred) = admin.get(&cred_path).await;
            cred["last_used_at"].is_string()
        }
    })
    .await;
    let (_, after) = admin.get(&cred_path).await;
    let used = time::OffsetDateTime::parse(
        after["last_used_at"].as_str().expect("string"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339");
    assert!(used >= issued_at, "{used} before {issued_at}");
    assert!(used <= time::OffsetDateTime::now_utc() + time::Duration::seconds(1));
}

// §3.2 revocation

#[tokio::test]
async fn revoking_a_token_of_the_clients_own_account_deletes_it() {
    let tollgate = Tollgate::start(options()).await;
    let account = Account::create(&tollgate, &["tools:read"]).await;
    let issued = token(&tollgate, Some(&account.basic()), GRANT)
        .await
        .token();
    let kept = token(&tollgate, Some(&account.basic()), GRANT)
        .await
        .token();

    let answer = revoke(
        &tollgate,
        Some(&account.basic()),
        &format!("token={issued}"),
    )
    .await;

    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let (status, _, body) = whoami(&tollgate, Some(&issued)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "invalid_token");
    let (status, _, _) = whoami(&tollgate, Some(&kept)).await;
    assert_eq!(status, StatusCode::OK, "only the named token goes");
    assert_never_logged(&tollgate, &[&account.secret, &issued, &kept]);
}

#[tokio::test]
async fn a_revoked_token_is_refused_on_protected_routes() {
    let upstream = EchoUpstream::start();
    let tollgate = Tollgate::start(
        TollgateOptions::new()
            .upstream("tools", &[upstream.addr_string()])
            .policy(
                "tools.toml",
                "[[route]]\nname = \"tools\"\nmethods = [\"GET\"]\npath = \"/api/v1/tools\"\n\
                 upstream = \"tools\"\nscope = \"tools:read\"\n",
            ),
    )
    .await;
    let account = Account::create(&tollgate, &["tools:read"]).await;
    let issued = token(&tollgate, Some(&account.basic()), GRANT)
        .await
        .token();
    let (status, _, _) = tollgate
        .proxy_request(Method::GET, "/api/v1/tools", Some(&issued))
        .await;
    assert_eq!(status, StatusCode::OK);

    let answer = revoke(
        &tollgate,
        Some(&account.basic()),
        &format!("token={issued}"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);

    // Within the decision cache's TTL (at most a second by docs/contract.md §8).
    let forwarded = upstream.count();
    eventually(
        Duration::from_millis(1500),
        "the revoked token is refused",
        || {
            let tollgate = &tollgate;
            let issued = issued.clone();
            async move {
                let (status, _, _) = tollgate
                    .proxy_request(Method::GET, "/api/v1/tools", Some(&issued))
                    .await;
                status == StatusCode::UNAUTHORIZED
            }
        },
    )
    .await;
    let (status, _, body) = tollgate
        .proxy_request(Method::GET, "/api/v1/tools", Some(&issued))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_token"))
    );
    assert!(upstream.count() <= forwarded + 1);
}

#[tokio::test]
async fn revoking_with_client_secret_post_and_a_type_hint_works() {
    let tollgate = Tollgate::start(options()).await;
    let account = Account::create(&tollgate, &["tools:read"]).await;
    let issued = token(&tollgate, Some(&account.basic()), GRANT)
        .await
        .token();

    let body = format!(
        "token={issued}&token_type_hint=access_token&client_id={}&client_secret={}",
        account.client_id, account.secret
    );
    let answer = revoke(&tollgate, None, &body).await;

    assert_eq!(answer.status, StatusCode::OK);
    let (status, _, _) = whoami(&tollgate, Some(&issued)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn revoking_another_accounts_token_answers_200_and_keeps_it() {
    let tollgate = Tollgate::start(options()).await;
    let owner = Account::create(&tollgate, &["tools:read"]).await;
    let same_org_other = Account::create_in(&tollgate, &owner.org, &["tools:read"]).await;
    let other_org = Account::create(&tollgate, &["tools:read"]).await;
    let issued = token(&tollgate, Some(&owner.basic()), GRANT).await.token();

    for stranger in [&same_org_other, &other_org] {
        let answer = revoke(
            &tollgate,
            Some(&stranger.basic()),
            &format!("token={issued}"),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK);
    }

    let (status, _, _) = whoami(&tollgate, Some(&issued)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn revoking_an_unknown_token_answers_200() {
    let tollgate = Tollgate::start(options()).await;
    let account = Account::create(&tollgate, &["tools:read"]).await;

    for unknown in [
        format!("tg_at_{}", "A".repeat(43)),
        "not-a-token-at-all".to_string(),
    ] {
        let answer = revoke(
            &tollgate,
            Some(&account.basic()),
            &format!("token={unknown}"),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn revocation_needs_a_token_and_an_authenticated_client() {
    let tollgate = Tollgate::start(options()).await;
    let account = Account::create(&tollgate, &["tools:read"]).await;
    let issued = token(&tollgate, Some(&account.basic()), GRANT)
        .await
        .token();

    for body in ["", "token=", "token_type_hint=access_token"] {
        let answer = revoke(&tollgate, Some(&account.basic()), body).await;
        answer.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    let answer = revoke(
        &tollgate,
        Some(&account.basic()),
        &format!("token={issued}&token={issued}"),
    )
    .await;
    answer.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    for auth in [
        Some(basic(&account.client_id, "tg_sk_wrong")),
        Some(basic(&unknown_client_id(), &account.secret)),
        None,
    ] {
        let answer = revoke(&tollgate, auth.as_deref(), &format!("token={issued}")).await;
        answer.assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
        assert_eq!(
            answer.header("www-authenticate"),
            Some("Basic realm=\"tollgate\"")
        );
    }
    let answer = post(
        &tollgate,
        REVOKE_PATH,
        Some("application/json"),
        Some(&account.basic()),
        &[],
        "{}",
    )
    .await;
    answer.assert_error(StatusCode::BAD_REQUEST, "invalid_request");

    let (status, _, _) = whoami(&tollgate, Some(&issued)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "no refused request revoked the token"
    );
    assert_never_logged(&tollgate, &[&account.secret, &issued]);
}

// §3.3 metadata

#[tokio::test]
async fn metadata_document_lists_exactly_the_documented_values() {
    let tollgate =
        Tollgate::start(options().toml("[server]\npublic_url = \"https://auth.example.test\""))
            .await;

    let response = tollgate
        .http()
        .get(tollgate.proxy_url(METADATA_PATH))
        .send()
        .await
        .expect("GET metadata");

    assert_eq!(response.status(), StatusCode::OK);
    assert!(response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json")));
    let body: Value = response.json().await.expect("JSON");
    let scopes: Vec<String> = [
        "chat",
        "workflows",
        "storage",
        "knowledge",
        "templates",
        "tools",
        "logs",
    ]
    .iter()
    .flat_map(|r| [format!("{r}:read"), format!("{r}:write")])
    .collect();
    assert_eq!(body["issuer"], "https://auth.example.test");
    assert_eq!(
        body["token_endpoint"],
        "https://auth.example.test/api/auth/oauth2/token"
    );
    assert_eq!(
        body["revocation_endpoint"],
        "https://auth.example.test/api/auth/oauth2/revoke"
    );
    assert_eq!(
        body["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post"])
    );
    assert_eq!(body["grant_types_supported"], json!(["client_credentials"]));
    assert_eq!(body["response_types_supported"], json!([]));
    let mut listed: Vec<String> =
        serde_json::from_value(body["scopes_supported"].clone()).expect("list");
    let mut expected = scopes.clone();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected);
}

#[tokio::test]
async fn metadata_follows_the_configured_resources_and_issuer_has_no_trailing_slash_doubling() {
    let tollgate = Tollgate::start(options().toml(
        "[server]\npublic_url = \"https://auth.example.test/\"\n[scopes]\nresources = [\"chat\", \"billing\"]",
    ))
    .await;

    let (status, _, body) = tollgate
        .proxy_request(Method::GET, METADATA_PATH, None)
        .await;

    assert_eq!(status, StatusCode::OK);
    let token_endpoint = body["token_endpoint"].as_str().expect("string");
    assert!(!token_endpoint.contains("//api"), "{token_endpoint}");
    assert!(token_endpoint.ends_with("/api/auth/oauth2/token"));
    let mut scopes: Vec<String> =
        serde_json::from_value(body["scopes_supported"].clone()).expect("list");
    scopes.sort();
    assert_eq!(
        scopes,
        ["billing:read", "billing:write", "chat:read", "chat:write"]
    );
}

// §3.4 whoami

#[tokio::test]
async fn whoami_answers_exactly_organization_client_and_scopes() {
    let tollgate = Tollgate::start(options()).await;
    let account = Account::create(&tollgate, &["tools:write", "knowledge:read"]).await;
    let issued = token(&tollgate, Some(&account.basic()), GRANT)
        .await
        .token();

    let (status, headers, body) = whoami(&tollgate, Some(&issued)).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    assert_eq!(
        body,
        json!({
            "organizationId": account.org,
            "clientId": account.client_id,
            "scopes": ["knowledge:read", "tools:write"],
        })
    );
    // The scheme is case-insensitive.
    let response = tollgate
        .http()
        .get(tollgate.proxy_url(WHOAMI_PATH))
        .header("authorization", format!("bEaReR {issued}"))
        .send()
        .await
        .expect("whoami");
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn whoami_without_a_token_is_401_with_a_bare_bearer_challenge() {
    let tollgate = Tollgate::start(options()).await;

    let (status, headers, body) = whoami(&tollgate, None).await;

    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer realm=\"tollgate\"")
    );
    assert_eq!(body["error"], "missing_token");
    assert_eq!(
        headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
}

#[tokio::test]
async fn whoami_with_an_invalid_token_is_401_invalid_token() {
    let tollgate = Tollgate::start(options()).await;
    let account = Account::create(&tollgate, &["tools:read"]).await;

    let well_formed_unknown = format!("tg_at_{}", "B".repeat(43));
    for bad in [
        well_formed_unknown.as_str(),
        "tg_at_short",
        "garbage",
        account.secret.as_str(),
    ] {
        let (status, headers, body) = whoami(&tollgate, Some(bad)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad}");
        assert_eq!(
            headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer realm=\"tollgate\", error=\"invalid_token\"")
        );
        assert_eq!(body["error"], "invalid_token");
    }
    assert_never_logged(&tollgate, &[&account.secret]);
}

// §3.1 store outage

#[tokio::test]
async fn an_unreachable_store_answers_503_temporarily_unavailable() {
    let tollgate = Tollgate::start(
        options()
            .redis_url(format!("redis://{}/0", dead_addr()))
            .no_wait_ready(),
    )
    .await;
    let auth = basic(&unknown_client_id(), "tg_sk_whatever");

    for path in [TOKEN_PATH, REVOKE_PATH] {
        let body = if path == TOKEN_PATH {
            GRANT.to_string()
        } else {
            format!("token=tg_at_{}", "C".repeat(43))
        };
        let started = Instant::now();
        let answer = post(&tollgate, path, Some(FORM), Some(&auth), &[], body).await;
        assert!(started.elapsed() < Duration::from_secs(3), "{path} hung");
        answer.assert_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable");
        assert!(answer.header("retry-after").is_some(), "{path}");
    }
    let (status, _, body) = whoami(&tollgate, Some(&format!("tg_at_{}", "C".repeat(43)))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"], "temporarily_unavailable");
    let metrics = tollgate.metrics().await;
    assert_eq!(
        counted_token_requests(&metrics, "store_unavailable"),
        Some(1.0)
    );
}

// §7 audit

#[tokio::test]
async fn issuance_failures_and_revocation_are_audited_without_secrets() {
    let tollgate = Tollgate::start(options()).await;
    let account = Account::create(&tollgate, &["tools:read"]).await;
    let issued = token(&tollgate, Some(&account.basic()), GRANT)
        .await
        .token();
    let wrong_secret = "tg_sk_this-wrong-secret-must-not-be-audited";
    let failed = token(
        &tollgate,
        Some(&basic(&account.client_id, wrong_secret)),
        GRANT,
    )
    .await;
    assert_eq!(failed.status, StatusCode::UNAUTHORIZED);
    let bad_scope = token(
        &tollgate,
        Some(&account.basic()),
        &format!("{GRANT}&scope=logs:read"),
    )
    .await;
    assert_eq!(bad_scope.status, StatusCode::BAD_REQUEST);
    let revoked = revoke(
        &tollgate,
        Some(&account.basic()),
        &format!("token={issued}"),
    )
    .await;
    assert_eq!(revoked.status, StatusCode::OK);

    let (status, events) = tollgate
        .admin()
        .get(&format!(
            "/v1/organizations/{}/audit-events?limit=200",
            account.org
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{events}");
    let events = events["data"].as_array().expect("data").clone();
    let find = |action: &str, pred: &dyn Fn(&Value) -> bool| {
        events
            .iter()
            .find(|e| e["action"] == action && pred(e))
            .unwrap_or_else(|| panic!("no {action} event in {events:?}"))
            .clone()
    };
    let issue = find("token.issue", &|_| true);
    assert_eq!(issue["actor"], account.client_id.as_str());
    assert_eq!(issue["organization_id"], account.org.as_str());
    let failure = find("token.issue_failed", &|e| {
        e["details"]["reason"] == "invalid_client"
    });
    assert_eq!(failure["actor"], account.client_id.as_str());
    find("token.issue_failed", &|e| {
        e["details"]["reason"] == "invalid_scope"
    });
    let revocation = find("token.revoke", &|_| true);
    assert_eq!(revocation["actor"], account.client_id.as_str());

    let text = Value::Array(events).to_string();
    for secret in [account.secret.as_str(), wrong_secret, issued.as_str()] {
        assert!(
            !text.contains(secret),
            "a secret or token is in the audit log"
        );
    }
    assert_never_logged(&tollgate, &[&account.secret, wrong_secret, &issued]);
}

#[tokio::test]
async fn audited_failures_say_which_check_failed_and_which_endpoint_refused() {
    let tollgate = Tollgate::start(options()).await;
    let account = Account::create(&tollgate, &["tools:read"]).await;
    let admin = tollgate.admin();
    let wrong = basic(&account.client_id, "tg_sk_wrong");
    assert_eq!(
        token(&tollgate, Some(&wrong), GRANT).await.status,
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = admin
        .patch(&account.sa_path(), json!({"status": "disabled"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let disabled = token(&tollgate, Some(&account.basic()), GRANT).await;
    assert_eq!(disabled.status, StatusCode::UNAUTHORIZED);
    let refused = revoke(&tollgate, Some(&wrong), "token=tg_at_x").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);

    let (_, events) = admin
        .get(&format!("/v1/organizations/{}/audit-events", account.org))
        .await;
    let failures: Vec<(String, String)> = events["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|e| e["outcome"] == "failure")
        .map(|e| {
            assert_eq!(e["details"]["reason"], "invalid_client", "{e}");
            (
                e["action"].as_str().unwrap_or("").to_string(),
                e["details"]["cause"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let expected = [
        ("token.revoke_failed", "wrong_secret"),
        ("token.issue_failed", "service_account_disabled"),
        ("token.issue_failed", "wrong_secret"),
    ]
    .map(|(a, c)| (a.to_string(), c.to_string()));
    assert_eq!(failures, expected, "newest first");
    // The unknown client has no organization: its failure is only logged.
    let unknown = unknown_client_id();
    let answer = token(&tollgate, Some(&basic(&unknown, "tg_sk_wrong")), GRANT).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    eventually(
        Duration::from_secs(2),
        "the unknown client's failure is logged",
        || {
            let logs = tollgate.logs();
            let found = logs
                .lines()
                .any(|l| l.contains(&unknown) && l.contains("unknown_client"));
            async move { found }
        },
    )
    .await;
    assert_never_logged(&tollgate, &[&account.secret]);
}

// Scale: uniqueness and nothing in clear in the store

/// Every value stored under `prefix`, read with the command its type needs.
async fn stored_strings(prefix: &str) -> Vec<String> {
    let mut conn = redis_connection().await;
    let mut out = Vec::new();
    for key in redis_keys(&format!("{prefix}*")).await {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("TYPE");
        let values: Vec<String> = match kind.as_str() {
            "string" => redis::cmd("GET")
                .arg(&key)
                .query_async::<Option<String>>(&mut conn)
                .await
                .expect("GET")
                .into_iter()
                .collect(),
            "hash" => redis::cmd("HGETALL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .expect("HGETALL"),
            "set" => redis::cmd("SMEMBERS")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .expect("SMEMBERS"),
            "zset" => redis::cmd("ZRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await
                .expect("ZRANGE"),
            "list" => redis::cmd("LRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await
                .expect("LRANGE"),
            "none" => Vec::new(),
            other => panic!("key {key} has an unexpected type {other}"),
        };
        out.push(key);
        out.extend(values);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_tokens_are_unique_and_never_stored_or_logged_in_clear() {
    const TOKENS: usize = 10_000;
    const CONCURRENCY: usize = 32;
    let tollgate = Tollgate::start(options().log_filter("info")).await;
    let account = Account::create(&tollgate, &["tools:read", "logs:write"]).await;
    let auth = Arc::new(account.basic());
    // Warm the verified-secret cache.
    assert_eq!(
        token(&tollgate, Some(&auth), GRANT).await.status,
        StatusCode::OK
    );

    let http = tollgate.http().clone();
    let url = tollgate.proxy_url(TOKEN_PATH);
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..CONCURRENCY {
        let (http, url, auth) = (http.clone(), url.clone(), auth.clone());
        workers.push(tokio::spawn(async move {
            let mut tokens = Vec::new();
            for _ in (worker..TOKENS).step_by(CONCURRENCY) {
                let response = http
                    .post(&url)
                    .header("content-type", FORM)
                    .header("authorization", auth.as_str())
                    .body(GRANT)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("token request: {e:?}"));
                assert_eq!(response.status(), StatusCode::OK);
                let body: Value = response.json().await.expect("JSON");
                tokens.push(body["access_token"].as_str().expect("token").to_string());
            }
            tokens
        }));
    }
    let mut tokens = Vec::with_capacity(TOKENS);
    for worker in workers {
        tokens.extend(worker.await.expect("worker"));
    }
    let elapsed = started.elapsed();
    eprintln!(
        "issued {TOKENS} tokens in {elapsed:?}: {:.0} tokens/s (debug build, {CONCURRENCY} concurrent)",
        TOKENS as f64 / elapsed.as_secs_f64()
    );

    assert_eq!(tokens.len(), TOKENS);
    let unique: HashSet<&str> = tokens.iter().map(String::as_str).collect();
    assert_eq!(unique.len(), TOKENS, "some token was issued twice");

    // No token, no token's random part and no secret anywhere in the store.
    let randoms: HashSet<&[u8]> = tokens
        .iter()
        .map(|t| t.strip_prefix("tg_at_").expect("prefix").as_bytes())
        .collect();
    let width = randoms.iter().map(|r| r.len()).min().expect("some tokens");
    assert!(randoms.iter().all(|r| r.len() == width));
    let stored = stored_strings(tollgate.key_prefix().expect("redis prefix")).await;
    assert!(
        stored.len() > TOKENS,
        "the tokens were not found in the store at all"
    );
    for value in &stored {
        assert!(!value.contains("tg_at_"), "a token is stored in clear");
        assert!(
            !value.contains(&account.secret),
            "the client secret is stored in clear"
        );
        let bytes = value.as_bytes();
        if bytes.len() >= width {
            assert!(
                bytes.windows(width).all(|w| !randoms.contains(w)),
                "a token's random part is stored"
            );
        }
    }
    let logs = tollgate.logs();
    assert!(!logs.contains("tg_at_"), "a token is in the logs");
    assert!(!logs.contains(&account.secret), "the secret is in the logs");
    let metrics = tollgate.metrics().await;
    assert_eq!(
        counted_token_requests(&metrics, "issued"),
        Some((TOKENS + 1) as f64)
    );
}

/// A rough warm-issuance figure over real HTTP: `cargo test --test oauth --
/// --ignored --nocapture warm_issuance_rate` (with `--release` for a real one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn warm_issuance_rate() {
    let requests: usize = std::env::var("TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let tollgate =
        Tollgate::start(options().log_filter("warn").toml("[server]\nthreads = 2")).await;
    let account = Account::create(&tollgate, &["tools:read"]).await;
    let auth = Arc::new(account.basic());
    assert_eq!(
        token(&tollgate, Some(&auth), GRANT).await.status,
        StatusCode::OK
    );

    for concurrency in [1, 8, 32, 64] {
        let http = tollgate.http().clone();
        let url = tollgate.proxy_url(TOKEN_PATH);
        let started = Instant::now();
        let mut workers = Vec::new();
        for worker in 0..concurrency {
            let (http, url, auth) = (http.clone(), url.clone(), auth.clone());
            workers.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                for _ in (worker..requests).step_by(concurrency) {
                    let sent = Instant::now();
                    let response = http
                        .post(&url)
                        .header("content-type", FORM)
                        .header("authorization", auth.as_str())
                        .body(GRANT)
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("token request: {e:?}"));
                    assert_eq!(response.status(), StatusCode::OK);
                    response.bytes().await.expect("body");
                    latencies.push(sent.elapsed());
                }
                latencies
            }));
        }
        let mut latencies = Vec::new();
        for worker in workers {
            latencies.extend(worker.await.expect("worker"));
        }
        let elapsed = started.elapsed();
        latencies.sort();
        let p =
            |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
        eprintln!(
            "concurrency {concurrency:>3}: {:>6.0} tokens/s, p50 {:?}, p99 {:?}",
            requests as f64 / elapsed.as_secs_f64(),
            p(0.5),
            p(0.99)
        );
    }
}

/// Once a client is throttled from a source, its refused attempts still
/// reach the organization's audit trail, once per (client, source) and
/// window: the trail shows the attack going on after its counted wrong
/// secrets, and a flood of refusals cannot push the other events out.
#[tokio::test]
async fn throttled_attempts_of_a_known_client_are_audited_once_per_window() {
    // An hour's window: the run cannot straddle two.
    let tollgate = Tollgate::start(options().toml("[throttle]\nwindow_seconds = 3600")).await;
    let account = Account::create(&tollgate, &["tools:read"]).await;
    let wrong = basic(&account.client_id, "tg_sk_wrong");
    for _ in 0..10 {
        assert_eq!(
            token(&tollgate, Some(&wrong), GRANT).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    for auth in [&wrong, &wrong, &account.basic(), &wrong, &wrong] {
        assert_eq!(
            token(&tollgate, Some(auth), GRANT).await.status,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    let (status, events) = tollgate
        .admin()
        .get(&format!(
            "/v1/organizations/{}/audit-events?limit=200",
            account.org
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{events}");
    let causes: Vec<&str> = events["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|e| e["action"] == "token.issue_failed")
        .map(|e| e["details"]["cause"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(
        causes.iter().filter(|c| **c == "wrong_secret").count(),
        10,
        "{causes:?}"
    );
    let throttled: Vec<_> = events["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|e| e["details"]["cause"] == "throttled")
        .collect();
    assert_eq!(throttled.len(), 1, "{causes:?}");
    assert_eq!(throttled[0]["details"]["reason"], "slow_down");
    assert_eq!(throttled[0]["actor"], account.client_id.as_str());
    assert_eq!(throttled[0]["outcome"], "failure");
}
