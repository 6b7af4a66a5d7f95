//! Envoy's ext_authz over gRPC (`envoy.service.auth.v3.Authorization/Check`)
//! on the decision listener's h2c connections, called with the client
//! generated from Envoy's protos (`envoy-types`): `OkHttpResponse` with the
//! identity headers to set and the client-sent identity headers and
//! `Authorization` to remove; `DeniedHttpResponse` with the proxy's status,
//! headers and JSON body.

use std::collections::HashMap;

use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse, HttpResponse};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;

use super::{denials, Decisions, IDENTITY};
use crate::common::*;

/// A CheckRequest as Envoy sends it: lower-case header names, the path
/// with its query.
fn check_request(method: &str, path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    let mut map: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    map.insert(":authority".into(), "api.example.com".into());
    map.insert(":method".into(), method.into());
    map.insert(":path".into(), path.into());
    map.insert("x-forwarded-proto".into(), "https".into());
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    id: "10857345897345".into(),
                    method: method.into(),
                    headers: map,
                    path: path.into(),
                    host: "api.example.com".into(),
                    scheme: "https".into(),
                    protocol: "HTTP/1.1".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

async fn call(d: &Decisions, request: CheckRequest) -> CheckResponse {
    let mut client = AuthorizationClient::connect(format!("http://{}", d.addr))
        .await
        .expect("h2c connection to the decision listener");
    client
        .check(request)
        .await
        .expect("Check answers")
        .into_inner()
}

/// Allowed: status OK, the identity headers to set (overwriting), and the
/// client's own identity headers, in any case or `_` form, and its
/// `Authorization` to remove.
#[tokio::test]
async fn an_allowed_check_sets_the_identity_and_removes_what_the_client_sent() {
    let d = Decisions::start("convention = \"envoy\"", "").await;
    let bearer = format!("Bearer {}", d.world.token);
    let path = format!("/api/v1/workflows/run?environmentId={}", d.world.env);
    let answer = call(
        &d,
        check_request(
            "GET",
            &path,
            &[
                ("authorization", &bearer),
                ("x_tollgate_client_id", "forged"),
                ("x-tollgate-organization-id", "forged"),
            ],
        ),
    )
    .await;
    assert_eq!(
        answer.status.as_ref().map(|s| s.code),
        Some(0),
        "{answer:?}"
    );
    let Some(HttpResponse::OkResponse(ok)) = answer.http_response else {
        panic!("not an OkHttpResponse: {answer:?}");
    };
    let set: HashMap<String, String> = ok
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .map(|h| (h.key.clone(), h.value.clone()))
        .collect();
    for name in IDENTITY {
        assert!(set.contains_key(name), "{name} not set: {set:?}");
    }
    assert_eq!(set["x-tollgate-organization-id"], d.world.org);
    assert_eq!(set["x-tollgate-client-id"], d.world.client_id);
    assert!(
        ok.headers.iter().all(|h| h.append_action == 2),
        "not overwriting"
    );
    let mut removed = ok.headers_to_remove.clone();
    removed.sort();
    // The forged organization id is overwritten by the set one; the `_`
    // form would reach the upstream beside it, so it is removed.
    assert_eq!(removed, ["authorization", "x_tollgate_client_id"]);
}

/// Every denial kind: the proxy's status, JSON body and headers.
#[tokio::test]
async fn a_denied_check_carries_the_proxys_answer() {
    let d = Decisions::start("convention = \"envoy\"", "").await;
    for (method, target, lines, error) in denials(&d) {
        let headers: Vec<(String, String)> = lines
            .iter()
            .map(|l| {
                let (n, v) = l.split_once(": ").expect("a header line");
                (n.to_ascii_lowercase(), v.to_string())
            })
            .collect();
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let answer = call(&d, check_request(method, &target, &headers)).await;
        let want = d.via_proxy(method, &target, &lines).await;
        let code = answer.status.as_ref().map_or(0, |s| s.code);
        assert_ne!(code, 0, "{target} allowed");
        let Some(HttpResponse::DeniedResponse(denied)) = answer.http_response else {
            panic!("not a DeniedHttpResponse for {target}: {answer:?}");
        };
        assert_eq!(
            denied.status.map(|s| s.code),
            Some(i32::from(want.status)),
            "{error} {target}"
        );
        let body: Value = serde_json::from_str(&denied.body).expect("a JSON body");
        assert_eq!(body["error"], error, "{target}");
        assert_eq!(body, want.json(), "{target}");
        let header = |name: &str| {
            denied
                .headers
                .iter()
                .filter_map(|h| h.header.as_ref())
                .find(|h| h.key == name)
                .map(|h| h.value.clone())
        };
        assert_eq!(
            header("www-authenticate").as_deref(),
            want.header("www-authenticate"),
            "{target}"
        );
        assert_eq!(header("cache-control").as_deref(), Some("no-store"));
    }
    // Without the HTTP attributes there is nothing to decide on: 400.
    let empty = call(&d, CheckRequest::default()).await;
    let Some(HttpResponse::DeniedResponse(denied)) = empty.http_response else {
        panic!("an empty CheckRequest was not denied: {empty:?}");
    };
    assert_eq!(denied.status.map(|s| s.code), Some(400));
    assert_eq!(d.world.echo.count(), 0);
}

/// HTTP/1 check requests and h2c gRPC share the listener.
#[tokio::test]
async fn http1_and_grpc_share_the_listener() {
    let d = Decisions::start("convention = \"envoy\"", "").await;
    let http1 = d.check("GET /public/x HTTP/1.1", &[]).await;
    assert_eq!(http1.status, 200);
    let answer = call(&d, check_request("GET", "/public/x", &[])).await;
    assert!(matches!(
        answer.http_response,
        Some(HttpResponse::OkResponse(_))
    ));
}
