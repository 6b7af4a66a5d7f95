//! The admin API (docs/contract.md §4) on the admin listener: routing, JSON in and out,
//! admin-key authentication, and one mapping of registry errors to HTTP.
//! The handler works on a plain `Request` so it is testable without sockets;
//! `AdminHttp` adapts it to pingora.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use crate::config::AdminKey;
use crate::hashing::{HashError, Hasher};
use crate::proxy::netaddr::throttle_bucket;
use crate::registry::{
    CredentialPatch, IssuedCredential, NewServiceAccount, Page, Registry, RegistryError,
    ServiceAccountPatch,
};
use crate::secret::sha256;
use ipnet::IpNet;

/// Failed admin authentications allowed per source address (IPv6 by /64)
/// in a fixed window; further attempts get 429 `slow_down` with
/// `Retry-After` before any verification.
const ADMIN_MAX_FAILURES: u32 = 10;
const ADMIN_WINDOW_SECS: i64 = 60;
use crate::store::StoreError;

pub const BODY_LIMIT: usize = 64 * 1024;

/// An admin request as the handler sees it.
pub struct Request {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub authorization: Vec<Vec<u8>>,
    pub body: Vec<u8>,
    /// The peer's address (no proxy header is trusted on this listener).
    pub source: Option<IpAddr>,
}

pub struct Reply {
    pub status: StatusCode,
    pub body: Vec<u8>,
    pub allow: Option<&'static str>,
    /// `Retry-After` seconds (a throttled admin request).
    pub retry_after: Option<u64>,
}

impl Reply {
    fn json(status: StatusCode, value: &impl Serialize) -> Reply {
        Reply {
            status,
            body: serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec()),
            allow: None,
            retry_after: None,
        }
    }

    fn empty(status: StatusCode) -> Reply {
        Reply {
            status,
            body: Vec::new(),
            allow: None,
            retry_after: None,
        }
    }

    pub fn error(status: StatusCode, code: &str, description: &str) -> Reply {
        Reply::json(
            status,
            &json!({"error": code, "error_description": description}),
        )
    }
}

/// Verifies admin keys: configured argon2id hashes and the plain
/// `TOLLGATE_ADMIN_KEY`. Keys that verified once are remembered by their
/// SHA-256 so a call does not pay argon2 each time.
pub struct AdminKeys {
    keys: Vec<AdminKey>,
    env_key_digest: Option<[u8; 32]>,
    verified: RwLock<HashMap<[u8; 32], String>>,
    hasher: Arc<Hasher>,
    /// (window, source bucket) → failed or pending verifications.
    failures: Mutex<HashMap<(i64, IpNet), u32>>,
}

