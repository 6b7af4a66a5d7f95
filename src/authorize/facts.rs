//! What a request says that the decision reads (docs/contract.md §5.2):
//! the bearer credential, the query's `environmentId` (with the spellings an
//! upstream framework may read as it) and `access_token`, and a few header
//! facts, gathered once into `RequestFacts`.

use std::borrow::Cow;

use secrecy::SecretString;

use super::pathnorm::{self, PathError, Target};

/// The bearer credential of a request.
#[derive(Debug)]
pub enum Bearer {
    /// No `Authorization` header, or one with another scheme.
    Missing,
    /// `Bearer <token>`; the value may still be malformed (then it is
    /// refused as `invalid_token` without a store look-up).
    Present(SecretString),
    /// More than one `Authorization` header: a request-safety error.
    Repeated,
}

/// Reads the `Authorization` header values (all of them, in order).
pub fn parse_bearer(authorization_values: &[&[u8]]) -> Bearer {
    let value = match authorization_values {
        [] => return Bearer::Missing,
        [value] => value.trim_ascii(),
        _ => return Bearer::Repeated,
    };
    let (scheme, credentials) = match value.iter().position(|&b| b == b' ' || b == b'\t') {
        Some(i) => (&value[..i], value[i..].trim_ascii()),
        None => (value, &b""[..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Bearer::Missing;
    }
    Bearer::Present(SecretString::from(
        String::from_utf8_lossy(credentials).into_owned(),
    ))
}

/// The `environmentId` query parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvironmentParam {
    Missing,
    One(String),
    Repeated,
    /// Present once but empty or not `[A-Za-z0-9_-]{1,64}`.
    Invalid,
    /// The query holds a raw `;`, which Rack 2 and old Go split pairs on:
    /// which parameters the upstream sees cannot be told.
    Semicolon,
    /// The route reads the environment from its path (`environment_param`)
    /// and the query gives another value an upstream could read instead.
    Conflict,
}

/// What the query string says that matters to the decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryFacts {
    pub environment_id: EnvironmentParam,
    /// An `access_token` parameter, whatever its value.
    pub has_access_token: bool,
}

/// Parses the raw query as `application/x-www-form-urlencoded`, the way an
/// upstream framework would, so `access%5Ftoken` counts as `access_token`.
pub fn parse_query(query: Option<&str>) -> QueryFacts {
    let query = query.unwrap_or("");
    let mut facts = parse_query_pairs(query);
    // A raw `;` separates pairs for some frameworks and not others, so a
    // route that checks a workspace cannot know what the upstream reads.
    // An encoded `%3B` inside a value is data to all of them.
    if memchr::memchr(b';', query.as_bytes()).is_some() {
        facts.environment_id = EnvironmentParam::Semicolon;
    }
    facts
}

fn parse_query_pairs(query: &str) -> QueryFacts {
    // Without `%` or `+` nothing decodes to something else: the pairs can be
    // read in place, which is what most queries allow.
    if query.bytes().any(|b| b == b'%' || b == b'+') {
        query_facts(form_urlencoded::parse(query.as_bytes()))
    } else {
        query_facts(
            query
                .split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
                .map(|(name, value)| (Cow::Borrowed(name), Cow::Borrowed(value))),
        )
    }
}

fn query_facts<'a>(pairs: impl Iterator<Item = (Cow<'a, str>, Cow<'a, str>)>) -> QueryFacts {
    let mut first_environment_id = None;
    let mut environment_ids = 0;
    let mut aliases = 0;
    let mut has_access_token = false;
    for (name, value) in pairs {
        match name.as_ref() {
            "environmentId" => {
                environment_ids += 1;
                first_environment_id.get_or_insert(value);
            }
            "access_token" => has_access_token = true,
            other if aliases_environment_id(other) => aliases += 1,
            _ => {}
        }
    }
    let environment_id = match (environment_ids, aliases, first_environment_id) {
        (0, _, _) => EnvironmentParam::Missing,
        // Next to an alias, the upstream might read another environment
        // than the one checked.
        (1, 0, Some(id)) if crate::ids::is_valid_name_id(&id) => {
            EnvironmentParam::One(id.into_owned())
        }
        (1, 0, _) => EnvironmentParam::Invalid,
        _ => EnvironmentParam::Repeated,
    };
    QueryFacts {
        environment_id,
        has_access_token,
    }
}

