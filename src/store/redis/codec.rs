//! What crosses the wire: records as JSON, and the answers of the
//! look-up scripts read back into [`AccessFacts`].

use serde::de::DeserializeOwned;
use serde::Serialize;

use std::sync::Arc;

use crate::model::{AccessFacts, EnvironmentRef, EnvironmentRole, TokenRecord};
use crate::scope::Role;
use crate::store::{StoreError, StoreResult};

pub(super) fn encode<T: Serialize>(what: &'static str, value: &T) -> StoreResult<String> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode {what} ({:?})", e.classify())))
}

/// The error text names the position only: serde's messages can quote the
/// stored value, which may be a hash.
pub(super) fn decode<T: DeserializeOwned>(what: &'static str, raw: &str) -> StoreResult<T> {
    serde_json::from_str(raw).map_err(|e| {
        StoreError::Corrupt(format!(
            "{what} record ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })
}

/// The values `pack` (`scripts/lib/pack.lua`) packed, in order; `None` if the answer is not a
/// packing of UTF-8 values.
pub(super) fn unpack(mut packed: &[u8]) -> Option<Vec<&str>> {
    let mut values = Vec::with_capacity(4);
    while !packed.is_empty() {
        let colon = packed.iter().position(|&b| b == b':')?;
        let len: usize = std::str::from_utf8(&packed[..colon]).ok()?.parse().ok()?;
        let rest = &packed[colon + 1..];
        let value = rest.get(..len)?;
        values.push(std::str::from_utf8(value).ok()?);
        packed = &rest[len..];
    }
    Some(values)
}

/// Completes the facts of a lookup from the registry's answer (what
/// `env_role` of `scripts/lib/env_role.lua` answers): nothing, or the environment's organization and
/// workspace ids, then the account's role (each may be missing).
pub(super) fn access_facts(
    token: Option<TokenRecord>,
    environment_id: Option<&str>,
    mut registry: impl Iterator<Item = Option<String>>,
) -> StoreResult<AccessFacts> {
    let unreadable = |what: &str| StoreError::Corrupt(format!("{what} record (unreadable ids)"));
    let environment = match (registry.next().flatten(), environment_id) {
        (None, _) => None,
        (Some(organization_id), Some(id)) => {
            let workspace_id = registry.next().flatten().unwrap_or_default();
            if organization_id.is_empty() || workspace_id.is_empty() {
                return Err(unreadable("environment"));
            }
            Some(EnvironmentRef {
                id: id.to_string(),
                workspace_id,
                organization_id,
                header_values: Default::default(),
            })
        }
        // An answer about an environment that was not asked for.
        (Some(_), None) => return Err(unreadable("environment")),
    };
    let role = registry
        .next()
        .flatten()
        .map(|r| Role::parse(&r).ok_or_else(|| unreadable("membership")))
        .transpose()?;
    Ok(AccessFacts {
        environment: match (&token, environment_id) {
            (Some(_), Some(_)) => Some(Arc::new(EnvironmentRole {
                environment: environment.map(Arc::new),
                role,
            })),
            _ => None,
        },
        token: token.map(Arc::new),
    })
}

#[cfg(test)]
mod tests {
    use super::unpack;

    /// What `pack` of `scripts/lib/pack.lua` does, for the tests.
    fn pack(values: &[&str]) -> Vec<u8> {
        values
            .iter()
            .flat_map(|v| format!("{}:{v}", v.len()).into_bytes())
            .collect()
    }

    #[test]
    fn unpack_reads_what_lua_pack_writes() {
        for values in [
            vec![],
            vec![""],
            vec!["a:b", "", "10:1:2:3:4:", "été", "{\"o\":\"x\"}"],
        ] {
            assert_eq!(unpack(&pack(&values)), Some(values));
        }
        assert_eq!(unpack(b"3:a:b2:\xc3\xa9"), Some(vec!["a:b", "é"]));
    }

    #[test]
    fn unpack_refuses_anything_else() {
        for bad in [
            b"3:ab".as_slice(),
            b"x:abc",
            b"abc",
            b"2:ab3",
            b"-1:a",
            b"1:\xff",
            b":a",
        ] {
            assert_eq!(unpack(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
