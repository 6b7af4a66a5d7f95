//! Parsing of token (RFC 6749 §4.4) and revocation (RFC 7009) requests from
//! the raw content type, Authorization values and body, and resolution of
//! the requested scopes against what the service account is granted.
//!
//! Checks run in this order, the first failure answering:
//! 1. content type (`invalid_request`), 2. body size (413),
//! 3. form decoding: invalid UTF-8 or a repeated parameter (`invalid_request`),
//! 4. `grant_type` missing (`invalid_request`) or not `client_credentials`
//!    (`unsupported_grant_type`) — revocation: `token` missing instead,
//! 5. `resource` present (`invalid_target`, token endpoint only),
//! 6. client authentication (`invalid_request` for a repeated Authorization
//!    header or conflicting methods, else `invalid_client`).
//!
//! Scope syntax is checked later, by [`resolve_scopes`], once the caller
//! knows the service account: an unauthenticated caller learns nothing about
//! which scopes exist.

use std::collections::HashSet;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use secrecy::SecretString;

use super::{OAuthError, RequestProblem, ScopeProblem};
use crate::scope::{Scope, ScopeSet};

/// Largest accepted request body. Callers may stop reading once a body
/// grows past it and answer [`OAuthError::BodyTooLarge`].
pub const MAX_BODY_BYTES: usize = 16 * 1024;

const FORM_CONTENT_TYPE: &[u8] = b"application/x-www-form-urlencoded";

/// Standard base64, padding optional: clients disagree on it.
const BASIC_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuthMethod {
    /// `client_secret_basic`: HTTP Basic.
    Basic,
    /// `client_secret_post`: `client_id` and `client_secret` in the body.
    Post,
}

impl ClientAuthMethod {
    /// The RFC 8414 name of the method.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuthMethod::Basic => "client_secret_basic",
            ClientAuthMethod::Post => "client_secret_post",
        }
    }
}

/// A well-formed `client_credentials` token request; the client is not
/// authenticated yet.
#[derive(Debug)]
pub struct TokenRequest {
    pub client_id: String,
    pub client_secret: SecretString,
    pub auth_method: ClientAuthMethod,
    /// The requested scope items, split at spaces (runs of spaces are
    /// tolerated); `None` when the parameter is omitted or empty. A value of
    /// only spaces is `Some(vec![])`, which [`resolve_scopes`] refuses.
    pub scope: Option<Vec<String>>,
}

/// A well-formed RFC 7009 revocation request; the client is not
/// authenticated yet and the token is not checked for shape.
#[derive(Debug)]
pub struct RevocationRequest {
    pub client_id: String,
    pub client_secret: SecretString,
    pub auth_method: ClientAuthMethod,
    pub token: SecretString,
}

pub fn parse_token_request(
    content_type: Option<&[u8]>,
    authorization: &[&[u8]],
    body: &[u8],
) -> Result<TokenRequest, OAuthError> {
    let params = parse_form(content_type, body)?;
    match params.grant_type.as_deref() {
        None => return Err(OAuthError::InvalidRequest(RequestProblem::MissingGrantType)),
        Some("client_credentials") => {}
        Some(_) => return Err(OAuthError::UnsupportedGrantType),
    }
    if params.resource {
        return Err(OAuthError::InvalidTarget);
    }
    let client = authenticate(authorization, params.client_id, params.client_secret)?;
    let scope = params.scope.map(|s| {
        s.split(' ')
            .filter(|item| !item.is_empty())
            .map(str::to_string)
            .collect()
    });
    Ok(TokenRequest {
        client_id: client.id,
        client_secret: client.secret,
        auth_method: client.method,
        scope,
    })
}

