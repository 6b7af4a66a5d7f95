//! Configuration: TOML file structs that reject unknown keys (`file.rs`),
//! converted section by section (`sections.rs`, one `TryFrom` each) into
//! the validated `Config` that the rest of the process uses. Relative paths
//! resolve against the config file's folder; a few environment variables
//! override the file (docs/contract.md §9).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use secrecy::SecretString;

use crate::secret::HashParams;
use sections::{AdminConfig, AuditConfig, HashingConfig, Invalid, ScopesConfig, UpstreamsConfig};

#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {problem}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub problem: String,
}

mod edge;
mod file;
mod sections;

pub use edge::{ClientAuth, H2Config, TlsConfig, TlsSniConfig, UpstreamProtocol};

pub use crate::oauth::throttle::ThrottleConfig;
pub use sections::{
    canonical_header, AdminKey, Backend, CacheConfig, IdentityHeaders, ListenAddr, ProxyConfig,
    RevokeOn, ServerConfig, StoreConfig, TokenConfig, UpstreamConfig, OVERRIDE_HEADERS,
};

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
    /// `[limits]`: rate limits' and quotas' behaviour.
    pub limits: crate::limits::LimitsConfig,
    /// `[decisions]`: the decision listener's ingress convention.
    pub decisions: crate::decisions::DecisionsConfig,
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
        validate(root, base, env).map_err(|e| ConfigError {
            file: file.to_string(),
            key: e.key,
            problem: e.problem,
        })
    }
}

/// Each section through its own `TryFrom`, in the order of the file's
/// reference (the first problem found is the one reported), then what
/// depends on where the file is and on the environment.
fn validate(mut root: file::Root, base: &Path, env: &EnvOverrides) -> Result<Config, Invalid> {
    if let Some(url) = &env.redis_url {
        root.store.url = url.clone();
    }
    let mut server = ServerConfig::try_from(&root.server)?;
    server.upgrade_sock = base.join(&server.upgrade_sock);
    for tls in [
        &mut server.tls,
        &mut server.admin_tls,
        &mut server.metrics_tls,
    ]
    .into_iter()
    .flatten()
    {
        tls.resolve_paths(base);
    }
    let store = StoreConfig::try_from(&root.store)?;
    let tokens = TokenConfig::try_from(&root.tokens)?;
    let proxy = ProxyConfig::try_from(&root.proxy)?;
    let cache = CacheConfig::try_from(&root.cache)?;
    let throttle = ThrottleConfig::try_from(&root.throttle)?;
    let admin = AdminConfig::try_from(&root.admin)?;
    let scopes = ScopesConfig::try_from(&root.scopes)?;
    let upstreams = UpstreamsConfig::try_from(&root.upstreams)?;
    let identity_headers = IdentityHeaders::try_from(&root.identity_headers)?;
    let hashing = HashingConfig::try_from(&root.hashing)?;
    let audit = AuditConfig::try_from(&root.audit)?;
    let limits = crate::limits::LimitsConfig::try_from(&root.limits)
        .map_err(|(key, problem)| Invalid { key, problem })?;
    let decisions = crate::decisions::DecisionsConfig::validate(
        &root.decisions,
        server.decisions_listen.is_some(),
    )
    .map_err(|(key, problem)| Invalid {
        key: key.into(),
        problem,
    })?;
    Ok(Config {
        source: None,
        server,
        store,
        tokens,
        proxy,
        cache,
        policies_dir: base.join(&root.policies.dir),
        throttle,
        admin_keys: admin.keys,
        env_admin_key: env.admin_key.clone(),
        resources: scopes.resources,
        upstreams: upstreams.upstreams,
        identity_headers,
        hashing: hashing.params,
        hashing_max_concurrent: hashing.max_concurrent,
        hashing_max_queued: hashing.max_queued,
        audit_max_events_per_org: audit.max_events_per_org,
        limits,
        decisions,
    })
}

impl Default for Config {
    fn default() -> Self {
        let env = EnvOverrides::default();
        #[allow(clippy::expect_used)]
        Config::from_toml("", "<defaults>", Path::new("."), &env).expect("the defaults are valid")
    }
}

#[cfg(test)]
mod tests;
