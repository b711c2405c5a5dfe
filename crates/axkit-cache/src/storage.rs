//! Where entries live: the [`Storage`] trait every tier implements, the
//! per-worker [`MemoryStore`] (bounded by `CacheSize`, least recently used
//! out first), the [`SharedStore`] in an `axkit-shared` zone (bounded
//! by the zone's size, with its TTL and LRU eviction, and a fill lock that
//! collapses the misses of every worker), and [`Guarded`], which bounds
//! every call of a tier outside the worker (disk, Redis, memcached) in time
//! and steps around one that failed, and the [`Notice`] such a tier gives
//! its worker's log once. The tiers over the network and on disk are in
//! their own modules; the calls return futures for them.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use axkit::plugin::Worker;
use axkit::Level;
use axkit_shared::{Options, Zone};

use crate::entry::Object;

/// A tier's answer. An `Err` is a broken tier: the cache then carries on
/// as if it had no entry (and stores nothing), never failing the request.
pub type StoreResult<T> = Result<T, String>;
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = StoreResult<T>> + 'a>>;

/// A storage tier.
pub trait Storage {
    fn get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Rc<Object>>>;
    /// Store `object` for at most `keep` (a tier may drop it earlier to
    /// make room).
    fn put<'a>(&'a self, key: &'a [u8], object: Rc<Object>, keep: Duration) -> StoreFuture<'a, ()>;
    /// Whether there was something to remove.
    fn remove<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, bool>;
    /// Take the fill lock of `key` for at most `ttl` with `token`, for a
    /// tier shared by workers: false when another holder has it. A
    /// per-worker tier needs no lock (the worker's own collapsing covers
    /// it) and always says true.
    fn lock<'a>(&'a self, key: &'a [u8], token: &'a str, ttl: Duration) -> StoreFuture<'a, bool>;
    /// Whether the fill lock of `key` is still held by anyone.
    fn locked<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, bool>;
    /// Release the fill lock of `key` if `token` holds it.
    fn unlock<'a>(&'a self, key: &'a [u8], token: &'a str) -> StoreFuture<'a, ()>;
}

/// What a tier says in its worker's log once: something for the operator
/// to see to (a server refusing entries, a value too large under a key),
/// which would otherwise be a line per request.
pub(crate) struct Notice {
    worker: Worker,
    said: Cell<bool>,
}

impl Notice {
    pub(crate) fn new(worker: Worker) -> Notice {
        Notice {
            worker,
            said: Cell::new(false),
        }
    }

    /// `text()` at `level`, unless this notice was given already.
    pub(crate) fn say(&self, level: Level, text: impl FnOnce() -> String) {
        if !self.said.replace(true) {
            self.worker.log(level, &text());
        }
    }
}

/// The per-worker tier: a map bounded by bytes, least recently used out
/// first.
pub struct MemoryStore {
    inner: RefCell<Lru>,
}

struct Lru {
    limit: usize,
    used: usize,
    tick: u64,
    map: HashMap<Vec<u8>, Slot>,
    /// Last use → key, oldest first.
    order: BTreeMap<u64, Vec<u8>>,
}

struct Slot {
    object: Rc<Object>,
    size: usize,
    tick: u64,
    until: Instant,
}

impl MemoryStore {
    pub fn new(limit: usize) -> MemoryStore {
        MemoryStore {
            inner: RefCell::new(Lru {
                limit,
                used: 0,
                tick: 0,
                map: HashMap::new(),
                order: BTreeMap::new(),
            }),
        }
    }

    /// Drop `key` now (a PURGE another worker broadcast).
    pub fn remove_now(&self, key: &[u8]) -> bool {
        self.inner.borrow_mut().remove(key)
    }

    fn get_now(&self, key: &[u8]) -> Option<Rc<Object>> {
        let mut lru = self.inner.borrow_mut();
        let lru = &mut *lru;
        let slot = lru.map.get_mut(key)?;
        if slot.until <= Instant::now() {
            lru.remove(key);
            return None;
        }
        lru.tick += 1;
        lru.order.remove(&slot.tick);
        slot.tick = lru.tick;
        lru.order.insert(lru.tick, key.to_vec());
        Some(slot.object.clone())
    }

