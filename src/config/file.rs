//! The configuration file as written: one struct per TOML table, each
//! rejecting unknown keys and filling in the documented defaults.
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
    pub limits: crate::limits::LimitsFile,
    pub decisions: crate::decisions::config::DecisionsFile,
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
    /// The decision listener's address; empty: off.
    pub decisions_listen: String,
    /// Permission bits of the decision listener's Unix socket, in octal.
    pub decisions_socket_mode: String,
    pub tls: Option<Tls>,
    pub admin_tls: Option<Tls>,
    pub metrics_tls: Option<Tls>,
    pub h2c: bool,
    pub h2_max_concurrent_streams: u32,
    pub h2_max_reset_streams: usize,
    pub h2_body_timeout_ms: u64,
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
            decisions_listen: String::new(),
            decisions_socket_mode: "0660".into(),
            tls: None,
            admin_tls: None,
            metrics_tls: None,
            h2c: true,
            h2_max_concurrent_streams: 100,
            h2_max_reset_streams: 100,
            h2_body_timeout_ms: 60_000,
        }
    }
}

/// `[server.tls]`, `[server.admin_tls]`, `[server.metrics_tls]`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    pub cert_file: String,
    pub key_file: String,
    pub sni: Vec<TlsSni>,
    pub client_ca_file: String,
    pub client_auth: String,
}

/// `[[server.tls.sni]]`: another pair, for the server names listed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSni {
    pub names: Vec<String>,
    pub cert_file: String,
    pub key_file: String,
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
    /// Longest lifetime a service account's `token_ttl_seconds` may ask for;
    /// unset: `ttl_seconds`.
    pub max_ttl_seconds: Option<u64>,
}
impl Default for Tokens {
    fn default() -> Self {
        Tokens {
            ttl_seconds: 900,
            revoke_on: Vec::new(),
            max_ttl_seconds: None,
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
    pub protocol: String,
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
            protocol: "h1".into(),
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
