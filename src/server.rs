//! Composes the process: the store, the registry and endpoints, and the
//! pingora services — proxy, admin and metrics listeners plus background
//! tasks (policy reload, upstream health checks, the token gauge).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::listeners::ListenerConfig;
use pingora::protocols::l4::stream::{L4BufferSettings, DEFAULT_L4_WRITE_BUFFER_SIZE};
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;

use crate::admin::{Admin, AdminHttp, AdminKeys};
use crate::audit::Audit;
use crate::bus::Bus;
use crate::cache::DecisionCache;
use crate::config::{Backend, Config, ListenAddr};
use crate::hashing::Hasher;
use crate::listen::{Limited, Serve};
use crate::oauth::endpoint::{TokenEndpoint, TokenSettings};
use crate::proxy::{Engine, Gateway};
use crate::registry::Registry;
use crate::runtime::{fingerprint, Live, PolicySource, Runtime};
use crate::store::memory::MemoryStore;
use crate::store::redis::RedisStore;
use crate::store::Store;

/// Everything the services share.
pub struct App {
    pub(crate) config: Config,
    pub(crate) store: Arc<dyn Store>,
    /// Admin key verification's own pool and queue, so that guessing admin
    /// keys cannot hold up the token endpoint's verifications.
    pub(crate) admin_hasher: Arc<Hasher>,
    pub registry: Arc<Registry>,
    pub(crate) tokens: Arc<TokenEndpoint>,
    pub(crate) live: Arc<Live>,
    pub(crate) cache: Arc<DecisionCache>,
    pub(crate) bus: Arc<Bus>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(String),
    #[error("policies: {0}")]
    Policy(String),
    #[error("store: {0}")]
    Store(String),
}

pub fn build_store(cfg: &Config) -> Result<Arc<dyn Store>, StartError> {
    match cfg.store.backend {
        Backend::Memory => Ok(Arc::new(MemoryStore::new())),
        Backend::Redis if cfg.store.cluster => {
            let s = &cfg.store;
            let store = RedisStore::connect_cluster(&s.urls, &s.key_prefix, s.timeout)
                .map_err(|e| StartError::Store(e.to_string()))?;
            Ok(Arc::new(store))
        }
        Backend::Redis => {
            let s = &cfg.store;
            let store = RedisStore::connect(&s.url, &s.key_prefix, s.timeout, s.pool_size)
                .map_err(|e| StartError::Store(e.to_string()))?;
            Ok(Arc::new(store))
        }
    }
}

impl App {
    pub fn build(
        config: Config,
        store: Arc<dyn Store>,
        source: PolicySource,
    ) -> Result<App, StartError> {
        let first = Runtime::load(&config, &source).map_err(StartError::Policy)?;
        let hasher = Arc::new(
            Hasher::new(
                config.hashing,
                config.hashing_max_concurrent,
                config.hashing_max_queued,
            )
            .map_err(|e| StartError::Config(e.to_string()))?,
        );
        let admin_hasher = Arc::new(
            Hasher::new(config.hashing, ADMIN_HASH_THREADS, ADMIN_HASH_QUEUE)
                .map_err(|e| StartError::Config(e.to_string()))?,
        );
        let cache = Arc::new(DecisionCache::new(
            config.cache.ttl,
            config.cache.max_entries,
        ));
        let bus = Arc::new(match config.store.backend {
            Backend::Memory => Bus::local(cache.clone()),
            Backend::Redis => Bus::redis(
                cache.clone(),
                if config.store.cluster {
                    &config.store.urls
                } else {
                    std::slice::from_ref(&config.store.url)
                },
                &config.store.key_prefix,
                config.store.timeout,
            )
            .map_err(StartError::Store)?,
        });
        let audit = Audit::new(store.clone(), config.audit_max_events_per_org);
        let registry = Arc::new(
            Registry::new(
                store.clone(),
                hasher.clone(),
                config.resources.clone(),
                config.tokens.revoke_on,
                audit.clone(),
                bus.clone(),
            )
            .with_max_token_ttl(config.tokens.max_ttl_seconds),
        );
        let tokens = Arc::new(TokenEndpoint::new(
            store.clone(),
            hasher.clone(),
            audit,
            bus.clone(),
            TokenSettings {
                resources: config.resources.clone(),
                ttl_seconds: config.tokens.ttl_seconds,
                max_ttl_seconds: config.tokens.max_ttl_seconds,
                throttle: config.throttle,
                public_url: config.server.public_url.clone(),
            },
        ));
        let live = Arc::new(Live::new(config.clone(), source, first));
        Ok(App {
            config,
            store,
            admin_hasher,
            registry,
            tokens,
            live,
            cache,
            bus,
        })
    }
}

