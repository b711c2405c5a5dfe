//! `CacheStore memcached HOST:PORT`: entries in a memcached server that
//! several machines' workers share. An entry is one item (its expiry
//! time is how long the entry is worth keeping; memcached's own LRU is the
//! bound); a fill lock is an item of its own added only when absent
//! (`ms … ME`) with the lock's TTL, and released only while it still holds
//! its token: read with its CAS value, deleted with that CAS (`md … C`),
//! so a lock that timed out and was taken by another is left alone.
//!
//! The client is written here rather than taken from a crate: the cache
//! needs three commands of memcached's meta protocol (`mg`, `ms`, `md`,
//! memcached 1.6 and later), on the worker's own current-thread event
//! loop, with a small pool of connections per worker; that is less code
//! than adapting a general client's runtime and connection model to it.
//!
//! Keys are a hash of the cache key (memcached's keys are at most 250
//! bytes without spaces), after `CacheKeyPrefix`. An item is at most
//! memcached's 1 MiB, and at most the largest entry the cache stores
//! (`CacheMaxEntrySize` and room for the head): a larger entry is not
//! stored (the response is served and passed on, as one over
//! `CacheMaxEntrySize` is). A server that refuses to store an item
//! (`SERVER_ERROR object too large for cache` under a smaller `-I`, or
//! out of memory) has not failed: the entry is not stored, which the
//! worker says once in its log at info, and the tier goes on serving.
//!
//! A value over that bound under an entry's key (another application's,
//! or a server's under a larger `-I`) is not read: the cache wrote no such
//! item, so it is a miss, which the worker says once in its log at warn;
//! its connection is closed, the value unread.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use axkit::plugin::{escape_log, escape_log_bytes, Worker};
use axkit::Level;

use crate::entry::Object;
use crate::storage::{Notice, Storage, StoreFuture, StoreResult};

/// memcached's default item size limit (`-I 1m`), less room for the key
/// and the item's own header.
pub const MAX_ITEM: usize = 1024 * 1024 - 512;

/// The largest value a reply may announce: twice [`MAX_ITEM`], so that a
/// bad reply cannot make a worker allocate more.
pub(crate) const MAX_VALUE: usize = 2 * MAX_ITEM;

/// Connections each worker may open to the server.
const POOL: usize = 16;

/// memcached reads an expiry time over 30 days as a Unix time.
const MAX_TTL_SECS: u64 = 30 * 24 * 3600;

/// The longest reply line read (a header line is a few dozen bytes).
const MAX_LINE: usize = 1024;

/// A connection of the pool.
struct Conn {
    io: BufReader<TcpStream>,
    /// A value was left unread: the connection is out of step with its
    /// replies, and is closed rather than used again.
    unread: bool,
}

pub struct MemcachedStore {
    addr: String,
    prefix: String,
    /// The largest item stored, and read.
    limit: usize,
    idle: RefCell<Vec<Conn>>,
    slots: Rc<Semaphore>,
    /// The server refused to store an entry.
    not_stored: Notice,
    /// A value over `limit` was under an entry's key.
    oversize: Notice,
}

/// A reply's first line, split into its words.
pub(crate) struct Reply(pub(crate) Vec<String>);

impl Reply {
    /// The reply line read (a closed connection's is empty): its words,
    /// or the error it is.
    pub(crate) fn parse(line: &[u8]) -> StoreResult<Reply> {
        let Some(line) = line.strip_suffix(b"\r\n") else {
            return Err("memcached: connection closed or reply line too long".into());
        };
        let text = String::from_utf8_lossy(line).into_owned();
        let reply = Reply(text.split(' ').map(str::to_string).collect());
        if reply.code().ends_with("ERROR") {
            return Err(format!("memcached: {}", axkit::plugin::escape_log(&text)));
        }
        Ok(reply)
    }

    fn code(&self) -> &str {
        self.0.first().map_or("", String::as_str)
    }

    /// The size a `VA <size> …` line announces, whatever it is.
    fn announced(&self) -> Option<usize> {
        self.0.get(1).and_then(|s| s.parse().ok())
    }

