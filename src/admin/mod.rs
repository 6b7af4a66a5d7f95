//! The admin API (docs/contract.md §4) on the admin listener.
//!
//! A request goes through, in order:
//! - [`routes`]: the one route table, method and path → [`routes::Operation`];
//! - the endpoints that need no key (`/healthz`, `/readyz`, `/openapi.json`);
//! - [`keys`]: the admin key check behind its per-source throttle;
//! - one handler per operation, grouped by resource ([`service_accounts`],
//!   [`credentials`], [`organizations`], [`workspaces`], [`audit_events`]);
//! - [`error`]: every failure is an [`error::AdminError`], answered in one
//!   place; a refused change is audited under its operation's action.
//!
//! The handler works on a plain [`Request`] so it is testable without
//! sockets; [`serve::AdminHttp`] adapts it to pingora.

mod admin_keys;
mod audit_events;
mod credentials;
mod error;
mod html;
mod input;
mod keys;
mod limits;
mod organizations;
mod principal;
mod reply;
mod routes;
mod serve;
mod service_accounts;
mod swagger;
mod workspaces;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::{Method, StatusCode};
use serde_json::json;

use crate::registry::Registry;
use error::AdminError;
pub(crate) use html::{esc, page as html_page, FAVICON};
pub(crate) use principal::{Principal, Reach, Via};
use reply::Reply;
pub(crate) use reply::Reply as AdminReply;
pub(crate) use routes::{route, Routed};
use routes::{Operation, PathParams};

pub(crate) use keys::AdminKeys;
pub(crate) use serve::AdminHttp;

/// An admin request as the handler sees it.
pub(crate) struct Request {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) query: Option<String>,
    pub(crate) authorization: Vec<Vec<u8>>,
    pub(crate) body: Vec<u8>,
    /// The peer's address (no proxy header is trusted on this listener).
    pub(crate) source: Option<IpAddr>,
    /// The `Cookie` fields, joined (the console's session).
    pub(crate) cookie: Option<String>,
    /// `Content-Type` (the console's forms).
    pub(crate) content_type: Option<String>,
    /// Whether the browser reached us over TLS: this connection, or one
    /// ended in front of tollgate (`X-Forwarded-Proto: https`). The
    /// console's cookie is then `Secure`.
    pub(crate) tls: bool,
}

pub(crate) struct Admin {
    registry: Arc<Registry>,
    keys: AdminKeys,
    policy_loaded: Arc<AtomicBool>,
    /// The web console's sessions (`/console`).
    console: crate::console::Console,
}

/// What a handler gets: the registry, the path's parameters, the caller
/// and the request's query and body.
struct Call<'a> {
    registry: &'a Registry,
    path: PathParams<'a>,
    /// Who calls, and what they may reach.
    principal: &'a Principal,
    /// `principal.actor`: `admin:<key name>`, or a token's client id.
    actor: &'a str,
    query: Option<&'a str>,
    body: &'a [u8],
}

/// A handler's answer.
type Handled = Result<Reply, AdminError>;

