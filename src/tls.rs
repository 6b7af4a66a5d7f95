//! TLS on the listeners (proxy, admin, metrics): a rustls server
//! configuration built from PEM files, TLS 1.2 and 1.3, ALPN `h2` and
//! `http/1.1`, several certificates chosen by SNI, optional client
//! certificates checked against a CA bundle. The handshake itself is
//! pingora's ([`pingora::listeners::tls::Acceptor`]), run by
//! [`crate::listen::Limited`] after a connection was counted.
//!
//! A [`TlsListener`] keeps the configuration in an [`ArcSwap`]: a reload
//! (SIGHUP, or a file changed) builds a new one from the files and swaps
//! it in; new handshakes use it, open connections keep theirs. A pair that
//! does not load (unreadable, not PEM, key not matching the certificate) is
//! refused and the old configuration kept, logged and counted in
//! `tollgate_tls_reloads_total{listener,result="error"}`.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use pingora::listeners::tls::Acceptor;
use prometheus::{register_int_counter_vec, IntCounterVec};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

use crate::config::{ClientAuth, TlsConfig};

static RELOADS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "tollgate_tls_reloads_total",
        "Certificate reloads per listener: result=ok (swapped in) or error (refused, the old pair kept)",
        &["listener", "result"]
    )
    .expect("register tollgate_tls_reloads_total")
});

static HANDSHAKE_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "tollgate_tls_handshake_failures_total",
        "TLS handshakes that failed or did not finish within server.request_head_timeout_ms",
        &["listener"]
    )
    .expect("register tollgate_tls_handshake_failures_total")
});

pub(crate) fn count_handshake_failure(listener: &str) {
    HANDSHAKE_FAILURES.with_label_values(&[listener]).inc();
}

/// The TLS of each listener, `None` where it is plain TCP.
#[derive(Clone, Debug, Default)]
pub struct Listeners {
    pub proxy: Option<Arc<TlsListener>>,
    pub admin: Option<Arc<TlsListener>>,
    pub metrics: Option<Arc<TlsListener>>,
}

impl Listeners {
    /// Loads every listener's files; an error names the config key.
    pub fn build(server: &crate::config::ServerConfig) -> Result<Listeners, String> {
        let one = |name: &'static str, key: &str, cfg: &Option<TlsConfig>| {
            cfg.as_ref()
                .map(|c| TlsListener::new(name, c).map_err(|e| format!("{key}: {e}")))
                .transpose()
        };
        Ok(Listeners {
            proxy: one("proxy", "server.tls", &server.tls)?,
            admin: one("admin", "server.admin_tls", &server.admin_tls)?,
            metrics: one("metrics", "server.metrics_tls", &server.metrics_tls)?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.all().next().is_none()
    }

    fn all(&self) -> impl Iterator<Item = &Arc<TlsListener>> {
        [&self.proxy, &self.admin, &self.metrics]
            .into_iter()
            .flatten()
    }
}

/// Reloads the listeners' certificates on SIGHUP and when their files
/// change (polled every 500 ms, as the policy files are).
pub struct Reloader(pub Listeners);

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for Reloader {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let mut hangup = crate::hangup::Hangup::listen("TLS reload on file change only");
        let listeners: Vec<_> = self.0.all().cloned().collect();
        let mut polls = vec![None; listeners.len()];
        let mut poll = tokio::time::interval(std::time::Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        return;
                    }
                }
                () = hangup.recv() => {
                    for l in &listeners {
                        l.reload("SIGHUP");
                    }
                }
                _ = poll.tick() => {
                    for (l, last) in listeners.iter().zip(polls.iter_mut()) {
                        l.reload_if_changed(last);
                    }
                }
            }
        }
    }
}

/// The ALPN protocols every TLS listener offers, preferred first.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// One listener's TLS: its configuration, swapped whole on reload.
pub struct TlsListener {
    name: &'static str,
    cfg: TlsConfig,
    acceptor: ArcSwap<Acceptor>,
    /// The files' modification times and lengths when last loaded.
    seen: Mutex<Vec<Option<(SystemTime, u64)>>>,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("name", &self.name)
            .finish()
    }
}

