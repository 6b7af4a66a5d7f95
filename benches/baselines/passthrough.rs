//! A bare pingora passthrough proxy: the baseline tollgate is measured
//! against in `benches/load.sh`. Same pingora version and settings, no
//! checks at all.
//!
//! Usage: passthrough LISTEN_ADDR UPSTREAM_ADDR [THREADS] [PROTOCOL]
//!
//! PROTOCOL is how clients reach it, as tollgate's listener offers it:
//! `h1` (the default; plain HTTP/1.1), `h2c` (HTTP/1.1 and HTTP/2 with
//! prior knowledge), or `tls:CERT:KEY` (TLS, ALPN `h2` and `http/1.1`).

/// The same allocator in tollgate and the benchmark baselines: glibc malloc
/// was a sixth of the proxy's CPU under load and kept argon2's memory.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use async_trait::async_trait;
use pingora::listeners::ListenerConfig;
use pingora::prelude::*;
use pingora::protocols::l4::stream::{L4BufferSettings, DEFAULT_L4_WRITE_BUFFER_SIZE};
use pingora::server::configuration::ServerConf;

struct Passthrough {
    upstream: String,
}

#[async_trait]
impl ProxyHttp for Passthrough {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(
            self.upstream.as_str(),
            false,
            String::new(),
        )))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(upstream)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: passthrough LISTEN_ADDR UPSTREAM_ADDR [THREADS]");
        std::process::exit(2);
    };
    let threads = args.get(3).and_then(|t| t.parse().ok()).unwrap_or(1);
    let protocol = args.get(4).map_or("h1", String::as_str);
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(
        &server.configuration,
        Passthrough {
            upstream: upstream.clone(),
        },
    );
    // The same listener settings as tollgate's (no L4 read buffer).
    let mut listener = ListenerConfig::tcp(listen.as_str())
        .l4_buffer(L4BufferSettings::new(0, DEFAULT_L4_WRITE_BUFFER_SIZE));
    if protocol == "h2c" {
        if let Some(app) = proxy.app_logic_mut() {
            let mut options = pingora::apps::HttpServerOptions::default();
            options.h2c = true;
            app.server_options = Some(options);
        }
    } else if let Some(files) = protocol.strip_prefix("tls:") {
        let Some((cert, key)) = files.split_once(':') else {
            eprintln!("passthrough: tls:CERT:KEY");
            std::process::exit(2);
        };
        let mut tls = match pingora::listeners::tls::TlsSettings::intermediate(cert, key) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("passthrough: {e}");
                std::process::exit(2);
            }
        };
        tls.enable_h2();
        listener = listener.tls(tls);
    }
    proxy.add_listener(listener);
    server.add_service(proxy);
    server.run_forever();
}
