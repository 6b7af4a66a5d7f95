//! The headers of what the proxy forwards, in one place: the identity
//! headers tollgate injects, the spoofed and override headers it strips,
//! `X-Forwarded-*` and `x-request-id`, and the hop-by-hop fields of both
//! the request (RFC 9110 §7.6.1; a WebSocket upgrade kept) and the answer.

use std::net::IpAddr;

use http::header::{self, Entry};
use http::{HeaderName, HeaderValue};
use ipnet::IpNet;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::{Error, ErrorType, Result};

use crate::authorize::Identity;
use crate::config::{canonical_header, IdentityHeaders, ProxyConfig};
use crate::model::{EnvironmentRef, TokenRecord};

/// Header names looked up on every request, parsed once: a `&str` name is
/// parsed again on each look-up.
pub(super) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub(super) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// How the forwarded request's headers are rewritten: built once from the
/// configuration, used on every request.
pub(crate) struct HeaderRules {
    /// Canonical (lower case, `-`) names of the identity headers: any
    /// incoming header that canonicalises to one of these is removed.
    identity_names: Vec<String>,
    /// Canonical names stripped from untrusted peers: the forwarding and
    /// override headers an upstream may take an address, host, URL or
    /// method from, less `proxy.pass_override_headers`.
    untrusted_names: Vec<&'static str>,
    /// Bit `n` set when some name of `untrusted_names` is `n` bytes long:
    /// most headers are ruled out by their length alone.
    untrusted_lengths: u64,
    /// The configured identity header names, built once: inserting a
    /// `Bytes` name costs a reference count, a `String` an allocation.
    inject: InjectNames,
    /// `proxy.trusted_proxies`: their forwarding headers are kept.
    trusted_proxies: Vec<IpNet>,
    /// `proxy.forward_authorization`.
    forward_authorization: bool,
}

struct InjectNames {
    organization_id: HeaderName,
    client_id: HeaderName,
    service_account_id: HeaderName,
    scopes: HeaderName,
    workspace_id: HeaderName,
    workspace_role: HeaderName,
    environment_id: HeaderName,
}

impl InjectNames {
    /// The configuration has checked the names; a name `http` refuses
    /// anyway stops the start-up, never a request.
    fn new(names: &IdentityHeaders) -> std::result::Result<InjectNames, String> {
        let h = |s: &String| {
            HeaderName::from_bytes(s.as_bytes())
                .map_err(|_| format!("identity header {s:?} is not a valid header name"))
        };
        Ok(InjectNames {
            organization_id: h(&names.organization_id)?,
            client_id: h(&names.client_id)?,
            service_account_id: h(&names.service_account_id)?,
            scopes: h(&names.scopes)?,
            workspace_id: h(&names.workspace_id)?,
            workspace_role: h(&names.workspace_role)?,
            environment_id: h(&names.environment_id)?,
        })
    }
}

impl HeaderRules {
    pub(crate) fn new(
        names: &IdentityHeaders,
        proxy: &ProxyConfig,
    ) -> std::result::Result<HeaderRules, String> {
        let identity_names = names.all().iter().map(|n| canonical_header(n)).collect();
        let inject = InjectNames::new(names)?;
        let untrusted_names: Vec<&'static str> = ["forwarded", "x-real-ip"]
            .into_iter()
            .chain(crate::config::OVERRIDE_HEADERS.iter().copied())
            .filter(|n| !proxy.pass_override_headers.iter().any(|p| p == n))
            .collect();
        let untrusted_lengths = untrusted_names.iter().fold(0u64, |bits, n| {
            bits | 1u64.checked_shl(n.len() as u32).unwrap_or(0)
        });
        Ok(HeaderRules {
            identity_names,
            untrusted_names,
            untrusted_lengths,
            inject,
            trusted_proxies: proxy.trusted_proxies.clone(),
            forward_authorization: proxy.forward_authorization,
        })
    }

    /// The forwarded request's headers, edited in place: hop-by-hop fields
    /// removed as RFC 9110 §7.6.1 asks (and the fields `Connection` names),
    /// then the identity and forwarding headers ([`HeaderRules::rewrite`]),
    /// and a WebSocket upgrade put back as `Connection: Upgrade`,
    /// `Upgrade: websocket`.
    pub(super) fn for_upstream(
        &self,
        headers: &mut http::HeaderMap,
        version: http::Version,
        peer: Option<IpAddr>,
        request_id: HeaderValue,
        identity: Option<&Identity>,
        https: bool,
    ) -> Result<()> {
        let websocket = strip_hop_by_hop(headers, version)?;
        self.rewrite(headers, peer, request_id, identity, https)?;
        if websocket {
            headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        }
        Ok(())
    }