    fn put_now(&self, key: &[u8], object: Rc<Object>, keep: Duration) {
        let mut lru = self.inner.borrow_mut();
        let size = object.size() + key.len();
        lru.remove(key);
        if size > lru.limit {
            return;
        }
        while lru.used + size > lru.limit {
            let Some((_, oldest)) = lru.order.pop_first() else {
                break;
            };
            lru.remove(&oldest);
        }
        lru.tick += 1;
        let tick = lru.tick;
        lru.used += size;
        lru.order.insert(tick, key.to_vec());
        lru.map.insert(
            key.to_vec(),
            Slot {
                object,
                size,
                tick,
                until: Instant::now() + keep,
            },
        );
    }
}

impl Lru {
    fn remove(&mut self, key: &[u8]) -> bool {
        match self.map.remove(key) {
            Some(slot) => {
                self.used -= slot.size;
                self.order.remove(&slot.tick);
                true
            }
            None => false,
        }
    }
}

impl Storage for MemoryStore {
    fn get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Rc<Object>>> {
        let found = self.get_now(key);
        Box::pin(async move { Ok(found) })
    }
    fn put<'a>(&'a self, key: &'a [u8], object: Rc<Object>, keep: Duration) -> StoreFuture<'a, ()> {
        self.put_now(key, object, keep);
        Box::pin(async { Ok(()) })
    }
    fn remove<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, bool> {
        let removed = self.remove_now(key);
        Box::pin(async move { Ok(removed) })
    }
    fn lock<'a>(&'a self, _: &'a [u8], _: &'a str, _: Duration) -> StoreFuture<'a, bool> {
        Box::pin(async { Ok(true) })
    }
    fn locked<'a>(&'a self, _: &'a [u8]) -> StoreFuture<'a, bool> {
        Box::pin(async { Ok(false) })
    }
    fn unlock<'a>(&'a self, _: &'a [u8], _: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }
}

/// The tier every worker shares: entries in an `axkit-shared` zone
/// (`SharedZone NAME SIZE`), encoded; the zone's TTL drops them when they
/// are no longer worth keeping and its LRU makes room. Fill locks are
/// entries of their own beside them, with a TTL, so a worker that dies
/// holding one delays the others by at most `CacheLockTimeout`.
pub struct SharedStore {
    zone: Zone,
}

const ENTRY: u8 = b'e';
const LOCK: u8 = b'l';

fn tagged(tag: u8, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(tag);
    k.extend_from_slice(key);
    k
}

impl SharedStore {
    pub fn open(zone: &str) -> Result<SharedStore, String> {
        Zone::open(zone)
            .map(|zone| SharedStore { zone })
            .map_err(|e| e.to_string())
    }
}

fn done<'a, T: 'a>(r: Result<T, axkit_shared::Error>) -> StoreFuture<'a, T> {
    let r = r.map_err(|e| e.to_string());
    Box::pin(async move { r })
}

impl Storage for SharedStore {
    fn get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Rc<Object>>> {
        let found = self.zone.get(tagged(ENTRY, key)).map(|e| {
            e.and_then(|e| e.value.as_bytes().and_then(Object::decode))
                .map(Rc::new)
        });
        done(found)
    }
    fn put<'a>(&'a self, key: &'a [u8], object: Rc<Object>, keep: Duration) -> StoreFuture<'a, ()> {
        let value = object.encode();
        let keep = keep.max(Duration::from_millis(1));
        done(
            self.zone
                .set_with(tagged(ENTRY, key), value, Options::ttl(keep)),
        )
    }
    fn remove<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, bool> {
        done(self.zone.delete(tagged(ENTRY, key)))
    }
    fn lock<'a>(&'a self, key: &'a [u8], token: &'a str, ttl: Duration) -> StoreFuture<'a, bool> {
        let taken = match self.zone.add(tagged(LOCK, key), token, Options::ttl(ttl)) {
            Ok(()) => Ok(true),
            Err(axkit_shared::Error::Exists) => Ok(false),
            Err(e) => Err(e),
        };
        done(taken)
    }
    fn locked<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, bool> {
        done(self.zone.get(tagged(LOCK, key)).map(|e| e.is_some()))
    }
    fn unlock<'a>(&'a self, key: &'a [u8], token: &'a str) -> StoreFuture<'a, ()> {
        let key = tagged(LOCK, key);
        // Only our own lock: one that timed out may be another's now. (A
        // lock expiring between these two calls is left to its TTL.)
        let r = match self.zone.get(&key) {
            Ok(Some(e)) if e.value.as_bytes() == Some(token.as_bytes()) => {
                self.zone.delete(&key).map(|_| ())
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        done(r)
    }
}

