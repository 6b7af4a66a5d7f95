//! A small client for the admin API (docs/contract.md §4) that returns status and JSON,
//! plus helpers for the set-up most tests need.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::IO_TIMEOUT;

/// Admin API client; every call carries `Authorization: Bearer <key>` when a key is set.
#[derive(Clone, Debug)]
pub struct Admin {
    client: reqwest::Client,
    base: String,
    key: Option<String>,
}

impl Admin {
    /// `base` is `http://host:port` of the admin listener.
    pub fn new(base: impl Into<String>, key: Option<String>) -> Admin {
        let client = reqwest::Client::builder()
            .timeout(IO_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("build the admin HTTP client");
        Admin {
            client,
            base: base.into(),
            key,
        }
    }

    /// The same client with another bearer key (wrong-key tests).
    pub fn with_key(&self, key: &str) -> Admin {
        Admin {
            key: Some(key.to_string()),
            ..self.clone()
        }
    }

    /// The same client without any `Authorization` header.
    pub fn without_key(&self) -> Admin {
        Admin {
            key: None,
            ..self.clone()
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.request(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.request(Method::POST, path, Some(&body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.request(Method::PATCH, path, Some(&body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.request(Method::PUT, path, Some(&body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.request(Method::DELETE, path, None).await
    }

    /// Any method, an optional JSON body. The answer's body is parsed as JSON;
    /// an empty body is `Null`, anything else that is not JSON a `Value::String`.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut builder = self.client.request(method, self.url(path));
        if let Some(body) = body {
            builder = builder.json(body);
        }
        self.send(builder).await
    }

    /// A body sent verbatim with the given content type (malformed-JSON and size tests).
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: impl Into<Vec<u8>>,
    ) -> (StatusCode, Value) {
        let builder = self
            .client
            .request(method, self.url(path))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body.into());
        self.send(builder).await
    }

    async fn send(&self, mut builder: reqwest::RequestBuilder) -> (StatusCode, Value) {
        if let Some(key) = &self.key {
            builder = builder.bearer_auth(key);
        }
        let response = builder.send().await.expect("admin request failed");
        let status = response.status();
        let bytes = response.bytes().await.expect("read admin response body");
        (status, body_value(&bytes))
    }

    /// Creates an SA; asserts 201 and returns `(service_account, client_id, client_secret)`.
    pub async fn create_service_account(
        &self,
        org: &str,
        name: &str,
        scopes: &[&str],
    ) -> (Value, String, String) {
        let (status, body) = self
            .post(
                &format!("/v1/organizations/{org}/service-accounts"),
                json!({ "name": name, "scopes": scopes }),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "create service account: {body}"
        );
        let field = |key: &str| {
            body["credential"][key]
                .as_str()
                .unwrap_or_else(|| panic!("credential.{key} missing in {body}"))
                .to_string()
        };
        let (client_id, client_secret) = (field("client_id"), field("client_secret"));
        (body["service_account"].clone(), client_id, client_secret)
    }

    /// `PUT /workspaces/{ws}`; asserts 200/201 and returns the workspace.
    pub async fn put_workspace(&self, org: &str, ws: &str) -> Value {
        let (status, body) = self
            .put(
                &format!("/v1/organizations/{org}/workspaces/{ws}"),
                json!({ "name": ws }),
            )
            .await;
        assert!(status.is_success(), "put workspace: {status} {body}");
        body
    }

    /// `PUT /workspaces/{ws}/environments/{env}`; asserts 200/201 and returns it.
    pub async fn put_environment(&self, org: &str, ws: &str, env: &str) -> Value {
        let (status, body) = self
            .put(
                &format!("/v1/organizations/{org}/workspaces/{ws}/environments/{env}"),
                json!({ "name": env }),
            )
            .await;
        assert!(status.is_success(), "put environment: {status} {body}");
        body
    }

    /// `PUT /workspaces/{ws}/members/{sa}` with `role`; asserts 200/201 and returns it.
    pub async fn put_member(&self, org: &str, ws: &str, sa_id: &str, role: &str) -> Value {
        let (status, body) = self
            .put(
                &format!("/v1/organizations/{org}/workspaces/{ws}/members/{sa_id}"),
                json!({ "role": role }),
            )
            .await;
        assert!(status.is_success(), "put member: {status} {body}");
        body
    }

    /// `POST /service-accounts/{sa}/revoke-tokens`; asserts 200 and returns the body.
    pub async fn revoke_account_tokens(&self, org: &str, sa_id: &str) -> Value {
        let (status, body) = self
            .post(
                &format!("/v1/organizations/{org}/service-accounts/{sa_id}/revoke-tokens"),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "revoke account tokens: {body}");
        body
    }
}

/// A response body as JSON: `Null` when empty, a string when not JSON.
pub fn body_value(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}
