//! What a reload replaces as a whole: the compiled policy set and the
//! upstream table. Each request takes one snapshot and keeps it through
//! every phase; a failed reload leaves the set in force untouched.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::{Config, EnvOverrides};
use crate::metrics::Metrics;
use crate::policy::{self, PolicySet};
use crate::proxy::upstream::UpstreamTable;

pub struct Runtime {
    pub policy: PolicySet,
    pub upstreams: UpstreamTable,
}

/// Where policies come from: a directory (reloadable) or embedded text.
#[derive(Clone)]
pub enum PolicySource {
    Dir(std::path::PathBuf),
    Embedded { label: String, text: String },
}

impl Runtime {
    /// Loads policies against an upstream table built from `cfg`.
    pub fn load(cfg: &Config, source: &PolicySource) -> Result<Runtime, String> {
        let upstreams = UpstreamTable::build(&cfg.upstreams).map_err(|e| match &cfg.source {
            Some(file) => format!("{}: {e}", file.display()),
            None => e.to_string(),
        })?;
        let exists = |name: &str| upstreams.contains(name);
        let policy = match source {
            PolicySource::Dir(dir) => policy::load_dir(dir, &cfg.resources, exists),
            PolicySource::Embedded { label, text } => {
                policy::load_str(label, text, &cfg.resources, exists)
            }
        }
        .map_err(|e| e.to_string())?;
        Ok(Runtime { policy, upstreams })
    }
}

/// The runtime in force and how to reload it.
pub struct Live {
    current: ArcSwap<Runtime>,
    /// The config the process started with; reloads re-read its file for
    /// the upstream table and keep everything else.
    config: Config,
    source: PolicySource,
    pub loaded: Arc<AtomicBool>,
    reload_lock: std::sync::Mutex<()>,
}

impl Live {
    pub fn new(config: Config, source: PolicySource, first: Runtime) -> Live {
        let m = Metrics::get();
        m.policy_reloads.with_label_values(&["ok"]).inc();
        m.policy_routes.set(first.policy.len() as i64);
        Live {
            current: ArcSwap::from_pointee(first),
            config,
            source,
            loaded: Arc::new(AtomicBool::new(true)),
            reload_lock: std::sync::Mutex::new(()),
        }
    }

    pub fn snapshot(&self) -> Arc<Runtime> {
        self.current.load_full()
    }

    pub fn source(&self) -> &PolicySource {
        &self.source
    }

    /// Re-reads policies (and the config file's upstream table) and swaps
    /// them in when valid; otherwise logs, counts, and keeps the old set.
    pub fn reload(&self, why: &str) -> bool {
        let _serialised = self.reload_lock.lock();
        let m = Metrics::get();
        let cfg = match &self.config.source {
            Some(path) => match Config::load(path, &EnvOverrides::from_process()) {
                Ok(fresh) => {
                    let mut cfg = self.config.clone();
                    cfg.upstreams = fresh.upstreams;
                    cfg
                }
                Err(e) => {
                    m.policy_reloads.with_label_values(&["error"]).inc();
                    tracing::error!(trigger = why, error = %e, "reload rejected: config file is invalid; the previous policy set stays in force");
                    return false;
                }
            },
            None => self.config.clone(),
        };
        match Runtime::load(&cfg, &self.source) {
            Ok(rt) => {
                let routes = rt.policy.len();
                self.current.store(Arc::new(rt));
                m.policy_reloads.with_label_values(&["ok"]).inc();
                m.policy_routes.set(routes as i64);
                self.loaded.store(true, Ordering::Release);
                tracing::info!(trigger = why, routes, "policy set reloaded");
                true
            }
            Err(e) => {
                m.policy_reloads.with_label_values(&["error"]).inc();
                tracing::error!(trigger = why, error = %e, "reload rejected; the previous policy set stays in force");
                false
            }
        }
    }
}

/// A fingerprint of the policy directory and config file (names, sizes,
/// modification times) to notice changes without a watcher dependency.
pub fn fingerprint(dir: &Path, config_file: Option<&Path>) -> Vec<(String, u64, u128)> {
    let mut out = Vec::new();
    let mut add = |p: &Path| {
        if let Ok(meta) = std::fs::metadata(p) {
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            out.push((p.display().to_string(), meta.len(), mtime));
        }
    };
    if let Some(f) = config_file {
        add(f);
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            if p.extension().is_some_and(|e| e == "toml") {
                add(&p);
            }
        }
    }
    out
}