    /// The size of the value after a `VA <size> …` line, at most
    /// [`MAX_VALUE`].
    pub(crate) fn value_size(&self) -> StoreResult<usize> {
        self.announced()
            .filter(|&n| n <= MAX_VALUE)
            .ok_or_else(|| "memcached: a value of no or an unlikely size".into())
    }
}

impl MemcachedStore {
    /// The store of `worker`, whose log says when the server refuses an
    /// entry or holds one too large; entries of at most `limit` bytes
    /// encoded (and memcached's own 1 MiB item limit, `MAX_ITEM`).
    pub fn new(addr: &str, prefix: &str, limit: usize, worker: Worker) -> MemcachedStore {
        MemcachedStore {
            addr: addr.to_string(),
            prefix: prefix.to_string(),
            limit: limit.min(MAX_ITEM),
            idle: RefCell::new(Vec::new()),
            slots: Rc::new(Semaphore::new(POOL)),
            not_stored: Notice::new(worker.clone()),
            oversize: Notice::new(worker),
        }
    }

    fn not_stored(&self, line: &[u8]) {
        self.not_stored.say(Level::Info, || {
            let why = escape_log_bytes(line.trim_ascii_end());
            format!("cache: memcached did not store an entry (said once): {why}")
        });
    }

    fn key(&self, tag: &str, key: &[u8]) -> String {
        let digest = Sha256::digest(key);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}{tag}{hex}", self.prefix)
    }

    /// Run `op` on a connection of the pool (a new one when none is
    /// idle); one that failed, or whose call was given up half-way (the
    /// future dropped), is closed instead of going back.
    async fn with<T>(&self, op: impl AsyncFnOnce(&mut Conn) -> StoreResult<T>) -> StoreResult<T> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| "memcached: pool closed".to_string())?;
        let idle = self.idle.borrow_mut().pop();
        let mut conn = match idle {
            Some(c) => c,
            None => {
                let s = TcpStream::connect(&self.addr)
                    .await
                    .map_err(|e| format!("memcached {}: {e}", self.addr))?;
                let _ = s.set_nodelay(true);
                Conn {
                    io: BufReader::new(s),
                    unread: false,
                }
            }
        };
        let result = op(&mut conn).await;
        if result.is_ok() && !conn.unread {
            self.idle.borrow_mut().push(conn);
        }
        result
    }
}

async fn send(conn: &mut Conn, head: &str, data: Option<&[u8]>) -> StoreResult<Reply> {
    Reply::parse(&exchange(conn, head, data).await?)
}

/// Send a command and read its reply line, as it came.
async fn exchange(conn: &mut Conn, head: &str, data: Option<&[u8]>) -> StoreResult<Vec<u8>> {
    let mut out = Vec::with_capacity(head.len() + 4 + data.map_or(0, |d| d.len() + 2));
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(d) = data {
        out.extend_from_slice(d);
        out.extend_from_slice(b"\r\n");
    }
    let io = |e: std::io::Error| format!("memcached: {e}");
    conn.io.get_mut().write_all(&out).await.map_err(io)?;
    let mut line = Vec::new();
    (&mut conn.io)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut line)
        .await
        .map_err(io)?;
    Ok(line)
}

/// The value of `size` bytes after a `VA <size> …` line.
async fn value(conn: &mut Conn, size: usize) -> StoreResult<Vec<u8>> {
    let mut data = vec![0; size + 2];
    conn.io
        .read_exact(&mut data)
        .await
        .map_err(|e| format!("memcached: {e}"))?;
    if !data.ends_with(b"\r\n") {
        return Err("memcached: a value not ended by CRLF".into());
    }
    data.truncate(size);
    Ok(data)
}

fn unexpected<T>(reply: &Reply) -> StoreResult<T> {
    Err(format!(
        "memcached: unexpected reply {:?}",
        axkit::plugin::escape_log(&reply.0.join(" "))
    ))
}

