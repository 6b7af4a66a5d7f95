//! The edge protocols' settings: TLS on each listener, HTTP/2 downstream
//! and the protocol each upstream speaks. Checked here for their shape;
//! the certificate files are read when the listeners start (and on every
//! reload), by `crate::tls`.

use std::path::{Path, PathBuf};

use super::file;
use super::sections::{invalid, Invalid};

/// Whether a listener asks for, and checks, client certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// No certificate is asked for.
    Off,
    /// One is asked for; a client without one is served, one with a
    /// certificate the CA bundle does not vouch for is refused.
    Optional,
    /// Only clients with a certificate the CA bundle vouches for.
    Required,
}

/// One extra certificate, served to clients asking for one of `names`
/// (SNI); `*.example.com` matches one label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSniConfig {
    pub names: Vec<String>,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// `[server.tls]` and its siblings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub sni: Vec<TlsSniConfig>,
    pub client_ca_file: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

impl TlsConfig {
    /// Relative paths resolve against the config file's folder.
    pub(super) fn resolve_paths(&mut self, base: &Path) {
        self.cert_file = base.join(&self.cert_file);
        self.key_file = base.join(&self.key_file);
        if let Some(ca) = &mut self.client_ca_file {
            *ca = base.join(&*ca);
        }
        for s in &mut self.sni {
            s.cert_file = base.join(&s.cert_file);
            s.key_file = base.join(&s.key_file);
        }
    }

    /// Every file the listener reads, for reload on change.
    pub fn files(&self) -> Vec<&Path> {
        let mut files = vec![self.cert_file.as_path(), self.key_file.as_path()];
        files.extend(self.client_ca_file.as_deref());
        for s in &self.sni {
            files.push(&s.cert_file);
            files.push(&s.key_file);
        }
        files
    }
}

/// HTTP/2 downstream: on a TLS listener by ALPN `h2`; on a plain one by
/// the connection preface (h2c with prior knowledge) when `h2c` is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct H2Config {
    pub h2c: bool,
    /// SETTINGS_MAX_CONCURRENT_STREAMS, and the streams of one connection
    /// tollgate works on at once.
    pub max_concurrent_streams: u32,
    /// Streams a client may reset before tollgate accepted them, or open
    /// beyond `max_concurrent_streams` while the reset ones are still being
    /// worked on, before the connection is closed with GOAWAY
    /// `ENHANCE_YOUR_CALM` (the "rapid reset" attack, CVE-2023-44487).
    pub max_reset_streams: usize,
    /// How long a stream's request body may send nothing before the stream
    /// is ended (`server.h2_body_timeout_ms`): pingora bounds each HTTP/1
    /// body read itself (60 s) but waits for HTTP/2 body data forever.
    pub body_timeout: std::time::Duration,
}

impl Default for H2Config {
    fn default() -> Self {
        H2Config {
            h2c: true,
            max_concurrent_streams: 100,
            max_reset_streams: 100,
            body_timeout: std::time::Duration::from_secs(60),
        }
    }
}

/// What an upstream speaks: `h1` (HTTP/1.1, over TLS when `tls`), `h2`
/// (HTTP/2 over TLS, ALPN `h2`), or `h2c` (HTTP/2 over plain TCP, prior
/// knowledge). gRPC upstreams are `h2` or `h2c`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamProtocol {
    H1,
    H2,
    H2c,
}

impl UpstreamProtocol {
    pub fn is_h2(self) -> bool {
        !matches!(self, UpstreamProtocol::H1)
    }
}

pub(super) fn upstream_protocol(v: &str, tls: bool) -> Result<UpstreamProtocol, Invalid> {
    match (v, tls) {
        ("h1", _) => Ok(UpstreamProtocol::H1),
        ("h2", true) => Ok(UpstreamProtocol::H2),
        ("h2", false) => Err(invalid(
            "protocol",
            "\"h2\" is HTTP/2 over TLS: set tls = true, or use \"h2c\" for plain TCP",
        )),
        ("h2c", false) => Ok(UpstreamProtocol::H2c),
        ("h2c", true) => Err(invalid(
            "protocol",
            "\"h2c\" is HTTP/2 over plain TCP: set tls = false, or use \"h2\"",
        )),
        _ => Err(invalid("protocol", "must be \"h1\", \"h2\" or \"h2c\"")),
    }
}

