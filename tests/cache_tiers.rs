//! The cache's tiers beyond a worker's memory, end to end with the real
//! binary and real servers: the on-disk tier (shared by workers, kept
//! across a restart, bounded with the oldest out first), Redis and
//! memcached (shared by workers and by two axkit servers, PURGE on one
//! server reaching the other; killed by PID
//! mid-run, the responses still come from the origin and the log says so
//! once; restarted, hits again), and 1,000 concurrent misses on one key
//! making one origin request with the shared, Redis, memcached and disk
//! tiers; a bad `CacheStore` refused when the config loads, its secret
//! never quoted; an entry memcached refuses to store (over its `-I`) not
//! taken for a failing tier.
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

use std::time::Duration;

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
