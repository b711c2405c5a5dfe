//! A zone: a dictionary in a region of shared memory, used by every worker
//! process at once (OpenResty's `lua_shared_dict`, with typed values,
//! compare-and-swap and an undo journal).
//!
//! Everything lives in the region, found by offsets: the header (counters,
//! the lock, the journal, the allocator's lists), a hash table of `u32`
//! chain heads, and the arena, where each entry is one block holding its
//! header, its value, then its key:
//!
//! ```text
//! block: size prev state | hash-next | lru-prev lru-next | hash key-len value-len kind flags
//!        | expires (monotonic ns, 0: never) | version | value | key
//! ```
//!
//! Keys are hashed with SipHash-1-3 under a random key chosen when the zone
//! is made, so a client cannot choose keys that pile up in one chain. A
//! doubly linked LRU list runs through the entries, most recent first: a
//! read or write moves its entry to the front, and when the arena has no
//! block for a new entry the least recently used are evicted (counted),
//! at most [`MAX_EVICT`] per operation, then the operation fails with
//! [`Error::NoMemory`]. Expired entries go when they are next looked up,
//! when they reach the LRU's tail (each write looks at two), or when the
//! arena needs their room (counted as expired, not evicted).
//!
//! Every operation takes the zone's lock (`lock.rs`) once, after reading
//! the clock and hashing the key, and does a bounded amount of work under
//! it: no syscall, no allocation (tables are encoded before and decoded
//! after), a hash-chain walk, constant-time allocation, and at most
//! [`MAX_EVICT`] evictions. Each mutation is journaled (`mem.rs`), so one
//! abandoned by a worker that died leaves nothing half-done: the next
//! process to take the lock rolls it back.

use std::hash::Hasher;
use std::time::Duration;

use axkit::plugin::{SharedMemory, SharedMemorySpec};
use siphasher::sip::SipHasher13;

use crate::alloc::{self, off, Heap, UNIT};
use crate::lock::{Lock, Taken, LOCK_SIZE};
use crate::mem::{JournalAt, Mem, Tx};
use crate::value::{Kind, Number, Stored, TooDeep, Value};
use crate::Error;

/// "AXZONE01": the format. Changing the layout changes the number.
const MAGIC: u64 = u64::from_le_bytes(*b"AXZONE01");

/// The smallest zone (header, hash table and a useful arena).
pub const MIN_SIZE: usize = 64 << 10;

/// The longest key.
pub const MAX_KEY: usize = 65_535;

/// Evictions one operation may make to find room before it gives up.
pub const MAX_EVICT: usize = 64;

/// Expired entries at the LRU's tail a write reclaims in passing.
const EXPIRE_IN_PASSING: usize = 2;

const JOURNAL_CAP: usize = 512;

// Header fields (bytes).
const H_MAGIC: usize = 0;
const H_SIZE: usize = 8;
const H_SEED0: usize = 16;
const H_SEED1: usize = 24;
const H_BUCKETS: usize = 32;
const H_MASK: usize = 40;
const H_ARENA_START: usize = 48;
const H_ARENA_END: usize = 56;
const H_VERSION: usize = 64;
const H_ENTRIES: usize = 72;
const H_USED: usize = 80;
const H_EVICTIONS: usize = 88;
const H_EXPIRED: usize = 96;
const H_RECOVERIES: usize = 104;
const H_LRU_HEAD: usize = 112;
const H_LRU_TAIL: usize = 116;
const H_LOCK: usize = 128;
const H_JOURNAL_LEN: usize = H_LOCK + LOCK_SIZE;
const H_JOURNAL: usize = H_JOURNAL_LEN + 8;
const H_ALLOC: usize = (H_JOURNAL + JOURNAL_CAP * 16).next_multiple_of(16);
const HEADER_END: usize = H_ALLOC + alloc::HEADER_SIZE;

// Entry fields (bytes from the block's start; 0..12 is the block header).
const E_HASH_NEXT: usize = 12;
const E_LRU_PREV: usize = 16;
const E_LRU_NEXT: usize = 20;
const E_HASH: usize = 24;
const E_KEY_LEN: usize = 28;
const E_VALUE_LEN: usize = 32;
const E_KIND: usize = 36;
const E_FLAGS: usize = 40;
const E_EXPIRES: usize = 48;
const E_VERSION: usize = 56;
const E_DATA: usize = 64;