/// `token_type_hint` is accepted and ignored: there is one kind of token.
pub fn parse_revocation_request(
    content_type: Option<&[u8]>,
    authorization: &[&[u8]],
    body: &[u8],
) -> Result<RevocationRequest, OAuthError> {
    let params = parse_form(content_type, body)?;
    let token = params
        .token
        .ok_or(OAuthError::InvalidRequest(RequestProblem::MissingToken))?;
    let client = authenticate(authorization, params.client_id, params.client_secret)?;
    Ok(RevocationRequest {
        client_id: client.id,
        client_secret: client.secret,
        auth_method: client.method,
        token,
    })
}

/// The scopes a token gets. Each requested item must be `resource:action`
/// with a known resource and be covered by `granted` (write covers read);
/// the result is exactly what was asked, normalised. Omitted → every granted
/// scope whose resource is still configured.
pub fn resolve_scopes(
    requested: Option<&[String]>,
    granted: &ScopeSet,
    resources: &[String],
) -> Result<ScopeSet, OAuthError> {
    let Some(items) = requested else {
        let known = granted
            .iter()
            .filter(|s| resources.contains(&s.resource))
            .cloned()
            .collect();
        return Ok(ScopeSet::new(known));
    };
    if items.is_empty() {
        return Err(OAuthError::InvalidScope(ScopeProblem::Unknown {
            scope: String::new(),
        }));
    }
    let mut scopes = Vec::with_capacity(items.len());
    for item in items {
        let scope = Scope::parse(item, resources).map_err(|_| {
            OAuthError::InvalidScope(ScopeProblem::Unknown {
                scope: printable(item),
            })
        })?;
        if !granted.covers(&scope) {
            return Err(OAuthError::InvalidScope(ScopeProblem::NotGranted {
                scope: printable(item),
            }));
        }
        scopes.push(scope);
    }
    Ok(ScopeSet::new(scopes))
}

/// Truncated and escaped, for echoing a requested scope in a description.
fn printable(s: &str) -> String {
    let cut: String = s.chars().take(64).collect();
    cut.escape_default().to_string()
}

/// The parameters both endpoints care about; others are ignored.
#[derive(Default)]
struct Params {
    grant_type: Option<String>,
    scope: Option<String>,
    resource: bool,
    client_id: Option<String>,
    client_secret: Option<SecretString>,
    token: Option<SecretString>,
}

const KNOWN_PARAMS: [&str; 7] = [
    "grant_type",
    "scope",
    "resource",
    "client_id",
    "client_secret",
    "token",
    "token_type_hint",
];

fn parse_form(content_type: Option<&[u8]>, body: &[u8]) -> Result<Params, OAuthError> {
    if !is_form_content_type(content_type) {
        return Err(OAuthError::InvalidRequest(
            RequestProblem::UnsupportedContentType,
        ));
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(OAuthError::BodyTooLarge);
    }
    let malformed = || OAuthError::InvalidRequest(RequestProblem::MalformedBody);
    let mut seen: HashSet<String> = HashSet::new();
    let mut params = Params::default();
    for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &[][..]),
        };
        let name = String::from_utf8(form_decode(name)).map_err(|_| malformed())?;
        let value = String::from_utf8(form_decode(value)).map_err(|_| malformed())?;
        // A repeat is a repeat even when one of the values is empty.
        if seen.contains(&name) {
            let known = KNOWN_PARAMS.iter().copied().find(|k| *k == name);
            return Err(OAuthError::InvalidRequest(
                RequestProblem::RepeatedParameter(known),
            ));
        }
        if value.is_empty() {
            seen.insert(name);
            continue;
        }
        match name.as_str() {
            "grant_type" => params.grant_type = Some(value),
            "scope" => params.scope = Some(value),
            "resource" => params.resource = true,
            "client_id" => params.client_id = Some(value),
            "client_secret" => params.client_secret = Some(SecretString::from(value)),
            "token" => params.token = Some(SecretString::from(value)),
            _ => {}
        }
        seen.insert(name);
    }
    Ok(params)
}

