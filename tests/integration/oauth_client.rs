//! A stock OAuth 2 client library (the `oauth2` crate) against the real
//! binary: its client-credentials flow with either client authentication
//! method, its error parsing, and RFC 7009 revocation; the tokens it gets
//! work on whoami and on a protected route.

use crate::common::*;
use oauth2::basic::{BasicClient, BasicErrorResponseType, BasicTokenType};
use oauth2::{
    AsyncHttpClient, AuthType, ClientId, ClientSecret, HttpClientError, HttpRequest, HttpResponse,
    RequestTokenError, RevocationUrl, Scope, StandardRevocableToken, TokenResponse, TokenUrl,
};

const POLICY: &str = r#"
[[route]]
name = "tools-read"
methods = ["GET"]
path = "/api/v1/tools/**"
upstream = "tools"
scope = "tools:read"
"#;

struct World {
    tollgate: Tollgate,
    upstream: EchoUpstream,
    org: String,
    client_id: String,
    secret: String,
}

impl World {
    async fn start() -> World {
        let upstream = EchoUpstream::start();
        let tollgate = Tollgate::start(
            TollgateOptions::new()
                .upstream("tools", &[upstream.addr_string()])
                .policy("tools.toml", POLICY),
        )
        .await;
        let org = unique_id("org");
        let (_, client_id, secret) = tollgate
            .admin()
            .create_service_account(&org, &unique_id("sa"), &["tools:write", "logs:read"])
            .await;
        World {
            tollgate,
            upstream,
            org,
            client_id,
            secret,
        }
    }

    fn http(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(IO_TIMEOUT)
            .build()
            .expect("HTTP client")
    }

    /// A client configured from the metadata document, as a real consumer would.
    async fn client(
        &self,
        secret: &str,
        auth_type: AuthType,
    ) -> BasicClient<
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointSet,
        oauth2::EndpointSet,
    > {
        let (status, _, metadata) = self
            .tollgate
            .proxy_request(Method::GET, "/.well-known/oauth-authorization-server", None)
            .await;
        assert_eq!(status, StatusCode::OK);
        let url = |key: &str| metadata[key].as_str().expect("endpoint URL").to_string();
        BasicClient::new(ClientId::new(self.client_id.clone()))
            .set_client_secret(ClientSecret::new(secret.to_string()))
            .set_token_uri(TokenUrl::new(url("token_endpoint")).expect("token URL"))
            .set_revocation_url(RevocationUrl::new(url("revocation_endpoint")).expect("URL"))
            .set_auth_type(auth_type)
    }

    async fn whoami(&self, token: &str) -> (StatusCode, Value) {
        let (status, _, body) = self
            .tollgate
            .proxy_request(Method::GET, "/api/v1/service-account/whoami", Some(token))
            .await;
        (status, body)
    }
}

async fn obtains_a_working_token_with(auth_type: AuthType) {
    let world = World::start().await;
    let client = world.client(&world.secret, auth_type).await;

    let token = client
        .exchange_client_credentials()
        .add_scope(Scope::new("tools:read".to_string()))
        .request_async(&world.http())
        .await
        .expect("client credentials flow");

    assert_eq!(*token.token_type(), BasicTokenType::Bearer);
    assert_eq!(token.expires_in().map(|d| d.as_secs()), Some(900));
    assert!(token.refresh_token().is_none());
    let scopes: Vec<String> = token
        .scopes()
        .expect("scope in the answer")
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(scopes, ["tools:read"]);
    let access_token = token.access_token().secret().clone();
    let (status, me) = world.whoami(&access_token).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(
        me,
        json!({
            "organizationId": world.org,
            "clientId": world.client_id,
            "scopes": ["tools:read"],
        })
    );
    let (status, _, _) = world
        .tollgate
        .proxy_request(Method::GET, "/api/v1/tools/list", Some(&access_token))
        .await;
    assert_eq!(status, StatusCode::OK);
    let forwarded = world.upstream.last().expect("the request was forwarded");
    assert_eq!(
        forwarded.header("x-tollgate-client-id"),
        Some(world.client_id.as_str())
    );
    assert!(!forwarded.has_header("authorization"));
    let logs = world.tollgate.logs();
    assert!(!logs.contains(&access_token) && !logs.contains(&world.secret));
}

#[tokio::test]
async fn oauth2_crate_obtains_a_working_token_with_basic_auth() {
    obtains_a_working_token_with(AuthType::BasicAuth).await;
}

#[tokio::test]
async fn oauth2_crate_obtains_a_working_token_with_the_secret_in_the_body() {
    obtains_a_working_token_with(AuthType::RequestBody).await;
}

#[tokio::test]
async fn oauth2_crate_reads_our_errors_as_standard_error_responses() {
    let world = World::start().await;
    let http = world.http();

    for auth_type in [AuthType::BasicAuth, AuthType::RequestBody] {
        let wrong = world.client("tg_sk_wrong", auth_type.clone()).await;
        let err = wrong
            .exchange_client_credentials()
            .request_async(&http)
            .await
            .expect_err("wrong secret");
        let RequestTokenError::ServerResponse(response) = err else {
            panic!("not a standard error response: {err:?}");
        };
        assert_eq!(*response.error(), BasicErrorResponseType::InvalidClient);

        let right = world.client(&world.secret, auth_type).await;
        let err = right
            .exchange_client_credentials()
            .add_scope(Scope::new("knowledge:read".to_string()))
            .request_async(&http)
            .await
            .expect_err("scope not granted");
        let RequestTokenError::ServerResponse(response) = err else {
            panic!("not a standard error response: {err:?}");
        };
        assert_eq!(*response.error(), BasicErrorResponseType::InvalidScope);
    }
}

/// Stands in for a TLS terminator in front of tollgate: the `oauth2` crate
/// insists on an https revocation URL (RFC 7009 §2), the test listener is
/// plain HTTP.
async fn through_tls_terminator(
    http: &reqwest::Client,
    mut request: HttpRequest,
) -> Result<HttpResponse, HttpClientError<reqwest::Error>> {
    let plain = request.uri().to_string().replacen("https://", "http://", 1);
    *request.uri_mut() = plain.parse().expect("a URI");
    http.call(request).await
}

#[tokio::test]
async fn oauth2_crate_revokes_a_token() {
    let world = World::start().await;
    let revocation_url = format!(
        "https://{}/api/auth/oauth2/revoke",
        world.tollgate.proxy_addr()
    );
    let client = world
        .client(&world.secret, AuthType::BasicAuth)
        .await
        .set_revocation_url(RevocationUrl::new(revocation_url).expect("URL"));
    let http = world.http();
    let token = client
        .exchange_client_credentials()
        .request_async(&http)
        .await
        .expect("client credentials flow");
    let access_token = token.access_token().clone();
    assert_eq!(world.whoami(access_token.secret()).await.0, StatusCode::OK);

    client
        .revoke_token(StandardRevocableToken::AccessToken(access_token.clone()))
        .expect("revocation URL is set")
        .request_async(&|request| through_tls_terminator(&http, request))
        .await
        .expect("revocation");

    let (status, body) = world.whoami(access_token.secret()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_token");
}
