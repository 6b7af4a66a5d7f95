//! Cache invalidation across instances. A change that revokes or narrows
//! access (token revocation, account removal, membership or environment
//! removal) is applied to this process's decision cache at once and
//! published on a Redis channel, so every other instance evicts it too —
//! well within `cache.ttl_ms`, which bounds staleness even when the channel
//! is down. A lost subscription clears the cache.
//!
//! On a Redis Cluster, classic pub/sub is broadcast to every node, so the
//! bus talks to any one node of `store.urls` and moves to the next when that
//! one fails.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Mutex;

use crate::cache::{DecisionCache, Invalidation};
use crate::metrics::Metrics;
use crate::store::redis::invalidation_channel;

const RECONNECT_AFTER: Duration = Duration::from_secs(1);

pub struct Bus {
    cache: Arc<DecisionCache>,
    redis: Option<RedisBus>,
}

struct RedisBus {
    /// One client per node URL; `next` picks the one to try first.
    clients: Vec<redis::Client>,
    next: AtomicUsize,
    channel: String,
    timeout: Duration,
    publisher: Mutex<Option<redis::aio::MultiplexedConnection>>,
}

impl Bus {
    /// A bus for one process only (memory store).
    pub fn local(cache: Arc<DecisionCache>) -> Bus {
        Bus { cache, redis: None }
    }

    /// A bus over Redis pub/sub on the store's invalidation channel for
    /// `key_prefix`, through any of `urls` (one server, or the nodes of a
    /// cluster).
    pub fn redis(
        cache: Arc<DecisionCache>,
        urls: &[String],
        key_prefix: &str,
        timeout: Duration,
    ) -> Result<Bus, String> {
        let clients = urls
            .iter()
            .map(|url| redis::Client::open(url.as_str()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| "the store URL is not a Redis URL".to_string())?;
        if clients.is_empty() {
            return Err("no Redis URL for the invalidation channel".into());
        }
        Ok(Bus {
            cache,
            redis: Some(RedisBus {
                clients,
                next: AtomicUsize::new(0),
                channel: invalidation_channel(key_prefix),
                timeout,
                publisher: Mutex::new(None),
            }),
        })
    }

    pub fn cache(&self) -> &Arc<DecisionCache> {
        &self.cache
    }

    /// Applies the change here and tells the other instances. Publishing is
    /// best effort: if it fails, their caches still expire within the TTL.
    pub async fn publish(&self, what: Invalidation) {
        self.cache.invalidate(&what);
        let Some(r) = &self.redis else {
            return;
        };
        if !self.cache.enabled() {
            return;
        }
        if let Err(e) = r.publish(&what.encode()).await {
            Metrics::get().store_error("publish_invalidation");
            tracing::warn!(error = %e, "cache invalidation not published; other instances catch up within cache.ttl_ms");
        }
    }

    /// Receives other instances' invalidations until `stop` resolves;
    /// reconnects after a lost subscription, clearing the cache each time.
    pub async fn run_subscriber(&self, stop: impl std::future::Future<Output = ()>) {
        let Some(r) = &self.redis else {
            stop.await;
            return;
        };
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                result = r.listen(&self.cache) => {
                    self.cache.invalidate(&Invalidation::All);
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "cache invalidation subscription lost; cache cleared");
                    }
                }
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(RECONNECT_AFTER) => {}
            }
        }
    }
}

impl RedisBus {
    /// The node to use now.
    fn client(&self) -> &redis::Client {
        &self.clients[self.next.load(Ordering::Relaxed) % self.clients.len()]
    }

    /// After a failure, the next attempt goes to the next node.
    fn move_on(&self) {
        self.next.fetch_add(1, Ordering::Relaxed);
    }

    async fn publish(&self, msg: &str) -> Result<(), String> {
        let mut guard = self.publisher.lock().await;
        if guard.is_none() {
            let conn = tokio::time::timeout(
                self.timeout,
                self.client().get_multiplexed_async_connection(),
            )
            .await;
            let conn = match conn {
                Ok(Ok(conn)) => conn,
                Ok(Err(e)) => {
                    self.move_on();
                    return Err(format!("connect failed: {}", e.category()));
                }
                Err(_) => {
                    self.move_on();
                    return Err("connect timed out".into());
                }
            };
            *guard = Some(conn);
        }
        let Some(conn) = guard.as_mut() else {
            return Err("no connection".into());
        };
        let sent = tokio::time::timeout(
            self.timeout,
            redis::cmd("PUBLISH")
                .arg(&self.channel)
                .arg(msg)
                .query_async::<i64>(conn),
        )
        .await;
        match sent {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                *guard = None;
                self.move_on();
                Err(format!("publish failed: {}", e.category()))
            }
            Err(_) => {
                *guard = None;
                self.move_on();
                Err("publish timed out".into())
            }
        }
    }

    /// Subscribes and applies messages until the connection ends.
    async fn listen(&self, cache: &DecisionCache) -> Result<(), String> {
        let result = self.subscribe_and_apply(cache).await;
        self.move_on();
        result
    }

    async fn subscribe_and_apply(&self, cache: &DecisionCache) -> Result<(), String> {
        let mut pubsub = tokio::time::timeout(self.timeout, self.client().get_async_pubsub())
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| format!("connect failed: {}", e.category()))?;
        tokio::time::timeout(self.timeout, pubsub.subscribe(&self.channel))
            .await
            .map_err(|_| "subscribe timed out".to_string())?
            .map_err(|e| format!("subscribe failed: {}", e.category()))?;
        // Whatever changed while we were not listening is unknown.
        cache.invalidate(&Invalidation::All);
        let mut messages = pubsub.into_on_message();
        while let Some(msg) = messages.next().await {
            let what = match msg.get_payload::<String>() {
                Ok(text) => Invalidation::decode(&text),
                Err(_) => Invalidation::All,
            };
            cache.invalidate(&what);
        }
        Err("subscription closed".into())
    }
}