impl TlsListener {
    /// Loads the files; an error names the listener's config key.
    pub fn new(name: &'static str, cfg: &TlsConfig) -> Result<Arc<TlsListener>, String> {
        for label in ["ok", "error"] {
            RELOADS.with_label_values(&[name, label]);
        }
        HANDSHAKE_FAILURES.with_label_values(&[name]);
        let seen = fingerprint(cfg);
        let config = build(cfg)?;
        Ok(Arc::new(TlsListener {
            name,
            cfg: cfg.clone(),
            acceptor: ArcSwap::from_pointee(Acceptor::from_server_config(config)),
            seen: Mutex::new(seen),
        }))
    }

    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// The acceptor new handshakes use.
    pub(crate) fn acceptor(&self) -> Arc<Acceptor> {
        self.acceptor.load_full()
    }

    /// Loads the files again and swaps the result in; on failure keeps the
    /// configuration in use. Returns whether the new one is in use.
    pub fn reload(&self, why: &str) -> bool {
        let seen = fingerprint(&self.cfg);
        if let Ok(mut s) = self.seen.lock() {
            *s = seen;
        }
        match build(&self.cfg) {
            Ok(config) => {
                self.acceptor
                    .store(Arc::new(Acceptor::from_server_config(config)));
                RELOADS.with_label_values(&[self.name, "ok"]).inc();
                tracing::info!(listener = self.name, why, "TLS certificates reloaded");
                true
            }
            Err(e) => {
                RELOADS.with_label_values(&[self.name, "error"]).inc();
                tracing::error!(
                    listener = self.name,
                    why,
                    error = %e,
                    "TLS certificates not reloaded; the ones in use are kept"
                );
                false
            }
        }
    }

    /// Reloads when a file changed since the last load; the change is
    /// taken once the files stayed the same for one poll (a certificate
    /// and its key are rarely written at the same instant).
    pub fn reload_if_changed(&self, last_poll: &mut Option<Vec<Option<(SystemTime, u64)>>>) {
        let now = fingerprint(&self.cfg);
        let loaded = self.seen.lock().map(|s| s.clone()).unwrap_or_default();
        if now != loaded && last_poll.as_ref() == Some(&now) {
            self.reload("file change");
        }
        *last_poll = Some(now);
    }
}

fn fingerprint(cfg: &TlsConfig) -> Vec<Option<(SystemTime, u64)>> {
    cfg.files()
        .into_iter()
        .map(|f| {
            std::fs::metadata(f)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls server configuration the files describe.
pub(crate) fn build(cfg: &TlsConfig) -> Result<Arc<ServerConfig>, String> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS versions: {e}"))?;
    let builder = match (&cfg.client_ca_file, cfg.client_auth) {
        (Some(ca), ClientAuth::Optional | ClientAuth::Required) => {
            let mut roots = RootCertStore::empty();
            let certs = read_certs(ca)?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!("{}: no usable CA certificate", ca.display()));
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let verifier = if cfg.client_auth == ClientAuth::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| format!("{}: {e}", ca.display()))?,
            )
        }
        _ => builder.with_no_client_auth(),
    };
    let default = certified_key(&cfg.cert_file, &cfg.key_file, &provider)?;
    let mut by_name = Vec::new();
    for s in &cfg.sni {
        let key = certified_key(&s.cert_file, &s.key_file, &provider)?;
        for name in &s.names {
            by_name.push((name.clone(), key.clone()));
        }
    }
    let mut config = builder.with_cert_resolver(Arc::new(Resolver { default, by_name }));
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    // Session tickets/resumption: rustls' in-memory cache (its default).
    Ok(Arc::new(config))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate", path.display()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    rustls_pemfile::private_key(&mut BufReader::new(file))
        // The parser's message never holds key bytes.
        .map_err(|e| format!("{}: {e}", path.display()))?
        .ok_or_else(|| format!("{}: no PEM private key", path.display()))
}

/// A certificate chain and its key, checked to belong together.
fn certified_key(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, String> {
    let chain = read_certs(cert)?;
    let key_der = read_key(key)?;
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| format!("{}: {e}", key.display()))?;
    let pair = CertifiedKey::new(chain, signing);
    pair.keys_match().map_err(|e| {
        format!(
            "{} and {} do not belong together: {e}",
            cert.display(),
            key.display()
        )
    })?;
    Ok(Arc::new(pair))
}