/// The region name of zone `name`.
pub(crate) fn region_name(name: &str) -> String {
    format!("shared.zone:{name}")
}

/// A zone's counters ([`Zone::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// The region's size in bytes.
    pub size: u64,
    /// Bytes the arena holds entries in (the region less its header and
    /// hash table).
    pub capacity: u64,
    /// Bytes taken by entries (headers, values, keys, rounding).
    pub used: u64,
    pub entries: u64,
    /// Live entries evicted to make room, since the zone was made.
    pub evictions: u64,
    /// Entries dropped because their time was up.
    pub expired: u64,
    /// Times a process found the lock's owner dead and rolled back what
    /// it had left unfinished.
    pub recoveries: u64,
}

/// An entry read from a zone.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub value: Value,
    /// The caller's flags, stored with the value (0 unless set).
    pub flags: u32,
    /// Time left before it expires; None: it does not.
    pub ttl: Option<Duration>,
    /// Changes on every write of the entry (and only then): for
    /// [`Zone::cas_version`].
    pub version: u64,
}

/// How a value is written: its time to live and flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// None (or zero): it does not expire.
    pub ttl: Option<Duration>,
    /// Returned with the value by [`Zone::get`].
    pub flags: u32,
}

impl Options {
    /// Expire after `ttl`.
    pub fn ttl(ttl: Duration) -> Options {
        Options {
            ttl: Some(ttl),
            flags: 0,
        }
    }
}

/// The condition a write is made on.
enum Mode<'a> {
    Set,
    Add,
    Replace,
    Cas(&'a Value),
    CasVersion(u64),
}

/// A handle on a zone mapped in this process: cheap to copy, usable from
/// any thread.
#[derive(Clone, Copy)]
pub struct Zone {
    mem: Mem,
    lock: Lock,
    seeds: (u64, u64),
    buckets: usize,
    mask: u64,
    arena: (u32, u32),
}

impl std::fmt::Debug for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Zone")
            .field("size", &self.mem.len())
            .finish()
    }
}

/// The monotonic clock in nanoseconds: the same in every process on the
/// machine (read through the vDSO, no syscall).
fn now() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the struct it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Whether `i` and `f` are the same number, exactly, as Lua compares
/// them: through a float, 2^53 + 1 would equal 2^53.
fn int_equals_float(i: i64, f: f64) -> bool {
    // -2^63 ..= 2^63 exclusive at the top: the floats an i64 can be.
    const TOP: f64 = 9_223_372_036_854_775_808.0;
    f.fract() == 0.0 && (-TOP..TOP).contains(&f) && f as i64 == i
}

fn expires_at(now: u64, ttl: Option<Duration>) -> u64 {
    match ttl {
        Some(d) if !d.is_zero() => now
            .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .max(1),
        _ => 0,
    }
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom writes at most the 8 bytes it is given.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), 8, 0) };
    if n == 8 {
        u64::from_ne_bytes(b)
    } else {
        // No entropy source: still a per-zone key, if a guessable one.
        now() ^ u64::from(std::process::id()).rotate_left(32)
    }
}

fn check_key(key: &[u8]) -> Result<(), Error> {
    match key.len() {
        0 => Err(Error::EmptyKey),
        n if n > MAX_KEY => Err(Error::KeyTooLong),
        _ => Ok(()),
    }
}

impl Zone {
    /// The zone declared as `SharedZone NAME SIZE` (or the default one,
    /// `default`), in a server process.
    pub fn open(name: &str) -> Result<Zone, Error> {
        let region =
            SharedMemory::get(&region_name(name)).ok_or_else(|| Error::NoZone(name.to_string()))?;
        Zone::attach(region)
    }

    /// The default zone, `default` ([`crate::DEFAULT_ZONE`]).
    pub fn default_zone() -> Result<Zone, Error> {
        Zone::open(crate::DEFAULT_ZONE)
    }

    /// What the master creates for a zone of `size` bytes (for a source
    /// other than this crate's, or a test that shares a zone with
    /// processes it starts: [`SharedMemory::create`], then
    /// [`SharedMemory::map`] and [`Zone::attach`]).
    pub fn spec(name: &str, size: usize) -> SharedMemorySpec {
        SharedMemorySpec {
            name: region_name(name),
            size: size.max(MIN_SIZE),
            init: Zone::format,
        }
    }