impl Admin {
    pub(crate) fn new(
        registry: Arc<Registry>,
        keys: AdminKeys,
        policy_loaded: Arc<AtomicBool>,
    ) -> Admin {
        Admin {
            registry,
            keys,
            policy_loaded,
            console: crate::console::Console::default(),
        }
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    pub(crate) fn console(&self) -> &crate::console::Console {
        &self.console
    }

    /// The caller presenting `key`, checked like an `Authorization: Bearer`
    /// key (throttle included).
    pub(crate) async fn sign_in(
        &self,
        key: &str,
        source: Option<IpAddr>,
    ) -> Result<Principal, Reply> {
        let header = format!("Bearer {key}").into_bytes();
        self.keys
            .authenticate(&[header], source)
            .await
            .map_err(AdminError::into_reply)
    }

    /// Whether a signed-in caller's key still holds: a stored key must
    /// still exist (a revocation ends the console session too).
    pub(crate) async fn still_valid(&self, principal: &Principal) -> bool {
        match principal.stored_key() {
            Some(id) => matches!(self.registry.store().get_admin_key(id).await, Ok(Some(_))),
            None => true,
        }
    }

    pub(crate) async fn handle(&self, req: Request) -> Reply {
        let routed = routes::route(&req.method, &req.path);
        // The endpoints without a key answer, and refuse a method, before
        // any key is looked at.
        match &routed {
            Routed::Found(Operation::Healthz, _) => {
                return Reply::json(StatusCode::OK, &json!({"status": "ok"}))
            }
            Routed::Found(Operation::Readyz, _) => return self.readyz().await,
            Routed::Found(Operation::Swagger, _) => return swagger::reply(),
            Routed::Found(Operation::OpenApi, _) => {
                return Reply::raw_json(
                    StatusCode::OK,
                    crate::openapi::DOCUMENT.as_bytes().to_vec(),
                )
            }
            Routed::WrongMethod {
                allow,
                needs_key: false,
            } => return AdminError::MethodNotAllowed(allow.clone()).into_reply(),
            _ => {}
        }
        if req.path == "/console" || req.path.starts_with("/console/") {
            return crate::console::handle(self, req).await;
        }
        let principal = match self.keys.authenticate(&req.authorization, req.source).await {
            Ok(p) => p,
            Err(e) => return e.into_reply(),
        };
        self.call_as(&principal, routed, req.query.as_deref(), &req.body)
            .await
    }

    /// One admin API call by a caller already known (the API after its key
    /// check, and the console): scope check, handler, refusal audit.
    pub(crate) async fn call_as(
        &self,
        principal: &Principal,
        routed: Routed<'_>,
        query: Option<&str>,
        body: &[u8],
    ) -> Reply {
        let (op, path) = match routed {
            Routed::Found(op, path) => (op, path),
            Routed::WrongMethod { allow, .. } => {
                return AdminError::MethodNotAllowed(allow).into_reply()
            }
            Routed::NotFound => return AdminError::NoEndpoint.into_reply(),
        };
        let call = Call {
            registry: &self.registry,
            path,
            principal,
            actor: &principal.actor,
            query,
            body,
        };
        let result = match principal::authorize(principal, op, &call.path) {
            Ok(()) => dispatch(op, &call).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(reply) => reply,
            Err(e) => {
                let (status, code) = (e.status(), e.code());
                let reply = e.into_reply();
                if status.is_client_error() {
                    self.audit_refused(op, &call, code, status).await;
                }
                reply
            }
        }
    }

    /// Records a refused change under its operation's action; reads are
    /// not audited.
    async fn audit_refused(&self, op: Operation, call: &Call<'_>, code: &str, status: StatusCode) {
        let Some((action, target)) = op.audit() else {
            return;
        };
        // Path segments are the caller's text: bounded before they are kept.
        let target: String = call.path.get(target).chars().take(128).collect();
        // A scoped caller's refusals are kept in its own organization's
        // trail, never written into another's.
        let org = call.principal.organization().unwrap_or(call.path.org);
        self.registry
            .audit_refused(
                org,
                call.actor,
                action,
                Some(&target),
                code,
                status.as_u16(),
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
}

/// The handler of each operation that needs a key.
async fn dispatch(op: Operation, c: &Call<'_>) -> Handled {
    use Operation as Op;
    match op {
        Op::CreateServiceAccount => service_accounts::create(c).await,
        Op::ListServiceAccounts => service_accounts::list(c).await,
        Op::GetServiceAccount => service_accounts::get(c).await,
        Op::UpdateServiceAccount => service_accounts::update(c).await,
        Op::DeleteServiceAccount => service_accounts::delete(c).await,
        Op::RotateServiceAccountSecret => service_accounts::rotate_secret(c).await,
        Op::RevokeServiceAccountTokens => service_accounts::revoke_tokens(c).await,
        Op::CreateCredential => credentials::create(c).await,
        Op::ListCredentials => credentials::list(c).await,
        Op::GetCredential => credentials::get(c).await,
        Op::UpdateCredential => credentials::update(c).await,
        Op::DeleteCredential => credentials::delete(c).await,
        Op::RotateCredentialSecret => credentials::rotate_secret(c).await,
        Op::RevokeOrganizationTokens => organizations::revoke_tokens(c).await,
        Op::ListWorkspaces => workspaces::list(c).await,
        Op::PutWorkspace => workspaces::put(c).await,
        Op::GetWorkspace => workspaces::get(c).await,
        Op::DeleteWorkspace => workspaces::delete(c).await,
        Op::ListEnvironments => workspaces::list_environments(c).await,
        Op::PutEnvironment => workspaces::put_environment(c).await,
        Op::DeleteEnvironment => workspaces::delete_environment(c).await,
        Op::ListMembers => workspaces::list_members(c).await,
        Op::PutMember => workspaces::put_member(c).await,
        Op::DeleteMember => workspaces::delete_member(c).await,
        Op::ListAuditEvents => audit_events::list(c).await,
        Op::CreateAdminKey => admin_keys::create(c).await,
        Op::ListAdminKeys => admin_keys::list(c).await,
        Op::GetAdminKey => admin_keys::get(c).await,
        Op::DeleteAdminKey => admin_keys::delete(c).await,
        Op::GetServiceAccountLimits => limits::get(c).await,
        Op::PutServiceAccountLimits => limits::put(c).await,
        Op::DeleteServiceAccountLimits => limits::delete(c).await,
        // Answered before the key check.
        Op::Healthz | Op::Readyz | Op::OpenApi | Op::Swagger => Err(AdminError::NoEndpoint),
    }
}