/// `application/x-www-form-urlencoded`, any case, any media-type parameters.
fn is_form_content_type(content_type: Option<&[u8]>) -> bool {
    let Some(value) = content_type else {
        return false;
    };
    let media_type = value.split(|&b| b == b';').next().unwrap_or_default();
    trim_ows(media_type).eq_ignore_ascii_case(FORM_CONTENT_TYPE)
}

fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// application/x-www-form-urlencoded decoding of one name or value: `+` is a
/// space, `%XX` a byte; a `%` not followed by two hex digits stays literal,
/// as the WHATWG URL standard decodes it.
fn form_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = input.get(i + 1..i + 3).and_then(|h| {
                    let hi = (h[0] as char).to_digit(16)?;
                    let lo = (h[1] as char).to_digit(16)?;
                    u8::try_from(hi * 16 + lo).ok()
                });
                if let Some(byte) = hex {
                    out.push(byte);
                    i += 2;
                } else {
                    out.push(b'%');
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    out
}

struct ClientCredentials {
    id: String,
    secret: SecretString,
    method: ClientAuthMethod,
}

/// Client authentication: exactly one Authorization header using Basic, or
/// none and both `client_id` and `client_secret` in the body. Any other
/// Authorization scheme is a failed authentication even when the body has
/// credentials: the client asked to be known by something we don't accept.
/// Basic next to a body `client_secret` is refused before the Basic value
/// is decoded: the conflict is in the request's shape, whatever it holds.
fn authenticate(
    authorization: &[&[u8]],
    body_id: Option<String>,
    body_secret: Option<SecretString>,
) -> Result<ClientCredentials, OAuthError> {
    let header = match authorization {
        [] => {
            return match (body_id, body_secret) {
                (Some(id), Some(secret)) => Ok(ClientCredentials {
                    id,
                    secret,
                    method: ClientAuthMethod::Post,
                }),
                _ => Err(OAuthError::InvalidClient),
            }
        }
        [one] => *one,
        _ => {
            return Err(OAuthError::InvalidRequest(
                RequestProblem::RepeatedAuthorization,
            ))
        }
    };
    let token68 = basic_token68(header).ok_or(OAuthError::InvalidClient)?;
    if body_secret.is_some() {
        return Err(OAuthError::InvalidRequest(
            RequestProblem::MultipleAuthMethods,
        ));
    }
    let (id, secret) = decode_basic(token68).ok_or(OAuthError::InvalidClient)?;
    if body_id.is_some_and(|body_id| body_id != id) {
        return Err(OAuthError::InvalidRequest(RequestProblem::ClientIdMismatch));
    }
    Ok(ClientCredentials {
        id,
        secret,
        method: ClientAuthMethod::Basic,
    })
}

/// The credentials part of a Basic Authorization value; `None` for any
/// other scheme.
fn basic_token68(header: &[u8]) -> Option<&[u8]> {
    let header = trim_ows(header);
    let split = header.iter().position(|&b| b == b' ' || b == b'\t');
    let (scheme, rest) = match split {
        Some(at) => (&header[..at], &header[at..]),
        None => (header, &[][..]),
    };
    scheme
        .eq_ignore_ascii_case(b"basic")
        .then(|| trim_ows(rest))
}