    /// A zone in `region`, which [`Zone::format`] formatted.
    pub fn attach(region: SharedMemory) -> Result<Zone, Error> {
        // SAFETY: a region is mapped for the life of the process.
        let mem = unsafe { Mem::new(region.as_ptr(), region.len()) };
        if region.len() < MIN_SIZE
            || mem.r64(H_MAGIC) != MAGIC
            || mem.r64(H_SIZE) != region.len() as u64
        {
            return Err(Error::NotAZone);
        }
        // SAFETY: the header's lock was formatted with the zone.
        let lock = unsafe { Lock::at(region.as_ptr().add(H_LOCK)) };
        Ok(Zone {
            mem,
            lock,
            seeds: (mem.r64(H_SEED0), mem.r64(H_SEED1)),
            buckets: mem.r64(H_BUCKETS) as usize,
            mask: mem.r64(H_MASK),
            arena: (mem.r64(H_ARENA_START) as u32, mem.r64(H_ARENA_END) as u32),
        })
    }

    /// Format a fresh, zero-filled region as an empty zone (the
    /// [`SharedMemorySpec::init`] of a zone). A region smaller than
    /// [`MIN_SIZE`] is left alone, and [`Zone::attach`] refuses it.
    pub fn format(region: &mut [u8]) {
        let len = region.len();
        if len < MIN_SIZE || len > (u32::MAX as usize) * UNIT {
            return;
        }
        // SAFETY: the slice is the whole region, ours alone while formatted.
        let mem = unsafe { Mem::new(region.as_mut_ptr(), len) };
        // One chain head per 256 bytes: a load factor under one for
        // entries of a few dozen bytes, 1.6% of the zone.
        let buckets = (len / 256).next_power_of_two() / 2;
        let table = HEADER_END.next_multiple_of(64);
        let start = (table + buckets * 4).div_ceil(UNIT);
        let end = len / UNIT;
        mem.w64_raw(H_SIZE, len as u64);
        mem.w64_raw(H_SEED0, random_u64());
        mem.w64_raw(H_SEED1, random_u64());
        mem.w64_raw(H_BUCKETS, table as u64);
        mem.w64_raw(H_MASK, buckets as u64 - 1);
        mem.w64_raw(H_ARENA_START, start as u64);
        mem.w64_raw(H_ARENA_END, end as u64);
        // SAFETY: LOCK_SIZE bytes at an 8-aligned offset of the region.
        unsafe { Lock::init(region.as_mut_ptr().add(H_LOCK)) };
        let tx = Tx::new(mem, journal());
        Heap::new(tx, H_ALLOC, start as u32, end as u32).format();
        mem.w64_raw(H_MAGIC, MAGIC);
    }

    fn hash(&self, key: &[u8]) -> u64 {
        let mut h = SipHasher13::new_with_keys(self.seeds.0, self.seeds.1);
        h.write(key);
        h.finish()
    }

    /// Run `f` under the lock, repairing first what a dead owner left.
    fn locked<T>(&self, f: impl FnOnce(&Dict) -> Result<T, Error>) -> Result<T, Error> {
        let now = now();
        let taken = self.lock.lock().map_err(|()| Error::Broken)?;
        let guard = Guard(self);
        let tx = Tx::new(self.mem, journal());
        if taken == Taken::OwnerDied {
            tx.rollback();
            self.mem
                .w64_raw(H_RECOVERIES, self.mem.r64(H_RECOVERIES) + 1);
            self.lock.consistent();
        }
        let dict = Dict {
            z: self,
            tx,
            heap: Heap::new(tx, H_ALLOC, self.arena.0, self.arena.1),
            now,
        };
        let result = f(&dict);
        drop(guard);
        result
    }