impl AdminKeys {
    pub fn new(
        keys: Vec<AdminKey>,
        env_key: Option<&SecretString>,
        hasher: Arc<Hasher>,
    ) -> AdminKeys {
        AdminKeys {
            keys,
            env_key_digest: env_key.map(|k| sha256(&[b"admin", k.expose_secret().as_bytes()])),
            verified: RwLock::new(HashMap::new()),
            hasher,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Reserves one attempt for the source, counted as a failure until it
    /// succeeds: `Err(retry_after)` once `ADMIN_MAX_FAILURES` are counted in
    /// the current window, before any verification. Fails closed.
    fn reserve(&self, source: Option<IpAddr>, now: i64) -> Result<Option<(i64, IpNet)>, u64> {
        // Without hashed keys no attempt costs argon2 work to throttle.
        let Some(source) = source.filter(|_| !self.keys.is_empty()) else {
            return Ok(None);
        };
        let window = now.div_euclid(ADMIN_WINDOW_SECS);
        let retry = u64::try_from(ADMIN_WINDOW_SECS - now.rem_euclid(ADMIN_WINDOW_SECS))
            .unwrap_or(1)
            .max(1);
        let key = (window, throttle_bucket(source));
        let Ok(mut failures) = self.failures.lock() else {
            return Err(retry);
        };
        failures.retain(|(w, _), _| *w >= window);
        let count = failures.entry(key).or_insert(0);
        if *count >= ADMIN_MAX_FAILURES {
            return Err(retry);
        }
        *count += 1;
        Ok(Some(key))
    }

    fn forgive(&self, key: Option<(i64, IpNet)>) {
        if let (Some(key), Ok(mut failures)) = (key, self.failures.lock()) {
            if let Some(n) = failures.get_mut(&key) {
                *n = n.saturating_sub(1);
            }
        }
    }

    /// The key's name when it is valid.
    /// The name of the key presented, `None` for no key of ours, or an
    /// error when it could not be verified (the hashing queue is full).
    pub async fn verify(&self, presented: &str) -> Result<Option<String>, HashError> {
        if presented.is_empty() || presented.len() > 1024 {
            return Ok(None);
        }
        let digest = sha256(&[b"admin", presented.as_bytes()]);
        if let Some(env) = &self.env_key_digest {
            if bool::from(env.ct_eq(&digest)) {
                return Ok(Some("env".to_string()));
            }
        }
        if let Ok(cache) = self.verified.read() {
            if let Some(name) = cache.get(&digest) {
                return Ok(Some(name.clone()));
            }
        }
        for key in &self.keys {
            if self
                .hasher
                .verify_any(presented, vec![key.hash.clone()])
                .await?
            {
                if let Ok(mut cache) = self.verified.write() {
                    cache.insert(digest, key.name.clone());
                }
                return Ok(Some(key.name.clone()));
            }
        }
        Ok(None)
    }
}

pub struct Admin {
    registry: Arc<Registry>,
    keys: AdminKeys,
    policy_loaded: Arc<AtomicBool>,
}

fn bad(field: &str, problem: &str) -> Reply {
    Reply::error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        &format!("{field}: {problem}"),
    )
}

fn registry_error(e: RegistryError) -> Reply {
    match e {
        RegistryError::Invalid { field, problem } => bad(&field, &problem),
        RegistryError::NotFound(what) => Reply::error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("{what} not found"),
        ),
        RegistryError::Conflict(why) => Reply::error(StatusCode::CONFLICT, "conflict", &why),
        RegistryError::Store(e) => store_error(&e),
        RegistryError::Internal => Reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the request could not be completed",
        ),
    }
}

fn store_error(e: &StoreError) -> Reply {
    crate::metrics::Metrics::get().store_error("admin");
    tracing::warn!(error = %e, "admin request failed on the store");
    Reply::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        "the store is unavailable; try again",
    )
}

/// A JSON object body read field by field, so that every error names the
/// field it is about (serde's own messages name a position, not a field).
struct Fields(serde_json::Map<String, Value>);

impl Fields {
    /// Parses an object whose fields are all in `allowed`.
    fn parse(body: &[u8], allowed: &[&str]) -> Result<Fields, Reply> {
        let map = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(bad("body", "must be a JSON object")),
            Err(e) => {
                return Err(bad(
                    "body",
                    &format!(
                        "is not valid JSON ({:?} error at line {} column {})",
                        e.classify(),
                        e.line(),
                        e.column()
                    ),
                ))
            }
        };
        if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(bad(unknown, "unknown field"));
        }
        Ok(Fields(map))
    }

    /// Like `parse`, but an empty body is an empty object.
    fn parse_optional(body: &[u8], allowed: &[&str]) -> Result<Fields, Reply> {
        if body.iter().all(u8::is_ascii_whitespace) {
            Ok(Fields(serde_json::Map::new()))
        } else {
            Fields::parse(body, allowed)
        }
    }

    fn convert<T: DeserializeOwned>(name: &str, value: Value, expected: &str) -> Result<T, Reply> {
        serde_json::from_value(value).map_err(|_| bad(name, &format!("must be {expected}")))
    }

    /// A field that must be present and not null.
    fn required<T: DeserializeOwned>(&mut self, name: &str, expected: &str) -> Result<T, Reply> {
        match self.0.remove(name) {
            None | Some(Value::Null) => Err(bad(name, &format!("is required ({expected})"))),
            Some(v) => Self::convert(name, v, expected),
        }
    }

    /// Absent is `None`; `null` is an error.
    fn optional<T: DeserializeOwned>(
        &mut self,
        name: &str,
        expected: &str,
    ) -> Result<Option<T>, Reply> {
        match self.0.remove(name) {
            None => Ok(None),
            Some(Value::Null) => Err(bad(name, &format!("must be {expected}, not null"))),
            Some(v) => Self::convert(name, v, expected).map(Some),
        }
    }

    /// Absent is `None`, `null` is `Some(None)` (clear the value).
    fn nullable<T: DeserializeOwned>(
        &mut self,
        name: &str,
        expected: &str,
    ) -> Result<Option<Option<T>>, Reply> {
        match self.0.remove(name) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(v) => Self::convert(name, v, expected).map(|t| Some(Some(t))),
        }
    }
}

