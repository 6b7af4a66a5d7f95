//! Who calls the admin API and what they may reach (docs/contract.md §4.1):
//! an operator key (every organization), an organization key, a workspace
//! key (that workspace's environments and members), or a service account's
//! token holding `admin:read`/`admin:write` (its own organization). One
//! pure check, [`authorize`], runs before every handler; another
//! organization's objects answer exactly like unknown ones.

use super::error::AdminError;
use super::routes::{Operation, PathParams};

/// How far a caller reaches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reach {
    /// A configured key (`admin.keys`, `TOLLGATE_ADMIN_KEY`).
    Operator,
    Organization(String),
    Workspace {
        org: String,
        ws: String,
    },
}

/// What the caller presented.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Via {
    /// An admin key; `stored` is the id of a key made through the API.
    Key { stored: Option<String> },
    /// An access token of a service account with `admin:read` (`write`
    /// false) or `admin:write`.
    Token {
        service_account_id: String,
        write: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Principal {
    /// The audit actor: `admin:<name>` for a configured key,
    /// `admin:<name>#<id>` for a stored key, the `client_id` for a token.
    pub(crate) actor: String,
    pub(crate) reach: Reach,
    pub(crate) via: Via,
}

impl Principal {
    pub(crate) fn operator(name: &str) -> Principal {
        Principal {
            actor: format!("admin:{name}"),
            reach: Reach::Operator,
            via: Via::Key { stored: None },
        }
    }

    /// The organization the caller is confined to; `None` for an operator.
    pub(crate) fn organization(&self) -> Option<&str> {
        match &self.reach {
            Reach::Operator => None,
            Reach::Organization(org) | Reach::Workspace { org, .. } => Some(org),
        }
    }

    /// Whether the caller may make (and revoke) a key of its organization
    /// scoped to `ws` (`None`: the whole organization): only a holder of a
    /// strictly wider key.
    pub(crate) fn may_issue_key(&self, ws: Option<&str>) -> bool {
        match (&self.via, &self.reach) {
            (Via::Token { .. }, _) => false,
            (_, Reach::Operator) => true,
            (_, Reach::Organization(_)) => ws.is_some(),
            (_, Reach::Workspace { .. }) => false,
        }
    }

    /// Whether the caller may list, read and revoke its organization's
    /// keys: an operator or organization key.
    pub(crate) fn may_manage_keys(&self) -> bool {
        self.may_issue_key(Some(""))
    }

    /// Whether the caller may grant `admin:read`/`admin:write`: an
    /// organization's keys may, a token never (it would hand on a power it
    /// holds only while its own account keeps it).
    pub(crate) fn may_grant_admin_scopes(&self) -> bool {
        matches!(self.via, Via::Key { .. })
            && matches!(self.reach, Reach::Operator | Reach::Organization(_))
    }

    /// The id of the stored key presented, if one was.
    pub(crate) fn stored_key(&self) -> Option<&str> {
        match &self.via {
            Via::Key { stored } => stored.as_deref(),
            Via::Token { .. } => None,
        }
    }
}

/// What a caller outside an object's organization is answered: the 404 an
/// unknown object of the path gets (the first object the handler looks up).
pub(crate) fn hidden(op: Operation) -> AdminError {
    use Operation as Op;
    AdminError::NotFound(match op {
        Op::GetServiceAccount
        | Op::UpdateServiceAccount
        | Op::DeleteServiceAccount
        | Op::RotateServiceAccountSecret
        | Op::RevokeServiceAccountTokens
        | Op::CreateCredential
        | Op::ListCredentials
        | Op::GetServiceAccountLimits
        | Op::PutServiceAccountLimits
        | Op::DeleteServiceAccountLimits => "service account",
        Op::GetCredential
        | Op::UpdateCredential
        | Op::DeleteCredential
        | Op::RotateCredentialSecret => "credential",
        Op::GetWorkspace
        | Op::DeleteWorkspace
        | Op::ListEnvironments
        | Op::PutEnvironment
        | Op::ListMembers
        | Op::PutMember => "workspace",
        Op::DeleteEnvironment => "environment",
        Op::DeleteMember => "membership",
        Op::GetAdminKey | Op::DeleteAdminKey => "admin key",
        Op::CreateServiceAccount
        | Op::ListServiceAccounts
        | Op::RevokeOrganizationTokens
        | Op::ListWorkspaces
        | Op::PutWorkspace
        | Op::ListAuditEvents
        | Op::CreateAdminKey
        | Op::ListAdminKeys
        | Op::Healthz
        | Op::Readyz
        | Op::OpenApi
        | Op::Swagger => "organization",
    })
}

/// The operations on one account that a token may not run on its own
/// account: it cannot widen, keep alive or re-key itself.
fn changes_the_account(op: Operation) -> bool {
    use Operation as Op;
    matches!(
        op,
        Op::UpdateServiceAccount
            | Op::DeleteServiceAccount
            | Op::RotateServiceAccountSecret
            | Op::RevokeServiceAccountTokens
            | Op::CreateCredential
            | Op::UpdateCredential
            | Op::DeleteCredential
            | Op::RotateCredentialSecret
            | Op::PutMember
            | Op::DeleteMember
            | Op::PutServiceAccountLimits
            | Op::DeleteServiceAccountLimits
    )
}

fn is_admin_key_op(op: Operation) -> bool {
    matches!(
        op,
        Operation::CreateAdminKey
            | Operation::ListAdminKeys
            | Operation::GetAdminKey
            | Operation::DeleteAdminKey
    )
}

/// Whether `p` may run `op` on `path`; the error is the answer otherwise.
/// Checked before the handler, so nothing of another organization is read.
pub(crate) fn authorize(
    p: &Principal,
    op: Operation,
    path: &PathParams<'_>,
) -> Result<(), AdminError> {
    use Operation as Op;
    if let Some(org) = p.organization() {
        if path.org != org {
            return Err(hidden(op));
        }
    }
    if let Reach::Workspace { ws, .. } = &p.reach {
        match op {
            Op::GetWorkspace
            | Op::ListEnvironments
            | Op::PutEnvironment
            | Op::DeleteEnvironment
            | Op::ListMembers
            | Op::PutMember
            | Op::DeleteMember => {
                if path.ws != ws {
                    return Err(hidden(op));
                }
            }
            // The member picker searches the organization's accounts.
            Op::ListServiceAccounts | Op::GetServiceAccount => {}
            // Any key may revoke itself.
            Op::DeleteAdminKey if p.stored_key() == Some(path.key) => {}
            _ => {
                return Err(AdminError::Forbidden(
                    "a workspace key manages only its workspace's environments and members",
                ))
            }
        }
    }
    if let Via::Token {
        service_account_id,
        write,
    } = &p.via
    {
        if is_admin_key_op(op) {
            return Err(AdminError::Forbidden(
                "admin keys are managed with an admin key, not a token",
            ));
        }
        if op.audit().is_some() && !write {
            return Err(AdminError::Forbidden("this change needs admin:write"));
        }
        if changes_the_account(op) && path.sa == service_account_id {
            return Err(AdminError::Forbidden(
                "a token cannot change its own service account",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::routes::{route, Routed, ROUTES};
    use http::Method;

    fn org_key(org: &str) -> Principal {
        Principal {
            actor: "admin:o#1".into(),
            reach: Reach::Organization(org.into()),
            via: Via::Key {
                stored: Some("1".into()),
            },
        }
    }

    fn ws_key(org: &str, ws: &str) -> Principal {
        Principal {
            actor: "admin:w#2".into(),
            reach: Reach::Workspace {
                org: org.into(),
                ws: ws.into(),
            },
            via: Via::Key {
                stored: Some("2".into()),
            },
        }
    }

    fn token(org: &str, sa: &str, write: bool) -> Principal {
        Principal {
            actor: "sa_client".into(),
            reach: Reach::Organization(org.into()),
            via: Via::Token {
                service_account_id: sa.into(),
                write,
            },
        }
    }

    /// Every keyed route of the table, with `org`, `ws` and `sa` filled in.
    fn every_route(org: &str, ws: &str, sa: &str) -> Vec<(Operation, String)> {
        ROUTES
            .iter()
            .filter(|(m, _, op)| *m != Method::HEAD && op.needs_key())
            .map(|(_, p, op)| {
                let path = p
                    .replace("{org}", org)
                    .replace("{ws}", ws)
                    .replace("{sa}", sa)
                    .replace("{cred}", "C")
                    .replace("{env}", "E")
                    .replace("{key}", "K");
                (*op, path)
            })
            .collect()
    }

    fn check(p: &Principal, op: Operation, path: &str) -> Result<(), (u16, String)> {
        let method = ROUTES
            .iter()
            .find(|(_, _, o)| *o == op)
            .map(|(m, _, _)| m.clone())
            .expect("routed");
        let Routed::Found(found, params) = route(&method, path) else {
            panic!("{path} is not routed");
        };
        assert_eq!(found, op);
        authorize(p, op, &params).map_err(|e| (e.status().as_u16(), e.code().to_string()))
    }

    #[test]
    fn an_operator_reaches_every_organization() {
        let p = Principal::operator("ops");
        for (op, path) in every_route("any", "W", "S") {
            assert_eq!(check(&p, op, &path), Ok(()), "{path}");
        }
    }

    #[test]
    fn an_organization_key_reaches_its_organization_and_sees_no_other() {
        let p = org_key("acme");
        for (op, path) in every_route("acme", "W", "S") {
            assert_eq!(check(&p, op, &path), Ok(()), "{path}");
        }
        for (op, path) in every_route("globex", "W", "S") {
            assert_eq!(
                check(&p, op, &path),
                Err((404, "not_found".into())),
                "{path}"
            );
        }
    }

    #[test]
    fn a_workspace_key_manages_only_its_workspace_s_environments_and_members() {
        let p = ws_key("acme", "W");
        let allowed = [
            Operation::GetWorkspace,
            Operation::ListEnvironments,
            Operation::PutEnvironment,
            Operation::DeleteEnvironment,
            Operation::ListMembers,
            Operation::PutMember,
            Operation::DeleteMember,
            Operation::ListServiceAccounts,
            Operation::GetServiceAccount,
        ];
        for (op, path) in every_route("acme", "W", "S") {
            let expected = if allowed.contains(&op) {
                Ok(())
            } else {
                Err((403, "forbidden".into()))
            };
            assert_eq!(check(&p, op, &path), expected, "{path}");
        }
        for (op, path) in every_route("acme", "OTHER", "S") {
            if allowed.contains(&op) && path.contains("/workspaces/OTHER") {
                assert_eq!(
                    check(&p, op, &path),
                    Err((404, "not_found".into())),
                    "{path}"
                );
            }
        }
        for (op, path) in every_route("globex", "W", "S") {
            assert_eq!(
                check(&p, op, &path),
                Err((404, "not_found".into())),
                "{path}"
            );
        }
        // Its own key (id "2") it may revoke.
        assert_eq!(
            check(
                &p,
                Operation::DeleteAdminKey,
                "/v1/organizations/acme/admin-keys/2"
            ),
            Ok(())
        );
    }

    #[test]
    fn a_read_token_only_reads_and_no_token_touches_keys_or_its_own_account() {
        let read = token("acme", "SELF", false);
        let write = token("acme", "SELF", true);
        for (op, path) in every_route("acme", "W", "OTHER") {
            let keys = path.contains("/admin-keys");
            let change = op.audit().is_some();
            let expect_read = if keys || change {
                Err((403, "forbidden".into()))
            } else {
                Ok(())
            };
            assert_eq!(check(&read, op, &path), expect_read, "read {path}");
            let expect_write = if keys {
                Err((403, "forbidden".into()))
            } else {
                Ok(())
            };
            assert_eq!(check(&write, op, &path), expect_write, "write {path}");
        }
        for (op, path) in every_route("acme", "W", "SELF") {
            if changes_the_account(op) {
                assert_eq!(
                    check(&write, op, &path),
                    Err((403, "forbidden".into())),
                    "{path}"
                );
            }
        }
        for (op, path) in every_route("globex", "W", "OTHER") {
            assert_eq!(
                check(&write, op, &path),
                Err((404, "not_found".into())),
                "{path}"
            );
        }
    }

    #[test]
    fn only_a_wider_key_issues_keys_and_only_keys_grant_admin_scopes() {
        let op = Principal::operator("ops");
        assert!(op.may_issue_key(None) && op.may_issue_key(Some("W")));
        let org = org_key("acme");
        assert!(!org.may_issue_key(None) && org.may_issue_key(Some("W")));
        let ws = ws_key("acme", "W");
        assert!(!ws.may_issue_key(None) && !ws.may_issue_key(Some("W")));
        let tok = token("acme", "S", true);
        assert!(!tok.may_issue_key(Some("W")));
        assert!(op.may_grant_admin_scopes() && org.may_grant_admin_scopes());
        assert!(!ws.may_grant_admin_scopes() && !tok.may_grant_admin_scopes());
    }
}
