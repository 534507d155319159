//! A [`AsyncBudgetStore`] on a Redis server, shared by every replica that points at it.
//!
//! A charge is one Lua script, atomic on the server: `INCRBY` the counter of the bucket's
//! window, and set its expiry when it has none, so a window's counter disappears once the
//! window is over (plus one window of grace) without any sweeping. The counter key is
//! `<prefix><bucket>|<window>`; a bucket name carries the limit's name and a hash of the
//! key value, never the value itself.
//!
//! Redis being down must never stall or fail traffic: every command has a deadline
//! ([`RedisStore::timeout`]), a failed command drops the connection, and the next command
//! tries a fresh one (at most one connect attempt per command). Until the server is back,
//! checks fail open and charges are lost; when it is back, the next command reconnects.

use super::{AsyncBudgetStore, StoreFuture};
use llm_usage_cost::{Charge, StoreError};
use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands, Client, Script};
use std::time::Duration;
use tokio::sync::Mutex;

const CHARGE_LUA: &str = r"
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('TTL', KEYS[1]) < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return v
";

/// Budget counters on a Redis server (see the module docs).
pub struct RedisStore {
    client: Client,
    conn: Mutex<Option<MultiplexedConnection>>,
    script: Script,
    prefix: String,
    timeout: Duration,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("redis: {e}"))
}

impl RedisStore {
    /// A store on the server at `url` (`redis://127.0.0.1:6379/`). Connects lazily: a
    /// server that is down now is tried again at each command.
    pub fn new(url: &str) -> Result<RedisStore, StoreError> {
        Ok(RedisStore {
            client: Client::open(url).map_err(err)?,
            conn: Mutex::new(None),
            script: Script::new(CHARGE_LUA),
            prefix: "llm_usage:budget:".to_owned(),
            timeout: Duration::from_millis(250),
        })
    }

    /// The key prefix (default `llm_usage:budget:`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> RedisStore {
        self.prefix = prefix.into();
        self
    }

    /// The deadline of one command, connecting included (default 250 ms).
    pub fn timeout(mut self, timeout: Duration) -> RedisStore {
        self.timeout = timeout;
        self
    }

    fn key(&self, bucket: &str, window: u64) -> String {
        format!("{}{bucket}|{window}", self.prefix)
    }

    /// The shared connection, connecting when there is none.
    async fn connection(&self) -> Result<MultiplexedConnection, StoreError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = self
            .client
            .get_multiplexed_async_connection()
            .await
            .map_err(err)?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Runs `op` on the connection within the deadline; any failure drops the connection.
    async fn run<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let attempt = async {
            let conn = self.connection().await?;
            op(conn).await.map_err(err)
        };
        let result = match tokio::time::timeout(self.timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(StoreError(format!(
                "redis: no answer within {:?}",
                self.timeout
            ))),
        };
        if result.is_err() {
            *self.conn.lock().await = None;
        }
        result
    }
}

impl AsyncBudgetStore for RedisStore {
    fn used<'a>(&'a self, bucket: &'a str, window: u64) -> StoreFuture<'a, u64> {
        let key = self.key(bucket, window);
        Box::pin(async move {
            self.run(|mut c| async move {
                let v: Option<u64> = c.get(&key).await?;
                Ok(v.unwrap_or(0))
            })
            .await
        })
    }

    fn charge<'a>(&'a self, charge: &'a Charge) -> StoreFuture<'a, u64> {
        let key = self.key(&charge.bucket, charge.window);
        Box::pin(async move {
            self.run(|mut c| async move {
                self.script
                    .key(&key)
                    .arg(charge.amount)
                    .arg(charge.ttl_s.max(1))
                    .invoke_async(&mut c)
                    .await
            })
            .await
        })
    }
}
