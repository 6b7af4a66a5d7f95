//! The validated form of each configuration section, and one `TryFrom`
//! per section from its file form (`file.rs`) that checks it. Errors name
//! the key as written in the file; `mod.rs` adds the file's name.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use super::file;
use crate::oauth::throttle::ThrottleConfig;
use crate::scope::Scope;
use crate::secret::{is_argon2id_phc, HashParams};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    Redis,
    Memory,
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub public_url: String,
    pub threads: usize,
    pub shutdown_grace: Duration,
    /// Unix socket over which `serve --upgrade` takes the listeners over.
    pub upgrade_sock: PathBuf,
    /// Limits every listener applies to each client connection.
    pub limits: crate::listen::Limits,
    /// `server.decisions_listen`: the decision listener (off when `None`).
    pub decisions_listen: Option<ListenAddr>,
    /// TLS on the proxy, admin and metrics listeners (`server.tls`,
    /// `server.admin_tls`, `server.metrics_tls`); `None`: plain TCP.
    pub tls: Option<super::edge::TlsConfig>,
    pub admin_tls: Option<super::edge::TlsConfig>,
    pub metrics_tls: Option<super::edge::TlsConfig>,
    /// HTTP/2 on the listeners (`server.h2c`, `server.h2_*`).
    pub h2: super::edge::H2Config,
}

#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub backend: Backend,
    pub url: String,
    pub urls: Vec<String>,
    pub cluster: bool,
    pub key_prefix: String,
    pub timeout: Duration,
    pub pool_size: usize,
}

/// Events that revoke an account's live tokens at once (`tokens.revoke_on`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RevokeOn {
    pub rotate: bool,
    pub disable: bool,
    pub delete: bool,
    pub scope_change: bool,
}

#[derive(Clone, Debug)]
pub struct TokenConfig {
    pub ttl_seconds: u64,
    pub revoke_on: RevokeOn,
    /// The bound of an account's `token_ttl_seconds` (at least `ttl_seconds`).
    pub max_ttl_seconds: u64,
}

#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub forward_authorization: bool,
    pub trusted_proxies: Vec<IpNet>,
    pub allow_semicolon_in_path: bool,
    /// Override headers (canonical: lower case, `-`) let through from
    /// untrusted peers; every other one of [`OVERRIDE_HEADERS`] is stripped.
    pub pass_override_headers: Vec<String>,
}

/// Headers that make some framework or proxy take another URL, method,
/// host, port, scheme or client address than the one tollgate decided on.
/// Stripped from peers outside `proxy.trusted_proxies` unless named in
/// `proxy.pass_override_headers`.
pub const OVERRIDE_HEADERS: &[&str] = &[
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-forwarded-prefix",
    "x-forwarded-port",
    "x-forwarded-server",
    "x-forwarded-scheme",
    "x-forwarded-host",
    "true-client-ip",
    "x-client-ip",
    "client-ip",
    "x-original-host",
    "x-host",
];

#[derive(Clone, Debug)]
pub struct CacheConfig {
    pub ttl: Duration,
    pub max_entries: usize,
}

#[derive(Clone, Debug)]
pub struct AdminKey {
    pub name: String,
    pub hash: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamConfig {
    pub addrs: Vec<String>,
    pub tls: bool,
    pub sni: String,
    pub health_check_path: Option<String>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// `upstreams.NAME.protocol`: how requests go to it.
    pub protocol: super::edge::UpstreamProtocol,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityHeaders {
    pub organization_id: String,
    pub client_id: String,
    pub service_account_id: String,
    pub scopes: String,
    pub workspace_id: String,
    pub workspace_role: String,
    pub environment_id: String,
}

impl IdentityHeaders {
    pub fn all(&self) -> [&str; 7] {
        [
            &self.organization_id,
            &self.client_id,
            &self.service_account_id,
            &self.scopes,
            &self.workspace_id,
            &self.workspace_role,
            &self.environment_id,
        ]
    }
}

/// A section that failed validation: the key (relative to the file, or to
/// the entry for an upstream) and what is wrong with it.
#[derive(Debug)]
pub struct Invalid {
    pub key: String,
    pub problem: String,
}

pub(super) fn invalid(key: impl Into<String>, problem: impl Into<String>) -> Invalid {
    Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

fn address(key: &str, v: &str) -> Result<SocketAddr, Invalid> {
    v.parse()
        .map_err(|_| invalid(key, format!("{v:?} is not an address like 127.0.0.1:8080")))
}

/// Where a listener listens: a TCP address, or a Unix socket
/// (`unix:/absolute/path`) for an ingress on the same host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    /// The socket's path and the permission bits it is created with.
    Unix {
        path: PathBuf,
        mode: u32,
    },
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix { path, .. } => write!(f, "unix:{}", path.display()),
        }
    }
}

