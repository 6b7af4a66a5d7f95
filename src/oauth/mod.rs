//! The OAuth endpoints' pure parts: request parsing, scope resolution,
//! throttling arithmetic, and the one mapping of errors to RFC 6749 §5.2
//! answers. No I/O and no clock here: the proxy feeds bytes and time in.

pub mod endpoint;
pub mod request;
pub mod throttle;

use std::borrow::Cow;
use std::fmt;

use http::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::scope::ScopeSet;

pub use request::{
    parse_revocation_request, parse_token_request, resolve_scopes, ClientAuthMethod,
    RevocationRequest, TokenRequest, MAX_BODY_BYTES,
};

/// The realm of the `WWW-Authenticate` challenge on `invalid_client`.
pub const REALM: &str = "tollgate";

/// The metric `outcome` of a token issued.
pub const OUTCOME_ISSUED: &str = "issued";

/// Everything that can go wrong at the token and revocation endpoints.
/// Descriptions are fixed texts; the only client input ever echoed is a
/// requested scope, escaped and truncated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    #[error("invalid_request: {}", .0.description())]
    InvalidRequest(RequestProblem),
    /// The body exceeds [`MAX_BODY_BYTES`]: `invalid_request` with status 413.
    #[error("invalid_request: request body too large")]
    BodyTooLarge,
    /// Client authentication failed, for whatever reason: one body for all.
    #[error("invalid_client")]
    InvalidClient,
    #[error("invalid_scope: {0}")]
    InvalidScope(ScopeProblem),
    #[error("invalid_target")]
    InvalidTarget,
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    #[error("slow_down (retry after {retry_after_secs} s)")]
    SlowDown { retry_after_secs: u64 },
    /// The account holds `max_live_tokens` live tokens: 429 `slow_down`
    /// until one expires or is revoked.
    #[error("slow_down: too many live tokens (retry after {retry_after_secs} s)")]
    TooManyTokens { retry_after_secs: u64 },
    /// The account reached its `token_issue_limit`: 429 `slow_down`.
    #[error("slow_down: token issue limit (retry after {retry_after_secs} s)")]
    IssueRateLimited { retry_after_secs: u64 },
    /// The store is unreachable or too slow.
    #[error("temporarily_unavailable (retry after {retry_after_secs} s)")]
    TemporarilyUnavailable { retry_after_secs: u64 },
    /// No secret verification could be made: `hashing.max_queued` of them
    /// already wait (a flood of bad secrets), or hashing failed.
    #[error("temporarily_unavailable: overloaded (retry after {retry_after_secs} s)")]
    Overloaded { retry_after_secs: u64 },
}

/// Why a request is `invalid_request`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestProblem {
    UnsupportedContentType,
    /// A parameter decodes to invalid UTF-8.
    MalformedBody,
    /// A parameter appears twice; named when it is one we know.
    RepeatedParameter(Option<&'static str>),
    MissingGrantType,
    MissingToken,
    RepeatedAuthorization,
    /// HTTP Basic and a `client_secret` in the body.
    MultipleAuthMethods,
    /// A body `client_id` that differs from the HTTP Basic one.
    ClientIdMismatch,
}

impl RequestProblem {
    pub fn description(self) -> &'static str {
        use RequestProblem::*;
        match self {
            UnsupportedContentType => "the request body must be application/x-www-form-urlencoded",
            MalformedBody => "a request parameter is not valid UTF-8",
            RepeatedParameter(Some("grant_type")) => "the grant_type parameter is repeated",
            RepeatedParameter(Some("scope")) => "the scope parameter is repeated",
            RepeatedParameter(Some("resource")) => "the resource parameter is repeated",
            RepeatedParameter(Some("client_id")) => "the client_id parameter is repeated",
            RepeatedParameter(Some("client_secret")) => "the client_secret parameter is repeated",
            RepeatedParameter(Some("token")) => "the token parameter is repeated",
            RepeatedParameter(Some("token_type_hint")) => {
                "the token_type_hint parameter is repeated"
            }
            RepeatedParameter(_) => "a request parameter is repeated",
            MissingGrantType => "the grant_type parameter is required",
            MissingToken => "the token parameter is required",
            RepeatedAuthorization => "the Authorization header is repeated",
            MultipleAuthMethods => "use either HTTP Basic or client_secret in the body, not both",
            ClientIdMismatch => "client_id in the body differs from the HTTP Basic client id",
        }
    }
}