    /// The entry of `key`, if there is one that has not expired. Counts as
    /// a use for the LRU.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Entry>, Error> {
        let key = key.as_ref();
        check_key(key)?;
        let h = self.hash(key);
        // The value is copied into memory allocated before the lock is
        // taken: a value larger than the guess costs a second look, with
        // room for it.
        let mut data = Vec::with_capacity(GET_GUESS);
        loop {
            let got = self.locked(|d| {
                let Some((_, e)) = d.lookup(key, h) else {
                    return Ok(None);
                };
                let len = d.tx.mem.r32(off(e) + E_VALUE_LEN) as usize;
                if len > data.capacity() {
                    return Ok(Some(Err(len)));
                }
                d.touch(e);
                d.tx.commit();
                Ok(Some(Ok(d.raw(e, &mut data))))
            })?;
            match got {
                None => return Ok(None),
                Some(Ok(raw)) => return raw.entry(data).map(Some),
                Some(Err(len)) => data.reserve_exact(len),
            }
        }
    }

    /// Store `value` under `key`, replacing what was there; no expiry.
    pub fn set(&self, key: impl AsRef<[u8]>, value: impl Into<Value>) -> Result<(), Error> {
        self.store(Mode::Set, key.as_ref(), &value.into(), Options::default())
    }

    /// [`set`](Zone::set) with a time to live and flags.
    pub fn set_with(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<Value>,
        options: Options,
    ) -> Result<(), Error> {
        self.store(Mode::Set, key.as_ref(), &value.into(), options)
    }

    /// Store only if `key` has no (unexpired) value: else
    /// [`Error::Exists`].
    pub fn add(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<Value>,
        options: Options,
    ) -> Result<(), Error> {
        self.store(Mode::Add, key.as_ref(), &value.into(), options)
    }

    /// Store only if `key` has a value: else [`Error::NotFound`].
    pub fn replace(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<Value>,
        options: Options,
    ) -> Result<(), Error> {
        self.store(Mode::Replace, key.as_ref(), &value.into(), options)
    }

    /// Store only if the value of `key` is `expected` (numbers compare as
    /// numbers, `1 == 1.0`; a table compares by its encoding, so prefer
    /// [`cas_version`](Zone::cas_version) for tables): else
    /// [`Error::Changed`], or [`Error::NotFound`].
    pub fn cas(
        &self,
        key: impl AsRef<[u8]>,
        expected: &Value,
        value: impl Into<Value>,
        options: Options,
    ) -> Result<(), Error> {
        self.store(Mode::Cas(expected), key.as_ref(), &value.into(), options)
    }

    /// Store only if the entry of `key` still has `version` (from
    /// [`get`](Zone::get)): else [`Error::Changed`], or
    /// [`Error::NotFound`].
    pub fn cas_version(
        &self,
        key: impl AsRef<[u8]>,
        version: u64,
        value: impl Into<Value>,
        options: Options,
    ) -> Result<(), Error> {
        self.store(
            Mode::CasVersion(version),
            key.as_ref(),
            &value.into(),
            options,
        )
    }

    fn store(&self, mode: Mode, key: &[u8], value: &Value, options: Options) -> Result<(), Error> {
        check_key(key)?;
        let stored = value.stored().map_err(|TooDeep| Error::TooDeep)?;
        // An entry records its value's length in 32 bits; a zone may be
        // larger than that.
        if u32::try_from(stored.len()).is_err() {
            return Err(Error::TooBig);
        }
        let expected = match mode {
            Mode::Cas(v) => Some(v.stored().map_err(|TooDeep| Error::TooDeep)?),
            _ => None,
        };
        let h = self.hash(key);
        self.locked(|d| {
            d.expire_tail();
            let found = d.lookup(key, h);
            match (&mode, found) {
                (Mode::Add, Some(_)) => return Err(Error::Exists),
                (Mode::Replace | Mode::Cas(_) | Mode::CasVersion(_), None) => {
                    return Err(Error::NotFound)
                }
                (Mode::Cas(_), Some((_, e)))
                    if !d.equals(e, expected.as_ref().expect("cas has a value")) =>
                {
                    return Err(Error::Changed)
                }
                (Mode::CasVersion(v), Some((_, e))) if d.tx.mem.r64(off(e) + E_VERSION) != *v => {
                    return Err(Error::Changed)
                }
                _ => {}
            }
            let expires = expires_at(d.now, options.ttl);
            if let (Some((_, e)), Stored::Scalar(kind, bits)) = (found, &stored) {
                if d.kind(e).is_some_and(Kind::is_scalar) {
                    d.update_scalar(e, *kind, *bits, Some((expires, options.flags)));
                    d.tx.commit();
                    return Ok(());
                }
            }
            d.insert(
                key,
                h,
                &stored,
                (expires, options.flags),
                found.map(|f| f.1),
            )
        })
    }

    /// Add `by` to the number under `key` and return the result, at once
    /// for every process: no increment is ever lost. Integers stay
    /// integers (an overflow is [`Error::Overflow`]); adding a float makes
    /// a float. A missing key is [`Error::NotFound`] (see
    /// [`incr_init`](Zone::incr_init)); a value that is not a number,
    /// [`Error::NotANumber`]. Keeps the entry's expiry.
    pub fn incr(&self, key: impl AsRef<[u8]>, by: impl Into<Number>) -> Result<Number, Error> {
        self.increment(key.as_ref(), by.into(), None)
    }

    /// [`incr`](Zone::incr), but a missing key starts at `init` (then
    /// expiring after `init_ttl`), as OpenResty's `incr(key, n, init)`.
    pub fn incr_init(
        &self,
        key: impl AsRef<[u8]>,
        by: impl Into<Number>,
        init: impl Into<Number>,
        init_ttl: Option<Duration>,
    ) -> Result<Number, Error> {
        self.increment(key.as_ref(), by.into(), Some((init.into(), init_ttl)))
    }

    fn increment(
        &self,
        key: &[u8],
        by: Number,
        init: Option<(Number, Option<Duration>)>,
    ) -> Result<Number, Error> {
        check_key(key)?;
        let h = self.hash(key);
        self.locked(|d| {
            d.expire_tail();
            match d.lookup(key, h) {
                None => {
                    let (start, ttl) = init.ok_or(Error::NotFound)?;
                    let n = start.checked_add(by).ok_or(Error::Overflow)?;
                    let value = Value::from(n);
                    let stored = value.stored().map_err(|TooDeep| Error::TooDeep)?;
                    let expires = expires_at(d.now, ttl);
                    d.insert(key, h, &stored, (expires, 0), None)?;
                    Ok(n)
                }
                Some((_, e)) => {
                    let bits = d.tx.mem.r64(off(e) + E_DATA);
                    let current = match d.kind(e) {
                        Some(Kind::Int) => Number::Int(bits as i64),
                        Some(Kind::Float) => Number::Float(f64::from_bits(bits)),
                        _ => return Err(Error::NotANumber),
                    };
                    let n = current.checked_add(by).ok_or(Error::Overflow)?;
                    let (kind, bits) = match n {
                        Number::Int(i) => (Kind::Int, i as u64),
                        Number::Float(f) => (Kind::Float, f.to_bits()),
                    };
                    d.update_scalar(e, kind, bits, None);
                    d.tx.commit();
                    Ok(n)
                }
            }
        })
    }

    /// Remove `key`; whether it had a value.
    pub fn delete(&self, key: impl AsRef<[u8]>) -> Result<bool, Error> {
        let key = key.as_ref();
        check_key(key)?;
        let h = self.hash(key);
        self.locked(|d| {
            let Some((link, e)) = d.lookup(key, h) else {
                return Ok(false);
            };
            d.remove(link, e);
            d.tx.commit();
            Ok(true)
        })
    }

    /// Time left before `key` expires: None if it does not expire,
    /// [`Error::NotFound`] if it has no value.
    pub fn ttl(&self, key: impl AsRef<[u8]>) -> Result<Option<Duration>, Error> {
        let key = key.as_ref();
        check_key(key)?;
        let h = self.hash(key);
        self.locked(|d| {
            let (_, e) = d.lookup(key, h).ok_or(Error::NotFound)?;
            d.tx.commit();
            Ok(d.ttl(e))
        })
    }

    /// Set when `key` expires (None: never), keeping its value and version.
    pub fn expire(&self, key: impl AsRef<[u8]>, ttl: Option<Duration>) -> Result<(), Error> {
        let key = key.as_ref();
        check_key(key)?;
        let h = self.hash(key);
        self.locked(|d| {
            let (_, e) = d.lookup(key, h).ok_or(Error::NotFound)?;
            d.tx.w64(off(e) + E_EXPIRES, expires_at(d.now, ttl));
            d.tx.commit();
            Ok(())
        })
    }

    /// The most bytes a value (encoded as it is stored, a table's as
    /// [`Value::to_bytes`] makes it) and its key can take together in this
    /// zone: a bigger one is [`Error::TooBig`] however empty the zone is.
    pub fn max_value(&self) -> usize {
        (self.arena.1 - self.arena.0) as usize * UNIT - E_DATA
    }

    /// The zone's counters.
    pub fn stats(&self) -> Result<Stats, Error> {
        self.locked(|d| {
            let m = d.tx.mem;
            Ok(Stats {
                size: m.r64(H_SIZE),
                capacity: (d.heap.capacity() as u64) * UNIT as u64,
                used: m.r64(H_USED),
                entries: m.r64(H_ENTRIES),
                evictions: m.r64(H_EVICTIONS),
                expired: m.r64(H_EXPIRED),
                recoveries: m.r64(H_RECOVERIES),
            })
        })
    }
}

