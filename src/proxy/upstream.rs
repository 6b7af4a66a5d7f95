//! The upstream table: per upstream a pingora round-robin load balancer over
//! its addresses, optional active HTTP health checks, and the peer settings
//! (TLS, SNI, timeouts). Built whole on every (re)load and swapped with the
//! policy set.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pingora::lb::health_check::HttpHealthCheck;
use pingora::lb::selection::RoundRobin;
use pingora::lb::LoadBalancer;
use pingora::upstreams::peer::HttpPeer;

use crate::config::UpstreamConfig;

pub(crate) const HEALTH_CHECK_EVERY: Duration = Duration::from_secs(5);

pub(crate) struct Upstream {
    pub(crate) name: String,
    cfg: UpstreamConfig,
    lb: LoadBalancer<RoundRobin>,
    /// Without health checks every address is always eligible: the peers
    /// are built once, in the balancer's order, and taken in turn.
    fixed: Option<FixedPeers>,
    /// The `Host` an HTTP/1.0 request without one goes upstream with: `sni`
    /// when set, else the first address as configured.
    pub(crate) host: http::HeaderValue,
}

struct FixedPeers {
    peers: Vec<HttpPeer>,
    next: AtomicUsize,
}

/// Named by its config key (`upstreams.NAME.FIELD`), like the config's own
/// errors; the caller adds the file.
#[derive(Debug, thiserror::Error)]
#[error("upstreams.{name}.{field}: {problem}")]
pub(crate) struct UpstreamError {
    pub(crate) name: String,
    pub(crate) field: &'static str,
    pub(crate) problem: String,
}

impl Upstream {
    pub(crate) fn build(name: &str, cfg: &UpstreamConfig) -> Result<Upstream, UpstreamError> {
        let mut lb =
            LoadBalancer::<RoundRobin>::try_from_iter(cfg.addrs.iter().map(String::as_str))
                .map_err(|e| UpstreamError {
                    name: name.to_string(),
                    field: "addrs",
                    problem: format!("cannot resolve its addresses: {e}"),
                })?;
        let fixed = if cfg.health_check_path.is_none() {
            let peers: Vec<HttpPeer> = lb
                .backends()
                .get_backend()
                .iter()
                .map(|b| Self::peer_for(cfg, b.addr.clone()))
                .collect();
            (!peers.is_empty()).then(|| FixedPeers {
                peers,
                next: AtomicUsize::new(0),
            })
        } else {
            None
        };
        if let Some(path) = &cfg.health_check_path {
            let mut hc = HttpHealthCheck::new(&cfg.sni, cfg.tls);
            hc.req
                .set_raw_path(path.as_bytes())
                .map_err(|_| UpstreamError {
                    name: name.to_string(),
                    field: "health_check_path",
                    problem: "not a valid request target".into(),
                })?;
            hc.peer_template.options.connection_timeout = Some(cfg.connect_timeout);
            if cfg.protocol.is_h2() {
                hc.peer_template.options.alpn = pingora::upstreams::peer::ALPN::H2;
            }
            hc.peer_template.options.read_timeout =
                Some(cfg.read_timeout.min(Duration::from_secs(2)));
            lb.set_health_check(Box::new(hc));
            lb.health_check_frequency = Some(HEALTH_CHECK_EVERY);
        }
        let (field, authority) = if cfg.sni.is_empty() {
            ("addrs", cfg.addrs.first().map_or("", String::as_str))
        } else {
            ("sni", cfg.sni.as_str())
        };
        let host = http::HeaderValue::from_str(authority)
            .ok()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| UpstreamError {
                name: name.to_string(),
                field,
                problem: "not usable as a Host header value".into(),
            })?;
        Ok(Upstream {
            name: name.to_string(),
            cfg: cfg.clone(),
            lb,
            fixed,
            host,
        })
    }

    fn peer_for(
        cfg: &UpstreamConfig,
        addr: pingora::protocols::l4::socket::SocketAddr,
    ) -> HttpPeer {
        let mut peer = HttpPeer::new(addr, cfg.tls, cfg.sni.clone());
        if cfg.protocol.is_h2() {
            // HTTP/2 only: ALPN `h2` over TLS, prior knowledge over TCP.
            peer.options.alpn = pingora::upstreams::peer::ALPN::H2;
        }
        peer.options.connection_timeout = Some(cfg.connect_timeout);
        peer.options.read_timeout = Some(cfg.read_timeout);
        peer.options.write_timeout = Some(cfg.read_timeout);
        peer
    }

    /// The next healthy address, as a peer with this upstream's settings.
    pub(crate) fn peer(&self) -> Option<HttpPeer> {
        if let Some(fixed) = &self.fixed {
            let i = fixed.next.fetch_add(1, Ordering::Relaxed) % fixed.peers.len();
            return fixed.peers.get(i).cloned();
        }
        let backend = self.lb.select(b"", 256)?;
        Some(Self::peer_for(&self.cfg, backend.addr))
    }

    /// What the upstream speaks (`upstreams.NAME.protocol`).
    pub(crate) fn protocol(&self) -> crate::config::UpstreamProtocol {
        self.cfg.protocol
    }

    pub(crate) fn has_health_check(&self) -> bool {
        self.cfg.health_check_path.is_some()
    }

    pub(crate) async fn run_health_check(&self) {
        self.lb.backends().run_health_check(true).await;
    }
}

/// Every upstream by name.
#[derive(Default)]
pub struct UpstreamTable {
    upstreams: BTreeMap<String, Arc<Upstream>>,
}

impl UpstreamTable {
    pub(crate) fn build(
        cfg: &BTreeMap<String, UpstreamConfig>,
    ) -> Result<UpstreamTable, UpstreamError> {
        let mut upstreams = BTreeMap::new();
        for (name, u) in cfg {
            upstreams.insert(name.clone(), Arc::new(Upstream::build(name, u)?));
        }
        Ok(UpstreamTable { upstreams })
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.upstreams.get(name)
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.upstreams.contains_key(name)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.upstreams.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(addrs: &[&str], sni: &str) -> UpstreamConfig {
        UpstreamConfig {
            addrs: addrs.iter().map(|a| a.to_string()).collect(),
            tls: false,
            sni: sni.into(),
            health_check_path: None,
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            protocol: crate::config::UpstreamProtocol::H1,
        }
    }

    #[test]
    fn the_host_for_a_request_without_one_is_the_sni_else_the_first_address() {
        let plain = Upstream::build("b", &config(&["127.0.0.1:8080", "127.0.0.2:8080"], ""))
            .expect("an upstream");
        assert_eq!(plain.host, "127.0.0.1:8080");
        let named = Upstream::build("b", &config(&["127.0.0.1:8443"], "api.internal"))
            .expect("an upstream");
        assert_eq!(named.host, "api.internal");
    }
}