/// A TCP listener without pingora's 64 KiB read buffer per connection.
/// HTTP/1 reads its head and body into buffers of its own, so the extra
/// buffer only copied bytes, and it was most of the memory an idle
/// keep-alive connection holds (measured in docs/performance.md).
pub(crate) fn listener(addr: &str) -> ListenerConfig {
    ListenerConfig::tcp(addr).l4_buffer(L4BufferSettings::new(0, DEFAULT_L4_WRITE_BUFFER_SIZE))
}

/// Admin key verifications: one hashing thread and at most this many
/// waiting behind it; beyond that an admin request gets 503
/// `temporarily_unavailable` with no argon2 work, and the token endpoint's
/// pool (`hashing.max_concurrent`, `hashing.max_queued`) is never used.
const ADMIN_HASH_THREADS: usize = 1;
const ADMIN_HASH_QUEUE: usize = 16;

/// Runs every listener until a signal stops the process.
/// With `upgrade`, the listening sockets are taken over from a running
/// process (pingora's graceful upgrade; send that process SIGQUIT).
pub fn run(
    app: App,
    extra: Vec<Box<dyn pingora::services::ServiceWithDependents>>,
    upgrade: bool,
) -> ! {
    let cfg = app.config.clone();
    let conf = ServerConf {
        threads: cfg.server.threads,
        upgrade_sock: cfg.server.upgrade_sock.display().to_string(),
        // After SIGTERM (or the upgrade hand-over) the listeners stop
        // accepting and pingora waits `grace_period_seconds` before it shuts
        // the runtimes down; shutting a tokio runtime down drops every task
        // at its next await, whatever `graceful_shutdown_timeout_seconds`
        // says (that bound covers blocking tasks only). So the grace period
        // is what lets requests in flight finish; the runtime timeout only
        // bounds the clean-up after it.
        grace_period_seconds: Some(cfg.server.shutdown_grace.as_secs()),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let opt = pingora::server::configuration::Opt {
        upgrade,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();
    let app = Arc::new(app);

    // One limiter for the proxy and decision listeners: they count alike.
    let limiter = Arc::new(crate::limits::Limiter::new(
        app.store.clone(),
        cfg.limits.clone(),
    ));
    let gateway = match Gateway::new(
        app.store.clone(),
        app.cache.clone(),
        app.live.clone(),
        app.tokens.clone(),
        &cfg.proxy,
        &cfg.identity_headers,
    ) {
        Ok(g) => g.with_limiter(limiter.clone()),
        Err(e) => {
            eprintln!("tollgate: {e}");
            std::process::exit(1);
        }
    };
    let tls = match crate::tls::Listeners::build(&cfg.server) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tollgate: {e}");
            std::process::exit(1);
        }
    };
    let mut proxy = Service::new(
        "tollgate proxy".to_string(),
        Limited::new(Engine::new(gateway), cfg.server.limits, "proxy")
            .with_tls(tls.proxy.clone())
            .with_h2(cfg.server.h2),
    );
    proxy.add_listener(listener(&cfg.server.listen.to_string()));

    let keys = AdminKeys::new(
        cfg.admin_keys.clone(),
        cfg.env_admin_key.as_ref(),
        app.admin_hasher.clone(),
    )
    .with_store(app.store.clone());
    let admin = Arc::new(Admin::new(
        app.registry.clone(),
        keys,
        app.live.loaded.clone(),
    ));
    let mut admin_service = Service::new(
        "tollgate admin".to_string(),
        Limited::new(Serve(AdminHttp { admin }), cfg.server.limits, "admin")
            .with_tls(tls.admin.clone())
            .with_h2(cfg.server.h2),
    );
    admin_service.add_listener(listener(&cfg.server.admin_listen.to_string()));

    let mut metrics = Service::new(
        "tollgate metrics".to_string(),
        Limited::new(
            Serve(crate::metrics::MetricsHttp),
            cfg.server.limits,
            "metrics",
        )
        .with_tls(tls.metrics.clone())
        .with_h2(cfg.server.h2),
    );
    metrics.add_listener(listener(&cfg.server.metrics_listen.to_string()));

    let decisions = decisions_service(&app, &cfg, limiter);

    let background = background_service("tollgate background", Background { app: app.clone() });
    let invalidations = background_service(
        "tollgate cache invalidation",
        Invalidations {
            bus: app.bus.clone(),
        },
    );

    let mut services: Vec<Box<dyn pingora::services::ServiceWithDependents>> = vec![
        Box::new(proxy),
        Box::new(admin_service),
        Box::new(metrics),
        Box::new(background),
        Box::new(invalidations),
    ];
    services.extend(decisions);
    if !tls.is_empty() {
        services.push(Box::new(background_service(
            "tollgate TLS reload",
            crate::tls::Reloader(tls),
        )));
    }
    services.extend(extra);
    server.add_services(services);
    tracing::info!(
        listen = %cfg.server.listen,
        admin_listen = %cfg.server.admin_listen,
        metrics_listen = %cfg.server.metrics_listen,
        store = ?cfg.store.backend,
        "tollgate started"
    );
    server.run_forever()
}

