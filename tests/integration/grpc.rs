//! gRPC through tollgate with real parts: a tonic client (h2c, prior
//! knowledge) and a tonic upstream (`protocol = "h2c"`), a token in the
//! call's metadata. Unary, server streaming with trailers, bidirectional
//! streaming, and the deny paths answered as gRPC. The service is written
//! by hand over prost messages (no protoc, no build script).

// tonic's own types: `Result<_, Status>` is its API.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;
use std::pin::Pin;
use std::time::Duration;

use tokio_stream::{Stream, StreamExt};
use tonic::codegen::{http, BoxFuture, Context, Poll, Service};
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

use crate::common::*;

#[derive(Clone, PartialEq, prost::Message)]
pub struct Msg {
    #[prost(string, tag = "1")]
    pub text: String,
}

fn msg(text: impl Into<String>) -> Msg {
    Msg { text: text.into() }
}

type MsgStream = Pin<Box<dyn Stream<Item = Result<Msg, Status>> + Send>>;

/// `test.Echo`: `Say` (unary: the text back, with the caller tollgate
/// named), `Count` (server streaming: N messages, then a status with a
/// trailer), `Chat` (bidirectional: each message answered as it comes).
#[derive(Clone)]
struct EchoService;

impl tonic::server::NamedService for EchoService {
    const NAME: &'static str = "test.Echo";
}

struct Say;
impl Service<Request<Msg>> for Say {
    type Response = Response<Msg>;
    type Error = Status;
    type Future = BoxFuture<Response<Msg>, Status>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: Request<Msg>) -> Self::Future {
        let client = req
            .metadata()
            .get("x-tollgate-client-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string();
        let auth = req.metadata().contains_key("authorization");
        let text = format!("{} from {client} auth={auth}", req.into_inner().text);
        Box::pin(async move { Ok(Response::new(msg(text))) })
    }
}

struct Count;
impl Service<Request<Msg>> for Count {
    type Response = Response<MsgStream>;
    type Error = Status;
    type Future = BoxFuture<Response<MsgStream>, Status>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: Request<Msg>) -> Self::Future {
        let n: usize = req.into_inner().text.parse().unwrap_or(0);
        Box::pin(async move {
            let mut items: Vec<Result<Msg, Status>> =
                (0..n).map(|i| Ok(msg(i.to_string()))).collect();
            let mut end = Status::resource_exhausted("counted out");
            end.metadata_mut()
                .insert("x-upstream-trailer", "kept".parse().expect("value"));
            items.push(Err(end));
            let stream: MsgStream = Box::pin(tokio_stream::iter(items));
            Ok(Response::new(stream))
        })
    }
}

struct Chat;
impl Service<Request<Streaming<Msg>>> for Chat {
    type Response = Response<MsgStream>;
    type Error = Status;
    type Future = BoxFuture<Response<MsgStream>, Status>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: Request<Streaming<Msg>>) -> Self::Future {
        let incoming = req.into_inner();
        Box::pin(async move {
            let stream: MsgStream =
                Box::pin(incoming.map(|m| m.map(|m| msg(format!("echo {}", m.text)))));
            Ok(Response::new(stream))
        })
    }
}

impl Service<http::Request<tonic::body::Body>> for EchoService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Msg, Msg>::default());
            Ok(match req.uri().path() {
                "/test.Echo/Say" => grpc.unary(Say, req).await,
                "/test.Echo/Count" => grpc.server_streaming(Count, req).await,
                "/test.Echo/Chat" => grpc.streaming(Chat, req).await,
                _ => Status::unimplemented("no such method").into_http(),
            })
        })
    }
}

/// A tonic server on a free port until dropped.
struct GrpcUpstream {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl GrpcUpstream {
    async fn start() -> GrpcUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(EchoService)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
        });
        GrpcUpstream {
            addr,
            stop: Some(stop),
        }
    }
}

impl Drop for GrpcUpstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

const GRPC_POLICY: &str = r#"
[[route]]
name = "echo"
path = "/test.Echo/**"
methods = ["POST"]
upstream = "grpc"
scope = "tools:read"
"#;

