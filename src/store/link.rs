//! Connections to Redis: one server through a deadpool pool, or a Redis
//! Cluster through one shared cluster connection.
//!
//! Both connect lazily, so the process starts (and reports not ready) while
//! Redis is down, and both drop a connection that failed at the transport
//! level, so the next call connects afresh: recovery needs no restart.
//!
//! The single-server pool hands out multiplexed connections without the
//! `PING` that deadpool-redis's own manager sends on every checkout: that
//! ping doubled the round trips of every store call. A broken connection is
//! noticed by the call that uses it instead, and then every idle connection
//! is dropped with it (they were most likely cut by the same restart).
//!
//! A cluster connection is already multiplexed over one socket per node and
//! follows slot moves itself, so it is shared rather than pooled; a pool of
//! them would add deadpool's checkout ping and nothing else.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use deadpool::managed::{self, Metrics, Object, RecycleResult};
use deadpool_redis::redis::aio::{ConnectionLike, MultiplexedConnection};
use deadpool_redis::redis::cluster::{ClusterClient, ClusterClientBuilder};
use deadpool_redis::redis::cluster_async::ClusterConnection;
use deadpool_redis::redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use deadpool_redis::redis::{
    self, AsyncConnectionConfig, Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value,
};
use deadpool_redis::{Manager, Runtime};
use tokio::sync::Mutex;

use super::{StoreError, StoreResult};

/// Creates connections through deadpool-redis's manager (which applies the
/// connection and response timeouts) and recycles them without a round trip.
pub struct QuickManager {
    inner: Manager,
}

impl managed::Manager for QuickManager {
    type Type = MultiplexedConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<MultiplexedConnection, RedisError> {
        // Boxed: connecting is rare, and its ~2 KiB state would otherwise be
        // part of every store call's future (several times over, through
        // deadpool's timeout wrappers), which is moved into a box per call.
        Box::pin(managed::Manager::create(&self.inner)).await
    }

    async fn recycle(
        &self,
        _: &mut MultiplexedConnection,
        _: &Metrics,
    ) -> RecycleResult<RedisError> {
        Ok(())
    }
}

type SinglePool = managed::Pool<QuickManager>;

pub enum Link {
    Single(SinglePool),
    Cluster(Box<ClusterLink>),
}

pub struct ClusterLink {
    client: ClusterClient,
    shared: ArcSwapOption<ClusterConnection>,
    /// Serialises connecting, so a burst of calls makes one connection.
    connecting: Mutex<()>,
}

/// One checked-out connection.
pub enum Conn {
    Single(Object<QuickManager>),
    Cluster(ClusterConnection),
}

impl Link {
    /// A pool for one Redis server. The URL may carry a password: it never
    /// goes into an error message.
    pub fn single(url: &str, timeout: Duration, pool_size: usize) -> StoreResult<Link> {
        let manager = Manager::new_with_config(url, connection_config(timeout))
            .map_err(|e| StoreError::Unavailable(format!("invalid redis url ({:?})", e.kind())))?;
        let pool = managed::Pool::builder(QuickManager { inner: manager })
            .max_size(pool_size.max(1))
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Unavailable(format!("cannot build redis pool: {e}")))?;
        Ok(Link::Single(pool))
    }

    /// A Redis Cluster reached through any of `urls` (the seed nodes; the
    /// rest of the topology is discovered).
    pub fn cluster(urls: &[String], timeout: Duration) -> StoreResult<Link> {
        let client = ClusterClientBuilder::new(urls.to_vec())
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(2)
            .build()
            .map_err(|e| {
                StoreError::Unavailable(format!("invalid redis cluster urls ({:?})", e.kind()))
            })?;
        Ok(Link::Cluster(Box::new(ClusterLink {
            client,
            shared: ArcSwapOption::empty(),
            connecting: Mutex::new(()),
        })))
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Link::Cluster(_))
    }

    pub async fn get(&self) -> Result<Conn, GetError> {
        match self {
            Link::Single(pool) => pool.get().await.map(Conn::Single).map_err(GetError::Pool),
            Link::Cluster(c) => c.get().await.map(Conn::Cluster).map_err(GetError::Redis),
        }
    }

    /// Passes a call's result through; when the call failed at the
    /// transport level, the connection is dropped instead of reused.
    pub fn settle<T>(&self, conn: Conn, result: RedisResult<T>) -> RedisResult<T> {
        if let Err(e) = &result {
            if is_transport_error(e) {
                self.discard(conn);
            }
        }
        result
    }

    fn discard(&self, conn: Conn) {
        match (self, conn) {
            (Link::Single(pool), Conn::Single(obj)) => {
                drop(Object::take(obj));
                pool.retain(|_, _| false);
            }
            (Link::Cluster(c), Conn::Cluster(_)) => c.shared.store(None),
            _ => {}
        }
    }
}

/// Every node that serves slots must answer: a cluster missing a master
/// cannot serve the keys of its slots. (A `PING` fanned out to all primaries
/// would skip a node whose connection is gone and report success.)
pub async fn ping_cluster_masters(conn: &mut ClusterConnection) -> RedisResult<()> {
    let slots = conn
        .route_command(
            redis::cmd("CLUSTER").arg("SLOTS").clone(),
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
        )
        .await?;
    let mut masters: Vec<(String, u16)> = Vec::new();
    if let Value::Array(ranges) = slots {
        for range in ranges {
            let Value::Array(fields) = range else {
                continue;
            };
            // [start, end, [host, port, id, ...] (the master), replicas...]
            let Some(Value::Array(node)) = fields.get(2) else {
                continue;
            };
            let host = match node.first() {
                Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                Some(Value::SimpleString(s)) => s.clone(),
                _ => continue,
            };
            let Some(Value::Int(port)) = node.get(1) else {
                continue;
            };
            let Ok(port) = u16::try_from(*port) else {
                continue;
            };
            if !masters.contains(&(host.clone(), port)) {
                masters.push((host, port));
            }
        }
    }
    if masters.is_empty() {
        return Err(RedisError::from((
            redis::ErrorKind::Client,
            "the cluster reports no slots served",
        )));
    }
    for (host, port) in masters {
        conn.route_command(
            redis::cmd("PING"),
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port }),
        )
        .await?;
    }
    Ok(())
}

impl ClusterLink {
    async fn get(&self) -> RedisResult<ClusterConnection> {
        if let Some(conn) = self.shared.load_full() {
            return Ok((*conn).clone());
        }
        let _one = self.connecting.lock().await;
        if let Some(conn) = self.shared.load_full() {
            return Ok((*conn).clone());
        }
        // Boxed for the same reason as QuickManager::create: rare and large.
        let conn = Box::pin(self.client.get_async_connection()).await?;
        self.shared.store(Some(Arc::new(conn.clone())));
        Ok(conn)
    }
}

pub enum GetError {
    Pool(managed::PoolError<RedisError>),
    Redis(RedisError),
}

fn connection_config(timeout: Duration) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
}

fn is_transport_error(e: &RedisError) -> bool {
    e.is_connection_dropped() || e.is_connection_refusal() || e.is_io_error() || e.is_timeout()
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}
