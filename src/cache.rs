//! The in-process decision cache: token records and (environment,
//! membership) look-ups kept for `cache.ttl_ms`, bounded in size, and
//! evicted when any instance publishes an invalidation (revocations,
//! membership, environment and account changes). Time is passed in.
//! Hits hand out shared references (`Arc`), never copies of the records.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::model::{EnvironmentRole, TokenRecord};

/// What changed, as published on the invalidation channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// One token (by hash) was revoked.
    Token(String),
    /// Every token of one account (revocation, delete, disable, rotate).
    ServiceAccount { org: String, sa: String },
    /// Every token of one organization.
    Organization(String),
    /// An account's role in a workspace changed or was removed.
    Membership {
        org: String,
        workspace: String,
        sa: String,
    },
    /// An environment was removed (or a whole workspace).
    Workspace { org: String, workspace: String },
    /// Anything: clear everything (also sent when the subscription was lost).
    All,
}

impl Invalidation {
    /// The wire form: fields separated by spaces (ids never contain one).
    pub fn encode(&self) -> String {
        match self {
            Invalidation::Token(h) => format!("tok {h}"),
            Invalidation::ServiceAccount { org, sa } => format!("sa {org} {sa}"),
            Invalidation::Organization(org) => format!("org {org}"),
            Invalidation::Membership { org, workspace, sa } => {
                format!("mem {org} {workspace} {sa}")
            }
            Invalidation::Workspace { org, workspace } => format!("ws {org} {workspace}"),
            Invalidation::All => "all".to_string(),
        }
    }

    /// Anything unreadable clears everything: failing safe costs only misses.
    pub fn decode(msg: &str) -> Invalidation {
        let parts: Vec<&str> = msg.split(' ').collect();
        match parts.as_slice() {
            ["tok", h] => Invalidation::Token(h.to_string()),
            ["sa", org, sa] => Invalidation::ServiceAccount {
                org: org.to_string(),
                sa: sa.to_string(),
            },
            ["org", org] => Invalidation::Organization(org.to_string()),
            ["mem", org, workspace, sa] => Invalidation::Membership {
                org: org.to_string(),
                workspace: workspace.to_string(),
                sa: sa.to_string(),
            },
            ["ws", org, workspace] => Invalidation::Workspace {
                org: org.to_string(),
                workspace: workspace.to_string(),
            },
            _ => Invalidation::All,
        }
    }
}

struct Entry<T> {
    value: T,
    at: Instant,
}

/// An (environment id, account id) key, looked up without building an
/// owned pair: `(String, String)` borrows as `dyn AccessKey`, and so does
/// `(&str, &str)`, hashing and comparing alike.
trait AccessKey {
    fn env(&self) -> &str;
    fn sa(&self) -> &str;
}

impl AccessKey for (String, String) {
    fn env(&self) -> &str {
        &self.0
    }
    fn sa(&self) -> &str {
        &self.1
    }
}

impl AccessKey for (&str, &str) {
    fn env(&self) -> &str {
        self.0
    }
    fn sa(&self) -> &str {
        self.1
    }
}

impl<'a> Borrow<dyn AccessKey + 'a> for (String, String) {
    fn borrow(&self) -> &(dyn AccessKey + 'a) {
        self
    }
}

/// The same hash as the tuple `(String, String)`: its fields in order.
impl Hash for dyn AccessKey + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.env().hash(state);
        self.sa().hash(state);
    }
}

impl PartialEq for dyn AccessKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.env() == other.env() && self.sa() == other.sa()
    }
}

impl Eq for dyn AccessKey + '_ {}

#[derive(Default)]
struct Maps {
    /// token hash → record (None: known not to exist).
    tokens: HashMap<String, Entry<Option<Arc<TokenRecord>>>>,
    /// (environment id, account id) → environment and role.
    access: HashMap<(String, String), Entry<Arc<EnvironmentRole>>>,
}

pub struct DecisionCache {
    ttl: Duration,
    /// Negative token results live shorter: a flood of distinct bad tokens
    /// must not push out the good ones for long.
    negative_ttl: Duration,
    max_entries: usize,
    maps: Mutex<Maps>,
    /// Counts invalidations, so that open WebSocket tunnels check their
    /// token again at once ([`DecisionCache::changes`]).
    changes: tokio::sync::watch::Sender<u64>,
}

impl DecisionCache {
    pub fn new(ttl: Duration, max_entries: usize) -> DecisionCache {
        DecisionCache {
            ttl,
            negative_ttl: ttl / 4,
            max_entries: max_entries.max(1),
            maps: Mutex::new(Maps::default()),
            changes: tokio::sync::watch::Sender::new(0),
        }
    }