fn ttl(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000).clamp(1, MAX_TTL_SECS as u128) as u64
}

impl Storage for MemcachedStore {
    fn get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Rc<Object>>> {
        let k = self.key("e:", key);
        Box::pin(self.with(async move |c: &mut Conn| {
            let reply = send(c, &format!("mg {k} v"), None).await?;
            match reply.code() {
                "VA" => {
                    if let Some(size) = reply.announced().filter(|&n| n > self.limit) {
                        c.unread = true;
                        self.oversize.say(Level::Warn, || {
                            format!(
                                "cache: memcached holds {size} bytes under {}, over the largest \
                                 entry the cache stores ({} bytes): not read, a miss (said once)",
                                escape_log(&k),
                                self.limit
                            )
                        });
                        return Ok(None);
                    }
                    let value = value(c, reply.value_size()?).await?;
                    Ok(Object::decode(&value).map(Rc::new))
                }
                "EN" => Ok(None),
                _ => unexpected(&reply),
            }
        }))
    }
    fn put<'a>(&'a self, key: &'a [u8], object: Rc<Object>, keep: Duration) -> StoreFuture<'a, ()> {
        let k = self.key("e:", key);
        Box::pin(async move {
            let data = object.encode();
            if data.len() > self.limit {
                return Ok(());
            }
            self.with(async move |c: &mut Conn| {
                let head = format!("ms {k} {} T{}", data.len(), ttl(keep));
                let line = exchange(c, &head, Some(&data)).await?;
                // memcached read the value all the same: the connection
                // is in step.
                if line.starts_with(b"SERVER_ERROR ") && line.ends_with(b"\r\n") {
                    self.not_stored(&line);
                    return Ok(());
                }
                let reply = Reply::parse(&line)?;
                match reply.code() {
                    "HD" | "NS" => Ok(()),
                    _ => unexpected(&reply),
                }
            })
            .await
        })
    }
    fn remove<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, bool> {
        let k = self.key("e:", key);
        Box::pin(self.with(async move |c: &mut Conn| {
            let reply = send(c, &format!("md {k}"), None).await?;
            match reply.code() {
                "HD" => Ok(true),
                "NF" => Ok(false),
                _ => unexpected(&reply),
            }
        }))
    }
    fn lock<'a>(&'a self, key: &'a [u8], token: &'a str, ttl_: Duration) -> StoreFuture<'a, bool> {
        let k = self.key("l:", key);
        Box::pin(self.with(async move |c: &mut Conn| {
            let head = format!("ms {k} {} T{} ME", token.len(), ttl(ttl_));
            let reply = send(c, &head, Some(token.as_bytes())).await?;
            match reply.code() {
                "HD" => Ok(true),
                "NS" => Ok(false),
                _ => unexpected(&reply),
            }
        }))
    }
    fn locked<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, bool> {
        let k = self.key("l:", key);
        Box::pin(self.with(async move |c: &mut Conn| {
            let reply = send(c, &format!("mg {k}"), None).await?;
            match reply.code() {
                "HD" => Ok(true),
                "EN" => Ok(false),
                _ => unexpected(&reply),
            }
        }))
    }
    fn unlock<'a>(&'a self, key: &'a [u8], token: &'a str) -> StoreFuture<'a, ()> {
        let k = self.key("l:", key);
        Box::pin(self.with(async move |c: &mut Conn| {
            let reply = send(c, &format!("mg {k} v c"), None).await?;
            match reply.code() {
                "EN" => return Ok(()),
                "VA" => {}
                _ => return unexpected(&reply),
            }
            let held = value(c, reply.value_size()?).await?;
            let cas = reply.0.iter().find_map(|w| w.strip_prefix('c'));
            if held != token.as_bytes() {
                return Ok(());
            }
            let Some(cas) = cas else {
                return unexpected(&reply);
            };
            let reply = send(c, &format!("md {k} C{cas}"), None).await?;
            match reply.code() {
                "HD" | "EX" | "NF" => Ok(()),
                _ => unexpected(&reply),
            }
        }))
    }
}