/// `ADDR:PORT`, or `unix:/path` with its mode (`mode_key`'s octal value).
fn listen_addr(key: &str, v: &str, mode: &str) -> Result<ListenAddr, Invalid> {
    let Some(path) = v.strip_prefix("unix:") else {
        return v.parse().map(ListenAddr::Tcp).map_err(|_| {
            invalid(
                key,
                format!("{v:?} is not an address like 127.0.0.1:9100 or unix:/run/tollgate/decisions.sock"),
            )
        });
    };
    let path = PathBuf::from(path);
    if !path.is_absolute() {
        return Err(invalid(
            key,
            format!("{v:?}: a Unix socket needs an absolute path"),
        ));
    }
    let mode = u32::from_str_radix(mode.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| {
            invalid(
                "server.decisions_socket_mode",
                format!("{mode:?} is not permission bits in octal, like \"0660\""),
            )
        })?;
    Ok(ListenAddr::Unix { path, mode })
}

/// `upgrade_sock` stays as written; the caller resolves it against the
/// config file's folder.
impl TryFrom<&file::Server> for ServerConfig {
    type Error = Invalid;

    fn try_from(s: &file::Server) -> Result<ServerConfig, Invalid> {
        Ok(ServerConfig {
            listen: address("server.listen", &s.listen)?,
            admin_listen: address("server.admin_listen", &s.admin_listen)?,
            metrics_listen: address("server.metrics_listen", &s.metrics_listen)?,
            public_url: validate_public_url(&s.public_url)
                .map_err(|p| invalid("server.public_url", p))?,
            threads: match s.threads {
                1..=256 => s.threads,
                _ => return Err(invalid("server.threads", "must be between 1 and 256")),
            },
            shutdown_grace: Duration::from_secs(s.shutdown_grace_seconds),
            upgrade_sock: if s.upgrade_sock.is_empty() {
                return Err(invalid("server.upgrade_sock", "must be a path"));
            } else {
                PathBuf::from(&s.upgrade_sock)
            },
            limits: crate::listen::Limits {
                max_head_bytes: match s.max_request_head_bytes {
                    1024..=1_048_576 => s.max_request_head_bytes,
                    _ => {
                        return Err(invalid(
                            "server.max_request_head_bytes",
                            "must be between 1024 and 1048576",
                        ))
                    }
                },
                head_timeout: match s.request_head_timeout_ms {
                    1..=3_600_000 => Duration::from_millis(s.request_head_timeout_ms),
                    _ => {
                        return Err(invalid(
                            "server.request_head_timeout_ms",
                            "must be between 1 and 3600000",
                        ))
                    }
                },
                max_connections: match s.max_connections {
                    0 => return Err(invalid("server.max_connections", "must be at least 1")),
                    n => n,
                },
            },
            decisions_listen: match s.decisions_listen.as_str() {
                "" => None,
                v => Some(listen_addr(
                    "server.decisions_listen",
                    v,
                    &s.decisions_socket_mode,
                )?),
            },
            tls: super::edge::tls("server.tls", s.tls.as_ref())?,
            admin_tls: super::edge::tls("server.admin_tls", s.admin_tls.as_ref())?,
            metrics_tls: super::edge::tls("server.metrics_tls", s.metrics_tls.as_ref())?,
            h2: super::edge::h2(s)?,
        })
    }
}

/// `url` is read as given: `TOLLGATE_REDIS_URL` has replaced it before.
impl TryFrom<&file::Store> for StoreConfig {
    type Error = Invalid;