const A_STRING: &str = "a string";
const A_STRING_OR_NULL: &str = "a string or null";
const SCOPE_LIST: &str = "a list of scope strings";
const GRACE: &str = "an integer from 0 to 86400";

fn create_service_account_body(body: &[u8]) -> Result<NewServiceAccount, Reply> {
    let mut f = Fields::parse(body, &["name", "description", "scopes"])?;
    Ok(NewServiceAccount {
        name: f.required("name", A_STRING)?,
        description: f.nullable("description", A_STRING_OR_NULL)?.flatten(),
        scopes: f.required("scopes", SCOPE_LIST)?,
    })
}

fn patch_service_account_body(body: &[u8]) -> Result<ServiceAccountPatch, Reply> {
    let mut f = Fields::parse(body, &["name", "description", "scopes", "status"])?;
    Ok(ServiceAccountPatch {
        name: f.optional("name", A_STRING)?,
        description: f.nullable("description", A_STRING_OR_NULL)?,
        scopes: f.optional("scopes", SCOPE_LIST)?,
        status: f.optional("status", "\"active\" or \"disabled\"")?,
    })
}

/// `(name, description)` of a new credential.
fn create_credential_body(body: &[u8]) -> Result<(String, Option<String>), Reply> {
    let mut f = Fields::parse(body, &["name", "description"])?;
    Ok((
        f.required("name", A_STRING)?,
        f.nullable("description", A_STRING_OR_NULL)?.flatten(),
    ))
}

fn patch_credential_body(body: &[u8]) -> Result<CredentialPatch, Reply> {
    let mut f = Fields::parse(body, &["name", "description"])?;
    Ok(CredentialPatch {
        name: f.optional("name", A_STRING)?,
        description: f.nullable("description", A_STRING_OR_NULL)?,
    })
}

/// `grace_seconds` of a rotation; an empty body means 0.
fn rotate_body(body: &[u8]) -> Result<u64, Reply> {
    let mut f = Fields::parse_optional(body, &["grace_seconds"])?;
    Ok(f.optional("grace_seconds", GRACE)?.unwrap_or(0))
}

/// The `name` of a workspace or environment.
fn named_body(body: &[u8]) -> Result<String, Reply> {
    Fields::parse(body, &["name"])?.required("name", A_STRING)
}

fn member_body(body: &[u8]) -> Result<String, Reply> {
    Fields::parse(body, &["role"])?.required("role", "\"member\" or \"admin\"")
}

fn with_secret(issued: &IssuedCredential) -> Value {
    let mut v = serde_json::to_value(&issued.credential).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut v {
        map.insert(
            "client_secret".into(),
            Value::String(issued.client_secret.expose_secret().to_string()),
        );
    }
    v
}

fn page<T: Serialize>(p: Page<T>) -> Reply {
    Reply::json(
        StatusCode::OK,
        &json!({"data": p.items, "next_cursor": p.next_cursor}),
    )
}

struct ListParams {
    limit: usize,
    after: Option<String>,
    q: Option<String>,
}

fn list_params(query: Option<&str>) -> Result<ListParams, Reply> {
    let mut p = ListParams {
        limit: 50,
        after: None,
        q: None,
    };
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "limit" => {
                p.limit = match v.parse::<usize>() {
                    Ok(n) if (1..=200).contains(&n) => n,
                    _ => return Err(bad("limit", "must be an integer from 1 to 200")),
                }
            }
            "after" => {
                if v.len() > 128 {
                    return Err(bad("after", "is not a cursor"));
                }
                p.after = Some(v.into_owned()).filter(|s| !s.is_empty());
            }
            "q" => {
                if v.chars().count() > 128 {
                    return Err(bad("q", "must be at most 128 characters"));
                }
                p.q = Some(v.into_owned());
            }
            _ => {}
        }
    }
    Ok(p)
}

