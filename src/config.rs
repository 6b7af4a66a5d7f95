//! Configuration: TOML file structs that reject unknown keys, converted into
//! a validated `Config` that the rest of the process uses. Relative paths
//! resolve against the config file's folder; a few environment variables
//! override the file (docs/contract.md §9).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::scope::Scope;
use crate::secret::{is_argon2id_phc, HashParams};
use ipnet::IpNet;
use secrecy::SecretString;

#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {problem}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub problem: String,
}

mod file {
    //! The file as written. Every table rejects unknown keys.
    use std::collections::BTreeMap;

    use serde::Deserialize;

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, default)]
    pub struct Root {
        pub server: Server,
        pub store: Store,
        pub tokens: Tokens,
        pub proxy: Proxy,
        pub cache: Cache,
        pub policies: Policies,
        pub throttle: Throttle,
        pub admin: Admin,
        pub scopes: Scopes,
        pub upstreams: BTreeMap<String, Upstream>,
        pub identity_headers: IdentityHeaders,
        pub hashing: Hashing,
        pub audit: Audit,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Server {
        pub listen: String,
        pub admin_listen: String,
        pub metrics_listen: String,
        pub public_url: String,
        pub threads: usize,
        pub shutdown_grace_seconds: u64,
        pub upgrade_sock: String,
        pub max_request_head_bytes: usize,
        pub request_head_timeout_ms: u64,
        pub max_connections: usize,
    }
    impl Default for Server {
        fn default() -> Self {
            Server {
                listen: "0.0.0.0:8080".into(),
                admin_listen: "127.0.0.1:9080".into(),
                metrics_listen: "127.0.0.1:9091".into(),
                public_url: "http://localhost:8080".into(),
                threads: 2,
                shutdown_grace_seconds: 10,
                upgrade_sock: "/tmp/tollgate_upgrade.sock".into(),
                max_request_head_bytes: 64 * 1024,
                request_head_timeout_ms: 10_000,
                max_connections: 10_000,
            }
        }
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Store {
        pub backend: String,
        pub url: String,
        pub urls: Vec<String>,
        pub cluster: bool,
        pub key_prefix: String,
        pub timeout_ms: u64,
        pub pool_size: usize,
    }
    impl Default for Store {
        fn default() -> Self {
            Store {
                backend: "redis".into(),
                url: "redis://127.0.0.1:6379/0".into(),
                urls: Vec::new(),
                cluster: false,
                key_prefix: "tollgate".into(),
                timeout_ms: 250,
                pool_size: 32,
            }
        }
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Tokens {
        pub ttl_seconds: u64,
        pub revoke_on: Vec<String>,
    }
    impl Default for Tokens {
        fn default() -> Self {
            Tokens {
                ttl_seconds: 900,
                revoke_on: Vec::new(),
            }
        }
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, default)]
    pub struct Proxy {
        pub forward_authorization: bool,
        pub trusted_proxies: Vec<String>,
        pub allow_semicolon_in_path: bool,
        pub pass_override_headers: Vec<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Cache {
        pub ttl_ms: u64,
        pub max_entries: usize,
    }
    impl Default for Cache {
        fn default() -> Self {
            Cache {
                ttl_ms: 500,
                max_entries: 100_000,
            }
        }
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Policies {
        pub dir: String,
    }
    impl Default for Policies {
        fn default() -> Self {
            Policies {
                dir: "policies".into(),
            }
        }
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Throttle {
        pub window_seconds: u64,
        pub max_failures_per_client_source: u64,
        pub max_failures_per_source: u64,
    }
    impl Default for Throttle {
        fn default() -> Self {
            Throttle {
                window_seconds: 60,
                max_failures_per_client_source: 10,
                max_failures_per_source: 50,
            }
        }
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, default)]
    pub struct Admin {
        pub keys: Vec<AdminKey>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct AdminKey {
        pub name: String,
        pub hash: String,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Scopes {
        pub resources: Vec<String>,
    }
    impl Default for Scopes {
        fn default() -> Self {
            Scopes {
                resources: crate::scope::default_resources(),
            }
        }
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Upstream {
        pub addrs: Vec<String>,
        pub tls: bool,
        pub sni: String,
        pub health_check_path: String,
        pub connect_timeout_ms: u64,
        pub read_timeout_ms: u64,
    }
    impl Default for Upstream {
        fn default() -> Self {
            Upstream {
                addrs: Vec::new(),
                tls: false,
                sni: String::new(),
                health_check_path: String::new(),
                connect_timeout_ms: 1000,
                read_timeout_ms: 30_000,
            }
        }
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct IdentityHeaders {
        pub organization_id: String,
        pub client_id: String,
        pub service_account_id: String,
        pub scopes: String,
        pub workspace_id: String,
        pub workspace_role: String,
        pub environment_id: String,
    }
    impl Default for IdentityHeaders {
        fn default() -> Self {
            IdentityHeaders {
                organization_id: "x-tollgate-organization-id".into(),
                client_id: "x-tollgate-client-id".into(),
                service_account_id: "x-tollgate-service-account-id".into(),
                scopes: "x-tollgate-scopes".into(),
                workspace_id: "x-tollgate-workspace-id".into(),
                workspace_role: "x-tollgate-workspace-role".into(),
                environment_id: "x-tollgate-environment-id".into(),
            }
        }
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Hashing {
        pub memory_kib: u32,
        pub iterations: u32,
        pub parallelism: u32,
        pub max_concurrent: usize,
        pub max_queued: usize,
    }
    impl Default for Hashing {
        fn default() -> Self {
            let p = crate::secret::HashParams::default();
            Hashing {
                memory_kib: p.memory_kib,
                iterations: p.iterations,
                parallelism: p.parallelism,
                max_concurrent: 2,
                max_queued: 128,
            }
        }
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Audit {
        pub max_events_per_org: usize,
    }
    impl Default for Audit {
        fn default() -> Self {
            Audit {
                max_events_per_org: 10_000,
            }
        }
    }
}

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

pub use crate::oauth::throttle::ThrottleConfig;

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

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it was read from (for reloads and messages).
    pub source: Option<PathBuf>,
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub tokens: TokenConfig,
    pub proxy: ProxyConfig,
    pub cache: CacheConfig,
    pub policies_dir: PathBuf,
    pub throttle: ThrottleConfig,
    pub admin_keys: Vec<AdminKey>,
    /// `TOLLGATE_ADMIN_KEY`, a plain key named `env`.
    pub env_admin_key: Option<SecretString>,
    pub resources: Vec<String>,
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    pub identity_headers: IdentityHeaders,
    pub hashing: HashParams,
    pub hashing_max_concurrent: usize,
    /// Verifications waiting for a hashing thread beyond which token
    /// requests and admin keys get 503 at once.
    pub hashing_max_queued: usize,
    pub audit_max_events_per_org: usize,
}

/// Environment overrides, passed in so tests don't touch the process env.
#[derive(Default, Clone)]
pub struct EnvOverrides {
    pub redis_url: Option<String>,
    pub admin_key: Option<SecretString>,
}

impl EnvOverrides {
    pub fn from_process() -> EnvOverrides {
        EnvOverrides {
            redis_url: std::env::var("TOLLGATE_REDIS_URL")
                .ok()
                .filter(|s| !s.is_empty()),
            admin_key: std::env::var("TOLLGATE_ADMIN_KEY")
                .ok()
                .filter(|s| !s.is_empty())
                .map(SecretString::from),
        }
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path, env: &EnvOverrides) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            key: "-".into(),
            problem: format!("cannot read: {e}"),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut cfg = Config::from_toml(&text, &path.display().to_string(), base, env)?;
        cfg.source = Some(path.to_path_buf());
        Ok(cfg)
    }

    /// Parses and validates config text; `base` resolves relative paths.
    pub fn from_toml(
        text: &str,
        file: &str,
        base: &Path,
        env: &EnvOverrides,
    ) -> Result<Config, ConfigError> {
        let root: file::Root = toml::from_str(text).map_err(|e| ConfigError {
            file: file.to_string(),
            key: e
                .span()
                .map(|s| {
                    // 1-based: the newlines before the error, plus one.
                    let before = text.get(..s.start).unwrap_or(text);
                    format!("line {}", before.matches('\n').count() + 1)
                })
                .unwrap_or_else(|| "-".into()),
            problem: e.message().to_string(),
        })?;
        let err = |key: &str, problem: String| ConfigError {
            file: file.to_string(),
            key: key.to_string(),
            problem,
        };
        validate(root, base, env, &err)
    }
}

fn validate(
    root: file::Root,
    base: &Path,
    env: &EnvOverrides,
    err: &dyn Fn(&str, String) -> ConfigError,
) -> Result<Config, ConfigError> {
    let addr = |key: &str, v: &str| -> Result<SocketAddr, ConfigError> {
        v.parse()
            .map_err(|_| err(key, format!("{v:?} is not an address like 127.0.0.1:8080")))
    };
    let s = &root.server;
    let server = ServerConfig {
        listen: addr("server.listen", &s.listen)?,
        admin_listen: addr("server.admin_listen", &s.admin_listen)?,
        metrics_listen: addr("server.metrics_listen", &s.metrics_listen)?,
        public_url: validate_public_url(&s.public_url).map_err(|p| err("server.public_url", p))?,
        threads: match s.threads {
            1..=256 => s.threads,
            _ => return Err(err("server.threads", "must be between 1 and 256".into())),
        },
        shutdown_grace: Duration::from_secs(s.shutdown_grace_seconds),
        upgrade_sock: if s.upgrade_sock.is_empty() {
            return Err(err("server.upgrade_sock", "must be a path".into()));
        } else {
            base.join(&s.upgrade_sock)
        },
        limits: crate::listen::Limits {
            max_head_bytes: match s.max_request_head_bytes {
                1024..=1_048_576 => s.max_request_head_bytes,
                _ => {
                    return Err(err(
                        "server.max_request_head_bytes",
                        "must be between 1024 and 1048576".into(),
                    ))
                }
            },
            head_timeout: match s.request_head_timeout_ms {
                1..=3_600_000 => Duration::from_millis(s.request_head_timeout_ms),
                _ => {
                    return Err(err(
                        "server.request_head_timeout_ms",
                        "must be between 1 and 3600000".into(),
                    ))
                }
            },
            max_connections: match s.max_connections {
                0 => return Err(err("server.max_connections", "must be at least 1".into())),
                n => n,
            },
        },
    };

    let st = &root.store;
    let backend = match st.backend.as_str() {
        "redis" => Backend::Redis,
        "memory" => Backend::Memory,
        other => {
            return Err(err(
                "store.backend",
                format!("{other:?} is not one of \"redis\", \"memory\""),
            ))
        }
    };
    let url = env.redis_url.clone().unwrap_or_else(|| st.url.clone());
    if backend == Backend::Redis && !st.cluster && !is_redis_url(&url) {
        return Err(err(
            "store.url",
            "must start with redis:// or rediss://".into(),
        ));
    }
    if st.cluster {
        if st.urls.is_empty() {
            return Err(err(
                "store.urls",
                "cluster = true needs at least one url".into(),
            ));
        }
        if let Some(bad) = st.urls.iter().find(|u| !is_redis_url(u)) {
            return Err(err(
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
        return Err(err(
            "store.key_prefix",
            "must be non-empty and use only letters, digits, '-', '_', ':' or '.'".into(),
        ));
    }
    if !(1..=60_000).contains(&st.timeout_ms) {
        return Err(err(
            "store.timeout_ms",
            "must be between 1 and 60000".into(),
        ));
    }
    if !(1..=1024).contains(&st.pool_size) {
        return Err(err("store.pool_size", "must be between 1 and 1024".into()));
    }
    let store = StoreConfig {
        backend,
        url,
        urls: st.urls.clone(),
        cluster: st.cluster,
        key_prefix: st.key_prefix.clone(),
        timeout: Duration::from_millis(st.timeout_ms),
        pool_size: st.pool_size,
    };

    if !(1..=86_400).contains(&root.tokens.ttl_seconds) {
        return Err(err(
            "tokens.ttl_seconds",
            "must be between 1 and 86400".into(),
        ));
    }
    let mut revoke_on = RevokeOn::default();
    for ev in &root.tokens.revoke_on {
        match ev.as_str() {
            "rotate" => revoke_on.rotate = true,
            "disable" => revoke_on.disable = true,
            "delete" => revoke_on.delete = true,
            "scope_change" => revoke_on.scope_change = true,
            other => {
                return Err(err(
                    "tokens.revoke_on",
                    format!("{other:?} is not one of rotate, disable, delete, scope_change"),
                ))
            }
        }
    }

    let trusted_proxies = crate::proxy::netaddr::parse_cidrs(&root.proxy.trusted_proxies)
        .map_err(|p| err("proxy.trusted_proxies", p))?;
    let mut pass_override_headers = Vec::new();
    for name in &root.proxy.pass_override_headers {
        let canon = name.to_ascii_lowercase().replace('_', "-");
        if !OVERRIDE_HEADERS.contains(&canon.as_str()) {
            return Err(err(
                "proxy.pass_override_headers",
                format!("{name:?} is not one of the override headers tollgate strips"),
            ));
        }
        pass_override_headers.push(canon);
    }

    if root.cache.ttl_ms > 1000 {
        return Err(err(
            "cache.ttl_ms",
            "must be at most 1000 (0 disables the cache)".into(),
        ));
    }
    if root.cache.max_entries == 0 {
        return Err(err("cache.max_entries", "must be at least 1".into()));
    }

    let t = &root.throttle;
    if t.window_seconds == 0
        || t.max_failures_per_client_source == 0
        || t.max_failures_per_source == 0
    {
        return Err(err(
            "throttle",
            "window_seconds and both limits must be at least 1".into(),
        ));
    }

    let mut admin_keys = Vec::new();
    for (i, k) in root.admin.keys.iter().enumerate() {
        let key = format!("admin.keys[{i}]");
        if k.name.is_empty()
            || k.name.len() > 64
            || k.name == "env"
            || !k
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(err(
                &format!("{key}.name"),
                "must be 1-64 letters, digits, '-' or '_' (and not \"env\", which names TOLLGATE_ADMIN_KEY)".into(),
            ));
        }
        if admin_keys.iter().any(|a: &AdminKey| a.name == k.name) {
            return Err(err(
                &format!("{key}.name"),
                format!("duplicate key name {:?}", k.name),
            ));
        }
        if !is_argon2id_phc(&k.hash) {
            return Err(err(
                &format!("{key}.hash"),
                "is not an argon2id PHC hash (make one with `tollgate hash-key`)".into(),
            ));
        }
        admin_keys.push(AdminKey {
            name: k.name.clone(),
            hash: k.hash.clone(),
        });
    }

    let resources = root.scopes.resources.clone();
    if resources.is_empty() {
        return Err(err(
            "scopes.resources",
            "must name at least one resource".into(),
        ));
    }
    for r in &resources {
        if r.is_empty()
            || r.len() > 64
            || !r
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return Err(err(
                "scopes.resources",
                format!("{r:?} must be 1-64 of [a-z0-9_-]"),
            ));
        }
        debug_assert!(Scope::parse(&format!("{r}:read"), &resources).is_ok());
    }
    let mut dedup = resources.clone();
    dedup.sort();
    dedup.dedup();
    if dedup.len() != resources.len() {
        return Err(err("scopes.resources", "lists a resource twice".into()));
    }

    let mut upstreams = BTreeMap::new();
    for (name, u) in &root.upstreams {
        let key = format!("upstreams.{name}");
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(err(
                &key,
                "names must be letters, digits, '-' or '_'".into(),
            ));
        }
        upstreams.insert(
            name.clone(),
            validate_upstream(u).map_err(|(field, p)| err(&format!("{key}.{field}"), p))?,
        );
    }

    let ih = &root.identity_headers;
    let identity_headers = IdentityHeaders {
        organization_id: header_name("identity_headers.organization_id", &ih.organization_id, err)?,
        client_id: header_name("identity_headers.client_id", &ih.client_id, err)?,
        service_account_id: header_name(
            "identity_headers.service_account_id",
            &ih.service_account_id,
            err,
        )?,
        scopes: header_name("identity_headers.scopes", &ih.scopes, err)?,
        workspace_id: header_name("identity_headers.workspace_id", &ih.workspace_id, err)?,
        workspace_role: header_name("identity_headers.workspace_role", &ih.workspace_role, err)?,
        environment_id: header_name("identity_headers.environment_id", &ih.environment_id, err)?,
    };
    let mut names: Vec<String> = identity_headers
        .all()
        .iter()
        .map(|n| canonical_header(n))
        .collect();
    names.sort();
    names.dedup();
    if names.len() != 7 {
        return Err(err(
            "identity_headers",
            "two identity headers have the same name".into(),
        ));
    }

    let h = &root.hashing;
    let hashing = HashParams {
        memory_kib: h.memory_kib,
        iterations: h.iterations,
        parallelism: h.parallelism,
    };
    hashing
        .validate()
        .map_err(|e| err("hashing", e.to_string()))?;
    if !(1..=64).contains(&h.max_concurrent) {
        return Err(err(
            "hashing.max_concurrent",
            "must be between 1 and 64".into(),
        ));
    }
    if !(1..=100_000).contains(&h.max_queued) {
        return Err(err(
            "hashing.max_queued",
            "must be between 1 and 100000".into(),
        ));
    }
    if !(1..=1_000_000).contains(&root.audit.max_events_per_org) {
        return Err(err(
            "audit.max_events_per_org",
            "must be between 1 and 1000000".into(),
        ));
    }

    Ok(Config {
        source: None,
        server,
        store,
        tokens: TokenConfig {
            ttl_seconds: root.tokens.ttl_seconds,
            revoke_on,
        },
        proxy: ProxyConfig {
            forward_authorization: root.proxy.forward_authorization,
            trusted_proxies,
            allow_semicolon_in_path: root.proxy.allow_semicolon_in_path,
            pass_override_headers,
        },
        cache: CacheConfig {
            ttl: Duration::from_millis(root.cache.ttl_ms),
            max_entries: root.cache.max_entries,
        },
        policies_dir: base.join(&root.policies.dir),
        throttle: ThrottleConfig {
            window_seconds: t.window_seconds,
            max_failures_per_client_source: t.max_failures_per_client_source,
            max_failures_per_source: t.max_failures_per_source,
        },
        admin_keys,
        env_admin_key: env.admin_key.clone(),
        resources,
        upstreams,
        identity_headers,
        hashing,
        hashing_max_concurrent: h.max_concurrent,
        hashing_max_queued: h.max_queued,
        audit_max_events_per_org: root.audit.max_events_per_org,
    })
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

fn validate_upstream(u: &file::Upstream) -> Result<UpstreamConfig, (&'static str, String)> {
    if u.addrs.is_empty() {
        return Err(("addrs", "needs at least one host:port".into()));
    }
    for a in &u.addrs {
        let ok = a.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !ok {
            return Err(("addrs", format!("{a:?} is not host:port")));
        }
    }
    for (key, ms) in [
        ("connect_timeout_ms", u.connect_timeout_ms),
        ("read_timeout_ms", u.read_timeout_ms),
    ] {
        if ms == 0 {
            return Err((key, "timeouts must be at least 1 ms".into()));
        }
    }
    let health_check_path = match u.health_check_path.as_str() {
        "" => None,
        p if p.starts_with('/') && !p.bytes().any(|b| b.is_ascii_control() || b == b' ') => {
            Some(p.to_string())
        }
        _ => {
            return Err((
                "health_check_path",
                "must be empty or a path starting with '/'".into(),
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
    })
}

fn header_name(
    key: &str,
    v: &str,
    err: &dyn Fn(&str, String) -> ConfigError,
) -> Result<String, ConfigError> {
    let ok = !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        return Err(err(key, format!("{v:?} is not a valid header name")));
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
        return Err(err(key, format!("{v:?} is reserved")));
    }
    Ok(lower)
}

/// The form used to compare header names: lower case, `_` as `-`.
pub fn canonical_header(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

impl Default for Config {
    fn default() -> Self {
        let env = EnvOverrides::default();
        #[allow(clippy::expect_used)]
        Config::from_toml("", "<defaults>", Path::new("."), &env).expect("the defaults are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(
            text,
            "test.toml",
            Path::new("/etc/tollgate"),
            &EnvOverrides::default(),
        )
    }

    fn problem(text: &str) -> String {
        match parse(text) {
            Ok(_) => panic!("expected an error for {text:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn an_empty_file_gives_the_documented_defaults() {
        let c = parse("").expect("valid");
        assert_eq!(c.server.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(c.server.admin_listen.to_string(), "127.0.0.1:9080");
        assert_eq!(c.server.metrics_listen.to_string(), "127.0.0.1:9091");
        assert_eq!(c.server.public_url, "http://localhost:8080");
        assert_eq!(c.store.backend, Backend::Redis);
        assert_eq!(c.store.key_prefix, "tollgate");
        assert_eq!(c.store.timeout, Duration::from_millis(250));
        assert_eq!(c.tokens.ttl_seconds, 900);
        assert_eq!(c.tokens.revoke_on, RevokeOn::default());
        assert_eq!(c.cache.ttl, Duration::from_millis(500));
        assert_eq!(c.throttle.max_failures_per_client_source, 10);
        assert_eq!(c.throttle.max_failures_per_source, 50);
        assert_eq!(c.resources.len(), 7);
        assert_eq!(
            c.identity_headers.organization_id,
            "x-tollgate-organization-id"
        );
        assert!(!c.proxy.allow_semicolon_in_path);
    }

    #[test]
    fn a_full_file_is_read() {
        let c = parse(
            r#"
[server]
listen = "127.0.0.1:18080"
public_url = "https://gate.example.com/"
threads = 1
[store]
backend = "memory"
key_prefix = "tg:test"
timeout_ms = 100
[tokens]
ttl_seconds = 60
revoke_on = ["rotate", "delete"]
[proxy]
trusted_proxies = ["10.0.0.0/8", "192.168.1.1"]
[cache]
ttl_ms = 0
[policies]
dir = "pol"
[upstreams.workflows]
addrs = ["127.0.0.1:7001", "backend.internal:80"]
read_timeout_ms = 500
"#,
        )
        .expect("valid");
        assert_eq!(c.server.public_url, "https://gate.example.com");
        assert_eq!(c.store.backend, Backend::Memory);
        assert!(
            c.tokens.revoke_on.rotate && c.tokens.revoke_on.delete && !c.tokens.revoke_on.disable
        );
        assert_eq!(c.proxy.trusted_proxies.len(), 2);
        assert_eq!(c.policies_dir, Path::new("/etc/tollgate/pol"));
        assert_eq!(
            c.upstreams["workflows"].read_timeout,
            Duration::from_millis(500)
        );
        assert_eq!(c.cache.ttl, Duration::ZERO);
    }

    #[test]
    fn unknown_keys_are_an_error() {
        assert!(problem("[server]\nlisten_addr = \"x\"").contains("unknown field"));
        assert!(problem("[nonsense]\na = 1").contains("unknown field"));
        assert!(problem("[upstreams.a]\naddrs = [\"h:1\"]\nretries = 3").contains("unknown field"));
    }

    #[test]
    fn bad_values_name_their_key() {
        assert!(problem("[server]\nlisten = \"nope\"").contains("server.listen"));
        assert!(problem("[store]\nbackend = \"etcd\"").contains("store.backend"));
        assert!(problem("[store]\nurl = \"http://x\"").contains("store.url"));
        assert!(problem("[store]\ntimeout_ms = 0").contains("store.timeout_ms"));
        assert!(problem("[tokens]\nrevoke_on = [\"never\"]").contains("tokens.revoke_on"));
        assert!(problem("[proxy]\ntrusted_proxies = [\"10.0.0.0/33\"]")
            .contains("proxy.trusted_proxies"));
        assert!(problem("[cache]\nttl_ms = 5000").contains("cache.ttl_ms"));
        assert!(
            problem("[admin]\nkeys = [{name = \"ops\", hash = \"plain\"}]")
                .contains("admin.keys[0].hash")
        );
        assert!(problem("[upstreams.a]\naddrs = []").contains("upstreams.a.addrs"));
        assert!(problem("[upstreams.a]\naddrs = [\"noport\"]").contains("upstreams.a.addrs"));
        assert!(problem("[identity_headers]\nscopes = \"bad header\"")
            .contains("identity_headers.scopes"));
        assert!(
            problem("[identity_headers]\nscopes = \"x-tollgate-client-id\"")
                .contains("identity_headers")
        );
        assert!(problem("[scopes]\nresources = []").contains("scopes.resources"));
        assert!(problem("[server]\nthreads = 0").contains("server.threads"));
        assert!(problem("[server]\nthreads = \"two\"").contains("test.toml"));
    }

    #[test]
    fn environment_overrides_the_redis_url_and_adds_the_env_admin_key() {
        let env = EnvOverrides {
            redis_url: Some("redis://10.1.1.1:6380/2".into()),
            admin_key: Some(SecretString::from("k")),
        };
        let c = Config::from_toml("", "t", Path::new("."), &env).expect("valid");
        assert_eq!(c.store.url, "redis://10.1.1.1:6380/2");
        assert!(c.env_admin_key.is_some());
    }
}