/// `None` for bad base64, no colon, invalid UTF-8, or an empty id or
/// secret. Id and secret are form-urlencoded inside the base64, as RFC 6749
/// §2.3.1 says.
fn decode_basic(token68: &[u8]) -> Option<(String, SecretString)> {
    let decoded = BASIC_BASE64.decode(token68).ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let id = String::from_utf8(form_decode(&decoded[..colon])).ok()?;
    let secret = String::from_utf8(form_decode(&decoded[colon + 1..])).ok()?;
    if id.is_empty() || secret.is_empty() {
        return None;
    }
    Some((id, SecretString::from(secret)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::default_resources;
    use base64::engine::general_purpose::STANDARD;
    use proptest::prelude::*;
    use secrecy::ExposeSecret;

    const FORM: Option<&[u8]> = Some(b"application/x-www-form-urlencoded");
    const ID: &str = "sa_AAAAAAAAAAAAAAAAAAAAAAAAAA";
    const SECRET: &str = "tg_sk_secret";

    fn basic(id: &str, secret: &str) -> Vec<u8> {
        format!("Basic {}", STANDARD.encode(format!("{id}:{secret}"))).into_bytes()
    }

    fn token(auth: &[&[u8]], body: &str) -> Result<TokenRequest, OAuthError> {
        parse_token_request(FORM, auth, body.as_bytes())
    }

    fn post_body(extra: &str) -> String {
        format!("grant_type=client_credentials&client_id={ID}&client_secret={SECRET}{extra}")
    }

    fn invalid_request(problem: RequestProblem) -> OAuthError {
        OAuthError::InvalidRequest(problem)
    }

    #[test]
    fn client_secret_post_request_is_parsed() {
        let req = token(&[], &post_body("&scope=tools:read+knowledge:write")).expect("valid");
        assert_eq!(req.client_id, ID);
        assert_eq!(req.client_secret.expose_secret(), SECRET);
        assert_eq!(req.auth_method, ClientAuthMethod::Post);
        assert_eq!(
            req.scope,
            Some(vec![
                "tools:read".to_string(),
                "knowledge:write".to_string()
            ])
        );
    }

    #[test]
    fn client_secret_basic_request_is_parsed() {
        let auth = basic(ID, SECRET);
        let req = token(&[&auth], "grant_type=client_credentials").expect("valid");
        assert_eq!(req.client_id, ID);
        assert_eq!(req.client_secret.expose_secret(), SECRET);
        assert_eq!(req.auth_method, ClientAuthMethod::Basic);
        assert_eq!(req.scope, None);
    }

    #[test]
    fn basic_scheme_is_case_insensitive_and_padding_optional() {
        let encoded = STANDARD.encode(format!("{ID}:{SECRET}x"));
        let unpadded = encoded.trim_end_matches('=');
        assert_ne!(encoded, unpadded, "the test needs padding to strip");
        for value in [format!("bAsIc {encoded}"), format!("Basic   {unpadded} ")] {
            let req = token(&[value.as_bytes()], "grant_type=client_credentials").expect("valid");
            assert_eq!(req.client_secret.expose_secret(), "tg_sk_secretx");
        }
    }

    #[test]
    fn basic_credentials_are_form_urlencoded_decoded() {
        let auth = basic("a%3Ab+c", "p%25s+s%3Aw");
        let req = token(&[&auth], "grant_type=client_credentials").expect("valid");
        assert_eq!(req.client_id, "a:b c");
        assert_eq!(req.client_secret.expose_secret(), "p%s s:w");
    }

    #[test]
    fn basic_splits_at_the_first_colon() {
        let auth = basic(ID, "se:cr:et");
        let req = token(&[&auth], "grant_type=client_credentials").expect("valid");
        assert_eq!(req.client_secret.expose_secret(), "se:cr:et");
    }

    #[test]
    fn body_parameters_are_form_urlencoded_decoded() {
        let body = "grant%5Ftype=client_credentials&client_id=sa_x&client_secret=a%2Bb+c%zz";
        let req = token(&[], body).expect("valid");
        assert_eq!(req.client_secret.expose_secret(), "a+b c%zz");
    }

    #[test]
    fn content_type_may_carry_parameters_and_any_case() {
        let body = post_body("");
        for ct in [
            &b"application/x-www-form-urlencoded; charset=UTF-8"[..],
            b"Application/X-WWW-Form-Urlencoded",
            b" application/x-www-form-urlencoded ;charset=utf-8",
        ] {
            assert!(parse_token_request(Some(ct), &[], body.as_bytes()).is_ok());
        }
    }

    #[test]
    fn other_or_missing_content_type_is_invalid_request() {
        let body = post_body("");
        for ct in [
            None,
            Some(&b"application/json"[..]),
            Some(b"multipart/form-data"),
            Some(b"application/x-www-form-urlencodedx"),
            Some(b""),
        ] {
            assert_eq!(
                parse_token_request(ct, &[], body.as_bytes()).expect_err("refused"),
                invalid_request(RequestProblem::UnsupportedContentType)
            );
        }
    }

    #[test]
    fn body_over_the_limit_is_too_large() {
        let mut body = post_body("&pad=");
        body.push_str(&"a".repeat(MAX_BODY_BYTES - body.len()));
        assert!(token(&[], &body).is_ok());
        body.push('a');
        assert_eq!(
            token(&[], &body).expect_err("too large"),
            OAuthError::BodyTooLarge
        );
    }

    #[test]
    fn repeated_scope_is_a_repeat_even_when_empty() {
        assert_eq!(
            token(&[], &post_body("&scope=&scope=tools:read")).expect_err("repeat"),
            invalid_request(RequestProblem::RepeatedParameter(Some("scope")))
        );
        assert_eq!(
            token(&[], &post_body("&scope=tools:read&scope=")).expect_err("repeat"),
            invalid_request(RequestProblem::RepeatedParameter(Some("scope")))
        );
    }

    #[test]
    fn repeated_unknown_parameter_is_a_repeat_too() {
        assert_eq!(
            token(&[], &post_body("&foo=1&foo=2")).expect_err("repeat"),
            invalid_request(RequestProblem::RepeatedParameter(None))
        );
    }

    #[test]
    fn repeats_are_found_under_their_decoded_names() {
        assert_eq!(
            token(&[], &post_body("&grant%5Ftype=client_credentials")).expect_err("repeat"),
            invalid_request(RequestProblem::RepeatedParameter(Some("grant_type")))
        );
    }

    #[test]
    fn repeats_are_checked_before_the_grant_type() {
        let body = "grant_type=password&x=1&x=2";
        assert_eq!(
            token(&[], body).expect_err("repeat"),
            invalid_request(RequestProblem::RepeatedParameter(None))
        );
    }

    #[test]
    fn empty_values_count_as_omitted() {
        let req = token(&[], &post_body("&scope=&resource=")).expect("valid");
        assert_eq!(req.scope, None);
        let body = format!("grant_type=&client_id={ID}&client_secret={SECRET}");
        assert_eq!(
            token(&[], &body).expect_err("missing"),
            invalid_request(RequestProblem::MissingGrantType)
        );
    }

    #[test]
    fn unknown_parameters_are_ignored() {
        assert!(token(&[], &post_body("&audience=x&flag&&")).is_ok());
    }

    #[test]
    fn invalid_utf8_after_decoding_is_invalid_request() {
        for extra in ["&x=%FF", "&%C3=1", "&client_secret2=%C3%28"] {
            assert_eq!(
                token(&[], &post_body(extra)).expect_err("bad utf-8"),
                invalid_request(RequestProblem::MalformedBody)
            );
        }
        let mut raw = post_body("&x=").into_bytes();
        raw.push(0xff);
        assert_eq!(
            parse_token_request(FORM, &[], &raw).expect_err("bad utf-8"),
            invalid_request(RequestProblem::MalformedBody)
        );
    }

    #[test]
    fn missing_grant_type_is_invalid_request() {
        let body = format!("client_id={ID}&client_secret={SECRET}");
        assert_eq!(
            token(&[], &body).expect_err("missing"),
            invalid_request(RequestProblem::MissingGrantType)
        );
    }

    #[test]
    fn other_grant_types_are_unsupported() {
        for grant in [
            "password",
            "authorization_code",
            "Client_Credentials",
            "refresh_token",
        ] {
            let body = format!("grant_type={grant}&client_id={ID}&client_secret={SECRET}");
            assert_eq!(
                token(&[], &body).expect_err("unsupported"),
                OAuthError::UnsupportedGrantType
            );
        }
    }

    #[test]
    fn grant_type_is_checked_before_client_authentication() {
        assert_eq!(
            token(&[], "grant_type=password").expect_err("unsupported"),
            OAuthError::UnsupportedGrantType
        );
    }

    #[test]
    fn resource_parameter_is_invalid_target() {
        assert_eq!(
            token(&[], &post_body("&resource=https%3A%2F%2Fapi.example")).expect_err("target"),
            OAuthError::InvalidTarget
        );
        assert_eq!(
            token(&[], "grant_type=client_credentials&resource=x").expect_err("target"),
            OAuthError::InvalidTarget,
            "checked before client authentication"
        );
    }

    #[test]
    fn basic_with_a_body_secret_is_invalid_request() {
        let auth = basic(ID, SECRET);
        let body = format!("grant_type=client_credentials&client_secret={SECRET}");
        assert_eq!(
            token(&[&auth], &body).expect_err("two methods"),
            invalid_request(RequestProblem::MultipleAuthMethods)
        );
    }

    #[test]
    fn basic_conflicting_with_a_body_secret_is_refused_before_decoding() {
        let body = format!("grant_type=client_credentials&client_secret={SECRET}");
        assert_eq!(
            token(&[b"Basic !!!"], &body).expect_err("two methods"),
            invalid_request(RequestProblem::MultipleAuthMethods)
        );
    }

    #[test]
    fn body_client_id_next_to_basic_must_equal_the_basic_id() {
        let auth = basic(ID, SECRET);
        let same = format!("grant_type=client_credentials&client_id={ID}");
        let req = token(&[&auth], &same).expect("same id tolerated");
        assert_eq!(req.auth_method, ClientAuthMethod::Basic);
        let other = "grant_type=client_credentials&client_id=sa_other";
        assert_eq!(
            token(&[&auth], other).expect_err("mismatch"),
            invalid_request(RequestProblem::ClientIdMismatch)
        );
    }

    #[test]
    fn repeated_authorization_header_is_invalid_request() {
        let auth = basic(ID, SECRET);
        assert_eq!(
            token(&[&auth, &auth], "grant_type=client_credentials").expect_err("repeat"),
            invalid_request(RequestProblem::RepeatedAuthorization)
        );
    }

    #[test]
    fn malformed_basic_credentials_are_invalid_client() {
        let no_colon = format!("Basic {}", STANDARD.encode("sa_x"));
        let bad_utf8 = format!("Basic {}", STANDARD.encode(b"sa_\xff:secret"));
        let bad_utf8_escaped = format!("Basic {}", STANDARD.encode("sa_%FF:secret"));
        let empty_secret = format!("Basic {}", STANDARD.encode("sa_x:"));
        let empty_id = format!("Basic {}", STANDARD.encode(":secret"));
        for value in [
            "Basic !!!notbase64".to_string(),
            "Basic".to_string(),
            "Basic ".to_string(),
            no_colon,
            bad_utf8,
            bad_utf8_escaped,
            empty_secret,
            empty_id,
        ] {
            assert_eq!(
                token(&[value.as_bytes()], "grant_type=client_credentials").expect_err(&value),
                OAuthError::InvalidClient,
                "{value}"
            );
        }
    }

    #[test]
    fn no_credentials_at_all_is_invalid_client() {
        assert_eq!(
            token(&[], "grant_type=client_credentials").expect_err("anonymous"),
            OAuthError::InvalidClient
        );
        let only_id = format!("grant_type=client_credentials&client_id={ID}");
        assert_eq!(
            token(&[], &only_id).expect_err("no secret"),
            OAuthError::InvalidClient
        );
        let only_secret = format!("grant_type=client_credentials&client_secret={SECRET}");
        assert_eq!(
            token(&[], &only_secret).expect_err("no id"),
            OAuthError::InvalidClient
        );
    }

    #[test]
    fn other_authorization_schemes_are_invalid_client() {
        for value in [&b"Bearer tg_at_x"[..], b"Digest abc", b"", b"Basicx abc"] {
            assert_eq!(
                token(&[value], &post_body("")).expect_err("scheme"),
                OAuthError::InvalidClient
            );
        }
    }

    #[test]
    fn scope_items_are_split_at_spaces() {
        let req = token(&[], &post_body("&scope=+tools:read++logs:write+")).expect("valid");
        assert_eq!(
            req.scope,
            Some(vec!["tools:read".to_string(), "logs:write".to_string()])
        );
        let req = token(&[], &post_body("&scope=+")).expect("valid");
        assert_eq!(req.scope, Some(vec![]));
    }

    #[test]
    fn errors_never_echo_the_secret() {
        let secret = "tg_sk_do_not_echo";
        let auth = basic(ID, secret);
        let bodies = [
            format!("grant_type=client_credentials&client_secret={secret}"),
            format!("grant_type=client_credentials&client_id=sa_other&client_secret={secret}"),
        ];
        for body in bodies {
            let err = token(&[&auth], &body).expect_err("refused");
            let resp = super::super::error_response(&err);
            let text = String::from_utf8(resp.body.clone()).expect("utf-8");
            assert!(!text.contains(secret), "{text}");
            assert!(!format!("{err:?} {err}").contains(secret));
        }
    }

    #[test]
    fn debug_output_of_a_request_redacts_the_secret() {
        let req = token(&[], &post_body("")).expect("valid");
        assert!(!format!("{req:?}").contains(SECRET));
    }

    fn granted(items: &[&str]) -> ScopeSet {
        ScopeSet::parse_all(items.iter().copied(), &default_resources()).expect("valid")
    }

    fn requested(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn omitted_scope_yields_every_granted_scope() {
        let g = granted(&["tools:write", "knowledge:read"]);
        let got = resolve_scopes(None, &g, &default_resources()).expect("ok");
        assert_eq!(got, g);
    }

    #[test]
    fn omitted_scope_drops_granted_scopes_of_resources_no_longer_configured() {
        let g = ScopeSet::from_stored("tools:write payroll:read");
        let got = resolve_scopes(None, &g, &default_resources()).expect("ok");
        assert_eq!(got.to_string(), "tools:write");
    }

    #[test]
    fn write_grant_covers_a_read_request_and_yields_exactly_read() {
        let g = granted(&["tools:write"]);
        let req = requested(&["tools:read"]);
        let got = resolve_scopes(Some(&req), &g, &default_resources()).expect("ok");
        assert_eq!(got.to_string(), "tools:read");
    }

    #[test]
    fn requested_scopes_are_normalised_and_deduplicated() {
        let g = granted(&["tools:write", "knowledge:read"]);
        let req = requested(&["tools:write", "knowledge:read", "tools:write"]);
        let got = resolve_scopes(Some(&req), &g, &default_resources()).expect("ok");
        assert_eq!(got.to_string(), "knowledge:read tools:write");
    }

    #[test]
    fn read_grant_does_not_cover_a_write_request() {
        let g = granted(&["tools:read"]);
        let req = requested(&["tools:write"]);
        assert_eq!(
            resolve_scopes(Some(&req), &g, &default_resources()).expect_err("not granted"),
            OAuthError::InvalidScope(ScopeProblem::NotGranted {
                scope: "tools:write".into()
            })
        );
    }

    #[test]
    fn unknown_or_malformed_scopes_are_invalid_scope() {
        let g = granted(&["tools:write"]);
        for item in ["payroll:read", "tools:delete", "tools", "", "tools:read:x"] {
            let req = requested(&[item]);
            assert!(
                matches!(
                    resolve_scopes(Some(&req), &g, &default_resources()),
                    Err(OAuthError::InvalidScope(ScopeProblem::Unknown { .. }))
                ),
                "{item}"
            );
        }
        assert!(resolve_scopes(Some(&[]), &g, &default_resources()).is_err());
    }

    #[test]
    fn echoed_scope_is_escaped_and_truncated() {
        let g = granted(&["tools:write"]);
        let long = format!("\"x\n{}", "a".repeat(200));
        let req = requested(&[&long]);
        let err = resolve_scopes(Some(&req), &g, &default_resources()).expect_err("bad");
        let OAuthError::InvalidScope(ScopeProblem::Unknown { scope }) = err else {
            panic!("unexpected {err:?}");
        };
        assert!(!scope.contains('\n'));
        assert!(scope.len() < 80, "{scope}");
    }

    fn revoke(auth: &[&[u8]], body: &str) -> Result<RevocationRequest, OAuthError> {
        parse_revocation_request(FORM, auth, body.as_bytes())
    }

    #[test]
    fn revocation_request_is_parsed_and_hint_ignored() {
        let body = format!(
            "token=tg_at_x&token_type_hint=refresh_token&client_id={ID}&client_secret={SECRET}"
        );
        let req = revoke(&[], &body).expect("valid");
        assert_eq!(req.token.expose_secret(), "tg_at_x");
        assert_eq!(req.client_id, ID);
        assert_eq!(req.auth_method, ClientAuthMethod::Post);
        let auth = basic(ID, SECRET);
        let req = revoke(&[&auth], "token=tg_at_y").expect("valid");
        assert_eq!(req.auth_method, ClientAuthMethod::Basic);
    }

    #[test]
    fn revocation_without_token_is_invalid_request() {
        let auth = basic(ID, SECRET);
        for body in ["", "token=", "token_type_hint=access_token"] {
            assert_eq!(
                revoke(&[&auth], body).expect_err("missing"),
                invalid_request(RequestProblem::MissingToken)
            );
        }
    }

    #[test]
    fn revocation_follows_the_token_endpoint_rules() {
        let auth = basic(ID, SECRET);
        assert_eq!(
            revoke(&[&auth], "token=a&token=b").expect_err("repeat"),
            invalid_request(RequestProblem::RepeatedParameter(Some("token")))
        );
        assert_eq!(
            revoke(&[&auth], "token=a&token_type_hint=&token_type_hint=x").expect_err("repeat"),
            invalid_request(RequestProblem::RepeatedParameter(Some("token_type_hint")))
        );
        assert_eq!(
            revoke(&[], "token=a").expect_err("anonymous"),
            OAuthError::InvalidClient
        );
        assert_eq!(
            revoke(&[&auth], &format!("token=a&client_secret={SECRET}")).expect_err("both"),
            invalid_request(RequestProblem::MultipleAuthMethods)
        );
        assert_eq!(
            parse_revocation_request(Some(b"text/plain"), &[&auth], b"token=a")
                .expect_err("content type"),
            invalid_request(RequestProblem::UnsupportedContentType)
        );
    }

    proptest! {
        #[test]
        fn token_parser_never_panics(
            ct in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
            auth in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..3),
            body in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let auth: Vec<&[u8]> = auth.iter().map(Vec::as_slice).collect();
            let _ = parse_token_request(ct.as_deref(), &auth, &body);
            let _ = parse_revocation_request(ct.as_deref(), &auth, &body);
        }

        #[test]
        fn form_shaped_input_never_panics(
            body in "[a-z_%0-9A-F+=&:]{0,200}",
            auth in "(Basic |basic |Bearer )?[A-Za-z0-9+/=%:]{0,40}",
        ) {
            let _ = parse_token_request(FORM, &[auth.as_bytes()], body.as_bytes());
            let _ = parse_revocation_request(FORM, &[auth.as_bytes()], body.as_bytes());
        }
    }
}