fn journal() -> JournalAt {
    JournalAt {
        len_off: H_JOURNAL_LEN,
        entries_off: H_JOURNAL,
        capacity: JOURNAL_CAP,
    }
}

/// Holds a zone's lock; on the way out (also when a panic unwinds) it
/// rolls back a mutation left unfinished, then unlocks.
struct Guard<'a>(&'a Zone);

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let tx = Tx::new(self.0.mem, journal());
        if tx.pending() {
            tx.rollback();
        }
        self.0.lock.unlock();
    }
}

/// What `get` reserves for a value before it knows its size.
const GET_GUESS: usize = 128;

/// An entry as read under the lock, its value's bytes copied beside it;
/// decoded after.
struct Raw {
    kind: Option<Kind>,
    flags: u32,
    ttl: Option<Duration>,
    version: u64,
}

impl Raw {
    fn entry(self, data: Vec<u8>) -> Result<Entry, Error> {
        let value = self
            .kind
            .and_then(|k| Value::load(k, data))
            .ok_or(Error::Corrupt)?;
        Ok(Entry {
            value,
            flags: self.flags,
            ttl: self.ttl,
            version: self.version,
        })
    }
}

/// A zone while its lock is held: the hash table, the LRU list and the
/// entries, over one operation.
struct Dict<'a> {
    z: &'a Zone,
    tx: Tx,
    heap: Heap,
    now: u64,
}