/// Why a requested scope was refused. `scope` is escaped and truncated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScopeProblem {
    /// Not `resource:action` with a known resource and action.
    Unknown { scope: String },
    /// A valid scope the service account is not granted.
    NotGranted { scope: String },
}

impl fmt::Display for ScopeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScopeProblem::Unknown { scope } => write!(f, "scope \"{scope}\" is not a known scope"),
            ScopeProblem::NotGranted { scope } => {
                write!(f, "scope \"{scope}\" is not granted to this client")
            }
        }
    }
}

impl OAuthError {
    /// The RFC 6749 §5.2 `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) | OAuthError::BodyTooLarge => "invalid_request",
            OAuthError::InvalidClient => "invalid_client",
            OAuthError::InvalidScope(_) => "invalid_scope",
            OAuthError::InvalidTarget => "invalid_target",
            OAuthError::UnsupportedGrantType => "unsupported_grant_type",
            OAuthError::SlowDown { .. }
            | OAuthError::TooManyTokens { .. }
            | OAuthError::IssueRateLimited { .. } => "slow_down",
            OAuthError::TemporarilyUnavailable { .. } | OAuthError::Overloaded { .. } => {
                "temporarily_unavailable"
            }
        }
    }

    /// The `outcome` label of `tollgate_token_requests_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            OAuthError::TemporarilyUnavailable { .. } => "store_unavailable",
            OAuthError::Overloaded { .. } => "overloaded",
            OAuthError::TooManyTokens { .. } => "too_many_tokens",
            OAuthError::IssueRateLimited { .. } => "issue_rate_limited",
            other => other.code(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            OAuthError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            OAuthError::InvalidClient => StatusCode::UNAUTHORIZED,
            OAuthError::SlowDown { .. }
            | OAuthError::TooManyTokens { .. }
            | OAuthError::IssueRateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            OAuthError::TemporarilyUnavailable { .. } | OAuthError::Overloaded { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::BAD_REQUEST,
        }
    }

    pub fn description(&self) -> Cow<'static, str> {
        match self {
            OAuthError::InvalidRequest(problem) => Cow::Borrowed(problem.description()),
            OAuthError::BodyTooLarge => {
                Cow::Owned(format!("the request body exceeds {MAX_BODY_BYTES} bytes"))
            }
            OAuthError::InvalidClient => Cow::Borrowed("client authentication failed"),
            OAuthError::InvalidScope(problem) => Cow::Owned(problem.to_string()),
            OAuthError::InvalidTarget => Cow::Borrowed(
                "the resource parameter is not supported: tokens are organization-wide",
            ),
            OAuthError::UnsupportedGrantType => {
                Cow::Borrowed("only the client_credentials grant is supported")
            }
            OAuthError::SlowDown { .. } => {
                Cow::Borrowed("too many failed token requests; retry later")
            }
            OAuthError::TooManyTokens { .. } => Cow::Borrowed(
                "this client holds as many live tokens as it may; reuse one, or retry after one expires",
            ),
            OAuthError::IssueRateLimited { .. } => Cow::Borrowed(
                "tokens are issued to this client at a limited rate; reuse the token until it expires",
            ),
            OAuthError::TemporarilyUnavailable { .. } => {
                Cow::Borrowed("the service is temporarily unavailable; retry later")
            }
            OAuthError::Overloaded { .. } => {
                Cow::Borrowed("too many token requests are waiting; retry later")
            }
        }
    }

    /// Whether this outcome counts as a failed client authentication for
    /// throttling. Only authentication failures count: they are what an
    /// online guessing attack produces, and what costs argon2 work.
    pub fn is_authentication_failure(&self) -> bool {
        matches!(self, OAuthError::InvalidClient)
    }
}