    /// How long an entry is used: the bound on how late this instance sees
    /// a change another instance made.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Changes whenever something is invalidated (here or, through the
    /// bus, on another instance).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    fn fresh<T>(e: &Entry<T>, ttl: Duration, now: Instant) -> bool {
        now.saturating_duration_since(e.at) < ttl
    }

    /// `Some(record or None)` on a hit.
    pub fn token(&self, hash: &str, now: Instant) -> Option<Option<Arc<TokenRecord>>> {
        if !self.enabled() {
            return None;
        }
        let maps = self.maps.lock().ok()?;
        let e = maps.tokens.get(hash)?;
        let ttl = if e.value.is_some() {
            self.ttl
        } else {
            self.negative_ttl
        };
        Self::fresh(e, ttl, now).then(|| e.value.clone())
    }

    pub fn access(&self, env: &str, sa: &str, now: Instant) -> Option<Arc<EnvironmentRole>> {
        if !self.enabled() {
            return None;
        }
        let maps = self.maps.lock().ok()?;
        let e = maps.access.get(&(env, sa) as &dyn AccessKey)?;
        Self::fresh(e, self.ttl, now).then(|| e.value.clone())
    }

    pub fn put_token(&self, hash: &str, record: Option<Arc<TokenRecord>>, now: Instant) {
        if !self.enabled() {
            return;
        }
        if let Ok(mut maps) = self.maps.lock() {
            let ttl = self.ttl;
            if maps.tokens.len() >= self.max_entries {
                // Unknown tokens go first, so a flood of bad ones cannot
                // push out the good ones; then anything stale.
                maps.tokens
                    .retain(|_, e| e.value.is_some() && Self::fresh(e, ttl, now));
                if maps.tokens.len() >= self.max_entries {
                    maps.tokens.clear();
                }
            }
            maps.tokens.insert(
                hash.to_string(),
                Entry {
                    value: record,
                    at: now,
                },
            );
        }
    }

    pub fn put_access(&self, env: &str, sa: &str, value: Arc<EnvironmentRole>, now: Instant) {
        if !self.enabled() {
            return;
        }
        if let Ok(mut maps) = self.maps.lock() {
            let ttl = self.ttl;
            if maps.access.len() >= self.max_entries {
                maps.access.retain(|_, e| Self::fresh(e, ttl, now));
                if maps.access.len() >= self.max_entries {
                    maps.access.clear();
                }
            }
            maps.access
                .insert((env.to_string(), sa.to_string()), Entry { value, at: now });
        }
    }

    pub fn invalidate(&self, what: &Invalidation) {
        self.evict(what);
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn evict(&self, what: &Invalidation) {
        let Ok(mut maps) = self.maps.lock() else {
            return;
        };
        match what {
            Invalidation::Token(hash) => {
                maps.tokens.remove(hash);
            }
            Invalidation::ServiceAccount { org, sa } => {
                maps.tokens.retain(|_, e| {
                    !e.value
                        .as_ref()
                        .is_some_and(|r| r.organization_id == *org && r.service_account_id == *sa)
                });
                maps.access.retain(|(_, s), _| s != sa);
            }
            Invalidation::Organization(org) => {
                maps.tokens
                    .retain(|_, e| e.value.as_ref().is_none_or(|r| r.organization_id != *org));
            }
            Invalidation::Membership { sa, .. } => {
                maps.access.retain(|(_, s), _| s != sa);
            }
            Invalidation::Workspace { org, workspace } => {
                maps.access.retain(|_, e| {
                    !e.value.environment.as_ref().is_some_and(|env| {
                        env.organization_id == *org && env.workspace_id == *workspace
                    })
                });
            }
            Invalidation::All => {
                maps.tokens.clear();
                maps.access.clear();
            }
        }
    }

    pub fn len(&self) -> usize {
        self.maps
            .lock()
            .map(|m| m.tokens.len() + m.access.len())
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EnvironmentRef;
    use crate::scope::{Role, ScopeSet};

    fn record(org: &str, sa: &str) -> Arc<TokenRecord> {
        Arc::new(TokenRecord {
            organization_id: org.into(),
            service_account_id: sa.into(),
            client_id: "sa_x".into(),
            scopes: ScopeSet::default(),
            expires_at: i64::MAX,
            allowed_sources: None,
            header_values: Default::default(),
        })
    }

    fn env(org: &str, ws: &str, id: &str) -> Arc<EnvironmentRef> {
        Arc::new(EnvironmentRef {
            id: id.into(),
            workspace_id: ws.into(),
            organization_id: org.into(),
            header_values: Default::default(),
        })
    }

    fn cache() -> DecisionCache {
        DecisionCache::new(Duration::from_millis(500), 100)
    }

    #[test]
    fn every_invalidation_is_announced_to_watchers() {
        let cache = DecisionCache::new(Duration::from_millis(500), 10);
        let mut changes = cache.changes();
        assert!(!changes.has_changed().expect("the cache is alive"));
        cache.invalidate(&Invalidation::Token("h".into()));
        assert!(changes.has_changed().expect("the cache is alive"));
        changes.mark_unchanged();
        cache.invalidate(&Invalidation::All);
        assert!(changes.has_changed().expect("the cache is alive"));
    }

    #[test]
    fn a_cached_token_is_served_until_its_ttl_runs_out() {
        let c = cache();
        let t0 = Instant::now();
        c.put_token("h", Some(record("o", "s")), t0);
        assert_eq!(
            c.token("h", t0 + Duration::from_millis(499)),
            Some(Some(record("o", "s")))
        );
        assert_eq!(c.token("h", t0 + Duration::from_millis(500)), None);
    }

    #[test]
    fn unknown_tokens_are_remembered_for_a_shorter_time() {
        let c = cache();
        let t0 = Instant::now();
        c.put_token("bad", None, t0);
        assert_eq!(c.token("bad", t0 + Duration::from_millis(100)), Some(None));
        assert_eq!(c.token("bad", t0 + Duration::from_millis(200)), None);
    }

    #[test]
    fn a_zero_ttl_disables_the_cache() {
        let c = DecisionCache::new(Duration::ZERO, 100);
        let t0 = Instant::now();
        c.put_token("h", Some(record("o", "s")), t0);
        assert_eq!(c.token("h", t0), None);
        assert!(c.is_empty());
    }

    #[test]
    fn revoking_an_account_evicts_its_tokens_and_memberships_only() {
        let c = cache();
        let t0 = Instant::now();
        c.put_token("a", Some(record("o", "s1")), t0);
        c.put_token("b", Some(record("o", "s2")), t0);
        c.put_access(
            "e",
            "s1",
            Arc::new(EnvironmentRole {
                environment: Some(env("o", "w", "e")),
                role: Some(Role::Member),
            }),
            t0,
        );
        c.invalidate(&Invalidation::ServiceAccount {
            org: "o".into(),
            sa: "s1".into(),
        });
        assert_eq!(c.token("a", t0), None);
        assert!(c.token("b", t0).is_some());
        assert_eq!(c.access("e", "s1", t0), None);
    }

    #[test]
    fn an_organization_kill_switch_evicts_every_token_of_that_organization() {
        let c = cache();
        let t0 = Instant::now();
        c.put_token("a", Some(record("o1", "s1")), t0);
        c.put_token("b", Some(record("o2", "s2")), t0);
        c.invalidate(&Invalidation::Organization("o1".into()));
        assert_eq!(c.token("a", t0), None);
        assert!(c.token("b", t0).is_some());
    }

    #[test]
    fn removing_a_workspace_evicts_its_environments() {
        let c = cache();
        let t0 = Instant::now();
        c.put_access(
            "e1",
            "s",
            Arc::new(EnvironmentRole {
                environment: Some(env("o", "w1", "e1")),
                role: Some(Role::Admin),
            }),
            t0,
        );
        c.put_access(
            "e2",
            "s",
            Arc::new(EnvironmentRole {
                environment: Some(env("o", "w2", "e2")),
                role: Some(Role::Admin),
            }),
            t0,
        );
        c.invalidate(&Invalidation::Workspace {
            org: "o".into(),
            workspace: "w1".into(),
        });
        assert_eq!(c.access("e1", "s", t0), None);
        assert!(c.access("e2", "s", t0).is_some());
    }

    #[test]
    fn a_flood_of_unknown_tokens_does_not_evict_known_ones() {
        let c = DecisionCache::new(Duration::from_secs(1), 10);
        let t0 = Instant::now();
        c.put_token("good", Some(record("o", "s")), t0);
        for i in 0..1000 {
            c.put_token(&format!("bad{i}"), None, t0);
        }
        assert!(c.token("good", t0).is_some());
        assert!(c.len() <= 10);
    }

    #[test]
    fn the_cache_never_grows_past_its_bound() {
        let c = DecisionCache::new(Duration::from_secs(1), 10);
        let t0 = Instant::now();
        for i in 0..1000 {
            c.put_token(&format!("h{i}"), None, t0);
        }
        assert!(c.len() <= 10);
    }

    #[test]
    fn invalidations_survive_the_wire_and_garbage_clears_everything() {
        let all = [
            Invalidation::Token("abc".into()),
            Invalidation::ServiceAccount {
                org: "o".into(),
                sa: "s".into(),
            },
            Invalidation::Organization("o".into()),
            Invalidation::Membership {
                org: "o".into(),
                workspace: "w".into(),
                sa: "s".into(),
            },
            Invalidation::Workspace {
                org: "o".into(),
                workspace: "w".into(),
            },
            Invalidation::All,
        ];
        for inv in all {
            assert_eq!(Invalidation::decode(&inv.encode()), inv);
        }
        assert_eq!(Invalidation::decode("what?"), Invalidation::All);
    }
}