    fn try_from(st: &file::Store) -> Result<StoreConfig, Invalid> {
        let backend = match st.backend.as_str() {
            "redis" => Backend::Redis,
            "memory" => Backend::Memory,
            other => {
                return Err(invalid(
                    "store.backend",
                    format!("{other:?} is not one of \"redis\", \"memory\""),
                ))
            }
        };
        if backend == Backend::Redis && !st.cluster && !is_redis_url(&st.url) {
            return Err(invalid(
                "store.url",
                "must start with redis:// or rediss://",
            ));
        }
        if st.cluster {
            if st.urls.is_empty() {
                return Err(invalid(
                    "store.urls",
                    "cluster = true needs at least one url",
                ));
            }
            if let Some(bad) = st.urls.iter().find(|u| !is_redis_url(u)) {
                return Err(invalid(
                    "store.urls",
                    format!("{bad:?} must start with redis:// or rediss://"),
                ));
            }
        }
        if st.key_prefix.is_empty()
            || !st
                .key_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_:.".contains(&b))
        {
            return Err(invalid(
                "store.key_prefix",
                "must be non-empty and use only letters, digits, '-', '_', ':' or '.'",
            ));
        }
        if !(1..=60_000).contains(&st.timeout_ms) {
            return Err(invalid("store.timeout_ms", "must be between 1 and 60000"));
        }
        if !(1..=1024).contains(&st.pool_size) {
            return Err(invalid("store.pool_size", "must be between 1 and 1024"));
        }
        Ok(StoreConfig {
            backend,
            url: st.url.clone(),
            urls: st.urls.clone(),
            cluster: st.cluster,
            key_prefix: st.key_prefix.clone(),
            timeout: Duration::from_millis(st.timeout_ms),
            pool_size: st.pool_size,
        })
    }
}

impl TryFrom<&file::Tokens> for TokenConfig {
    type Error = Invalid;

    fn try_from(t: &file::Tokens) -> Result<TokenConfig, Invalid> {
        if !(1..=86_400).contains(&t.ttl_seconds) {
            return Err(invalid("tokens.ttl_seconds", "must be between 1 and 86400"));
        }
        let mut revoke_on = RevokeOn::default();
        for ev in &t.revoke_on {
            match ev.as_str() {
                "rotate" => revoke_on.rotate = true,
                "disable" => revoke_on.disable = true,
                "delete" => revoke_on.delete = true,
                "scope_change" => revoke_on.scope_change = true,
                other => {
                    return Err(invalid(
                        "tokens.revoke_on",
                        format!("{other:?} is not one of rotate, disable, delete, scope_change"),
                    ))
                }
            }
        }
        let max_ttl_seconds = t.max_ttl_seconds.unwrap_or(t.ttl_seconds);
        if !(t.ttl_seconds..=86_400).contains(&max_ttl_seconds) {
            return Err(invalid(
                "tokens.max_ttl_seconds",
                "must be between tokens.ttl_seconds and 86400",
            ));
        }
        Ok(TokenConfig {
            ttl_seconds: t.ttl_seconds,
            revoke_on,
            max_ttl_seconds,
        })
    }
}

impl TryFrom<&file::Proxy> for ProxyConfig {
    type Error = Invalid;

    fn try_from(p: &file::Proxy) -> Result<ProxyConfig, Invalid> {
        let trusted_proxies = crate::proxy::netaddr::parse_cidrs(&p.trusted_proxies)
            .map_err(|e| invalid("proxy.trusted_proxies", e))?;
        let mut pass_override_headers = Vec::new();
        for name in &p.pass_override_headers {
            let canon = canonical_header(name);
            if !OVERRIDE_HEADERS.contains(&canon.as_str()) {
                return Err(invalid(
                    "proxy.pass_override_headers",
                    format!("{name:?} is not one of the override headers tollgate strips"),
                ));
            }
            pass_override_headers.push(canon);
        }
        Ok(ProxyConfig {
            forward_authorization: p.forward_authorization,
            trusted_proxies,
            allow_semicolon_in_path: p.allow_semicolon_in_path,
            pass_override_headers,
        })
    }
}

impl TryFrom<&file::Cache> for CacheConfig {
    type Error = Invalid;

    fn try_from(c: &file::Cache) -> Result<CacheConfig, Invalid> {
        if c.ttl_ms > 1000 {
            return Err(invalid(
                "cache.ttl_ms",
                "must be at most 1000 (0 disables the cache)",
            ));
        }
        if c.max_entries == 0 {
            return Err(invalid("cache.max_entries", "must be at least 1"));
        }
        Ok(CacheConfig {
            ttl: Duration::from_millis(c.ttl_ms),
            max_entries: c.max_entries,
        })
    }
}

impl TryFrom<&file::Throttle> for ThrottleConfig {
    type Error = Invalid;

    fn try_from(t: &file::Throttle) -> Result<ThrottleConfig, Invalid> {
        if t.window_seconds == 0
            || t.max_failures_per_client_source == 0
            || t.max_failures_per_source == 0
        {
            return Err(invalid(
                "throttle",
                "window_seconds and both limits must be at least 1",
            ));
        }
        Ok(ThrottleConfig {
            window_seconds: t.window_seconds,
            max_failures_per_client_source: t.max_failures_per_client_source,
            max_failures_per_source: t.max_failures_per_source,
        })
    }
}