/// The decision listener, when `server.decisions_listen` is set.
fn decisions_service(
    app: &App,
    cfg: &Config,
    limiter: Arc<crate::limits::Limiter>,
) -> Option<Box<dyn pingora::services::ServiceWithDependents>> {
    // Its series exist, at zero, whether or not it is on: dashboards and
    // alerts that name them see a series from the start.
    crate::decisions::initialise_series();
    let addr = cfg.server.decisions_listen.clone()?;
    let decider = match crate::decisions::Decider::new(
        app.store.clone(),
        app.cache.clone(),
        app.live.clone(),
        &cfg.proxy,
        &cfg.identity_headers,
        &cfg.decisions,
    ) {
        Ok(d) => d.with_limiter(limiter),
        Err(e) => {
            eprintln!("tollgate: {e}");
            std::process::exit(1);
        }
    };
    let mut service = Service::new(
        "tollgate decisions".to_string(),
        crate::decisions::decision_service(decider, cfg.server.limits, cfg.server.h2),
    );
    match &addr {
        ListenAddr::Tcp(a) => service.add_listener(listener(&a.to_string())),
        ListenAddr::Unix { path, mode } => {
            use std::os::unix::fs::PermissionsExt;
            service.add_listener(
                ListenerConfig::uds(path.display().to_string())
                    .permissions(std::fs::Permissions::from_mode(*mode))
                    .l4_buffer(L4BufferSettings::new(0, DEFAULT_L4_WRITE_BUFFER_SIZE)),
            )
        }
    }
    tracing::info!(
        decisions_listen = %addr,
        convention = cfg.decisions.convention.map_or("-", |c| c.as_str()),
        "decision listener on"
    );
    Some(Box::new(service))
}

struct Background {
    app: Arc<App>,
}

/// Applies other instances' cache invalidations until shutdown.
struct Invalidations {
    bus: Arc<Bus>,
}

#[async_trait]
impl BackgroundService for Invalidations {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let stop = async move {
            while !*shutdown.borrow() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        };
        self.bus.run_subscriber(stop).await;
    }
}

const RELOAD_POLL: Duration = Duration::from_millis(500);

#[async_trait]
impl BackgroundService for Background {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let live = &self.app.live;
        let mut hangup = crate::hangup::Hangup::listen("reload on file change only");
        let (dir, config_file) = match live.source() {
            PolicySource::Dir(d) => (Some(d.clone()), self.app.config.source.clone()),
            PolicySource::Embedded { .. } => (None, None),
        };
        let fp = |dir: &Option<std::path::PathBuf>| {
            dir.as_ref().map(|d| fingerprint(d, config_file.as_deref()))
        };
        let mut loaded_fp = fp(&dir);
        let mut last_seen = loaded_fp.clone();
        let mut poll = tokio::time::interval(RELOAD_POLL);
        let mut gauge = tokio::time::interval(crate::metrics::active_tokens_interval());
        let mut health = tokio::time::interval(crate::proxy::upstream::HEALTH_CHECK_EVERY);
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        return;
                    }
                }
                () = hangup.recv() => {
                    live.reload("SIGHUP");
                    loaded_fp = fp(&dir);
                    last_seen = loaded_fp.clone();
                }
                _ = poll.tick(), if dir.is_some() => {
                    let now = fp(&dir);
                    // Debounce: reload once the files stopped changing for one poll.
                    if now != loaded_fp && now == last_seen {
                        live.reload("file change");
                        loaded_fp = now.clone();
                    }
                    last_seen = now;
                }
                _ = gauge.tick() => crate::metrics::sample_active_tokens(self.app.store.as_ref()).await,
                _ = health.tick() => {
                    let rt = live.snapshot();
                    for u in rt.upstreams.iter().filter(|u| u.has_health_check()) {
                        u.run_health_check().await;
                    }
                }
            }
        }
    }
}