impl Dict<'_> {
    fn bucket(&self, h: u32) -> usize {
        self.z.buckets + ((u64::from(h) & self.z.mask) as usize) * 4
    }

    fn kind(&self, e: u32) -> Option<Kind> {
        Kind::from_u32(self.tx.mem.r32(off(e) + E_KIND))
    }

    /// Where the link to the entry of `key` is, and the entry.
    fn find(&self, key: &[u8], h: u64) -> Option<(usize, u32)> {
        let m = self.tx.mem;
        let mut link = self.bucket(h as u32);
        let mut e = m.r32(link);
        let mut steps = m.r64(H_ENTRIES);
        while e != 0 {
            let b = off(e);
            if m.r32(b + E_HASH) == h as u32 && m.r32(b + E_KEY_LEN) as usize == key.len() {
                let at = b + E_DATA + m.r32(b + E_VALUE_LEN) as usize;
                if m.eq_bytes(at, key) {
                    return Some((link, e));
                }
            }
            steps = steps.checked_sub(1).expect("shared zone: hash chain loops");
            link = b + E_HASH_NEXT;
            e = m.r32(link);
        }
        None
    }

    /// The link to entry `e` in its chain.
    fn link_of(&self, e: u32) -> usize {
        let m = self.tx.mem;
        let mut link = self.bucket(m.r32(off(e) + E_HASH));
        let mut steps = m.r64(H_ENTRIES);
        loop {
            let at = m.r32(link);
            assert!(at != 0, "shared zone: entry missing from its chain");
            if at == e {
                return link;
            }
            steps = steps.checked_sub(1).expect("shared zone: hash chain loops");
            link = off(at) + E_HASH_NEXT;
        }
    }

    fn expired(&self, e: u32) -> bool {
        let exp = self.tx.mem.r64(off(e) + E_EXPIRES);
        exp != 0 && exp <= self.now
    }

    fn ttl(&self, e: u32) -> Option<Duration> {
        match self.tx.mem.r64(off(e) + E_EXPIRES) {
            0 => None,
            exp => Some(Duration::from_nanos(exp.saturating_sub(self.now))),
        }
    }

    /// The live entry of `key`; an expired one is removed on the way (its
    /// own committed step).
    fn lookup(&self, key: &[u8], h: u64) -> Option<(usize, u32)> {
        let (link, e) = self.find(key, h)?;
        if self.expired(e) {
            self.remove(link, e);
            self.count(H_EXPIRED);
            self.tx.commit();
            return None;
        }
        Some((link, e))
    }

    fn count(&self, field: usize) {
        self.tx.w64(field, self.tx.mem.r64(field) + 1);
    }

    fn next_version(&self) -> u64 {
        let v = self.tx.mem.r64(H_VERSION) + 1;
        self.tx.w64(H_VERSION, v);
        v
    }

    fn lru_unlink(&self, e: u32) {
        let (tx, m) = (self.tx, self.tx.mem);
        let prev = m.r32(off(e) + E_LRU_PREV);
        let next = m.r32(off(e) + E_LRU_NEXT);
        match prev {
            0 => tx.w32(H_LRU_HEAD, next),
            p => tx.w32(off(p) + E_LRU_NEXT, next),
        }
        match next {
            0 => tx.w32(H_LRU_TAIL, prev),
            n => tx.w32(off(n) + E_LRU_PREV, prev),
        }
    }

    fn lru_push_front(&self, e: u32) {
        let (tx, m) = (self.tx, self.tx.mem);
        let head = m.r32(H_LRU_HEAD);
        tx.w32(off(e) + E_LRU_PREV, 0);
        tx.w32(off(e) + E_LRU_NEXT, head);
        match head {
            0 => tx.w32(H_LRU_TAIL, e),
            h => tx.w32(off(h) + E_LRU_PREV, e),
        }
        tx.w32(H_LRU_HEAD, e);
    }

    /// `e` was used: to the front of the LRU.
    fn touch(&self, e: u32) {
        if self.tx.mem.r32(H_LRU_HEAD) != e {
            self.lru_unlink(e);
            self.lru_push_front(e);
        }
    }

    /// Unlink entry `e` (whose chain link is at `link`) and free its block.
    fn remove(&self, link: usize, e: u32) {
        let (tx, m) = (self.tx, self.tx.mem);
        tx.w32(link, m.r32(off(e) + E_HASH_NEXT));
        self.lru_unlink(e);
        tx.w64(H_ENTRIES, m.r64(H_ENTRIES) - 1);
        tx.w64(
            H_USED,
            m.r64(H_USED) - (self.heap.size(e) as u64) * UNIT as u64,
        );
        self.heap.free(e);
    }

    /// Reclaim the expired entries at the LRU's tail, a few.
    fn expire_tail(&self) {
        for _ in 0..EXPIRE_IN_PASSING {
            let tail = self.tx.mem.r32(H_LRU_TAIL);
            if tail == 0 || !self.expired(tail) {
                return;
            }
            self.remove(self.link_of(tail), tail);
            self.count(H_EXPIRED);
            self.tx.commit();
        }
    }

    /// Whether the value of `e` is `expected`.
    fn equals(&self, e: u32, expected: &Stored) -> bool {
        let m = self.tx.mem;
        let b = off(e);
        let Some(kind) = self.kind(e) else {
            return false;
        };
        match expected {
            Stored::Scalar(k, bits) if kind.is_scalar() => {
                let mine = m.r64(b + E_DATA);
                let number = |k: Kind, bits: u64| match k {
                    Kind::Int => Some(Number::Int(bits as i64)),
                    Kind::Float => Some(Number::Float(f64::from_bits(bits))),
                    _ => None,
                };
                match (number(kind, mine), number(*k, *bits)) {
                    (Some(Number::Int(a)), Some(Number::Int(b))) => a == b,
                    (Some(Number::Float(a)), Some(Number::Float(b))) => a == b,
                    (Some(Number::Int(i)), Some(Number::Float(f)))
                    | (Some(Number::Float(f)), Some(Number::Int(i))) => int_equals_float(i, f),
                    _ => kind == *k && mine == *bits,
                }
            }
            Stored::Bytes(k, bytes) => {
                kind == *k
                    && m.r32(b + E_VALUE_LEN) as usize == bytes.len()
                    && m.eq_bytes(b + E_DATA, bytes)
            }
            Stored::Scalar(..) => false,
        }
    }

    /// Change a number or boolean in place (and, for a write, its expiry
    /// and flags): a new version, and a use.
    fn update_scalar(&self, e: u32, kind: Kind, bits: u64, meta: Option<(u64, u32)>) {
        let (tx, b) = (self.tx, off(e));
        tx.w64(b + E_DATA, bits);
        tx.w32(b + E_KIND, kind as u32);
        if let Some((expires, flags)) = meta {
            tx.w64(b + E_EXPIRES, expires);
            tx.w32(b + E_FLAGS, flags);
        }
        let v = self.next_version();
        tx.w64(b + E_VERSION, v);
        self.touch(e);
    }

    /// A new entry for `key`, evicting from the LRU's tail for room if
    /// need be; `replacing` (the key's current entry) goes once the new
    /// one is linked. Commits.
    fn insert(
        &self,
        key: &[u8],
        h: u64,
        value: &Stored,
        (expires, flags): (u64, u32),
        mut replacing: Option<u32>,
    ) -> Result<(), Error> {
        let (tx, m) = (self.tx, self.tx.mem);
        let bytes = E_DATA + value.len() + key.len();
        let units = u32::try_from(bytes.div_ceil(UNIT)).map_err(|_| Error::TooBig)?;
        if units > self.heap.capacity() {
            return Err(Error::TooBig);
        }
        let mut evicted = 0;
        let block = loop {
            if let Some(block) = self.heap.alloc(units) {
                break block;
            }
            let victim = m.r32(H_LRU_TAIL);
            if victim == 0 || evicted == MAX_EVICT {
                return Err(Error::NoMemory);
            }
            if replacing == Some(victim) {
                replacing = None;
            }
            let expired = self.expired(victim);
            self.remove(self.link_of(victim), victim);
            self.count(if expired { H_EXPIRED } else { H_EVICTIONS });
            // Freed blocks may be handed out below, and the new entry's
            // bytes are written outside the journal: the eviction must be
            // final first (see mem.rs).
            tx.commit();
            evicted += 1;
        };
        let b = off(block);
        // Bytes 24 on of a block allocated in this step: written directly.
        m.w32_raw(b + E_HASH, h as u32);
        m.w32_raw(b + E_KEY_LEN, key.len() as u32);
        m.w32_raw(b + E_VALUE_LEN, value.len() as u32);
        m.w32_raw(b + E_KIND, value.kind() as u32);
        m.w32_raw(b + E_FLAGS, flags);
        m.w64_raw(b + E_EXPIRES, expires);
        let version = self.next_version();
        m.w64_raw(b + E_VERSION, version);
        match value {
            Stored::Scalar(_, bits) => m.write_bytes(b + E_DATA, &bits.to_ne_bytes()),
            Stored::Bytes(_, bytes) => m.write_bytes(b + E_DATA, bytes),
        }
        m.write_bytes(b + E_DATA + value.len(), key);
        let bucket = self.bucket(h as u32);
        tx.w32(b + E_HASH_NEXT, m.r32(bucket));
        tx.w32(bucket, block);
        self.lru_push_front(block);
        tx.w64(H_ENTRIES, m.r64(H_ENTRIES) + 1);
        tx.w64(
            H_USED,
            m.r64(H_USED) + (self.heap.size(block) as u64) * UNIT as u64,
        );
        if let Some(old) = replacing {
            self.remove(self.link_of(old), old);
        }
        tx.commit();
        Ok(())
    }

    /// Entry `e`, its value copied into `data` (which has room for it).
    fn raw(&self, e: u32, data: &mut Vec<u8>) -> Raw {
        let m = self.tx.mem;
        let b = off(e);
        m.read_bytes(b + E_DATA, m.r32(b + E_VALUE_LEN) as usize, data);
        Raw {
            kind: self.kind(e),
            flags: m.r32(b + E_FLAGS),
            ttl: self.ttl(e),
            version: m.r64(b + E_VERSION),
        }
    }
}

#[cfg(test)]
#[path = "zone_tests.rs"]
mod tests;
