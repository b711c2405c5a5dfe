//! `CacheStore redis URL`: entries in a Redis server that several
//! machines' workers share, through `axkit-db`'s Redis handle (its pool
//! reconnects on its own once a restarted server is back). An entry is one
//! value under `PREFIX e:KEY`, set with `SET … PX` so that Redis drops it
//! when it is no longer worth keeping (`maxmemory` with an LRU policy is
//! the server's bound); a fill lock is `PREFIX l:KEY`, taken with
//! `SET … NX PX` and a token, and released by a script that deletes it
//! only while it still holds that token (one that timed out may be
//! another's by then).
//!
//! An entry is at most the largest the cache stores (`CacheMaxEntrySize`
//! and room for its head): a larger one is not written, and an entry is
//! read with `GETRANGE` up to one byte past that, so a larger value under
//! its key (another application's, a corrupted one) costs the worker no
//! more than that: it is a miss, which the worker says once in its log.
//! The client's `max_result=` bounds every other reply the same way.

use std::rc::Rc;
use std::time::Duration;

use axkit::plugin::{escape_log_bytes, Worker};
use axkit::Level;
use axkit_db::redis::{cmd, Value};
use axkit_db::Redis;

use crate::entry::Object;
use crate::storage::{Notice, Storage, StoreFuture};

/// How many connections each worker may open to the server: the cache
/// looks up every GET and HEAD, so it needs more than an application's
/// few.
const POOL: usize = 16;

/// Room in a reply for its framing (`$LEN\r\n…\r\n`) beyond the value.
const FRAMING: usize = 64;

pub struct RedisStore {
    redis: Redis,
    prefix: Vec<u8>,
    /// The largest entry written, and read.
    limit: usize,
    /// A value over `limit` was under an entry's key.
    oversize: Notice,
}

const UNLOCK: &str = r#"
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0
"#;

impl RedisStore {
    /// The store for `url` (checked when the config loaded), keys starting
    /// with `prefix`, each call bounded by `timeout`, entries of at most
    /// `limit` bytes encoded; `worker`'s log says when a value is larger.
    pub fn open(
        url: &str,
        prefix: &str,
        timeout: Duration,
        limit: usize,
        worker: Worker,
    ) -> Result<RedisStore, String> {
        let spec = axkit_db::Spec::redis("cache", url, POOL, timeout)?
            .with_max_result(limit.saturating_add(1 + FRAMING));
        Ok(RedisStore {
            redis: Redis::open(spec)?,
            prefix: prefix.as_bytes().to_vec(),
            limit,
            oversize: Notice::new(worker),
        })
    }

    fn key(&self, tag: &[u8], key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + tag.len() + key.len());
        k.extend_from_slice(&self.prefix);
        k.extend_from_slice(tag);
        k.extend_from_slice(key);
        k
    }
}

fn ms(d: Duration) -> u64 {
    (d.as_millis() as u64).max(1)
}

impl Storage for RedisStore {
    fn get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Rc<Object>>> {
        Box::pin(async move {
            let k = self.key(b"e:", key);
            // A missing key reads as empty, which is no entry either.
            let found: Vec<u8> = self
                .redis
                .query(cmd("GETRANGE").arg(&k).arg(0).arg(self.limit))
                .await
                .map_err(|e| e.to_string())?;
            if found.len() > self.limit {
                self.oversize.say(Level::Warn, || {
                    format!(
                        "cache: redis holds more than {} bytes (the largest entry the cache \
                         stores) under {}: not read, a miss (said once)",
                        self.limit,
                        escape_log_bytes(&k)
                    )
                });
                return Ok(None);
            }
            Ok(Object::decode(&found).map(Rc::new))
        })
    }
    fn put<'a>(&'a self, key: &'a [u8], object: Rc<Object>, keep: Duration) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let data = object.encode();
            if data.len() > self.limit {
                return Ok(());
            }
            let set = cmd("SET")
                .arg(self.key(b"e:", key))
                .arg(data)
                .arg("PX")
                .arg(ms(keep))
                .clone();
            self.redis.cmd(&set).await.map_err(|e| e.to_string())?;
            Ok(())
        })
    }
    fn remove<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let n: i64 = self
                .redis
                .query(cmd("DEL").arg(self.key(b"e:", key)))
                .await
                .map_err(|e| e.to_string())?;
            Ok(n > 0)
        })
    }
    fn lock<'a>(&'a self, key: &'a [u8], token: &'a str, ttl: Duration) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let set = cmd("SET")
                .arg(self.key(b"l:", key))
                .arg(token)
                .arg("NX")
                .arg("PX")
                .arg(ms(ttl))
                .clone();
            let reply = self.redis.cmd(&set).await.map_err(|e| e.to_string())?;
            Ok(!matches!(reply, Value::Nil))
        })
    }
    fn locked<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let n: i64 = self
                .redis
                .query(cmd("EXISTS").arg(self.key(b"l:", key)))
                .await
                .map_err(|e| e.to_string())?;
            Ok(n > 0)
        })
    }
    fn unlock<'a>(&'a self, key: &'a [u8], token: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            // EVAL each time: a lock is released once per fill, and a
            // restarted server would not know an EVALSHA's script.
            let eval = cmd("EVAL")
                .arg(UNLOCK)
                .arg(1)
                .arg(self.key(b"l:", key))
                .arg(token)
                .clone();
            self.redis.cmd(&eval).await.map_err(|e| e.to_string())?;
            Ok(())
        })
    }
}