/// The audit action and target of an admin mutation, by method and path
/// below `/v1/organizations/{org}`; None for reads and unknown paths.
fn mutation<'a>(
    method: &Method,
    org: &'a str,
    rest: &[&'a str],
) -> Option<(&'static str, &'a str)> {
    let found = match (method.as_str(), rest) {
        ("POST", ["service-accounts"]) => ("service_account.create", org),
        ("PATCH", ["service-accounts", sa]) => ("service_account.update", *sa),
        ("DELETE", ["service-accounts", sa]) => ("service_account.delete", *sa),
        ("POST", ["service-accounts", sa, "rotate-secret"]) => ("credential.rotate_secret", *sa),
        ("POST", ["service-accounts", sa, "revoke-tokens"]) => ("token.revoke", *sa),
        ("POST", ["service-accounts", sa, "credentials"]) => ("credential.create", *sa),
        ("PATCH", ["service-accounts", _, "credentials", cred]) => ("credential.update", *cred),
        ("DELETE", ["service-accounts", _, "credentials", cred]) => ("credential.delete", *cred),
        ("POST", ["service-accounts", _, "credentials", cred, "rotate-secret"]) => {
            ("credential.rotate_secret", *cred)
        }
        ("POST", ["revoke-tokens"]) => ("token.revoke", org),
        ("PUT", ["workspaces", ws]) => ("workspace.put", *ws),
        ("DELETE", ["workspaces", ws]) => ("workspace.delete", *ws),
        ("PUT", ["workspaces", _, "environments", env]) => ("environment.put", *env),
        ("DELETE", ["workspaces", _, "environments", env]) => ("environment.delete", *env),
        ("PUT", ["workspaces", _, "members", sa]) => ("membership.put", *sa),
        ("DELETE", ["workspaces", _, "members", sa]) => ("membership.delete", *sa),
        _ => return None,
    };
    Some(found)
}

fn method_not_allowed(allow: &'static str) -> Reply {
    let mut r = Reply::error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this method is not allowed on this path",
    );
    r.allow = Some(allow);
    r
}

