//! The cache's tiers beyond a worker's memory, end to end with the real
//! binary and real servers: the on-disk tier (shared by workers, kept
//! across a restart, bounded with the oldest out first from the files'
//! metadata, never reading an entry, and rid of what crashed writers
//! left), Redis and
//! memcached (shared by workers and by two axkit servers, PURGE on one
//! server reaching the other; killed by PID
//! mid-run, the responses still come from the origin and the log says so
//! once; restarted, hits again), and 1,000 concurrent misses on one key
//! making one origin request with the shared, Redis, memcached and disk
//! tiers; a bad `CacheStore` refused when the config loads, its secret
//! never quoted; an entry memcached refuses to store (over its `-I`) not
//! taken for a failing tier; a value over the largest entry under an
//! entry's key in Redis or memcached a miss, not read; on disk, a file
//! over the largest entry or a FIFO under an entry's name a logged miss,
//! a timed-out fill lock taken over by one worker of two, and a FIFO at
//! a lock's name removed (one origin request for a stampede).
//! Redis and memcached are started by each test on a free loopback port
//! (`tests/common/services.rs`); without them the tests skip, unless
//! `AXKIT_REQUIRE_SERVICES=1`.

#[path = "common/cache.rs"]
mod cache;
mod common;
#[path = "common/lua.rs"]
mod lua;
#[path = "common/services.rs"]
mod services;

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cache::*;
use common::*;
use services::{Memcached, Redis};

/// The disk tests are about sharing and eviction, not timeouts: a loaded
/// machine's blocking pool can take longer than the default 100 ms, and
/// the cache would then (rightly) answer without itself.
const DISK_TIMEOUT: &str = "CacheBackendTimeout 5s";

/// Requests on fresh connections (so both workers get some): each is a
/// hit of the body the first origin call made.
fn all_hits(srv: &Axkit, path: &str, n: usize) {
    for _ in 0..n {
        let r = get(srv, path, "");
        assert_eq!(
            (r.status, r.text().as_str(), status_field(&r)),
            (200, "call 1", "axkit; hit"),
            "{path}"
        );
    }
}