/// A tier outside the worker, each call bounded by `CacheBackendTimeout`.
/// Once a call failed or timed out, the tier is left alone for
/// a second (every call fails at once, so a dead backend costs a request
/// nothing): then the next call tries it again, which is how the cache
/// finds a backend that came back.
pub struct Guarded {
    inner: Box<dyn Storage>,
    timeout: Duration,
    down_until: Cell<Option<Instant>>,
}

/// How long a tier that failed is left alone.
const RETRY: Duration = Duration::from_secs(1);

impl Guarded {
    pub fn new(inner: Box<dyn Storage>, timeout: Duration) -> Guarded {
        Guarded {
            inner,
            timeout,
            down_until: Cell::new(None),
        }
    }

    fn call<'a, T: 'a>(&'a self, op: StoreFuture<'a, T>) -> StoreFuture<'a, T> {
        Box::pin(async move {
            if self.down_until.get().is_some_and(|t| Instant::now() < t) {
                return Err("failed a moment ago; trying again shortly".into());
            }
            let result = match tokio::time::timeout(self.timeout, op).await {
                Ok(r) => r,
                Err(_) => Err(format!(
                    "no answer within {:?} (CacheBackendTimeout)",
                    self.timeout
                )),
            };
            if result.is_err() {
                self.down_until.set(Some(Instant::now() + RETRY));
            }
            result
        })
    }
}

impl Storage for Guarded {
    fn get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Rc<Object>>> {
        self.call(self.inner.get(key))
    }
    fn put<'a>(&'a self, key: &'a [u8], object: Rc<Object>, keep: Duration) -> StoreFuture<'a, ()> {
        self.call(self.inner.put(key, object, keep))
    }
    fn remove<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, bool> {
        self.call(self.inner.remove(key))
    }
    fn lock<'a>(&'a self, key: &'a [u8], token: &'a str, ttl: Duration) -> StoreFuture<'a, bool> {
        self.call(self.inner.lock(key, token, ttl))
    }
    fn locked<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, bool> {
        self.call(self.inner.locked(key))
    }
    fn unlock<'a>(&'a self, key: &'a [u8], token: &'a str) -> StoreFuture<'a, ()> {
        self.call(self.inner.unlock(key, token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Object;

    #[test]
    fn memory_store_evicts_least_recently_used() {
        let store = MemoryStore::new(1000);
        let obj = || {
            Rc::new(Object::Variants {
                generation: 0,
                names: vec!["x".repeat(200)],
            })
        };
        let keep = Duration::from_secs(60);
        store.put_now(b"a", obj(), keep);
        store.put_now(b"b", obj(), keep);
        store.put_now(b"c", obj(), keep);
        assert!(store.get_now(b"a").is_some()); // a is now the newest
        store.put_now(b"d", obj(), keep);
        assert!(store.get_now(b"b").is_none());
        assert!(store.get_now(b"a").is_some());
        assert!(store.get_now(b"d").is_some());
        store.put_now(
            b"e",
            Rc::new(Object::Variants {
                generation: 0,
                names: vec!["x".repeat(2000)],
            }),
            keep,
        );
        assert!(store.get_now(b"e").is_none(), "larger than the whole tier");
        store.put_now(b"f", obj(), Duration::ZERO);
        assert!(store.get_now(b"f").is_none(), "expired");
        let lru = store.inner.borrow();
        assert_eq!(lru.used, lru.map.values().map(|s| s.size).sum::<usize>());
        assert_eq!(lru.order.len(), lru.map.len());
    }
}