    /// A header the client must not set: an identity header in any case or
    /// `_` form; an `_` form of `X-Forwarded-For`/`-Proto` (CGI-style
    /// upstreams read `X_Forwarded_For` as `X-Forwarded-For`, and tollgate
    /// builds only the latter); and, unless the peer is a trusted proxy,
    /// the other headers upstreams take a client's address or host from.
    fn is_spoofed_header(&self, name: &str, trusted: bool) -> bool {
        self.is_identity_header(name)
            || (name.contains('_')
                && ["x-forwarded-for", "x-forwarded-proto"]
                    .iter()
                    .any(|canon| same_header_name(canon, name)))
            || (!trusted
                && name.len() < 64
                && self.untrusted_lengths & (1u64 << name.len()) != 0
                && self
                    .untrusted_names
                    .iter()
                    .any(|canon| same_header_name(canon, name)))
    }

    /// The forwarded request's headers: client-sent identity headers (and
    /// forwarding headers an untrusted client set) and `Authorization`
    /// (unless forwarded) removed, then the identity, request id and
    /// X-Forwarded-*. Hop-by-hop fields are already gone
    /// ([`strip_hop_by_hop`]).
    fn rewrite(
        &self,
        headers: &mut http::HeaderMap,
        peer: Option<IpAddr>,
        request_id: HeaderValue,
        identity: Option<&Identity>,
        https: bool,
    ) -> Result<()> {
        let trusted = peer.is_some_and(|p| self.trusted_proxies.iter().any(|n| n.contains(&p)));
        // Client-sent identity headers go first, in any case or `_` form.
        // Names are only copied when there is one to remove.
        if headers
            .keys()
            .any(|k| self.is_spoofed_header(k.as_str(), trusted))
        {
            let spoofed: Vec<HeaderName> = headers
                .keys()
                .filter(|k| self.is_spoofed_header(k.as_str(), trusted))
                .cloned()
                .collect();
            for name in spoofed {
                headers.remove(&name);
            }
        }
        if !self.forward_authorization {
            headers.remove(header::AUTHORIZATION);
        }
        // Room for what is added, so that the map grows at most once. pingora
        // reads at most 256 header lines, far below the map's size limit
        // (32,768), so neither this nor the inserts below can fail.
        let _ = headers.try_reserve(10);
        if let Some(identity) = identity {
            insert_identity(headers, &self.inject, identity)?;
        }
        headers.insert(X_REQUEST_ID, request_id);
        // Several X-Forwarded-For lines are one comma-separated list (RFC 9110 §5.3).
        // (Entries: one look-up of each name for reading and writing it.)
        let mut hops = String::new();
        let xff = headers.entry(X_FORWARDED_FOR);
        if let Entry::Occupied(received) = &xff {
            for v in received.iter() {
                let v = String::from_utf8_lossy(v.as_bytes());
                let v = v.trim();
                if !v.is_empty() {
                    hops.push_str(v);
                    hops.push_str(", ");
                }
            }
        }
        if let Some(peer) = peer {
            push_ip(&mut hops, peer);
        }
        let hops = value(hops)?;
        match xff {
            Entry::Occupied(mut received) => {
                received.insert(hops);
            }
            Entry::Vacant(none) => {
                none.insert(hops);
            }
        }
        let http = HeaderValue::from_static(if https { "https" } else { "http" });
        match headers.entry(X_FORWARDED_PROTO) {
            Entry::Occupied(_) if trusted => {}
            Entry::Occupied(mut received) => {
                received.insert(http);
            }
            Entry::Vacant(none) => {
                none.insert(http);
            }
        }
        Ok(())
    }
}

/// Appends an address as `Display` writes it; IPv4, the common case,
/// without the formatting machinery.
fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        IpAddr::V6(_) => {
            use std::fmt::Write;
            let _ = write!(out, "{ip}");
        }
    }
}

/// Whether a received header name is `canon` (lower case, `-`) in any case
/// and with `_` for `-`; compared without allocating.
fn same_header_name(canon: &str, name: &str) -> bool {
    canon.len() == name.len()
        && canon.bytes().zip(name.bytes()).all(|(c, n)| {
            let n = if n == b'_' {
                b'-'
            } else {
                n.to_ascii_lowercase()
            };
            c == n
        })
}

