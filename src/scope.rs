//! Scopes (`resource:action`), scope sets and workspace roles.
//! `R:write` implies `R:read`; `admin` implies `member`.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Read,
    Write,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope {
    pub resource: String,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("scope {0:?} is not of the form resource:action")]
    Malformed(String),
    #[error("scope {0:?} names an unknown resource")]
    UnknownResource(String),
    #[error("scope {0:?} names an unknown action (read or write)")]
    UnknownAction(String),
}

impl Scope {
    /// Parses `resource:action` against the configured resource list.
    pub fn parse(s: &str, resources: &[String]) -> Result<Scope, ScopeError> {
        let (resource, action) = s
            .split_once(':')
            .ok_or_else(|| ScopeError::Malformed(printable(s)))?;
        let action = match action {
            "read" => Action::Read,
            "write" => Action::Write,
            _ => return Err(ScopeError::UnknownAction(printable(s))),
        };
        if !resources.iter().any(|r| r == resource) {
            return Err(ScopeError::UnknownResource(printable(s)));
        }
        Ok(Scope {
            resource: resource.to_string(),
            action,
        })
    }

    /// Whether holding `self` satisfies a requirement of `required`.
    pub fn covers(&self, required: &Scope) -> bool {
        self.resource == required.resource && self.action >= required.action
    }
}

/// Truncates and escapes user input before it is echoed in an error message.
fn printable(s: &str) -> String {
    let cut: String = s.chars().take(64).collect();
    cut.escape_default().to_string()
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Plain writes: this runs for every forwarded request's scopes header.
        f.write_str(&self.resource)?;
        f.write_str(":")?;
        f.write_str(self.action.as_str())
    }
}

/// A normalised (sorted, deduplicated) set of scopes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ScopeSet(Vec<Scope>);

impl ScopeSet {
    pub fn new(mut scopes: Vec<Scope>) -> ScopeSet {
        scopes.sort();
        scopes.dedup();
        ScopeSet(scopes)
    }

    /// Parses a list of scope strings; the first bad one is the error.
    pub fn parse_all<'a>(
        items: impl IntoIterator<Item = &'a str>,
        resources: &[String],
    ) -> Result<ScopeSet, ScopeError> {
        let scopes = items
            .into_iter()
            .map(|s| Scope::parse(s, resources))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ScopeSet::new(scopes))
    }

    /// Parses the space-separated form stored in records and sent in headers.
    /// Unknown resources are kept: a record written under an older resource
    /// list must still be readable.
    pub fn from_stored(s: &str) -> ScopeSet {
        let mut scopes = Vec::new();
        push_stored(&mut scopes, s);
        ScopeSet::new(scopes)
    }

    pub fn covers(&self, required: &Scope) -> bool {
        self.0.iter().any(|s| s.covers(required))
    }

    /// Every scope of `other` is covered by this set.
    pub fn covers_all(&self, other: &ScopeSet) -> bool {
        other.0.iter().all(|s| self.covers(s))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(|s| s.to_string()).collect()
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            fmt::Display::fmt(s, f)?;
        }
        Ok(())
    }
}

impl Serialize for ScopeSet {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.collect_seq(self.0.iter().map(|s| s.to_string()))
    }
}

/// Appends the scopes of the stored form `s` (space-separated; what does
/// not read as a scope is left out).
fn push_stored(scopes: &mut Vec<Scope>, s: &str) {
    let parsed = s.split(' ').filter(|p| !p.is_empty()).filter_map(|p| {
        let (resource, action) = p.split_once(':')?;
        let action = match action {
            "read" => Action::Read,
            "write" => Action::Write,
            _ => return None,
        };
        Some(Scope {
            resource: resource.to_string(),
            action,
        })
    });
    scopes.extend(parsed);
}

