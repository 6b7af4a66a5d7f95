//! The proxy's look-up of what it needs to decide: the token record and,
//! when the route needs a workspace role, the environment and the account's
//! membership — from the decision cache when fresh, otherwise from the
//! store in one round trip, which then fills the cache. Records are shared
//! with the cache (`Arc`), not copied.

use std::time::Instant;

use crate::cache::DecisionCache;
use crate::model::AccessFacts;
use crate::store::{Store, StoreResult};

pub(crate) async fn lookup(
    store: &dyn Store,
    cache: &DecisionCache,
    token_hash: &str,
    environment: Option<&str>,
) -> StoreResult<AccessFacts> {
    let now = Instant::now();
    if let Some(token) = cache.token(token_hash, now) {
        match (&token, environment) {
            (None, _) | (Some(_), None) => {
                return Ok(AccessFacts {
                    token,
                    environment: None,
                })
            }
            (Some(record), Some(env)) => {
                if let Some(access) = cache.access(env, &record.service_account_id, now) {
                    return Ok(AccessFacts {
                        token,
                        environment: Some(access),
                    });
                }
            }
        }
    }
    let facts = store.lookup_access(token_hash, environment).await?;
    cache.put_token(token_hash, facts.token.clone(), now);
    if let (Some(record), Some(env), Some(access)) = (&facts.token, environment, &facts.environment)
    {
        cache.put_access(env, &record.service_account_id, access.clone(), now);
    }
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cache::Invalidation;
    use crate::model::TokenRecord;
    use crate::scope::ScopeSet;
    use crate::store::memory::MemoryStore;

    fn record() -> TokenRecord {
        TokenRecord {
            organization_id: "o".into(),
            service_account_id: "s".into(),
            client_id: "sa_c".into(),
            scopes: ScopeSet::default(),
            expires_at: i64::MAX,
            allowed_sources: None,
            header_values: Default::default(),
        }
    }

    #[tokio::test]
    async fn a_cached_token_is_served_without_the_store_until_invalidated() {
        let store = MemoryStore::new();
        let cache = DecisionCache::new(Duration::from_secs(1), 100);
        store
            .put_token("h", &record(), 60, None)
            .await
            .expect("put");
        assert!(lookup(&store, &cache, "h", None)
            .await
            .expect("lookup")
            .token
            .is_some());
        // Gone from the store, still cached: served from the cache.
        store.revoke_token("h", "o", "s").await.expect("revoke");
        assert!(lookup(&store, &cache, "h", None)
            .await
            .expect("lookup")
            .token
            .is_some());
        // The revocation's invalidation evicts it.
        cache.invalidate(&Invalidation::Token("h".into()));
        assert!(lookup(&store, &cache, "h", None)
            .await
            .expect("lookup")
            .token
            .is_none());
    }

    #[tokio::test]
    async fn with_the_cache_disabled_every_lookup_goes_to_the_store() {
        let store = MemoryStore::new();
        let cache = DecisionCache::new(Duration::ZERO, 100);
        store
            .put_token("h", &record(), 60, None)
            .await
            .expect("put");
        assert!(lookup(&store, &cache, "h", None)
            .await
            .expect("lookup")
            .token
            .is_some());
        store.revoke_token("h", "o", "s").await.expect("revoke");
        assert!(lookup(&store, &cache, "h", None)
            .await
            .expect("lookup")
            .token
            .is_none());
    }
}