/// An HTTP/1.1 request that waits for `100 Continue` before sending its body.
pub(crate) fn expects_continue(req: &RequestHeader) -> bool {
    req.version == http::Version::HTTP_11
        && req
            .headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Header names `Connection` may not nominate: removing them would
/// drop what the upstream relies on (RFC 9110 §7.6.1 lets a proxy refuse).
const PROTECTED_FROM_NOMINATION: [&str; 4] = [
    "host",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
];

/// The standard hop-by-hop fields of a request (RFC 9110 §7.6.1, and the
/// ones HTTP/1 and HTTP/2 upgrades use).
static HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    HTTP2_SETTINGS,
];

/// At most this many `Connection` options, so that a request cannot make
/// tollgate walk a long list.
const MAX_CONNECTION_OPTIONS: usize = 10;

/// A request tollgate refuses to forward as received: 400.
fn bad_request(why: &'static str) -> Box<Error> {
    Error::explain(ErrorType::InvalidHTTPHeader, why).into_down()
}

/// An RFC 9110 `token` character.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The options a message's `Connection` fields list, trimmed, empty ones
/// skipped (RFC 9110 §7.6.1).
fn connection_options(headers: &http::HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Removes the hop-by-hop fields of a received request (RFC 9110 §7.6.1):
/// those `Connection` names, then `Connection`, `Keep-Alive`,
/// `Proxy-Connection`, `Proxy-Authenticate`, `Proxy-Authorization`, `TE`,
/// `Trailer`, `Transfer-Encoding`, `Upgrade` and `HTTP2-Settings`. A
/// `Connection` option that is not a token, names a pseudo-header or one of
/// [`PROTECTED_FROM_NOMINATION`], or one too many, refuses the request.
/// Returns whether the request is an HTTP/1.1 WebSocket upgrade, the one
/// upgrade tollgate forwards.
fn strip_hop_by_hop(headers: &mut http::HeaderMap, version: http::Version) -> Result<bool> {
    // Most requests carry none: one pass over the names (standard names
    // compare as a tag), no hashing look-ups.
    if !headers.keys().any(|n| HOP_BY_HOP.contains(n)) {
        return Ok(false);
    }
    let mut nominated: Vec<HeaderName> = Vec::new();
    let mut options = 0;
    for token in connection_options(headers) {
        options += 1;
        if options >= MAX_CONNECTION_OPTIONS {
            return Err(bad_request("too many Connection options"));
        }
        if !token.iter().all(|&b| is_tchar(b)) {
            return Err(bad_request("a Connection option is not a token"));
        }
        let name = HeaderName::from_bytes(token)
            .map_err(|_| bad_request("a Connection option is not a header name"))?;
        if PROTECTED_FROM_NOMINATION.contains(&name.as_str()) {
            return Err(bad_request("Connection names a protected header"));
        }
        nominated.push(name);
    }
    // Before the nominated fields go: `Connection: Upgrade` names `Upgrade`.
    let websocket = version == http::Version::HTTP_11
        && headers
            .get(header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    for name in nominated {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    Ok(websocket)
}

/// A forwarding header value tollgate builds (`X-Forwarded-For`) from
/// values it received as valid ones.
fn value(s: impl TryInto<HeaderValue>) -> Result<HeaderValue> {
    s.try_into().map_err(|_| {
        Error::explain(
            ErrorType::InvalidHTTPHeader,
            "a forwarding header value is not a valid header value",
        )
    })
}

/// Ids are checked when they are made; should one still not be a valid
/// header value, the request fails rather than go without its identity.
fn invalid_identity_value() -> Box<Error> {
    Error::explain(
        ErrorType::InvalidHTTPHeader,
        "an identity header value is not a valid header value",
    )
}

/// The token's organization, client and account ids and scopes as header
/// values; `None` if one is not a valid value.
fn token_values(record: &TokenRecord) -> Option<[HeaderValue; 4]> {
    Some([
        HeaderValue::from_str(&record.organization_id).ok()?,
        HeaderValue::from_str(&record.client_id).ok()?,
        HeaderValue::from_str(&record.service_account_id).ok()?,
        HeaderValue::try_from(record.scopes.to_string()).ok()?,
    ])
}

/// The environment's workspace and environment ids as header values.
fn environment_values(env: &EnvironmentRef) -> Option<[HeaderValue; 2]> {
    Some([
        HeaderValue::from_str(&env.workspace_id).ok()?,
        HeaderValue::from_str(&env.id).ok()?,
    ])
}

/// Where identity headers are written: the forwarded request's map (set,
/// replacing what the client sent) or the decision listener's answer (a
/// list, in order, no look-ups).
pub(crate) trait IdentitySink {
    fn put(&mut self, name: HeaderName, value: HeaderValue);
}

impl IdentitySink for http::HeaderMap {
    fn put(&mut self, name: HeaderName, value: HeaderValue) {
        self.insert(name, value);
    }
}

/// The header fields of an answer, in order.
pub(crate) type Fields = Vec<(HeaderName, HeaderValue)>;

impl IdentitySink for Fields {
    fn put(&mut self, name: HeaderName, value: HeaderValue) {
        self.push((name, value));
    }
}

/// The identity headers. Their values are made once per record and kept
/// with it ([`crate::model::Derived`]): a request whose token and
/// environment come from the decision cache copies no id and allocates
/// nothing here.
fn insert_identity(
    headers: &mut (impl IdentitySink + ?Sized),
    names: &InjectNames,
    id: &Identity,
) -> Result<()> {
    let [organization_id, client_id, service_account_id, scopes] = id
        .token
        .header_values
        .get_or_init(|| token_values(&id.token))
        .as_ref()
        .ok_or_else(invalid_identity_value)?;
    headers.put(names.organization_id.clone(), organization_id.clone());
    headers.put(names.client_id.clone(), client_id.clone());
    headers.put(names.service_account_id.clone(), service_account_id.clone());
    headers.put(names.scopes.clone(), scopes.clone());
    if let Some(ws) = &id.workspace {
        let env = &ws.environment;
        let [workspace_id, environment_id] = env
            .header_values
            .get_or_init(|| environment_values(env))
            .as_ref()
            .ok_or_else(invalid_identity_value)?;
        headers.put(names.workspace_id.clone(), workspace_id.clone());
        headers.put(
            names.workspace_role.clone(),
            HeaderValue::from_static(ws.role.as_str()),
        );
        headers.put(names.environment_id.clone(), environment_id.clone());
    }
    Ok(())
}

/// What the decision listener needs of the same rules: the identity headers
/// to hand the ingress, and the received headers it must remove.
impl HeaderRules {
    /// The identity headers of an allowed decision, as the proxy would
    /// inject them.
    pub(crate) fn identity_headers(&self, identity: &Identity, out: &mut Fields) -> Result<()> {
        insert_identity(out, &self.inject, identity)
    }

    /// Whether a received header is one of the identity headers, in any
    /// case or `_` form: a client-sent one the ingress must not pass on.
    pub(crate) fn is_identity_header(&self, name: &str) -> bool {
        self.identity_names
            .iter()
            .any(|canon| same_header_name(canon, name))
    }

    /// `proxy.forward_authorization`.
    pub(crate) fn forwards_authorization(&self) -> bool {
        self.forward_authorization
    }
}

/// Removes the hop-by-hop fields of an upstream's answer (RFC 9110
/// §7.6.1): those its `Connection` names, `Connection` itself (pingora
/// writes the client connection's own), `Keep-Alive`, `Proxy-Connection`
/// and `Upgrade`. A `101 Switching Protocols` keeps `Connection: Upgrade`
/// and `Upgrade`, which are its meaning.
pub(crate) fn strip_response_hop_by_hop(head: &mut ResponseHeader, switching: bool) {
    // Most answers carry at most `Connection: keep-alive`: one pass over the
    // names, no look-ups, and then one removal.
    let (mut connection, mut others) = (false, false);
    for n in head.headers.keys() {
        if *n == http::header::CONNECTION {
            connection = true;
        } else if *n == http::header::UPGRADE
            || n.as_str() == "keep-alive"
            || n.as_str() == "proxy-connection"
        {
            others = true;
        }
    }
    if connection {
        // `keep-alive` names a field removed below when there is one.
        let nominated: Vec<http::HeaderName> = connection_options(&head.headers)
            .filter(|t| !t.eq_ignore_ascii_case(b"keep-alive"))
            .filter_map(|t| http::HeaderName::from_bytes(t).ok())
            .filter(|n| !(switching && *n == http::header::UPGRADE))
            .collect();
        for name in nominated {
            head.remove_header(&name);
        }
        if !switching {
            head.remove_header(&http::header::CONNECTION);
        }
    }
    if others {
        if !switching {
            head.remove_header(&http::header::UPGRADE);
        }
        head.remove_header("keep-alive");
        head.remove_header("proxy-connection");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::authorize;

    #[test]
    fn addresses_are_appended_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.100.255",
            "192.168.9.99",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:10.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().expect("address");
            let mut out = String::from("x, ");
            push_ip(&mut out, ip);
            assert_eq!(out, format!("x, {ip}"));
        }
    }

    fn identity(organization_id: &str) -> Identity {
        Identity {
            token: Arc::new(TokenRecord {
                organization_id: organization_id.into(),
                service_account_id: "sa1".into(),
                client_id: "sa_client1".into(),
                scopes: crate::scope::ScopeSet::from_stored("logs:read workflows:write"),
                expires_at: i64::MAX,
                allowed_sources: None,
                header_values: Default::default(),
            }),
            workspace: Some(authorize::WorkspaceIdentity {
                environment: Arc::new(EnvironmentRef {
                    id: "env1".into(),
                    workspace_id: "ws1".into(),
                    organization_id: organization_id.into(),
                    header_values: Default::default(),
                }),
                role: crate::scope::Role::Admin,
            }),
        }
    }

    fn names() -> InjectNames {
        InjectNames::new(&crate::config::IdentityHeaders {
            organization_id: "x-org".into(),
            client_id: "x-client".into(),
            service_account_id: "x-sa".into(),
            scopes: "x-scopes".into(),
            workspace_id: "x-ws".into(),
            workspace_role: "x-role".into(),
            environment_id: "x-env".into(),
        })
        .expect("valid names")
    }

    #[test]
    fn identity_header_values_are_made_once_per_record_and_shared() {
        let id = identity("org1");
        let names = names();
        let (mut first, mut second) = (http::HeaderMap::new(), http::HeaderMap::new());
        insert_identity(&mut first, &names, &id).expect("valid ids");
        insert_identity(&mut second, &names, &id).expect("valid ids");
        let expected = [
            (&names.organization_id, "org1"),
            (&names.client_id, "sa_client1"),
            (&names.service_account_id, "sa1"),
            (&names.scopes, "logs:read workflows:write"),
            (&names.workspace_id, "ws1"),
            (&names.workspace_role, "admin"),
            (&names.environment_id, "env1"),
        ];
        assert_eq!(first.len(), expected.len());
        for (name, value) in expected {
            let (a, b) = (&first[name], &second[name]);
            assert_eq!(
                (a.as_bytes(), b.as_bytes()),
                (value.as_bytes(), value.as_bytes()),
                "{name}"
            );
            // The second request's value is the first one's bytes, not a copy.
            assert_eq!(a.as_bytes().as_ptr(), b.as_bytes().as_ptr(), "{name}");
        }
    }

    #[test]
    fn an_id_that_is_not_a_header_value_fails_the_request() {
        let names = names();
        let mut headers = http::HeaderMap::new();
        let err = insert_identity(&mut headers, &names, &identity("org\n1"))
            .expect_err("not a header value");
        assert_eq!(err.etype(), &ErrorType::InvalidHTTPHeader);

        let mut id = identity("org1");
        let mut env = EnvironmentRef::clone(&id.workspace.as_ref().expect("workspace").environment);
        env.id = "env\r1".into();
        id.workspace.as_mut().expect("workspace").environment = Arc::new(env);
        assert!(insert_identity(&mut headers, &names, &id).is_err());
    }

    fn request_headers(lines: &[(&str, &str)]) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        for (name, value) in lines {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        headers
    }

    fn header_names(headers: &http::HeaderMap) -> Vec<&str> {
        headers.keys().map(HeaderName::as_str).collect()
    }

    #[test]
    fn hop_by_hop_fields_and_the_ones_connection_names_are_removed() {
        let mut headers = request_headers(&[
            ("host", "t"),
            ("connection", "x-foo, keep-alive"),
            ("connection", "X-Bar"),
            ("x-foo", "1"),
            ("x-bar", "2"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic eDp5"),
            ("te", "trailers"),
            ("trailer", "x-sum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAA"),
            ("x-end-to-end", "kept"),
        ]);
        assert_eq!(
            strip_hop_by_hop(&mut headers, http::Version::HTTP_11).ok(),
            Some(false)
        );
        assert_eq!(header_names(&headers), ["host", "x-end-to-end"]);
    }

    #[test]
    fn a_request_without_hop_by_hop_fields_is_left_alone() {
        let mut headers = request_headers(&[("host", "t"), ("x-a", "1")]);
        assert_eq!(
            strip_hop_by_hop(&mut headers, http::Version::HTTP_11).ok(),
            Some(false)
        );
        assert_eq!(header_names(&headers), ["host", "x-a"]);
    }

    #[test]
    fn only_an_http_1_1_websocket_upgrade_is_recognised() {
        let upgrade = [("connection", "Upgrade"), ("upgrade", "WebSocket")];
        let mut headers = request_headers(&upgrade);
        assert_eq!(
            strip_hop_by_hop(&mut headers, http::Version::HTTP_11).ok(),
            Some(true)
        );
        assert!(headers.is_empty(), "{headers:?}");
        let mut headers = request_headers(&upgrade);
        assert_eq!(
            strip_hop_by_hop(&mut headers, http::Version::HTTP_10).ok(),
            Some(false)
        );
        let mut headers = request_headers(&[("connection", "upgrade"), ("upgrade", "h2c")]);
        assert_eq!(
            strip_hop_by_hop(&mut headers, http::Version::HTTP_11).ok(),
            Some(false)
        );
    }

    #[test]
    fn connection_may_not_name_protected_or_malformed_fields_or_too_many() {
        for value in [
            "host",
            "X-Forwarded-For",
            "x-forwarded-host",
            "x-forwarded-proto",
            "\"x-foo\"",
            ":authority",
            "a, b, c, d, e, f, g, h, i, j",
        ] {
            let mut headers = request_headers(&[("connection", value)]);
            let refused = strip_hop_by_hop(&mut headers, http::Version::HTTP_11).expect_err(value);
            // A request problem: answered 400, never forwarded.
            assert!(
                matches!(refused.esource(), pingora::ErrorSource::Downstream),
                "{value}"
            );
        }
        let mut headers = request_headers(&[("connection", "a, b, c, d, e, f, g, h, i")]);
        assert!(strip_hop_by_hop(&mut headers, http::Version::HTTP_11).is_ok());
    }

    fn answer(status: u16, fields: &[(&'static str, &'static str)]) -> ResponseHeader {
        let mut head = ResponseHeader::build(status, None).expect("a status");
        for (name, value) in fields {
            head.append_header(*name, *value).expect("a field");
        }
        head
    }

    fn answer_names(head: &ResponseHeader) -> Vec<String> {
        let mut names: Vec<String> = head.headers.keys().map(|n| n.to_string()).collect();
        names.sort();
        names
    }

    #[test]
    fn a_plain_keep_alive_answer_loses_only_its_connection_field() {
        let mut head = answer(
            200,
            &[("Content-Length", "2"), ("Connection", "keep-alive")],
        );
        strip_response_hop_by_hop(&mut head, false);
        assert_eq!(answer_names(&head), ["content-length"]);
    }

    #[test]
    fn fields_the_connection_field_names_go_with_it_whatever_their_case() {
        let mut head = answer(
            200,
            &[
                ("Connection", "Keep-Alive, X-Hop"),
                ("Connection", "x-other"),
                ("X-Hop", "1"),
                ("X-Other", "2"),
                ("Keep-Alive", "timeout=5"),
                ("X-Kept", "3"),
            ],
        );
        strip_response_hop_by_hop(&mut head, false);
        assert_eq!(answer_names(&head), ["x-kept"]);
    }

    #[test]
    fn hop_by_hop_fields_go_without_a_connection_field() {
        let mut head = answer(
            200,
            &[
                ("Keep-Alive", "timeout=5"),
                ("Proxy-Connection", "keep-alive"),
                ("Upgrade", "h2c"),
                ("X-Kept", "1"),
            ],
        );
        strip_response_hop_by_hop(&mut head, false);
        assert_eq!(answer_names(&head), ["x-kept"]);
    }

    #[test]
    fn switching_protocols_keeps_connection_and_upgrade() {
        let mut head = answer(
            101,
            &[
                ("Connection", "Upgrade, X-Hop"),
                ("Upgrade", "websocket"),
                ("X-Hop", "1"),
                ("Keep-Alive", "timeout=5"),
            ],
        );
        strip_response_hop_by_hop(&mut head, true);
        assert_eq!(answer_names(&head), ["connection", "upgrade"]);
    }

    #[test]
    fn an_answer_without_hop_by_hop_fields_is_left_alone() {
        let mut head = answer(200, &[("Content-Length", "2"), ("X-Kept", "1")]);
        strip_response_hop_by_hop(&mut head, false);
        assert_eq!(answer_names(&head), ["content-length", "x-kept"]);
    }
}