/// An answer of the OAuth endpoints, free of any server framework's types.
/// `headers` include `Content-Length`; send them as they are. `Debug` omits
/// the body: a success body carries an access token.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthResponse {
    pub status: StatusCode,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl fmt::Debug for OAuthResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .finish()
    }
}

fn json_headers(body_len: usize) -> Vec<(&'static str, String)> {
    vec![
        ("Content-Type", "application/json".to_string()),
        ("Cache-Control", "no-store".to_string()),
        ("Pragma", "no-cache".to_string()),
        ("Content-Length", body_len.to_string()),
    ]
}

/// The one mapping of an [`OAuthError`] to its HTTP answer.
pub fn error_response(err: &OAuthError) -> OAuthResponse {
    let description = err.description();
    let body = crate::errors::error_body(err.code(), &description);
    let mut headers = json_headers(body.len());
    match err {
        OAuthError::InvalidClient => {
            headers.push(("WWW-Authenticate", format!("Basic realm=\"{REALM}\"")));
        }
        OAuthError::SlowDown { retry_after_secs }
        | OAuthError::TooManyTokens { retry_after_secs }
        | OAuthError::IssueRateLimited { retry_after_secs }
        | OAuthError::TemporarilyUnavailable { retry_after_secs }
        | OAuthError::Overloaded { retry_after_secs } => {
            headers.push(("Retry-After", (*retry_after_secs).max(1).to_string()));
        }
        _ => {}
    }
    OAuthResponse {
        status: err.status(),
        headers,
        body,
    }
}

#[derive(Serialize)]
struct TokenBody<'a> {
    access_token: &'a str,
    token_type: &'static str,
    expires_in: u64,
    scope: String,
}

/// The 200 answer of the token endpoint (RFC 6749 §5.1). `scope` is always
/// present, space-separated, in the normalised order.
pub fn token_response(
    access_token: &SecretString,
    expires_in: u64,
    scopes: &ScopeSet,
) -> OAuthResponse {
    let body = serde_json::to_vec(&TokenBody {
        access_token: access_token.expose_secret(),
        token_type: "Bearer",
        expires_in,
        scope: scopes.to_string(),
    })
    .unwrap_or_default();
    OAuthResponse {
        status: StatusCode::OK,
        headers: json_headers(body.len()),
        body,
    }
}