/// The `[admin]` table: the named admin keys.
pub(super) struct AdminConfig {
    pub(super) keys: Vec<AdminKey>,
}

impl TryFrom<&file::Admin> for AdminConfig {
    type Error = Invalid;

    fn try_from(a: &file::Admin) -> Result<AdminConfig, Invalid> {
        let mut keys: Vec<AdminKey> = Vec::new();
        for (i, k) in a.keys.iter().enumerate() {
            let key = format!("admin.keys[{i}]");
            if k.name.is_empty()
                || k.name.len() > 64
                || k.name == "env"
                || !k
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(invalid(
                    format!("{key}.name"),
                    "must be 1-64 letters, digits, '-' or '_' (and not \"env\", which names TOLLGATE_ADMIN_KEY)",
                ));
            }
            if keys.iter().any(|a| a.name == k.name) {
                return Err(invalid(
                    format!("{key}.name"),
                    format!("duplicate key name {:?}", k.name),
                ));
            }
            if !is_argon2id_phc(&k.hash) {
                return Err(invalid(
                    format!("{key}.hash"),
                    "is not an argon2id PHC hash (make one with `tollgate hash-key`)",
                ));
            }
            keys.push(AdminKey {
                name: k.name.clone(),
                hash: k.hash.clone(),
            });
        }
        Ok(AdminConfig { keys })
    }
}

/// The `[scopes]` table: the resources scopes may name.
pub(super) struct ScopesConfig {
    pub(super) resources: Vec<String>,
}

impl TryFrom<&file::Scopes> for ScopesConfig {
    type Error = Invalid;

    fn try_from(s: &file::Scopes) -> Result<ScopesConfig, Invalid> {
        let resources = s.resources.clone();
        if resources.is_empty() {
            return Err(invalid(
                "scopes.resources",
                "must name at least one resource",
            ));
        }
        for r in &resources {
            if r.is_empty()
                || r.len() > 64
                || !r
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
            {
                return Err(invalid(
                    "scopes.resources",
                    format!("{r:?} must be 1-64 of [a-z0-9_-]"),
                ));
            }
            if r == crate::scope::ADMIN_RESOURCE {
                return Err(invalid(
                    "scopes.resources",
                    "\"admin\" is reserved for admin:read and admin:write",
                ));
            }
            debug_assert!(Scope::parse(&format!("{r}:read"), &resources).is_ok());
        }
        let mut dedup = resources.clone();
        dedup.sort();
        dedup.dedup();
        if dedup.len() != resources.len() {
            return Err(invalid("scopes.resources", "lists a resource twice"));
        }
        Ok(ScopesConfig { resources })
    }
}

/// The `[upstreams.NAME]` tables, each checked by its own `TryFrom`.
pub(super) struct UpstreamsConfig {
    pub(super) upstreams: BTreeMap<String, UpstreamConfig>,
}

impl TryFrom<&BTreeMap<String, file::Upstream>> for UpstreamsConfig {
    type Error = Invalid;

    fn try_from(tables: &BTreeMap<String, file::Upstream>) -> Result<UpstreamsConfig, Invalid> {
        let mut upstreams = BTreeMap::new();
        for (name, u) in tables {
            let key = format!("upstreams.{name}");
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(invalid(key, "names must be letters, digits, '-' or '_'"));
            }
            let upstream = UpstreamConfig::try_from(u)
                .map_err(|e| invalid(format!("{key}.{}", e.key), e.problem))?;
            upstreams.insert(name.clone(), upstream);
        }
        Ok(UpstreamsConfig { upstreams })
    }
}

impl TryFrom<&file::IdentityHeaders> for IdentityHeaders {
    type Error = Invalid;

    fn try_from(ih: &file::IdentityHeaders) -> Result<IdentityHeaders, Invalid> {
        let headers = IdentityHeaders {
            organization_id: header_name("identity_headers.organization_id", &ih.organization_id)?,
            client_id: header_name("identity_headers.client_id", &ih.client_id)?,
            service_account_id: header_name(
                "identity_headers.service_account_id",
                &ih.service_account_id,
            )?,
            scopes: header_name("identity_headers.scopes", &ih.scopes)?,
            workspace_id: header_name("identity_headers.workspace_id", &ih.workspace_id)?,
            workspace_role: header_name("identity_headers.workspace_role", &ih.workspace_role)?,
            environment_id: header_name("identity_headers.environment_id", &ih.environment_id)?,
        };
        let mut names: Vec<String> = headers.all().iter().map(|n| canonical_header(n)).collect();
        names.sort();
        names.dedup();
        if names.len() != 7 {
            return Err(invalid(
                "identity_headers",
                "two identity headers have the same name",
            ));
        }
        Ok(headers)
    }
}