fn not_found() -> Reply {
    Reply::error(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint")
}

impl Admin {
    pub fn new(registry: Arc<Registry>, keys: AdminKeys, policy_loaded: Arc<AtomicBool>) -> Admin {
        Admin {
            registry,
            keys,
            policy_loaded,
        }
    }

    async fn authenticate(&self, req: &Request) -> Result<Option<String>, HashError> {
        let [value] = req.authorization.as_slice() else {
            return Ok(None);
        };
        let Some((scheme, key)) = std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.split_once(' '))
        else {
            return Ok(None);
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Ok(None);
        }
        self.keys.verify(key.trim()).await
    }

    /// [`Self::authenticate`] behind the per-source failure throttle:
    /// `Err(reply)` is the 429 or the 503 to answer.
    async fn authenticate_throttled(&self, req: &Request) -> Result<Option<String>, Reply> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let slot = self.keys.reserve(req.source, now).map_err(|retry_after| {
            let mut r = Reply::error(
                StatusCode::TOO_MANY_REQUESTS,
                "slow_down",
                "too many failed admin authentications from this address; retry later",
            );
            r.retry_after = Some(retry_after);
            r
        })?;
        let outcome = self.authenticate(req).await;
        if !matches!(outcome, Ok(None)) {
            self.keys.forgive(slot);
        }
        outcome.map_err(|e| {
            tracing::warn!(error = %e, "admin key not verified");
            Reply::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the admin key could not be verified now; try again",
            )
        })
    }

    pub async fn handle(&self, req: Request) -> Reply {
        let segments: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
        let open = matches!(segments.as_slice(), ["healthz" | "readyz" | "openapi.json"]);
        if open && !matches!(req.method, Method::GET | Method::HEAD) {
            return method_not_allowed("GET, HEAD");
        }
        match segments.as_slice() {
            ["healthz"] => return Reply::json(StatusCode::OK, &json!({"status": "ok"})),
            ["readyz"] => return self.readyz().await,
            ["openapi.json"] => {
                return Reply {
                    status: StatusCode::OK,
                    body: crate::openapi::DOCUMENT.as_bytes().to_vec(),
                    allow: None,
                    retry_after: None,
                }
            }
            _ => {}
        }
        let key_name = match self.authenticate_throttled(&req).await {
            Ok(Some(name)) => name,
            Ok(None) => {
                return Reply::error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "a valid admin key is required (Authorization: Bearer <key>)",
                )
            }
            Err(reply) => return reply,
        };
        let actor = format!("admin:{key_name}");
        let ["v1", "organizations", org, rest @ ..] = segments.as_slice() else {
            return not_found();
        };
        match self.route(&req, org, rest, &actor).await {
            Ok(r) => r,
            Err(r) => {
                if r.status.is_client_error() {
                    if let Some((action, target)) = mutation(&req.method, org, rest) {
                        self.audit_refused(org, &actor, action, target, &r).await;
                    }
                }
                r
            }
        }
    }

    async fn audit_refused(
        &self,
        org: &str,
        actor: &str,
        action: &str,
        target: &str,
        reply: &Reply,
    ) {
        let error = serde_json::from_slice::<Value>(&reply.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_default();
        // Path segments are the caller's text: bounded before they are kept.
        let target: String = target.chars().take(128).collect();
        self.registry
            .audit_refused(
                org,
                actor,
                action,
                Some(&target),
                &error,
                reply.status.as_u16(),
            )
            .await;
    }

    async fn readyz(&self) -> Reply {
        let store_ok = self.registry.store().ping().await.is_ok();
        let policy_ok = self.policy_loaded.load(Ordering::Acquire);
        let status = if store_ok && policy_ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        Reply::json(
            status,
            &json!({
                "status": if status == StatusCode::OK { "ready" } else { "not_ready" },
                "store": if store_ok { "ok" } else { "unavailable" },
                "policies": if policy_ok { "loaded" } else { "not_loaded" },
            }),
        )
    }

    async fn route(
        &self,
        req: &Request,
        org: &str,
        rest: &[&str],
        actor: &str,
    ) -> Result<Reply, Reply> {
        let r = &self.registry;
        let m = &req.method;
        let body = req.body.as_slice();
        let q = || list_params(req.query.as_deref());
        let ok = |v: &dyn erased::Ser| Ok(Reply::json(StatusCode::OK, &erased::Wrap(v)));
        match rest {
            ["service-accounts"] => match *m {
                Method::POST => {
                    let input = create_service_account_body(body)?;
                    let (sa, cred) = r
                        .create_service_account(org, actor, input)
                        .await
                        .map_err(registry_error)?;
                    Ok(Reply::json(
                        StatusCode::CREATED,
                        &json!({"service_account": sa, "credential": with_secret(&cred)}),
                    ))
                }
                Method::GET => {
                    let p = q()?;
                    let list = r
                        .list_service_accounts(org, p.q.as_deref(), p.limit, p.after.as_deref())
                        .await
                        .map_err(registry_error)?;
                    Ok(page(list))
                }
                _ => Err(method_not_allowed("GET, POST")),
            },
            ["service-accounts", sa] => match *m {
                Method::GET => ok(&r
                    .get_service_account(org, sa)
                    .await
                    .map_err(registry_error)?),
                Method::PATCH => {
                    let patch = patch_service_account_body(body)?;
                    ok(&r
                        .update_service_account(org, sa, actor, patch)
                        .await
                        .map_err(registry_error)?)
                }
                Method::DELETE => {
                    r.delete_service_account(org, sa, actor)
                        .await
                        .map_err(registry_error)?;
                    Ok(Reply::empty(StatusCode::NO_CONTENT))
                }
                _ => Err(method_not_allowed("GET, PATCH, DELETE")),
            },
            ["service-accounts", sa, "rotate-secret"] => match *m {
                Method::POST => {
                    let grace = rotate_body(body)?;
                    let issued = r
                        .rotate_service_account_secret(org, sa, actor, grace)
                        .await
                        .map_err(registry_error)?;
                    Ok(Reply::json(StatusCode::OK, &with_secret(&issued)))
                }
                _ => Err(method_not_allowed("POST")),
            },
            ["service-accounts", sa, "revoke-tokens"] => match *m {
                Method::POST => {
                    let n = r
                        .revoke_service_account_tokens(org, sa, actor)
                        .await
                        .map_err(registry_error)?;
                    Ok(Reply::json(StatusCode::OK, &json!({"revoked": n})))
                }
                _ => Err(method_not_allowed("POST")),
            },
            ["service-accounts", sa, "credentials"] => match *m {
                Method::POST => {
                    let (name, description) = create_credential_body(body)?;
                    let issued = r
                        .create_credential(org, sa, actor, name, description)
                        .await
                        .map_err(registry_error)?;
                    Ok(Reply::json(StatusCode::CREATED, &with_secret(&issued)))
                }
                Method::GET => {
                    let p = q()?;
                    Ok(page(
                        r.list_credentials(org, sa, p.limit, p.after.as_deref())
                            .await
                            .map_err(registry_error)?,
                    ))
                }
                _ => Err(method_not_allowed("GET, POST")),
            },
            ["service-accounts", sa, "credentials", cred] => match *m {
                Method::GET => ok(&r
                    .get_credential(org, sa, cred)
                    .await
                    .map_err(registry_error)?),
                Method::PATCH => {
                    let patch = patch_credential_body(body)?;
                    ok(&r
                        .update_credential(org, sa, cred, actor, patch)
                        .await
                        .map_err(registry_error)?)
                }
                Method::DELETE => {
                    r.delete_credential(org, sa, cred, actor)
                        .await
                        .map_err(registry_error)?;
                    Ok(Reply::empty(StatusCode::NO_CONTENT))
                }
                _ => Err(method_not_allowed("GET, PATCH, DELETE")),
            },
            ["service-accounts", sa, "credentials", cred, "rotate-secret"] => match *m {
                Method::POST => {
                    let grace = rotate_body(body)?;
                    let issued = r
                        .rotate_credential(org, sa, cred, actor, grace)
                        .await
                        .map_err(registry_error)?;
                    Ok(Reply::json(StatusCode::OK, &with_secret(&issued)))
                }
                _ => Err(method_not_allowed("POST")),
            },
            ["revoke-tokens"] => match *m {
                Method::POST => {
                    let n = r
                        .revoke_organization_tokens(org, actor)
                        .await
                        .map_err(registry_error)?;
                    Ok(Reply::json(StatusCode::OK, &json!({"revoked": n})))
                }
                _ => Err(method_not_allowed("POST")),
            },
            ["workspaces"] => match *m {
                Method::GET => {
                    let p = q()?;
                    Ok(page(
                        r.list_workspaces(org, p.limit, p.after.as_deref())
                            .await
                            .map_err(registry_error)?,
                    ))
                }
                _ => Err(method_not_allowed("GET")),
            },
            ["workspaces", ws] => match *m {
                Method::PUT => {
                    let name = named_body(body)?;
                    let (w, created) = r
                        .put_workspace(org, ws, actor, name)
                        .await
                        .map_err(registry_error)?;
                    let status = if created {
                        StatusCode::CREATED
                    } else {
                        StatusCode::OK
                    };
                    Ok(Reply::json(status, &w))
                }
                Method::GET => ok(&r.get_workspace(org, ws).await.map_err(registry_error)?),
                Method::DELETE => {
                    r.delete_workspace(org, ws, actor)
                        .await
                        .map_err(registry_error)?;
                    Ok(Reply::empty(StatusCode::NO_CONTENT))
                }
                _ => Err(method_not_allowed("GET, PUT, DELETE")),
            },
            ["workspaces", ws, "environments"] => match *m {
                Method::GET => {
                    let p = q()?;
                    Ok(page(
                        r.list_environments(org, ws, p.limit, p.after.as_deref())
                            .await
                            .map_err(registry_error)?,
                    ))
                }
                _ => Err(method_not_allowed("GET")),
            },
            ["workspaces", ws, "environments", env] => match *m {
                Method::PUT => {
                    let name = named_body(body)?;
                    let (e, created) = r
                        .put_environment(org, ws, env, actor, name)
                        .await
                        .map_err(registry_error)?;
                    let status = if created {
                        StatusCode::CREATED
                    } else {
                        StatusCode::OK
                    };
                    Ok(Reply::json(status, &e))
                }
                Method::DELETE => {
                    r.delete_environment(org, ws, env, actor)
                        .await
                        .map_err(registry_error)?;
                    Ok(Reply::empty(StatusCode::NO_CONTENT))
                }
                _ => Err(method_not_allowed("PUT, DELETE")),
            },
            ["workspaces", ws, "members"] => match *m {
                Method::GET => {
                    let p = q()?;
                    Ok(page(
                        r.list_memberships(org, ws, p.limit, p.after.as_deref())
                            .await
                            .map_err(registry_error)?,
                    ))
                }
                _ => Err(method_not_allowed("GET")),
            },
            ["workspaces", ws, "members", sa] => match *m {
                Method::PUT => {
                    let role = member_body(body)?;
                    ok(&r
                        .put_membership(org, ws, sa, actor, &role)
                        .await
                        .map_err(registry_error)?)
                }
                Method::DELETE => {
                    r.delete_membership(org, ws, sa, actor)
                        .await
                        .map_err(registry_error)?;
                    Ok(Reply::empty(StatusCode::NO_CONTENT))
                }
                _ => Err(method_not_allowed("PUT, DELETE")),
            },
            ["audit-events"] => match *m {
                Method::GET => {
                    let p = q()?;
                    Ok(page(
                        r.list_audit(org, p.limit, p.after.as_deref())
                            .await
                            .map_err(registry_error)?,
                    ))
                }
                _ => Err(method_not_allowed("GET")),
            },
            _ => Err(not_found()),
        }
    }
}

