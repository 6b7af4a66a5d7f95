//! A fixed small-response HTTP upstream for `benches/load.sh`: answers every
//! request with 200 and a 13-byte body, so the proxy is what is measured.
//!
//! Usage: fixed_upstream LISTEN_ADDR [THREADS]

/// The same allocator in tollgate and the benchmark baselines: glibc malloc
/// was a sixth of the proxy's CPU under load and kept argon2's memory.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::{HttpServer, ServeHttp};
use pingora::protocols::http::ServerSession;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::listening::Service;

struct Fixed;

#[async_trait]
impl ServeHttp for Fixed {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        while let Ok(Some(_)) = session.read_request_body().await {}
        Response::builder()
            .status(200)
            .header("content-type", "text/plain")
            .header("content-length", "13")
            .body(b"hello, world\n".to_vec())
            .unwrap_or_else(|_| Response::new(Vec::new()))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(listen) = args.get(1) else {
        eprintln!("usage: fixed_upstream LISTEN_ADDR [THREADS]");
        std::process::exit(2);
    };
    let threads = args.get(2).and_then(|t| t.parse().ok()).unwrap_or(1);
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut svc = Service::new("fixed upstream".to_string(), HttpServer::new_app(Fixed));
    svc.add_tcp(listen);
    server.add_service(svc);
    server.run_forever();
}