/// The `[hashing]` table: argon2 parameters and the hashing pool's bounds.
pub(super) struct HashingConfig {
    pub(super) params: HashParams,
    pub(super) max_concurrent: usize,
    pub(super) max_queued: usize,
}

impl TryFrom<&file::Hashing> for HashingConfig {
    type Error = Invalid;

    fn try_from(h: &file::Hashing) -> Result<HashingConfig, Invalid> {
        let params = HashParams {
            memory_kib: h.memory_kib,
            iterations: h.iterations,
            parallelism: h.parallelism,
        };
        params
            .validate()
            .map_err(|e| invalid("hashing", e.to_string()))?;
        if !(1..=64).contains(&h.max_concurrent) {
            return Err(invalid(
                "hashing.max_concurrent",
                "must be between 1 and 64",
            ));
        }
        if !(1..=100_000).contains(&h.max_queued) {
            return Err(invalid(
                "hashing.max_queued",
                "must be between 1 and 100000",
            ));
        }
        Ok(HashingConfig {
            params,
            max_concurrent: h.max_concurrent,
            max_queued: h.max_queued,
        })
    }
}

/// The `[audit]` table.
pub(super) struct AuditConfig {
    pub(super) max_events_per_org: usize,
}

impl TryFrom<&file::Audit> for AuditConfig {
    type Error = Invalid;

    fn try_from(a: &file::Audit) -> Result<AuditConfig, Invalid> {
        if !(1..=1_000_000).contains(&a.max_events_per_org) {
            return Err(invalid(
                "audit.max_events_per_org",
                "must be between 1 and 1000000",
            ));
        }
        Ok(AuditConfig {
            max_events_per_org: a.max_events_per_org,
        })
    }
}

fn is_redis_url(u: &str) -> bool {
    u.starts_with("redis://") || u.starts_with("rediss://")
}

fn validate_public_url(u: &str) -> Result<String, String> {
    let rest = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"))
        .ok_or("must start with http:// or https://")?;
    if rest.is_empty() || rest.contains(['?', '#', ' ']) {
        return Err("must be an absolute URL without query or fragment".into());
    }
    Ok(u.trim_end_matches('/').to_string())
}

impl TryFrom<&file::Upstream> for UpstreamConfig {
    type Error = Invalid;

    /// Keys in errors are the field's alone: the caller names the upstream.
    fn try_from(u: &file::Upstream) -> Result<UpstreamConfig, Invalid> {
        if u.addrs.is_empty() {
            return Err(invalid("addrs", "needs at least one host:port"));
        }
        for a in &u.addrs {
            let ok = a.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            if !ok {
                return Err(invalid("addrs", format!("{a:?} is not host:port")));
            }
        }
        for (key, ms) in [
            ("connect_timeout_ms", u.connect_timeout_ms),
            ("read_timeout_ms", u.read_timeout_ms),
        ] {
            if ms == 0 {
                return Err(invalid(key, "timeouts must be at least 1 ms"));
            }
        }
        let health_check_path = match u.health_check_path.as_str() {
            "" => None,
            p if p.starts_with('/') && !p.bytes().any(|b| b.is_ascii_control() || b == b' ') => {
                Some(p.to_string())
            }
            _ => {
                return Err(invalid(
                    "health_check_path",
                    "must be empty or a path starting with '/'",
                ))
            }
        };
        Ok(UpstreamConfig {
            addrs: u.addrs.clone(),
            tls: u.tls,
            sni: u.sni.clone(),
            health_check_path,
            connect_timeout: Duration::from_millis(u.connect_timeout_ms),
            read_timeout: Duration::from_millis(u.read_timeout_ms),
            protocol: super::edge::upstream_protocol(&u.protocol, u.tls)?,
        })
    }
}

fn header_name(key: &str, v: &str) -> Result<String, Invalid> {
    let ok = !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        return Err(invalid(key, format!("{v:?} is not a valid header name")));
    }
    let lower = v.to_ascii_lowercase();
    if [
        "authorization",
        "host",
        "connection",
        "content-length",
        "transfer-encoding",
        "x-request-id",
        "x-forwarded-for",
        "x-forwarded-proto",
    ]
    .contains(&lower.as_str())
    {
        return Err(invalid(key, format!("{v:?} is reserved")));
    }
    Ok(lower)
}

/// The form used to compare header names: lower case, `_` as `-`.
pub fn canonical_header(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}