/// Lets `route` return any serializable value through one closure.
mod erased {
    use serde::Serialize;

    pub trait Ser {
        fn to_value(&self) -> serde_json::Value;
    }

    impl<T: Serialize> Ser for T {
        fn to_value(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
        }
    }

    pub struct Wrap<'a>(pub &'a dyn Ser);

    impl Serialize for Wrap<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            self.0.to_value().serialize(s)
        }
    }
}

/// The pingora adapter: reads the request (body bounded to 64 KiB) and
/// writes the reply.
pub struct AdminHttp {
    pub admin: Arc<Admin>,
}

#[async_trait]
impl ServeHttp for AdminHttp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let header = session.req_header();
        let method = header.method.clone();
        let path = header.uri.path().to_string();
        let query = header.uri.query().map(str::to_string);
        let authorization = header
            .headers
            .get_all(http::header::AUTHORIZATION)
            .iter()
            .map(|v| v.as_bytes().to_vec())
            .collect();
        let reply = match read_body(session, BODY_LIMIT).await {
            Ok(body) => {
                self.admin
                    .handle(Request {
                        method,
                        path,
                        query,
                        authorization,
                        body,
                        source: session
                            .client_addr()
                            .and_then(|a| a.as_inet())
                            .map(|a| a.ip()),
                    })
                    .await
            }
            Err(r) => r,
        };
        to_response(reply)
    }
}

async fn read_body(session: &mut ServerSession, limit: usize) -> Result<Vec<u8>, Reply> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    session.set_keepalive(None);
                    return Err(Reply::error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "invalid_request",
                        "body: larger than 64 KiB",
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(_) => {
                session.set_keepalive(None);
                return Err(Reply::error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "body: could not be read",
                ));
            }
        }
    }
}

fn to_response(reply: Reply) -> Response<Vec<u8>> {
    let mut b = Response::builder()
        .status(reply.status)
        .header(http::header::CACHE_CONTROL, "no-store")
        .header(http::header::CONTENT_LENGTH, reply.body.len());
    if !reply.body.is_empty() {
        b = b.header(http::header::CONTENT_TYPE, "application/json");
    }
    if let Some(allow) = reply.allow {
        b = b.header(http::header::ALLOW, allow);
    }
    if let Some(secs) = reply.retry_after {
        b = b.header(http::header::RETRY_AFTER, secs);
    }
    b.body(reply.body).unwrap_or_else(|_| {
        let mut r = Response::new(Vec::new());
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}