/// The certificate for a ClientHello: the first SNI pair naming the server
/// name asked for (`*.example.com` matches one label), else the default.
#[derive(Debug)]
struct Resolver {
    default: Arc<CertifiedKey>,
    by_name: Vec<(String, Arc<CertifiedKey>)>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(asked) = hello.server_name() else {
            return Some(self.default.clone());
        };
        let asked = asked.to_ascii_lowercase();
        let found = self
            .by_name
            .iter()
            .find(|(name, _)| match name.strip_prefix("*.") {
                Some(suffix) => asked
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
                None => *name == asked,
            });
        Some(found.map_or_else(|| self.default.clone(), |(_, k)| k.clone()))
    }
}

/// The verified client certificate's subject (RFC 4514 form, e.g.
/// `CN=billing,O=Example`), from its DER bytes.
pub fn certificate_subject(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.subject().to_string())
}

/// A throwaway self-signed pair for `serve --dev --tls`, written as PEM
/// into `dir`: `(cert_file, key_file)`. Valid for `localhost`, 127.0.0.1
/// and ::1.
pub fn dev_pair(dir: &Path) -> Result<(std::path::PathBuf, std::path::PathBuf), String> {
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let pair = rcgen::generate_simple_self_signed(names).map_err(|e| e.to_string())?;
    let cert = dir.join("dev-cert.pem");
    let key = dir.join("dev-key.pem");
    std::fs::write(&cert, pair.cert.pem()).map_err(|e| format!("{}: {e}", cert.display()))?;
    write_private(&key, pair.key_pair.serialize_pem().as_bytes())?;
    Ok((cert, key))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(bytes)
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TlsSniConfig;

    fn pair(dir: &Path, name: &str, host: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let p = rcgen::generate_simple_self_signed(vec![host.to_string()]).expect("pair");
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, p.cert.pem()).expect("write");
        std::fs::write(&key, p.key_pair.serialize_pem()).expect("write");
        (cert, key)
    }

    fn config(cert: &Path, key: &Path) -> TlsConfig {
        TlsConfig {
            cert_file: cert.into(),
            key_file: key.into(),
            sni: Vec::new(),
            client_ca_file: None,
            client_auth: ClientAuth::Off,
        }
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let (a_cert, _) = pair(dir.path(), "a", "a.test");
        let (_, b_key) = pair(dir.path(), "b", "b.test");
        let e = build(&config(&a_cert, &b_key)).expect_err("mismatch");
        assert!(e.contains("do not belong together"), "{e}");
        let e = build(&config(&a_cert, &dir.path().join("missing"))).expect_err("missing");
        assert!(e.contains("missing"), "{e}");
    }

    #[test]
    fn a_bad_reload_keeps_the_pair_in_use() {
        let dir = tempfile::tempdir().expect("dir");
        let (cert, key) = pair(dir.path(), "a", "a.test");
        let listener = TlsListener::new("unit", &config(&cert, &key)).expect("loads");
        let before = listener.acceptor();
        std::fs::write(&key, "not a key").expect("write");
        assert!(!listener.reload("test"));
        assert!(Arc::ptr_eq(&before, &listener.acceptor()));
        let (_, good_key) = pair(dir.path(), "c", "a.test");
        // A key for another certificate is refused as well.
        std::fs::copy(good_key, &key).expect("copy");
        assert!(!listener.reload("test"));
        let (c2, k2) = pair(dir.path(), "d", "a.test");
        std::fs::copy(c2, &cert).expect("copy");
        std::fs::copy(k2, &key).expect("copy");
        assert!(listener.reload("test"));
        assert!(!Arc::ptr_eq(&before, &listener.acceptor()));
    }

    #[test]
    fn the_subject_of_a_certificate_is_read_in_rfc_4514_form() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "billing");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        let subject = certificate_subject(cert.der()).expect("a subject");
        assert!(subject.contains("CN=billing"), "{subject}");
        assert!(subject.contains("O=Example"), "{subject}");
        assert_eq!(certificate_subject(b"not DER"), None);
    }

    #[test]
    fn sni_names_pick_their_pair() {
        let dir = tempfile::tempdir().expect("dir");
        let (cert, key) = pair(dir.path(), "a", "a.test");
        let (c2, k2) = pair(dir.path(), "b", "b.test");
        let mut cfg = config(&cert, &key);
        cfg.sni.push(TlsSniConfig {
            names: vec!["*.b.test".into()],
            cert_file: c2,
            key_file: k2,
        });
        assert!(build(&cfg).is_ok());
    }
}