/// A parameter name that is not `environmentId` but that some upstream
/// framework may read as it. The name (already percent- and `+`-decoded) is
/// canonicalised the way the most permissive framework would, then compared
/// with `environmentId` ignoring case:
///
/// | framework        | what it does to a name                                   |
/// |------------------|----------------------------------------------------------|
/// | PHP              | drops leading spaces, cuts at NUL, `name[...]` is `name`, |
/// |                  | trailing ` ` / `.` become `_` (treated as stripped here)  |
/// | Rack 2           | strips leading `[`/`]`, `name]` and `name[x]` are `name`, |
/// |                  | splits pairs on `;` too (see [`parse_query`])             |
/// | Rack 3, Go, Python, Node, Java servlets | exact name; old Go splits on `;` |
/// | ASP.NET          | case-insensitive (ordinal, `ı` upper-cases to `I`)        |
///
/// Leading and trailing whitespace, control characters and the BOM are
/// dropped, the name is cut at NUL and at the first `[` or `]`, trailing
/// `.` are dropped. Ordinary names (`environment`, `environmentIds`,
/// `env_id`) do not canonicalise to `environmentId` and pass.
fn aliases_environment_id(name: &str) -> bool {
    name != "environmentId" && canonically_environment_id(name)
}

fn canonically_environment_id(name: &str) -> bool {
    canonically_named(name, "environmentId")
}

/// Whether some upstream framework may read the parameter `name` as
/// `target` (an ASCII name), by the rules of [`aliases_environment_id`].
pub(crate) fn canonically_named(name: &str, target: &str) -> bool {
    if name.len() < target.len() {
        return false;
    }
    let strippable = |c: char| c.is_whitespace() || c.is_control() || c == '\u{feff}';
    let name = name.split('\0').next().unwrap_or("");
    let name = name.trim_start_matches(|c: char| strippable(c) || c == '[' || c == ']');
    let name = name.split(['[', ']']).next().unwrap_or("");
    let name = name.trim_end_matches(|c: char| strippable(c) || c == '.');
    let mut chars = name.chars();
    for want in target.chars() {
        match chars.next() {
            Some(c) if c.eq_ignore_ascii_case(&want) => {}
            // PHP turns `.` and ` ` inside a name into `_`.
            Some('.' | ' ') if want == '_' => {}
            Some(c) if !c.is_ascii() => {
                let mut upper = c.to_uppercase();
                if upper.next() != Some(want.to_ascii_uppercase()) || upper.next().is_some() {
                    return false;
                }
            }
            _ => return false,
        }
    }
    chars.next().is_none()
}

/// Header facts the proxy reads from the request.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeaderFacts<'a> {
    pub authorization: &'a [&'a [u8]],
    pub content_length: bool,
    pub transfer_encoding: bool,
    /// An HTTP/1.1 request without a `Host` field.
    pub host_missing: bool,
}

/// Everything the decision needs to know about a request.
#[derive(Debug)]
pub struct RequestFacts {
    pub method: String,
    pub target: Result<Target, PathError>,
    pub bearer: Bearer,
    pub query: QueryFacts,
    /// Both `Content-Length` and `Transfer-Encoding` (request smuggling).
    pub length_conflict: bool,
    /// An HTTP/1.1 request without `Host`: RFC 9112 §3.2 says 400.
    pub host_missing: bool,
    /// The client's address (the peer, or the trusted proxies'
    /// `X-Forwarded-For` hop), set only when a token's account checks
    /// every request's source (the decision reads the facts by reference,
    /// hence set-once); unset then denies.
    pub source: std::sync::OnceLock<std::net::IpAddr>,
}

impl RequestFacts {
    pub fn gather(
        method: &str,
        raw_target: &[u8],
        headers: HeaderFacts<'_>,
        allow_semicolon: bool,
    ) -> RequestFacts {
        let target = pathnorm::normalize_target(raw_target, allow_semicolon);
        let query = parse_query(target.as_ref().ok().and_then(Target::query));
        RequestFacts {
            method: method.to_string(),
            target,
            bearer: parse_bearer(headers.authorization),
            query,
            length_conflict: headers.content_length && headers.transfer_encoding,
            host_missing: headers.host_missing,
            source: std::sync::OnceLock::new(),
        }
    }
}

#[cfg(test)]
mod tests;
