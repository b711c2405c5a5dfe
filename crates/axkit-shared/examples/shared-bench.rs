//! The shared dictionary's targets, measured: `get` and `set` per second
//! from Rust in one process (one worker's share), and `incr` on one key
//! from several processes at once, 1,000,000 in all, checking that no
//! increment is lost. Run it optimised (bench/shared.sh does):
//!
//! ```text
//! cargo run --release -p axkit-shared --example shared-bench [PROCESSES]
//! ```
//!
//! The processes share the zone the way workers do: the parent creates it
//! (as the master would) and each child maps the descriptor it inherits.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::time::Instant;

use axkit::plugin::SharedMemory;
use axkit_shared::{Value, Zone};

const FD_ENV: &str = "AXKIT_SHARED_BENCH_FD";
const TOTAL_INCR: u64 = 1_000_000;
const KEYS: usize = 100_000;
const OPS: usize = 2_000_000;

fn main() {
    if let Ok(fd) = std::env::var(FD_ENV) {
        return child(&fd);
    }
    let processes: u64 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get() as u64))
        .max(1);
    let fd = SharedMemory::create(&Zone::spec("bench", 64 << 20)).expect("create the zone");
    let zone = Zone::attach(SharedMemory::map(fd.as_fd()).expect("map")).expect("attach");

    let keys: Vec<String> = (0..KEYS).map(|i| format!("key:{i}")).collect();
    let value = Value::Bytes(vec![b'v'; 32]);
    for k in &keys {
        zone.set(k, value.clone()).unwrap();
    }
    let start = Instant::now();
    for i in 0..OPS {
        zone.set(&keys[i % KEYS], value.clone()).unwrap();
    }
    let set = OPS as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    for i in 0..OPS {
        assert!(zone.get(&keys[(i * 7) % KEYS]).unwrap().is_some());
    }
    let get = OPS as f64 / start.elapsed().as_secs_f64();
    println!("set: {set:.0} ops/s (one process, {KEYS} keys, 32-byte values)");
    println!("get: {get:.0} ops/s (one process)");

    // SAFETY: fcntl on our descriptor: the children inherit it.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, 0) };
    let exe = std::env::current_exe().unwrap();
    let start = Instant::now();
    let children: Vec<_> = (0..processes)
        .map(|p| {
            let share = TOTAL_INCR / processes + u64::from(p < TOTAL_INCR % processes);
            Command::new(&exe)
                .env(FD_ENV, format!("{}:{share}", fd.as_raw_fd()))
                .spawn()
                .expect("start a child")
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success(), "a child failed");
    }
    let took = start.elapsed();
    let total = zone.get("count").unwrap().map(|e| e.value);
    println!(
        "incr: {TOTAL_INCR} from {processes} processes in {:.2} s ({:.0} ops/s); total {total:?}: {}",
        took.as_secs_f64(),
        TOTAL_INCR as f64 / took.as_secs_f64(),
        if total == Some(Value::Int(TOTAL_INCR as i64)) {
            "no increment lost"
        } else {
            "INCREMENTS LOST"
        }
    );
    let stats = zone.stats().unwrap();
    println!("zone: {stats:?}");
}

fn child(spec: &str) {
    let (fd, n) = spec.split_once(':').expect("FD:COUNT");
    // SAFETY: the parent passed this descriptor for exactly this.
    let fd = unsafe { OwnedFd::from_raw_fd(fd.parse().unwrap()) };
    let zone = Zone::attach(SharedMemory::map(fd.as_fd()).unwrap()).unwrap();
    for _ in 0..n.parse::<u64>().unwrap() {
        zone.incr_init("count", 1, 0, None).unwrap();
    }
}
