//! `tollgate explain`: turns CLI arguments into a hypothetical request and
//! prints how the policy set would decide it (the work is `authorize::explain`).

use crate::authorize::{self, Explanation};
use crate::config::Config;
use crate::policy::PolicySet;
use crate::scope::{Role, ScopeSet};

/// `scopes` is space-separated ("" means a token without scopes); an empty
/// string with no role still means "a token is presented".
pub fn explain(
    policy: &PolicySet,
    cfg: &Config,
    method: &str,
    path: &str,
    query: Option<&str>,
    scopes: &str,
    role: Option<&str>,
) -> Result<Explanation, String> {
    let scopes = ScopeSet::parse_all(scopes.split_whitespace(), &cfg.resources)
        .map_err(|e| format!("--scopes: {e}"))?;
    let role = match role {
        None => None,
        Some(r) => {
            Some(Role::parse(r).ok_or_else(|| format!("--role: {r:?} is not member or admin"))?)
        }
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "--method: {method:?} is not an HTTP method in upper case"
        ));
    }
    Ok(authorize::explain(
        policy,
        &method.to_ascii_uppercase(),
        path,
        query,
        Some(&scopes),
        role,
        cfg.proxy.allow_semicolon_in_path,
    ))
}