/// A list of stored-form strings, read as `from_stored` reads them joined by
/// spaces, each parsed where it is read: no list of strings is built on
/// the way (a token record is decoded on every cache miss).
impl<'de> Deserialize<'de> for ScopeSet {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Items;
        impl<'de> serde::de::Visitor<'de> for Items {
            type Value = ScopeSet;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of scopes")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<ScopeSet, A::Error> {
                let mut scopes = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while seq.next_element_seed(Item(&mut scopes))?.is_some() {}
                Ok(ScopeSet::new(scopes))
            }
        }
        /// One string of the list, parsed into the scopes so far.
        struct Item<'a>(&'a mut Vec<Scope>);
        impl<'de> serde::de::DeserializeSeed<'de> for Item<'_> {
            type Value = ();
            fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
                de.deserialize_str(self)
            }
        }
        impl<'de> serde::de::Visitor<'de> for Item<'_> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scope string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<(), E> {
                push_stored(self.0, s);
                Ok(())
            }
        }
        de.deserialize_seq(Items)
    }
}

/// A workspace role. `Admin` ranks above `Member`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Member,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "member" => Some(Role::Member),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
        }
    }
}

/// The resource of the route-independent management scopes `admin:read`
/// and `admin:write`: an organization may grant them to its own service
/// accounts, whose tokens may then call the admin API for that
/// organization. Never a configured resource, never a route's scope, and
/// never in a token unless asked for by name.
pub const ADMIN_RESOURCE: &str = "admin";

/// The configured resources and [`ADMIN_RESOURCE`]: what an account may be
/// granted and a token request may name.
pub fn grantable_resources(configured: &[String]) -> Vec<String> {
    let mut all = configured.to_vec();
    if !all.iter().any(|r| r == ADMIN_RESOURCE) {
        all.push(ADMIN_RESOURCE.to_string());
    }
    all
}

pub fn default_resources() -> Vec<String> {
    [
        "chat",
        "workflows",
        "storage",
        "knowledge",
        "templates",
        "tools",
        "logs",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_stored_list_reads_as_its_items_joined_by_spaces() {
        let items = [
            "b:write",
            "a:read",
            "a:read",
            "x:bad",
            "c:read d:write",
            "",
            "é:read",
        ];
        let json = serde_json::to_string(&items).expect("json");
        let set: ScopeSet = serde_json::from_str(&json).expect("a list of strings");
        assert_eq!(set, ScopeSet::from_stored(&items.join(" ")));
        assert_eq!(set.to_string(), "a:read b:write c:read d:write é:read");
        let escaped: ScopeSet = serde_json::from_str(r#"["a:re\u0061d"]"#).expect("escaped");
        assert_eq!(escaped.to_string(), "a:read");
        for bad in [r#""a:read""#, r#"[1]"#, r#"{"a":"read"}"#] {
            assert!(serde_json::from_str::<ScopeSet>(bad).is_err(), "{bad}");
        }
    }

    use super::*;

    fn res() -> Vec<String> {
        default_resources()
    }

    #[test]
    fn write_scope_satisfies_read_requirement() {
        let w = Scope::parse("workflows:write", &res()).expect("valid");
        let r = Scope::parse("workflows:read", &res()).expect("valid");
        assert!(w.covers(&r));
        assert!(!r.covers(&w));
    }

    #[test]
    fn scope_of_another_resource_does_not_cover() {
        let w = Scope::parse("workflows:write", &res()).expect("valid");
        let r = Scope::parse("logs:read", &res()).expect("valid");
        assert!(!w.covers(&r));
    }

    #[test]
    fn unknown_resources_and_actions_are_rejected() {
        assert!(matches!(
            Scope::parse("payroll:read", &res()),
            Err(ScopeError::UnknownResource(_))
        ));
        assert!(matches!(
            Scope::parse("logs:delete", &res()),
            Err(ScopeError::UnknownAction(_))
        ));
        assert!(matches!(
            Scope::parse("logs", &res()),
            Err(ScopeError::Malformed(_))
        ));
        assert!(Scope::parse("", &res()).is_err());
        assert!(Scope::parse("logs:read:x", &res()).is_err());
    }

    #[test]
    fn scope_sets_are_sorted_and_deduplicated() {
        let set = ScopeSet::parse_all(["tools:write", "knowledge:read", "tools:write"], &res())
            .expect("valid");
        assert_eq!(set.to_string(), "knowledge:read tools:write");
        assert_eq!(ScopeSet::from_stored(&set.to_string()), set);
    }

    #[test]
    fn admin_ranks_above_member() {
        assert!(Role::Admin > Role::Member);
        assert_eq!(Role::parse("admin"), Some(Role::Admin));
        assert_eq!(Role::parse("Admin"), None);
    }
}
