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
//!
//! On one server, the calls that answer proxied requests and token requests
//! ([`Lane::Request`]) do not take a pooled connection: a checked-out
//! multiplexed connection is used by one call at a time, so requests in
//! flight spread over many sockets, one command per write and per read on
//! each side, and no pipelining (docs/performance.md, "Store"). They share one multiplexed connection per tokio
//! runtime instead. Its driver task runs on the runtime that made it, so a
//! call never wakes another thread, and the commands of concurrent requests
//! leave in one write and their replies come back in one read. The admin
//! API's calls ([`Lane::Control`]) keep exclusive pooled connections: their
//! replies can be large (listings, audit pages), and on a shared socket a
//! large reply would hold up every look-up queued behind it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use deadpool::managed::{self, Metrics, Object, RecycleResult};
use deadpool_redis::redis::aio::{ConnectionLike, MultiplexedConnection};
use deadpool_redis::redis::cluster::{ClusterClient, ClusterClientBuilder};
use deadpool_redis::redis::cluster_async::ClusterConnection;
use deadpool_redis::redis::{
    self, AsyncConnectionConfig, Client, Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value,
};
use deadpool_redis::{Manager, Runtime};
use tokio::sync::Mutex;

use crate::store::{StoreError, StoreResult};

/// Creates connections through deadpool-redis's manager (which applies the
/// connection and response timeouts) and recycles them without a round trip.
pub(super) struct QuickManager {
    inner: Manager,
}

impl managed::Manager for QuickManager {
    type Type = MultiplexedConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<MultiplexedConnection, RedisError> {
        // Boxed: connecting is rare, and its state (docs/performance.md,
        // "Store") would otherwise be part of every store call's future (several times over, through
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

pub(super) enum Link {
    Single(Box<SingleLink>),
    Cluster(Box<ClusterLink>),
}

/// Which connections a call uses on a single server (see the module
/// documentation); a cluster connection serves both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lane {
    /// Answering a proxied request or a token request: a multiplexed
    /// connection shared by every call on the caller's runtime.
    Request,
    /// The admin API, readiness and maintenance: an exclusive pooled
    /// connection.
    Control,
}

pub(super) struct SingleLink {
    pool: SinglePool,
    client: Client,
    config: AsyncConnectionConfig,
    /// The request lane's connection of each runtime that made one.
    shared: ArcSwap<Vec<SharedConn>>,
    /// Numbers the shared connections, so that a call can drop the one it
    /// used and never a newer one.
    serials: AtomicU64,
    /// Serialises connecting, so a burst of calls makes one connection.
    connecting: Mutex<()>,
}

#[derive(Clone)]
struct SharedConn {
    runtime: tokio::runtime::Id,
    serial: u64,
    conn: MultiplexedConnection,
}

/// Runtimes come and go only in tests (a process serves from a handful);
/// past this many, the oldest runtime's connection is dropped.
const MAX_SHARED: usize = 16;

pub(super) struct ClusterLink {
    client: ClusterClient,
    shared: ArcSwapOption<ClusterConnection>,
    /// Serialises connecting, so a burst of calls makes one connection.
    connecting: Mutex<()>,
}

/// One checked-out connection.
pub(super) enum Conn {
    Single(Object<QuickManager>),
    /// A runtime's shared connection and its serial number.
    Shared(MultiplexedConnection, u64),
    Cluster(ClusterConnection),
}

impl Conn {
    /// The serial number of a shared connection, for [`Link::timed_out`].
    pub(super) fn serial(&self) -> Option<u64> {
        match self {
            Conn::Shared(_, serial) => Some(*serial),
            _ => None,
        }
    }
}

impl Link {
    /// A pool for one Redis server. The URL may carry a password: it never
    /// goes into an error message.
    pub(super) fn single(url: &str, timeout: Duration, pool_size: usize) -> StoreResult<Link> {
        let invalid =
            |e: RedisError| StoreError::Unavailable(format!("invalid redis url ({:?})", e.kind()));
        let client = Client::open(url).map_err(invalid)?;
        let manager = Manager::new_with_config(url, connection_config(timeout)).map_err(invalid)?;
        let pool = managed::Pool::builder(QuickManager { inner: manager })
            .max_size(pool_size.max(1))
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Unavailable(format!("cannot build redis pool: {e}")))?;
        Ok(Link::Single(Box::new(SingleLink {
            pool,
            client,
            // No response timeout of the client's own: every call is
            // already bounded by `timeout` around it, and a second timer per
            // look-up cost instructions for nothing (docs/performance.md,
            // "Store").
            config: connection_config(timeout).set_response_timeout(None),
            shared: ArcSwap::from_pointee(Vec::new()),
            serials: AtomicU64::new(0),
            connecting: Mutex::new(()),
        })))
    }