struct GrpcWorld {
    tollgate: Tollgate,
    _upstream: GrpcUpstream,
    token: String,
    client_id: String,
    /// An account's token without `tools:read`.
    weak_token: String,
}

async fn grpc_world() -> GrpcWorld {
    let upstream = GrpcUpstream::start().await;
    let tollgate = Tollgate::start(
        TollgateOptions::new()
            .memory()
            .policy("routes.toml", GRPC_POLICY)
            .upstream("grpc", &[upstream.addr.to_string()])
            .toml("[upstreams.grpc]\nprotocol = \"h2c\""),
    )
    .await;
    let org = unique_id("org");
    let (_, client_id, secret) = tollgate
        .admin()
        .create_service_account(&org, &unique_id("sa"), &["tools:read"])
        .await;
    let (status, body) = tollgate.issue_token(&client_id, &secret, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["access_token"].as_str().expect("token").to_string();
    let (_, weak_token) = tollgate.account_with_token(&org, &["logs:read"]).await;
    GrpcWorld {
        tollgate,
        _upstream: upstream,
        token,
        client_id,
        weak_token,
    }
}

impl GrpcWorld {
    async fn client(&self) -> tonic::client::Grpc<tonic::transport::Channel> {
        let channel = tonic::transport::Endpoint::from_shared(format!(
            "http://{}",
            self.tollgate.proxy_addr()
        ))
        .expect("endpoint")
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("connect through tollgate");
        tonic::client::Grpc::new(channel)
    }

    fn with_token<T>(&self, token: Option<&str>, message: T) -> Request<T> {
        let mut req = Request::new(message);
        if let Some(t) = token {
            req.metadata_mut().insert(
                "authorization",
                format!("Bearer {t}").parse().expect("metadata"),
            );
        }
        req
    }
}

fn path(p: &'static str) -> http::uri::PathAndQuery {
    http::uri::PathAndQuery::from_static(p)
}

async fn say(w: &GrpcWorld, token: Option<&str>) -> Result<Response<Msg>, Status> {
    let mut client = w.client().await;
    client.ready().await.expect("ready");
    client
        .unary(
            w.with_token(token, msg("hello")),
            path("/test.Echo/Say"),
            ProstCodec::<Msg, Msg>::default(),
        )
        .await
}

#[tokio::test]
async fn grpc_unary_server_streaming_and_bidi_pass_through_with_trailers() {
    let w = grpc_world().await;

    // Unary: the upstream got tollgate's identity header, not the token.
    let answer = say(&w, Some(&w.token)).await.expect("unary call");
    assert_eq!(
        answer.into_inner().text,
        format!("hello from {} auth=false", w.client_id)
    );

    // Server streaming: every message, then the upstream's status and its
    // trailer, as the upstream sent them.
    let mut client = w.client().await;
    client.ready().await.expect("ready");
    let mut stream = client
        .server_streaming(
            w.with_token(Some(&w.token), msg("5")),
            path("/test.Echo/Count"),
            ProstCodec::<Msg, Msg>::default(),
        )
        .await
        .expect("server streaming call")
        .into_inner();
    let mut got = Vec::new();
    let end = loop {
        match stream.message().await {
            Ok(Some(m)) => got.push(m.text),
            Ok(None) => panic!("the stream ended without the upstream's status"),
            Err(status) => break status,
        }
    };
    assert_eq!(got, ["0", "1", "2", "3", "4"]);
    assert_eq!(end.code(), Code::ResourceExhausted);
    assert_eq!(end.message(), "counted out");
    assert_eq!(
        end.metadata()
            .get("x-upstream-trailer")
            .and_then(|v| v.to_str().ok()),
        Some("kept")
    );

    // Bidirectional: each answer arrives before the next message is sent.
    let (tx, rx) = tokio::sync::mpsc::channel::<Msg>(4);
    let mut client = w.client().await;
    client.ready().await.expect("ready");
    let outgoing = tokio_stream::wrappers::ReceiverStream::new(rx);
    tx.send(msg("one")).await.expect("send");
    let mut replies = client
        .streaming(
            w.with_token(Some(&w.token), outgoing),
            path("/test.Echo/Chat"),
            ProstCodec::<Msg, Msg>::default(),
        )
        .await
        .expect("bidi call")
        .into_inner();
    for word in ["one", "two", "three"] {
        if word != "one" {
            tx.send(msg(word)).await.expect("send");
        }
        let reply = tokio::time::timeout(Duration::from_secs(5), replies.message())
            .await
            .expect("a reply while the call is open")
            .expect("a message")
            .expect("not the end");
        assert_eq!(reply.text, format!("echo {word}"));
    }
    drop(tx);
    assert!(replies.message().await.expect("clean end").is_none());
}

#[tokio::test]
async fn denied_grpc_calls_get_grpc_answers_and_builtins_stay_json() {
    let w = grpc_world().await;
    let denied = say(&w, None).await.expect_err("no token");
    assert_eq!(denied.code(), Code::Unauthenticated, "{denied:?}");
    let weak = say(&w, Some(&w.weak_token)).await.expect_err("no scope");
    assert_eq!(weak.code(), Code::PermissionDenied, "{weak:?}");
    for status in [&denied, &weak] {
        // tollgate's own description, not a client's note on an HTTP error.
        assert!(!status.message().is_empty());
        assert!(!status.message().contains("HTTP status"), "{status:?}");
        assert!(status.metadata().contains_key("x-request-id"), "{status:?}");
    }

    // On the wire: HTTP 200, grpc-status in a trailers-only answer.
    let url = format!("http://{}/test.Echo/Say", w.tollgate.proxy_addr());
    let (_, out, _) = curl(&[
        "--http2-prior-knowledge",
        "-i",
        "-X",
        "POST",
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        "--data-binary",
        "",
        &url,
    ]);
    assert!(out.starts_with("HTTP/2 200"), "{out}");
    assert!(out.contains("grpc-status: 16"), "{out}");
    assert!(out.contains("grpc-message: "), "{out}");
    assert!(out.contains("www-authenticate: Bearer"), "{out}");

    // gRPC runs over HTTP/2: an HTTP/1.1 request that says it is gRPC gets
    // the JSON denial with its real status, which status-code monitoring
    // in front of tollgate counts as the denial it is, not a 200.
    let (_, out, _) = curl(&[
        "--http1.1",
        "-i",
        "-X",
        "POST",
        "-H",
        "content-type: application/grpc",
        "--data-binary",
        "",
        &url,
    ]);
    assert!(out.starts_with("HTTP/1.1 401"), "{out}");
    assert!(out.contains("content-type: application/json"), "{out}");
    assert!(!out.contains("grpc-status"), "{out}");

    // whoami and the token endpoint answer in HTTP/JSON whatever is asked.
    for target in ["/api/v1/service-account/whoami", "/api/auth/oauth2/token"] {
        let url = format!("http://{}{target}", w.tollgate.proxy_addr());
        let (_, out, _) = curl(&[
            "--http2-prior-knowledge",
            "-i",
            "-X",
            "POST",
            "-H",
            "content-type: application/grpc",
            &url,
        ]);
        assert!(!out.starts_with("HTTP/2 200"), "{target}: {out}");
        assert!(
            out.contains("content-type: application/json"),
            "{target}: {out}"
        );
        assert!(!out.contains("grpc-status"), "{target}: {out}");
    }
}

/// A gRPC call over an account's quota is refused in gRPC terms:
/// `RESOURCE_EXHAUSTED` with the wait in `retry-after`.
#[tokio::test]
async fn a_grpc_call_over_a_quota_is_resource_exhausted() {
    let w = grpc_world().await;
    let org = unique_id("org");
    let (sa, token) = w.tollgate.account_with_token(&org, &["tools:read"]).await;
    let (status, body) = w
        .tollgate
        .admin()
        .put(
            &format!("/v1/organizations/{org}/service-accounts/{sa}/limits"),
            json!({"daily_quota": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    say(&w, Some(&token)).await.expect("within the quota");
    let refused = say(&w, Some(&token)).await.expect_err("over the quota");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.metadata().contains_key("retry-after"),
        "{refused:?}"
    );
}