/// The 200 answer of the revocation endpoint (RFC 7009 §2.2): an empty
/// JSON object, whether or not the token existed.
pub fn revocation_response() -> OAuthResponse {
    let body = b"{}".to_vec();
    OAuthResponse {
        status: StatusCode::OK,
        headers: json_headers(body.len()),
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::default_resources;

    fn header<'a>(resp: &'a OAuthResponse, name: &str) -> Option<&'a str> {
        resp.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(resp: &OAuthResponse) -> serde_json::Value {
        serde_json::from_slice(&resp.body).expect("json body")
    }

    fn assert_cache_headers(resp: &OAuthResponse) {
        assert_eq!(header(resp, "content-type"), Some("application/json"));
        assert_eq!(header(resp, "cache-control"), Some("no-store"));
        assert_eq!(header(resp, "pragma"), Some("no-cache"));
        assert_eq!(
            header(resp, "content-length"),
            Some(resp.body.len().to_string().as_str())
        );
    }

    #[test]
    fn invalid_client_is_401_with_a_basic_challenge() {
        let resp = error_response(&OAuthError::InvalidClient);
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            header(&resp, "www-authenticate"),
            Some("Basic realm=\"tollgate\"")
        );
        assert_cache_headers(&resp);
        let body = json(&resp);
        assert_eq!(body["error"], "invalid_client");
        assert_eq!(body["error_description"], "client authentication failed");
        assert_eq!(body.as_object().map(|o| o.len()), Some(2));
    }

    #[test]
    fn request_errors_are_400_with_their_rfc_6749_code() {
        let cases = [
            (
                OAuthError::InvalidRequest(RequestProblem::MissingGrantType),
                "invalid_request",
            ),
            (OAuthError::UnsupportedGrantType, "unsupported_grant_type"),
            (OAuthError::InvalidTarget, "invalid_target"),
            (
                OAuthError::InvalidScope(ScopeProblem::NotGranted {
                    scope: "logs:write".into(),
                }),
                "invalid_scope",
            ),
        ];
        for (err, code) in cases {
            let resp = error_response(&err);
            assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{err}");
            assert_eq!(json(&resp)["error"], code);
            assert_eq!(header(&resp, "www-authenticate"), None);
            assert_cache_headers(&resp);
        }
    }

    #[test]
    fn slow_down_is_429_with_retry_after() {
        let resp = error_response(&OAuthError::SlowDown {
            retry_after_secs: 17,
        });
        assert_eq!(resp.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header(&resp, "retry-after"), Some("17"));
        assert_eq!(json(&resp)["error"], "slow_down");
        assert_cache_headers(&resp);
    }

    #[test]
    fn store_outage_is_503_temporarily_unavailable_with_retry_after() {
        let err = OAuthError::TemporarilyUnavailable {
            retry_after_secs: 0,
        };
        let resp = error_response(&err);
        assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(header(&resp, "retry-after"), Some("1"));
        assert_eq!(json(&resp)["error"], "temporarily_unavailable");
        assert_eq!(err.outcome(), "store_unavailable");
    }

    #[test]
    fn oversized_body_is_413_invalid_request() {
        let resp = error_response(&OAuthError::BodyTooLarge);
        assert_eq!(resp.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(json(&resp)["error"], "invalid_request");
        assert_eq!(OAuthError::BodyTooLarge.outcome(), "invalid_request");
    }

    #[test]
    fn outcomes_are_the_documented_metric_labels() {
        let errors = [
            OAuthError::InvalidRequest(RequestProblem::MalformedBody),
            OAuthError::BodyTooLarge,
            OAuthError::InvalidClient,
            OAuthError::InvalidScope(ScopeProblem::Unknown { scope: "x".into() }),
            OAuthError::InvalidTarget,
            OAuthError::UnsupportedGrantType,
            OAuthError::SlowDown {
                retry_after_secs: 1,
            },
            OAuthError::TemporarilyUnavailable {
                retry_after_secs: 1,
            },
        ];
        let allowed = [
            "invalid_client",
            "invalid_scope",
            "invalid_request",
            "invalid_target",
            "unsupported_grant_type",
            "slow_down",
            "store_unavailable",
        ];
        for err in errors {
            assert!(allowed.contains(&err.outcome()), "{err}");
        }
    }

    #[test]
    fn token_response_has_the_documented_fields_and_cache_headers() {
        let token = SecretString::from("tg_at_abc".to_string());
        let scopes = ScopeSet::parse_all(["tools:write", "knowledge:read"], &default_resources())
            .expect("valid");
        let resp = token_response(&token, 900, &scopes);
        assert_eq!(resp.status, StatusCode::OK);
        assert_cache_headers(&resp);
        let body = json(&resp);
        assert_eq!(body["access_token"], "tg_at_abc");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 900);
        assert_eq!(body["scope"], "knowledge:read tools:write");
        assert_eq!(body.as_object().map(|o| o.len()), Some(4));
    }

    #[test]
    fn debug_output_of_a_response_does_not_show_the_token() {
        let token = SecretString::from("tg_at_supersecret".to_string());
        let resp = token_response(&token, 900, &ScopeSet::default());
        assert!(!format!("{resp:?}").contains("supersecret"));
    }

    #[test]
    fn revocation_answer_is_200_and_not_cached() {
        let resp = revocation_response();
        assert_eq!(resp.status, StatusCode::OK);
        assert_cache_headers(&resp);
    }

    #[test]
    fn only_invalid_client_counts_as_an_authentication_failure() {
        assert!(OAuthError::InvalidClient.is_authentication_failure());
        assert!(!OAuthError::InvalidTarget.is_authentication_failure());
        assert!(!OAuthError::SlowDown {
            retry_after_secs: 1
        }
        .is_authentication_failure());
    }
}