#[test]
fn disk_tier_is_shared_by_workers_and_outlives_a_restart() {
    let store = TempDir::new("cachedisk");
    let tier = format!("    CacheStore disk {}/c", store.path().display());
    let srv = start(2, DISK_TIMEOUT, &tier);
    let first = get(&srv, "/a?cc=max-age=60", "");
    assert_eq!(status_field(&first), "axkit; fwd=uri-miss; stored");
    all_hits(&srv, "/a?cc=max-age=60", 20);
    assert_eq!(calls(&srv, "/a"), "1");
    drop(srv);
    // A new server (its own origin count starts again) finds the entry.
    let srv = start(2, DISK_TIMEOUT, &tier);
    all_hits(&srv, "/a?cc=max-age=60", 4);
    assert_eq!(calls(&srv, "/a"), "0");
    // One entry, named by its hash, and no temporary file left behind
    // (a fill lock may still be on its way out).
    let names: Vec<String> = std::fs::read_dir(store.path().join("c"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let entries = names.iter().filter(|n| n.starts_with("e-")).count();
    assert_eq!(entries, 1, "{names:?}");
    assert!(
        names
            .iter()
            .all(|n| (n.starts_with("e-") || n.starts_with("l-")) && n.len() == 66),
        "{names:?}"
    );
}

/// What process `pid` has read with read(2) and its kin, files included
/// (`rchar` of `/proc/PID/io`; sockets' recv(2) is not counted).
fn bytes_read(pid: i32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    let line = io.lines().find_map(|l| l.strip_prefix("rchar: ")).unwrap();
    line.parse().unwrap()
}

/// A file of the disk tier with `payload` under its header saying it is
/// worth keeping until `until_ms`, and `mtime` as its mtime.
fn plant(dir: &std::path::Path, name: &str, until_ms: u64, payload: &[u8], mtime: SystemTime) {
    let mut data = b"AXD1".to_vec();
    data.extend_from_slice(&until_ms.to_le_bytes());
    data.extend_from_slice(payload);
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(mtime).unwrap();
}

/// A look at the directory goes by each file's metadata: an entry's mtime
/// is until when it is worth keeping, so one whose mtime is past goes,
/// whatever its header says, without being read. It used to read every
/// entry whole to learn its header's time: on a big directory, I/O in
/// proportion to the cache and past `CacheBackendTimeout`.
#[test]
fn disk_tier_eviction_reads_no_entry() {
    let store = TempDir::new("cachedisk");
    let dir = store.path().join("c");
    std::fs::create_dir(&dir).unwrap();
    let hour = Duration::from_secs(3600);
    let now = SystemTime::now();
    let ms = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    // 16 MiB of entries whose headers say they are live; then, written
    // after them, one whose header says it has expired: a walk that reads
    // the files in the order they were written has read the rest by the
    // time it removes that one.
    let mib = vec![b'x'; 1 << 20];
    for i in 0..16 {
        let name = format!("e-{i:064x}");
        plant(&dir, &name, ms(now + hour), &mib, now - 2 * hour);
    }
    let last = format!("e-{:064x}", 99);
    plant(&dir, &last, 1, b"", now - hour);
    let tier = format!("    CacheStore disk {}", dir.display());
    let srv = start(1, DISK_TIMEOUT, &tier);
    let worker = srv.workers()[0];
    let before = bytes_read(worker);
    // A worker looks at the directory at its first write, and every 64.
    for i in 0..64 {
        let r = get(&srv, &format!("/r{i}?cc=max-age=60"), "");
        assert_eq!(status_field(&r), "axkit; fwd=uri-miss; stored");
    }
    assert!(
        wait_until(Duration::from_secs(10), || !dir.join(&last).exists()),
        "the expired entry was not removed"
    );
    let read = bytes_read(worker) - before;
    assert!(read < 4 << 20, "the worker read {read} bytes");
    let planted = (0..16).filter(|i| dir.join(format!("e-{i:064x}")).exists());
    assert_eq!(planted.count(), 0, "entries whose mtime is past are gone");
}

/// A temporary file that a writer which died left in the directory (its
/// mtime and ctime old) is removed when a worker looks at it, one that a
/// writer may be writing (recent) is not. They used to pile up.
#[test]
fn disk_tier_removes_what_crashed_writers_left() {
    let store = TempDir::new("cachedisk");
    let dir = store.path().join("c");
    std::fs::create_dir(&dir).unwrap();
    let crashed = dir.join(".tmp-crashed");
    std::fs::write(&crashed, b"half an entry").unwrap();
    let file = std::fs::File::options().write(true).open(&crashed).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    let writing = dir.join(".tmp-writing");
    std::fs::write(&writing, b"half an entry").unwrap();
    let tier = format!("    CacheStore disk {}", dir.display());
    let srv = start(1, DISK_TIMEOUT, &tier);
    let r = get(&srv, "/t?cc=max-age=60", "");
    assert_eq!(status_field(&r), "axkit; fwd=uri-miss; stored");
    assert!(
        wait_until(Duration::from_secs(10), || !crashed.exists()),
        "a crashed writer's temporary file is still there"
    );
    assert!(writing.exists(), "a recent temporary file was removed");
}

#[test]
fn disk_tier_evicts_the_oldest_over_its_bound() {
    let store = TempDir::new("cachedisk");
    let dir = store.path().join("c");
    let tier = format!("    CacheStore disk {} 64K", dir.display());
    let srv = start(1, DISK_TIMEOUT, &tier);
    // 12 entries of 10 KiB: twice the bound.
    for i in 0..12 {
        let r = get(&srv, &format!("/e{i}?cc=max-age=60&pad=10000"), "");
        assert_eq!(status_field(&r), "axkit; fwd=uri-miss; stored");
    }
    // Storing and evicting finish after the response, so the directory is
    // read until it settles; a file evicted between the listing and its
    // stat counts as gone.
    let on_disk = || -> u64 {
        std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum()
    };
    assert!(
        wait_until(Duration::from_secs(10), || on_disk() <= 64 * 1024),
        "{} bytes on disk",
        on_disk()
    );
    let newest = get(&srv, "/e11?cc=max-age=60&pad=10000", "");
    assert_eq!(status_field(&newest), "axkit; hit");
    let oldest = get(&srv, "/e0?cc=max-age=60&pad=10000", "");
    assert_eq!(status_field(&oldest), "axkit; fwd=uri-miss; stored");
}

/// The cache section of a server on `tier`, with a generous backend
/// timeout where the test is about something else than timeouts (1,000
/// lookups at once queue for the pool's connections on a loaded machine).
fn server_on(tier: &str, workers: usize, timeout: &str) -> Axkit {
    start(
        workers,
        &format!("SharedZone cache 8M\nCacheBackendTimeout {timeout}"),
        &format!("    CacheStore {tier}\n    CachePurgeFrom 127.0.0.0/8"),
    )
}

/// Two servers on one backend: what one stored, the other (and each of
/// its workers) answers from.
fn shared_by_two_servers(tier: &str) {
    let a = server_on(tier, 2, "2s");
    let b = server_on(tier, 2, "2s");
    let first = get(&a, "/two?cc=max-age=60", "");
    assert_eq!(status_field(&first), "axkit; fwd=uri-miss; stored");
    all_hits(&a, "/two?cc=max-age=60", 10);
    all_hits(&b, "/two?cc=max-age=60", 10);
    assert_eq!(
        (calls(&a, "/two"), calls(&b, "/two")),
        ("1".into(), "0".into())
    );
    // PURGE on one server removes it for both.
    assert_eq!(request(&b, "PURGE", "/two?cc=max-age=60", "").status, 200);
    let again = get(&a, "/two?cc=max-age=60", "");
    assert_eq!(
        (again.text().as_str(), status_field(&again)),
        ("call 2", "axkit; fwd=uri-miss; stored")
    );
}

/// The backend dies (stopped by its PID) mid-run: every response still
/// comes from the origin, the log says so once (not per request); back,
/// the cache stores and hits again.
fn survives_a_dead_backend(tier: &str, stop: impl FnOnce(), start_again: impl FnOnce()) {
    let mut srv = server_on(tier, 1, "100ms");
    assert_eq!(get(&srv, "/d?cc=max-age=60", "").text(), "call 1");
    assert_eq!(
        status_field(&get(&srv, "/d?cc=max-age=60", "")),
        "axkit; hit"
    );
    stop();
    for n in 2..12 {
        let r = get(&srv, "/d?cc=max-age=60", "");
        assert_eq!((r.status, r.text()), (200, format!("call {n}")));
    }
    srv.wait_stderr("cache: the tier failed", Duration::from_secs(10));
    let said = srv
        .sync_stderr()
        .lines()
        .filter(|l| l.contains("cache: the tier failed"))
        .count();
    assert_eq!(said, 1, "one warning, not one per request");
    start_again();
    assert!(
        wait_until(Duration::from_secs(20), || {
            status_field(&get(&srv, "/d?cc=max-age=60", "")) == "axkit; hit"
        }),
        "no hit once the backend was back"
    );
}

#[test]
fn redis_tier_is_shared_by_two_servers() {
    let Some(redis) = Redis::start() else { return };
    shared_by_two_servers(&format!("redis {}", redis.url()));
}

#[test]
fn redis_tier_survives_redis_dying() {
    let Some(redis) = Redis::start() else { return };
    let tier = format!("redis {}", redis.url());
    let redis = std::cell::RefCell::new(redis);
    survives_a_dead_backend(
        &tier,
        || redis.borrow_mut().stop(),
        || redis.borrow_mut().restart(),
    );
}

#[test]
fn memcached_tier_is_shared_by_two_servers() {
    let Some(mc) = Memcached::start() else { return };
    shared_by_two_servers(&format!("memcached {}", mc.addr()));
}

#[test]
fn memcached_tier_survives_memcached_dying() {
    let Some(mc) = Memcached::start() else { return };
    let tier = format!("memcached {}", mc.addr());
    let mc = std::cell::RefCell::new(mc);
    survives_a_dead_backend(
        &tier,
        || mc.borrow_mut().stop(),
        || mc.borrow_mut().restart(),
    );
}

/// memcached answers `SERVER_ERROR object too large for cache` to an
/// entry over its `-I`: that entry is not stored, and the tier goes on.
/// It used to be taken for a failure, and every call of the next second
/// failed: the next request was served without the cache.
#[test]
fn memcached_refusing_an_entry_is_not_a_failure() {
    let Some(mc) = Memcached::start_with_item_size("512k") else {
        return;
    };
    let mut srv = server_on(&format!("memcached {}", mc.addr()), 1, "2s");
    let big = get(&srv, "/big?cc=max-age=60&pad=600000", "");
    assert_eq!(status_field(&big), "axkit; fwd=uri-miss; stored");
    // The refusal came before the response's end (the entry is stored as
    // the last chunk goes through the cache): the tier is asked at once.
    let small = get(&srv, "/small?cc=max-age=60", "");
    assert_eq!(status_field(&small), "axkit; fwd=uri-miss; stored");
    assert_eq!(
        status_field(&get(&srv, "/small?cc=max-age=60", "")),
        "axkit; hit"
    );
    let big = get(&srv, "/big?cc=max-age=60&pad=600000", "");
    assert_eq!(status_field(&big), "axkit; fwd=uri-miss; stored");
    srv.wait_stderr(
        "memcached did not store an entry (said once): SERVER_ERROR",
        Duration::from_secs(10),
    );
    let log = srv.sync_stderr();
    assert!(!log.contains("cache: the tier failed"), "{log}");
    assert_eq!(log.matches("memcached did not store").count(), 1, "{log}");
}

/// A server on `tier` storing bodies of at most 64 KiB, with time enough
/// for a worker to read a large value whole (as it used to).
fn small_entries_on(tier: &str) -> Axkit {
    start(
        1,
        "CacheBackendTimeout 10s",
        &format!("    CacheStore {tier}\n    CacheMaxEntrySize 64K"),
    )
}

/// `/o` stored, then `value` put under its key by someone else: the
/// next request is a miss served by the origin (and stored over it), the
/// worker's log says so once, escaped, and the tier is not taken for a
/// failing one; what the worker holds at its peak grows by less than
/// `grows_less_than_kib`.
fn oversize_value_is_a_miss(
    srv: &mut Axkit,
    overwrite: impl FnOnce(),
    said: &str,
    grows_less_than_kib: u64,
) {
    let first = get(srv, "/o?cc=max-age=60", "");
    assert_eq!(status_field(&first), "axkit; fwd=uri-miss; stored");
    overwrite();
    let worker = srv.workers()[0];
    let before = status_kib(worker, "VmHWM");
    let r = get(srv, "/o?cc=max-age=60", "");
    assert_eq!(
        (r.status, r.text().as_str(), status_field(&r)),
        (200, "call 2", "axkit; fwd=uri-miss; stored")
    );
    let grown = status_kib(worker, "VmHWM") - before;
    assert!(
        grown < grows_less_than_kib,
        "the worker grew by {grown} KiB"
    );
    let again = get(srv, "/o?cc=max-age=60", "");
    assert_eq!(status_field(&again), "axkit; hit");
    srv.wait_stderr(said, Duration::from_secs(10));
    let log = srv.sync_stderr();
    assert!(!log.contains("cache: the tier failed"), "{log}");
}

/// 64 MiB under an entry's key in Redis: read with a bound (the largest
/// entry and a byte), a miss. It used to be read whole, for a miss.
#[test]
fn redis_value_over_the_largest_entry_is_not_read() {
    let Some(redis) = Redis::start() else { return };
    let mut srv = small_entries_on(&format!("redis {}", redis.url()));
    let overwrite = || {
        let keys = redis.cli(&[b"keys", b"axkit:cache:e:*"], b"");
        let key = keys.strip_suffix(b"\n").unwrap();
        redis.cli(&[b"-x", b"set", key], &vec![b'x'; 64 << 20]);
    };
    oversize_value_is_a_miss(
        &mut srv,
        overwrite,
        "cache: redis holds more than 131072 bytes (the largest entry the cache stores) under \
         axkit:cache:e:",
        16 << 10,
    );
}

/// 3 MiB under an entry's key in memcached (one with a larger `-I`): not
/// read, a miss. It used to fail the tier (over the 2 MiB the client
/// accepted), and one under that was read whole, for a miss.
#[test]
fn memcached_value_over_the_largest_entry_is_not_read() {
    let Some(mc) = Memcached::start_with_item_size("4m") else {
        return;
    };
    let mut srv = small_entries_on(&format!("memcached {}", mc.addr()));
    let overwrite = || {
        let keys = mc.keys();
        let entries: Vec<&String> = keys.iter().filter(|k| k.contains(":e:")).collect();
        let [key] = entries[..] else {
            panic!("{keys:?}")
        };
        mc.set(key, &vec![b'x'; 3 << 20]);
    };
    oversize_value_is_a_miss(
        &mut srv,
        overwrite,
        "cache: memcached holds 3145728 bytes under axkit:cache:e:",
        2 << 10,
    );
}

/// The one entry file in the disk tier's `dir`.
fn entry_file(dir: &std::path::Path) -> std::path::PathBuf {
    let entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("e-"))
        .collect();
    let [entry] = &entries[..] else {
        panic!("{entries:?}")
    };
    entry.clone()
}

/// 64 MiB in place of an entry's file (planted, or grown by another
/// process): read with a bound (the largest entry and a byte), a miss,
/// removed. It used to be read whole, for a miss.
#[test]
fn disk_file_over_the_largest_entry_is_not_read() {
    let store = TempDir::new("cachedisk");
    let dir = store.path().join("c");
    let mut srv = small_entries_on(&format!("disk {}", dir.display()));
    let overwrite = || {
        let entry = entry_file(&dir);
        let mut data = std::fs::read(&entry).unwrap();
        data.resize(64 << 20, b'x');
        std::fs::write(&entry, data).unwrap();
    };
    oversize_value_is_a_miss(
        &mut srv,
        overwrite,
        " is over 131072 bytes (the largest entry the cache stores), not an entry the cache \
         wrote: a miss, removed (said once)",
        16 << 10,
    );
}

/// A FIFO in place of an entry's file is neither waited on nor read: a
/// miss, said once in the log, and the fill replaces it. It used to be a
/// silent miss on every lookup.
#[test]
fn disk_fifo_in_place_of_an_entry_is_a_miss() {
    let store = TempDir::new("cachedisk");
    let dir = store.path().join("c");
    let mut srv = small_entries_on(&format!("disk {}", dir.display()));
    let first = get(&srv, "/f?cc=max-age=60", "");
    assert_eq!(status_field(&first), "axkit; fwd=uri-miss; stored");
    let entry = entry_file(&dir);
    std::fs::remove_file(&entry).unwrap();
    let c = std::ffi::CString::new(entry.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let r = get(&srv, "/f?cc=max-age=60", "");
    assert_eq!(
        (r.status, r.text().as_str(), status_field(&r)),
        (200, "call 2", "axkit; fwd=uri-miss; stored")
    );
    srv.wait_stderr(
        " is not a regular file, not an entry the cache wrote: a miss (said once)",
        Duration::from_secs(10),
    );
    assert!(entry.metadata().unwrap().is_file(), "the fill replaced it");
    let again = get(&srv, "/f?cc=max-age=60", "");
    assert_eq!(status_field(&again), "axkit; hit");
}

/// A key whose origin takes a second to answer.
const SLOW: &str = "/slow?cc=max-age=60&s=1";

/// Two workers on the disk tier in `dir`, which filled [`SLOW`] once and
/// lost the entry since; and the path of that key's fill lock, which the
/// fill has released.
fn filled_then_lost(dir: &std::path::Path) -> (Axkit, std::path::PathBuf) {
    let srv = server_on(&format!("disk {}", dir.display()), 2, "10s");
    let r = get(&srv, SLOW, "");
    assert_eq!(status_field(&r), "axkit; fwd=uri-miss; stored");
    let entry = entry_file(dir);
    let hash = &entry.file_name().unwrap().to_str().unwrap()[2..];
    std::fs::remove_file(&entry).unwrap();
    let lock = dir.join(format!("l-{hash}"));
    // Released after the fill answered.
    assert!(wait_until(Duration::from_secs(10), || {
        std::fs::symlink_metadata(&lock).is_err()
    }));
    (srv, lock)
}

/// 1,000 misses across two workers on a key whose fill lock timed out
/// (its holder died), the lock's file large enough that reading it takes
/// a while: one worker takes the lock over, one origin request. Each
/// worker used to read the old lock whole, then remove the lock by its
/// name: the later one removed the lock the other had just taken, and
/// both filled.
#[test]
fn disk_lock_taken_over_by_one_worker() {
    let store = TempDir::new("cachedisk");
    let (srv, lock) = filled_then_lost(&store.path().join("c"));
    // A lock record that timed out, grown to 256 MiB (sparse).
    let mut data = b"AXD1".to_vec();
    data.extend_from_slice(&1u64.to_le_bytes());
    data.extend_from_slice(b"dead");
    let mut file = std::fs::File::create(&lock).unwrap();
    file.write_all(&data).unwrap();
    file.set_len(256 << 20).unwrap();
    // The mtime a live holder gives its lock (until when it holds), so
    // that a worker's look at DIR, which its first write starts and may
    // run now, leaves it: only the record inside says it timed out, and
    // only a lookup reads that.
    file.set_modified(SystemTime::now() + Duration::from_secs(3600))
        .unwrap();
    stampede(srv.addr, SLOW, 1000);
    assert_eq!(calls(&srv, "/slow"), "2", "one fill before, one now");
}

/// A FIFO planted at a key's fill lock name: 1,000 misses across two
/// workers make one origin request, the FIFO removed (said once in the
/// log) and the lock taken in its place. It used to stay there, never
/// waited on but never a lock either: every worker filled the key.
#[test]
fn disk_fifo_at_a_lock_name_is_removed() {
    let store = TempDir::new("cachedisk");
    let (mut srv, lock) = filled_then_lost(&store.path().join("c"));
    let c = std::ffi::CString::new(lock.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    stampede(srv.addr, SLOW, 1000);
    assert_eq!(calls(&srv, "/slow"), "2", "one fill before, one now");
    srv.wait_stderr(
        " is not a regular file, not a fill lock: removed (said once)",
        Duration::from_secs(10),
    );
    assert!(!lock.exists(), "the lock was released");
}

/// 1,000 concurrent misses on one key, across two workers: one origin
/// request (the origin takes a second, so they all overlap).
fn thousand_misses_one_origin_request(tier: &str) {
    let srv = server_on(tier, 2, "5s");
    stampede(srv.addr, "/slow?cc=max-age=60&s=1", 1000);
    assert_eq!(calls(&srv, "/slow"), "1", "{tier}");
}

#[test]
fn stampede_on_the_shared_tier() {
    thousand_misses_one_origin_request("shared");
}

#[test]
fn stampede_on_the_redis_tier() {
    let Some(redis) = Redis::start() else { return };
    thousand_misses_one_origin_request(&format!("redis {}", redis.url()));
}

#[test]
fn stampede_on_the_memcached_tier() {
    let Some(mc) = Memcached::start() else { return };
    thousand_misses_one_origin_request(&format!("memcached {}", mc.addr()));
}

#[test]
fn stampede_on_the_disk_tier() {
    let store = TempDir::new("cachedisk");
    thousand_misses_one_origin_request(&format!("disk {}/c", store.path().display()));
}

#[test]
fn bad_tiers_are_refused_when_the_config_loads() {
    let dir = TempDir::new("cachebad");
    // CacheStore is a secret (a Redis URL may hold a password): its
    // errors name the line, never the value.
    for store in [
        "redis postgres://u:hunter2@h/db",
        "redis redis://u:hunter2@h/notadb",
        "memcached localhost",
        "disk /tmp/x 10Q",
        "nosuch",
    ] {
        let conf = dir.write(
            "axkit.conf",
            format!(
                "Plugin cache\n<Server>\n    Listen 127.0.0.1:0\n    Cache On\n    CacheStore {store}\n</Server>\n"
            ),
        );
        let err = refused_at_start(&conf);
        assert!(
            err.contains("CacheStore") && err.contains("invalid value"),
            "{store}: {err}"
        );
        assert!(!err.contains("hunter2"), "{store}: {err}");
    }
}