    /// A Redis Cluster reached through any of `urls` (the seed nodes; the
    /// rest of the topology is discovered).
    pub(super) fn cluster(urls: &[String], timeout: Duration) -> StoreResult<Link> {
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

    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Link::Cluster(_))
    }

    pub(super) async fn get(&self, lane: Lane) -> Result<Conn, GetError> {
        match (self, lane) {
            (Link::Single(s), Lane::Request) => {
                let (conn, serial) = s.shared().await.map_err(GetError::Redis)?;
                Ok(Conn::Shared(conn, serial))
            }
            (Link::Single(s), Lane::Control) => {
                s.pool.get().await.map(Conn::Single).map_err(GetError::Pool)
            }
            (Link::Cluster(c), _) => c.get().await.map(Conn::Cluster).map_err(GetError::Redis),
        }
    }

    /// Passes a call's result through; when the call failed at the
    /// transport level, the connection is dropped instead of reused.
    pub(super) fn settle<T>(&self, conn: Conn, result: RedisResult<T>) -> RedisResult<T> {
        if let Err(e) = &result {
            if is_transport_error(e) {
                self.discard(conn);
            }
        }
        result
    }

    /// A call on the shared connection numbered `serial` timed out. Its
    /// runtime makes a new connection for the next call: a server that
    /// stopped answering without resetting the socket (a partition, a
    /// failover to a new address) would otherwise hold every call of the
    /// request lane at 503 until TCP gives up, which takes many minutes.
    /// Calls that were waiting on the same connection find it gone and do
    /// not drop the new one. A server that is merely slow costs one
    /// reconnection per timeout burst.
    pub(super) fn timed_out(&self, serial: Option<u64>) {
        if let (Link::Single(s), Some(serial)) = (self, serial) {
            s.forget(serial);
        }
    }

    fn discard(&self, conn: Conn) {
        match (self, conn) {
            // A restart or a cut most likely broke every connection to the
            // server, the other lane's included.
            (Link::Single(s), Conn::Single(obj)) => {
                drop(Object::take(obj));
                s.forget_all();
            }
            (Link::Single(s), Conn::Shared(..)) => s.forget_all(),
            (Link::Cluster(c), Conn::Cluster(_)) => c.shared.store(None),
            _ => {}
        }
    }
}

impl SingleLink {
    /// The calling runtime's shared connection, made on first use.
    async fn shared(&self) -> RedisResult<(MultiplexedConnection, u64)> {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            // Outside tokio no connection can run its driver task.
            return Err(RedisError::from((
                redis::ErrorKind::Client,
                "a store call outside a tokio runtime",
            )));
        };
        let runtime = handle.id();
        if let Some(conn) = self.find(runtime) {
            return Ok(conn);
        }
        let _one = self.connecting.lock().await;
        if let Some(conn) = self.find(runtime) {
            return Ok(conn);
        }
        // Boxed for the same reason as QuickManager::create: rare and large.
        let conn = Box::pin(
            self.client
                .get_multiplexed_async_connection_with_config(&self.config),
        )
        .await?;
        let serial = self.serials.fetch_add(1, Ordering::Relaxed) + 1;
        self.shared.rcu(|all| {
            let mut all: Vec<_> = all
                .iter()
                .filter(|s| s.runtime != runtime)
                .cloned()
                .collect();
            if all.len() >= MAX_SHARED {
                all.remove(0);
            }
            all.push(SharedConn {
                runtime,
                serial,
                conn: conn.clone(),
            });
            all
        });
        Ok((conn, serial))
    }

    fn find(&self, runtime: tokio::runtime::Id) -> Option<(MultiplexedConnection, u64)> {
        self.shared
            .load()
            .iter()
            .find(|s| s.runtime == runtime)
            .map(|s| (s.conn.clone(), s.serial))
    }

    fn forget(&self, serial: u64) {
        if self.shared.load().iter().any(|s| s.serial == serial) {
            self.shared.rcu(|all| {
                all.iter()
                    .filter(|s| s.serial != serial)
                    .cloned()
                    .collect::<Vec<_>>()
            });
        }
    }

    fn forget_all(&self) {
        self.shared.store(Arc::new(Vec::new()));
        self.pool.retain(|_, _| false);
    }
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

pub(super) enum GetError {
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
            Conn::Shared(c, _) => c.req_packed_command(cmd),
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
            Conn::Shared(c, _) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Shared(c, _) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}
