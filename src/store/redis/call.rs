//! One store call: a command, pipeline or script on a connection of the
//! right lane, bounded by the timeout (connecting included), and Redis and
//! pool errors turned into [`StoreError`]s that name no argument.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use deadpool::managed::PoolError;
use deadpool_redis::redis::{self, Cmd, RedisError};
use serde::de::DeserializeOwned;

use super::codec::decode;
use super::link::{Conn, GetError, Lane};
use super::RedisStore;
use crate::store::{StoreError, StoreResult};

/// What one store call sends.
enum Call<'a> {
    Cmd(&'a Cmd),
    Pipe(&'a redis::Pipeline),
    Script(&'a redis::ScriptInvocation<'a>),
}

impl RedisStore {
    /// Runs one store call (connection included) within the timeout.
    pub(super) async fn bounded<T>(
        &self,
        fut: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Timeout),
        }
    }

    pub(super) async fn conn(&self, op: &'static str, lane: Lane) -> StoreResult<Conn> {
        self.link.get(lane).await.map_err(|e| match e {
            GetError::Pool(e) => pool_error(op, e),
            GetError::Redis(e) => redis_error(op, e),
        })
    }

    /// One command on the control lane (see [`Lane`]).
    pub(super) async fn query<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &Cmd,
    ) -> StoreResult<T> {
        self.query_on(Lane::Control, op, cmd).await
    }

    pub(super) async fn query_on<T: redis::FromRedisValue>(
        &self,
        lane: Lane,
        op: &'static str,
        cmd: &Cmd,
    ) -> StoreResult<T> {
        self.call(lane, op, Call::Cmd(cmd)).await
    }

    pub(super) async fn pipe<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        pipe: &redis::Pipeline,
    ) -> StoreResult<T> {
        self.pipe_on(Lane::Control, op, pipe).await
    }

    pub(super) async fn pipe_on<T: redis::FromRedisValue>(
        &self,
        lane: Lane,
        op: &'static str,
        pipe: &redis::Pipeline,
    ) -> StoreResult<T> {
        self.call(lane, op, Call::Pipe(pipe)).await
    }

    pub(super) async fn invoke<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        inv: &redis::ScriptInvocation<'_>,
    ) -> StoreResult<T> {
        self.invoke_on(Lane::Control, op, inv).await
    }

    pub(super) async fn invoke_on<T: redis::FromRedisValue>(
        &self,
        lane: Lane,
        op: &'static str,
        inv: &redis::ScriptInvocation<'_>,
    ) -> StoreResult<T> {
        self.call(lane, op, Call::Script(inv)).await
    }

    /// One call within the timeout. A connection that failed at the
    /// transport level is dropped; a shared one whose call timed out is
    /// replaced for the next call (see
    /// [`Link::timed_out`](super::link::Link::timed_out)).
    async fn call<T: redis::FromRedisValue>(
        &self,
        lane: Lane,
        op: &'static str,
        call: Call<'_>,
    ) -> StoreResult<T> {
        // The serial of the shared connection used, 0 for none.
        let used = AtomicU64::new(0);
        let result = self
            .bounded(async {
                let mut conn = self.conn(op, lane).await?;
                used.store(conn.serial().unwrap_or(0), Ordering::Relaxed);
                let result = match call {
                    Call::Cmd(cmd) => cmd.query_async(&mut conn).await,
                    Call::Pipe(pipe) => pipe.query_async(&mut conn).await,
                    Call::Script(inv) => inv.invoke_async(&mut conn).await,
                };
                self.link
                    .settle(conn, result)
                    .map_err(|e| redis_error(op, e))
            })
            .await;
        if matches!(result, Err(StoreError::Timeout)) {
            let serial = used.load(Ordering::Relaxed);
            self.link.timed_out((serial != 0).then_some(serial));
        }
        result
    }

    pub(super) async fn hget<T: DeserializeOwned>(
        &self,
        op: &'static str,
        key: &str,
        field: &str,
        what: &'static str,
    ) -> StoreResult<Option<T>> {
        let raw: Option<String> = self
            .query(op, redis::cmd("HGET").arg(key).arg(field))
            .await?;
        raw.map(|r| decode(what, &r)).transpose()
    }

    /// Every value of a hash, in field order.
    pub(super) async fn hvals_sorted<T: DeserializeOwned>(
        &self,
        op: &'static str,
        key: &str,
        what: &'static str,
    ) -> StoreResult<Vec<T>> {
        let all: BTreeMap<String, String> = self.query(op, redis::cmd("HGETALL").arg(key)).await?;
        all.values().map(|raw| decode(what, raw)).collect()
    }
}

/// Error texts carry the operation and the error's kind, never arguments.
pub(super) fn redis_error(op: &'static str, e: RedisError) -> StoreError {
    if e.is_timeout() {
        return StoreError::Timeout;
    }
    let what = if e.is_connection_refusal() {
        "connection refused".to_string()
    } else if e.is_connection_dropped() {
        "connection dropped".to_string()
    } else if e.is_io_error() {
        "i/o error".to_string()
    } else if let Some(code) = e.code() {
        format!("server error {code}")
    } else {
        format!("{:?}", e.kind())
    };
    StoreError::Unavailable(format!("{op}: {what}"))
}

fn pool_error(op: &'static str, e: PoolError<RedisError>) -> StoreError {
    match e {
        PoolError::Timeout(_) => StoreError::Timeout,
        PoolError::Backend(e) => redis_error(op, e),
        PoolError::Closed => StoreError::Unavailable(format!("{op}: pool closed")),
        PoolError::NoRuntimeSpecified => StoreError::Unavailable(format!("{op}: no runtime")),
        PoolError::PostCreateHook(_) => {
            StoreError::Unavailable(format!("{op}: connection set-up failed"))
        }
    }
}