pub(super) fn tls(key: &str, t: Option<&file::Tls>) -> Result<Option<TlsConfig>, Invalid> {
    let Some(t) = t else {
        return Ok(None);
    };
    if t.cert_file.is_empty() || t.key_file.is_empty() {
        return Err(invalid(
            key,
            "cert_file and key_file (PEM) are both required",
        ));
    }
    let client_ca_file = (!t.client_ca_file.is_empty()).then(|| PathBuf::from(&t.client_ca_file));
    let client_auth = match (t.client_auth.as_str(), &client_ca_file) {
        ("", None) | ("off", _) => ClientAuth::Off,
        ("", Some(_)) | ("required", Some(_)) => ClientAuth::Required,
        ("optional", Some(_)) => ClientAuth::Optional,
        ("optional" | "required", None) => {
            return Err(invalid(
                format!("{key}.client_auth"),
                "needs client_ca_file, the CA bundle client certificates are checked against",
            ))
        }
        _ => {
            return Err(invalid(
                format!("{key}.client_auth"),
                "must be \"off\", \"optional\" or \"required\"",
            ))
        }
    };
    let mut sni = Vec::with_capacity(t.sni.len());
    for (i, s) in t.sni.iter().enumerate() {
        let at = format!("{key}.sni[{i}]");
        if s.cert_file.is_empty() || s.key_file.is_empty() {
            return Err(invalid(at, "cert_file and key_file are both required"));
        }
        if s.names.is_empty() {
            return Err(invalid(at, "names: at least one server name"));
        }
        let mut names = Vec::with_capacity(s.names.len());
        for n in &s.names {
            let bare = n.strip_prefix("*.").unwrap_or(n);
            let ok = !bare.is_empty()
                && bare.split('.').all(|label| {
                    !label.is_empty()
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !ok {
                return Err(invalid(
                    format!("{at}.names"),
                    format!("{n:?} is not a DNS name (or *.name)"),
                ));
            }
            names.push(n.to_ascii_lowercase());
        }
        sni.push(TlsSniConfig {
            names,
            cert_file: PathBuf::from(&s.cert_file),
            key_file: PathBuf::from(&s.key_file),
        });
    }
    Ok(Some(TlsConfig {
        cert_file: PathBuf::from(&t.cert_file),
        key_file: PathBuf::from(&t.key_file),
        sni,
        client_ca_file,
        client_auth,
    }))
}

pub(super) fn h2(s: &file::Server) -> Result<H2Config, Invalid> {
    Ok(H2Config {
        h2c: s.h2c,
        max_concurrent_streams: match s.h2_max_concurrent_streams {
            1..=10_000 => s.h2_max_concurrent_streams,
            _ => {
                return Err(invalid(
                    "server.h2_max_concurrent_streams",
                    "must be between 1 and 10000",
                ))
            }
        },
        max_reset_streams: match s.h2_max_reset_streams {
            1..=1_000_000 => s.h2_max_reset_streams,
            _ => {
                return Err(invalid(
                    "server.h2_max_reset_streams",
                    "must be between 1 and 1000000",
                ))
            }
        },
        body_timeout: match s.h2_body_timeout_ms {
            1..=3_600_000 => std::time::Duration::from_millis(s.h2_body_timeout_ms),
            _ => {
                return Err(invalid(
                    "server.h2_body_timeout_ms",
                    "must be between 1 and 3600000",
                ))
            }
        },
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{ClientAuth, Config, EnvOverrides, UpstreamProtocol};
    use std::path::Path;

    fn load(text: &str) -> Result<Config, String> {
        Config::from_toml(
            text,
            "t.toml",
            Path::new("/etc/tg"),
            &EnvOverrides::default(),
        )
        .map_err(|e| format!("{}: {}", e.key, e.problem))
    }

    #[test]
    fn tls_tables_resolve_paths_and_default_client_auth() {
        let cfg = load(
            "[server.tls]\ncert_file = \"c.pem\"\nkey_file = \"/k.pem\"\nclient_ca_file = \"ca.pem\"\n\
             [[server.tls.sni]]\nnames = [\"API.example.com\", \"*.b.example\"]\ncert_file = \"a.pem\"\nkey_file = \"a.key\"\n",
        )
        .expect("valid");
        let tls = cfg.server.tls.expect("tls");
        assert_eq!(tls.cert_file, Path::new("/etc/tg/c.pem"));
        assert_eq!(tls.key_file, Path::new("/k.pem"));
        assert_eq!(tls.client_auth, ClientAuth::Required);
        assert_eq!(tls.sni[0].names, ["api.example.com", "*.b.example"]);
        assert!(cfg.server.admin_tls.is_none());
        assert!(cfg.server.h2.h2c);
    }

    #[test]
    fn bad_tls_and_protocol_settings_are_refused() {
        let cases = [
            ("[server.tls]\ncert_file = \"c\"\n", "server.tls"),
            (
                "[server.admin_tls]\ncert_file = \"c\"\nkey_file = \"k\"\nclient_auth = \"required\"\n",
                "server.admin_tls.client_auth",
            ),
            (
                "[server.tls]\ncert_file = \"c\"\nkey_file = \"k\"\nclient_auth = \"sometimes\"\nclient_ca_file = \"x\"\n",
                "server.tls.client_auth",
            ),
            (
                "[server.tls]\ncert_file = \"c\"\nkey_file = \"k\"\n[[server.tls.sni]]\nnames = [\"a b\"]\ncert_file = \"c\"\nkey_file = \"k\"\n",
                "server.tls.sni[0].names",
            ),
            ("[server]\nh2_max_concurrent_streams = 0\n", "server.h2_max_concurrent_streams"),
            ("[server]\nh2_body_timeout_ms = 0\n", "server.h2_body_timeout_ms"),
            ("[upstreams.a]\naddrs = [\"h:1\"]\nprotocol = \"h3\"\n", "upstreams.a.protocol"),
            ("[upstreams.a]\naddrs = [\"h:1\"]\nprotocol = \"h2\"\n", "upstreams.a.protocol"),
            ("[upstreams.a]\naddrs = [\"h:1\"]\ntls = true\nprotocol = \"h2c\"\n", "upstreams.a.protocol"),
        ];
        for (text, key) in cases {
            let e = load(text).expect_err(text);
            assert!(e.starts_with(&format!("{key}:")), "{text}: {e}");
        }
        let ok = load("[upstreams.a]\naddrs = [\"h:1\"]\nprotocol = \"h2c\"\n").expect("h2c");
        assert_eq!(ok.upstreams["a"].protocol, UpstreamProtocol::H2c);
    }
}
