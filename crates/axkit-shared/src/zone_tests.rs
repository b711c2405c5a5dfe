//! Tests of a zone: each call's semantics, TTL, LRU eviction, the
//! structure after random operations against a `HashMap` model, mutations
//! stopped at every step (a panic, a process that exits or is killed
//! holding the lock), and `incr` from several processes at once.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::*;
use crate::mem::crash::{self, How};

/// A fresh zone of `size` bytes, and its descriptor (to hand to a child).
fn zone_fd(size: usize) -> (Zone, OwnedFd) {
    let fd = SharedMemory::create(&Zone::spec("test", size)).unwrap();
    let zone = Zone::attach(SharedMemory::map(fd.as_fd()).unwrap()).unwrap();
    (zone, fd)
}

fn zone(size: usize) -> Zone {
    zone_fd(size).0
}

/// Run `f`, failing the test if it takes more than `secs` (a wedged lock
/// would otherwise hang the test run).
fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .expect("the zone is wedged")
}

/// Check every structure of the zone; returns its contents.
fn check(z: &Zone) -> HashMap<Vec<u8>, Value> {
    let raw: Vec<(Vec<u8>, Kind, Vec<u8>)> = z
        .locked(|d| {
            let m = d.tx.mem;
            let used: HashSet<u32> = d.heap.check().into_iter().collect();
            let mut seen = HashSet::new();
            let mut out = Vec::new();
            for bucket in 0..=z.mask as usize {
                let mut e = m.r32(z.buckets + bucket * 4);
                while e != 0 {
                    assert!(used.contains(&e), "entry {e} is not a used block");
                    assert!(seen.insert(e), "entry {e} linked twice");
                    let b = off(e);
                    assert_eq!(d.bucket(m.r32(b + E_HASH)), z.buckets + bucket * 4);
                    let vlen = m.r32(b + E_VALUE_LEN) as usize;
                    let klen = m.r32(b + E_KEY_LEN) as usize;
                    assert!(E_DATA + vlen + klen <= d.heap.size(e) as usize * UNIT);
                    let mut key = Vec::with_capacity(klen);
                    m.read_bytes(b + E_DATA + vlen, klen, &mut key);
                    assert_eq!(z.hash(&key) as u32, m.r32(b + E_HASH), "hash of {key:?}");
                    let mut data = Vec::with_capacity(vlen);
                    m.read_bytes(b + E_DATA, vlen, &mut data);
                    out.push((key, d.kind(e).expect("kind"), data));
                    e = m.r32(b + E_HASH_NEXT);
                }
            }
            assert_eq!(seen.len(), used.len(), "used blocks that are no entry");
            // The LRU list: every entry once, links agreeing both ways.
            let (mut e, mut prev, mut n) = (m.r32(H_LRU_HEAD), 0, 0);
            while e != 0 {
                assert!(seen.contains(&e));
                assert_eq!(m.r32(off(e) + E_LRU_PREV), prev);
                (prev, e) = (e, m.r32(off(e) + E_LRU_NEXT));
                n += 1;
                assert!(n <= seen.len(), "LRU loops");
            }
            assert_eq!(m.r32(H_LRU_TAIL), prev);
            assert_eq!(n, seen.len());
            assert_eq!(m.r64(H_ENTRIES), n as u64);
            let used_bytes: u64 = used.iter().map(|&b| d.heap.size(b) as u64 * 16).sum();
            assert_eq!(m.r64(H_USED), used_bytes);
            assert!(!d.tx.pending());
            Ok(out)
        })
        .unwrap();
    raw.into_iter()
        .map(|(k, kind, data)| (k, Value::load(kind, data).expect("value")))
        .collect()
}

fn value(z: &Zone, key: &str) -> Option<Value> {
    z.get(key).unwrap().map(|e| e.value)
}

#[test]
fn values_keep_their_types_flags_and_versions() {
    let z = zone(MIN_SIZE);
    let table = Value::Table(vec![
        (Value::Int(1), Value::from("a")),
        (Value::from("n"), Value::Float(2.5)),
    ]);
    for (k, v) in [
        ("s", Value::from("hello")),
        ("b", Value::Bytes(vec![0, 255])),
        ("i", Value::Int(-42)),
        ("f", Value::Float(0.5)),
        ("t", Value::Bool(true)),
        ("tab", table.clone()),
    ] {
        z.set(k, v.clone()).unwrap();
        assert_eq!(value(&z, k), Some(v));
    }
    let first = z.get("s").unwrap().unwrap();
    assert_eq!((first.flags, first.ttl), (0, None));
    z.set_with(
        "s",
        "again",
        Options {
            ttl: None,
            flags: 7,
        },
    )
    .unwrap();
    let second = z.get("s").unwrap().unwrap();
    assert_eq!(second.flags, 7);
    assert!(second.version > first.version);
    // A read changes no version; a number changed in place does.
    assert_eq!(z.get("s").unwrap().unwrap().version, second.version);
    let v = z.get("i").unwrap().unwrap().version;
    z.set("i", 5).unwrap();
    assert!(z.get("i").unwrap().unwrap().version > v);
    assert_eq!(z.delete("s"), Ok(true));
    assert_eq!(z.delete("s"), Ok(false));
    assert_eq!(value(&z, "s"), None);
    assert_eq!(z.set("", 1), Err(Error::EmptyKey));
    assert_eq!(z.set(vec![b'k'; MAX_KEY + 1], 1), Err(Error::KeyTooLong));
    assert_eq!(z.set("big", vec![0u8; MIN_SIZE]), Err(Error::TooBig));
    check(&z);
}

#[test]
fn max_value_is_the_largest_value_with_its_key_that_fits() {
    let z = zone(MIN_SIZE);
    let room = z.max_value() - "big".len();
    assert_eq!(z.set("big", vec![0u8; room + 1]), Err(Error::TooBig));
    z.set("big", vec![0u8; room]).unwrap();
    check(&z);
}

#[test]
fn add_replace_and_compare_and_swap() {
    let z = zone(MIN_SIZE);
    assert_eq!(z.replace("k", 1, Options::default()), Err(Error::NotFound));
    z.add("k", 1, Options::default()).unwrap();
    assert_eq!(z.add("k", 2, Options::default()), Err(Error::Exists));
    z.replace("k", "two", Options::default()).unwrap();
    assert_eq!(value(&z, "k"), Some(Value::from("two")));

    let expected = Value::from("two");
    assert_eq!(
        z.cas("k", &Value::from("one"), "three", Options::default()),
        Err(Error::Changed)
    );
    z.cas("k", &expected, "three", Options::default()).unwrap();
    assert_eq!(
        z.cas("nope", &expected, 1, Options::default()),
        Err(Error::NotFound)
    );
    // Numbers compare as numbers.
    z.set("n", 1).unwrap();
    z.cas("n", &Value::Float(1.0), 2, Options::default())
        .unwrap();
    assert_eq!(value(&z, "n"), Some(Value::Int(2)));
    // Exactly, as Lua compares them: 2^53 + 1 is not the float 2^53,
    // though it is through a float.
    z.set("big", 9_007_199_254_740_993_i64).unwrap();
    assert_eq!(
        z.cas(
            "big",
            &Value::Float(9_007_199_254_740_992.0),
            0,
            Options::default()
        ),
        Err(Error::Changed)
    );
    assert_eq!(
        z.cas("n", &Value::Float(2.5), 0, Options::default()),
        Err(Error::Changed)
    );
    z.set("f", 9_007_199_254_740_992.0).unwrap();
    z.cas(
        "f",
        &Value::Int(9_007_199_254_740_992),
        1,
        Options::default(),
    )
    .unwrap();

    let version = z.get("k").unwrap().unwrap().version;
    z.cas_version("k", version, "four", Options::default())
        .unwrap();
    assert_eq!(
        z.cas_version("k", version, "five", Options::default()),
        Err(Error::Changed)
    );
    assert_eq!(value(&z, "k"), Some(Value::from("four")));
    check(&z);
}

#[test]
fn incr_is_typed_and_checked() {
    let z = zone(MIN_SIZE);
    assert_eq!(z.incr("c", 1), Err(Error::NotFound));
    assert_eq!(z.incr_init("c", 2, 10, None), Ok(Number::Int(12)));
    assert_eq!(z.incr("c", -2), Ok(Number::Int(10)));
    assert_eq!(z.incr("c", 0.5), Ok(Number::Float(10.5)));
    assert_eq!(value(&z, "c"), Some(Value::Float(10.5)));
    z.set("big", i64::MAX).unwrap();
    assert_eq!(z.incr("big", 1), Err(Error::Overflow));
    z.set("s", "x").unwrap();
    assert_eq!(z.incr("s", 1), Err(Error::NotANumber));
    // incr keeps the expiry; incr_init's ttl applies to a new key only.
    z.incr_init("t", 1, 0, Some(Duration::from_secs(100)))
        .unwrap();
    z.incr_init("t", 1, 0, None).unwrap();
    let ttl = z.ttl("t").unwrap().unwrap();
    assert!(ttl > Duration::from_secs(90) && ttl <= Duration::from_secs(100));
    check(&z);
}

#[test]
fn entries_expire() {
    let z = zone(MIN_SIZE);
    z.set_with("gone", "x", Options::ttl(Duration::from_millis(50)))
        .unwrap();
    z.set("stays", "y").unwrap();
    let entry = z.get("gone").unwrap().expect("present before its time");
    assert!(entry.ttl.unwrap() <= Duration::from_millis(50));
    assert_eq!(z.ttl("stays"), Ok(None));
    let deadline = Instant::now() + Duration::from_secs(10);
    while value(&z, "gone").is_some() {
        assert!(Instant::now() < deadline, "never expired");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(z.ttl("gone"), Err(Error::NotFound));
    assert_eq!(z.stats().unwrap().expired, 1);
    // An expired key is absent for add, and replace finds nothing.
    z.set_with("e", 1, Options::ttl(Duration::from_nanos(1)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(1));
    assert_eq!(z.replace("e", 2, Options::default()), Err(Error::NotFound));
    z.add("e", 3, Options::default()).unwrap();
    // expire() changes it either way.
    z.expire("e", Some(Duration::from_secs(5))).unwrap();
    assert!(z.ttl("e").unwrap().is_some());
    z.expire("e", None).unwrap();
    assert_eq!(z.ttl("e"), Ok(None));
    assert_eq!(check(&z).len(), 2);
}

#[test]
fn a_full_zone_evicts_the_least_recently_used() {
    let z = zone(MIN_SIZE);
    let capacity = z.stats().unwrap().capacity as usize;
    let n = capacity / 500 * 2;
    for i in 0..n {
        z.set(format!("k{i}"), vec![b'x'; 400]).unwrap();
        // k0 is read all along: it stays the most recently used.
        assert!(z.get("k0").unwrap().is_some(), "k0 evicted at {i}");
    }
    let stats = z.stats().unwrap();
    assert!(stats.evictions > 0);
    assert_eq!(stats.entries + stats.evictions, n as u64);
    assert!(value(&z, "k1").is_none(), "the oldest went first");
    assert!(value(&z, &format!("k{}", n - 1)).is_some());
    let contents = check(&z);
    assert_eq!(contents.len() as u64, stats.entries);
    assert!(stats.used <= stats.capacity);
    // Expired entries make room before live ones are evicted.
    for i in 0..n {
        z.set_with(
            format!("t{i}"),
            vec![b'y'; 400],
            Options::ttl(Duration::from_nanos(1)),
        )
        .unwrap();
    }
    std::thread::sleep(Duration::from_millis(1));
    let before = z.stats().unwrap();
    z.set("fresh", vec![b'z'; 400]).unwrap();
    assert_eq!(z.stats().unwrap().evictions, before.evictions);
    check(&z);
}

#[test]
fn freed_memory_coalesces_for_big_values() {
    let z = zone(MIN_SIZE);
    let capacity = z.stats().unwrap().capacity as usize;
    let mut i = 0;
    while z.stats().unwrap().evictions == 0 {
        z.set(format!("small{i}"), vec![1u8; 20]).unwrap();
        i += 1;
    }
    for j in 0..i {
        z.delete(format!("small{j}")).unwrap();
    }
    assert_eq!(z.stats().unwrap().used, 0);
    z.set("big", vec![2u8; capacity - 200]).unwrap();
    assert_eq!(
        value(&z, "big").unwrap().as_bytes().unwrap().len(),
        capacity - 200
    );
    check(&z);
}

/// A small deterministic generator for the model tests.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn random_operations_match_a_hashmap() {
    let z = zone(4 << 20);
    let mut model: HashMap<Vec<u8>, Value> = HashMap::new();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for round in 0..30_000 {
        let key = format!("key{}", rng.below(300)).into_bytes();
        let len = if rng.below(20) == 0 { 3000 } else { 40 };
        let v = match rng.below(4) {
            0 => Value::Int(rng.below(1000) as i64),
            1 => Value::Bytes(vec![b'a' + (round % 26) as u8; rng.below(len) as usize]),
            2 => Value::Table(vec![(Value::from("r"), Value::Int(round))]),
            _ => Value::Bool(round % 2 == 0),
        };
        match rng.below(8) {
            0 | 1 => {
                z.set(&key, v.clone()).unwrap();
                model.insert(key, v);
            }
            2 => {
                let r = z.add(&key, v.clone(), Options::default());
                match model.entry(key) {
                    std::collections::hash_map::Entry::Occupied(_) => {
                        assert_eq!(r, Err(Error::Exists))
                    }
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        r.unwrap();
                        slot.insert(v);
                    }
                }
            }
            3 => {
                let r = z.replace(&key, v.clone(), Options::default());
                match model.get_mut(&key) {
                    Some(slot) => {
                        r.unwrap();
                        *slot = v;
                    }
                    None => assert_eq!(r, Err(Error::NotFound)),
                }
            }
            4 => assert_eq!(z.delete(&key).unwrap(), model.remove(&key).is_some()),
            5 => {
                let r = z.incr(&key, 3);
                match model.get_mut(&key) {
                    Some(Value::Int(i)) => {
                        *i += 3;
                        assert_eq!(r, Ok(Number::Int(*i)));
                    }
                    Some(_) => assert_eq!(r, Err(Error::NotANumber)),
                    None => assert_eq!(r, Err(Error::NotFound)),
                }
            }
            6 => {
                let current = model.get(&key).cloned();
                let guess = current.clone().unwrap_or(Value::Int(-1));
                let r = z.cas(&key, &guess, v.clone(), Options::default());
                if current.is_some() {
                    r.unwrap();
                    model.insert(key, v);
                } else {
                    assert_eq!(r, Err(Error::NotFound));
                }
            }
            _ => assert_eq!(
                z.get(&key).unwrap().map(|e| e.value),
                model.get(&key).cloned()
            ),
        }
        if round % 2000 == 0 {
            assert_eq!(check(&z), model);
        }
    }
    assert_eq!(check(&z), model);
    assert_eq!(z.stats().unwrap().evictions, 0);
}

/// The zone the crash tests start from, and the change they stop halfway:
/// a set that replaces a value with a larger one in a zone with holes
/// (allocation with a split, linking, freeing with coalescing).
fn crash_setup(z: &Zone) -> HashMap<Vec<u8>, Value> {
    for i in 0..20 {
        z.set(format!("k{i}"), vec![b'a'; 30 + i]).unwrap();
    }
    for i in (0..20).step_by(3) {
        z.delete(format!("k{i}")).unwrap();
    }
    check(z)
}

fn crash_change(z: &Zone) {
    z.set("k4", vec![b'b'; 500]).unwrap();
    z.incr_init("n", 1, 0, None).unwrap();
}

fn after_change(before: &HashMap<Vec<u8>, Value>) -> Vec<HashMap<Vec<u8>, Value>> {
    let mut one = before.clone();
    one.insert(b"k4".to_vec(), Value::Bytes(vec![b'b'; 500]));
    let mut two = one.clone();
    two.insert(b"n".to_vec(), Value::Int(1));
    vec![before.clone(), one, two]
}

#[test]
fn a_mutation_that_panics_halfway_is_rolled_back() {
    for at in 1..80 {
        let z = zone(MIN_SIZE);
        let before = crash_setup(&z);
        crash::after(at, How::Panic);
        let r = std::panic::catch_unwind(|| crash_change(&z));
        crash::disarm();
        let now = check(&z);
        assert!(
            after_change(&before).contains(&now),
            "stopped at write {at} ({r:?}): {now:?}"
        );
        // The zone works on.
        z.set("k4", "after").unwrap();
        check(&z);
    }
}

/// What the crash tests' children do, given the zone's descriptor
/// (`AXKIT_SHARED_TEST_FD`) and a task (`AXKIT_SHARED_TEST`): `exit:N` or
/// `stop:N` (the crash change, stopped at journaled write N), `incr:N`
/// (N increments of `count`).
#[test]
#[ignore = "run by the multi-process tests"]
fn child() {
    let (Ok(fd), Ok(task)) = (
        std::env::var("AXKIT_SHARED_TEST_FD"),
        std::env::var("AXKIT_SHARED_TEST"),
    ) else {
        return;
    };
    // SAFETY: the parent passed this descriptor for exactly this.
    let fd = unsafe { OwnedFd::from_raw_fd(fd.parse().unwrap()) };
    let z = Zone::attach(SharedMemory::map(fd.as_fd()).unwrap()).unwrap();
    let (what, n) = task.split_once(':').unwrap();
    let n: usize = n.parse().unwrap();
    match what {
        "exit" => {
            crash::after(n, How::Exit);
            crash_change(&z);
        }
        "stop" => {
            crash::after(n, How::Stop);
            crash_change(&z);
        }
        "incr" => {
            for _ in 0..n {
                z.incr_init("count", 1, 0, None).unwrap();
            }
        }
        _ => panic!("unknown task {task}"),
    }
}

/// Start this test binary's `child` on the zone behind `fd`.
fn spawn_child(fd: &OwnedFd, task: &str) -> std::process::Child {
    // Inherited by the child (and, harmlessly, by any other test's).
    // SAFETY: fcntl on our descriptor.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, 0) };
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "zone::tests::child", "--ignored", "--nocapture"])
        .arg("--test-threads=1")
        .env("AXKIT_SHARED_TEST_FD", fd.as_raw_fd().to_string())
        .env("AXKIT_SHARED_TEST", task)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn a_process_that_dies_holding_the_lock_is_recovered_from() {
    let mut recovered = 0;
    for at in 1..80 {
        let (z, fd) = zone_fd(MIN_SIZE);
        let before = crash_setup(&z);
        let status = spawn_child(&fd, &format!("exit:{at}")).wait().unwrap();
        let now = within(20, move || check(&z));
        assert!(
            after_change(&before).contains(&now),
            "child stopped at write {at} ({status}): {now:?}"
        );
        let stats = z.stats().unwrap();
        if status.code() == Some(3) {
            assert_eq!(stats.recoveries, 1, "at {at}");
            recovered += 1;
        }
        z.set("k4", "after").unwrap();
    }
    assert!(recovered > 10, "the change never died halfway");
}

#[test]
fn a_process_killed_holding_the_lock_does_not_wedge_the_others() {
    use std::io::BufRead;
    let (z, fd) = zone_fd(MIN_SIZE);
    let before = crash_setup(&z);
    let mut child = spawn_child(&fd, "stop:12");
    // The test harness prints its own lines first.
    let held = std::io::BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains("holding the lock"));
    assert!(held, "the child never held the lock");
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    let now = within(20, move || check(&z));
    assert_eq!(now, before);
    assert_eq!(z.stats().unwrap().recoveries, 1);
    z.incr_init("n", 1, 0, None).unwrap();
}

#[test]
fn incr_from_several_processes_loses_nothing() {
    let (z, fd) = zone_fd(MIN_SIZE);
    let children: Vec<_> = (0..4).map(|_| spawn_child(&fd, "incr:20000")).collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    assert_eq!(value(&z, "count"), Some(Value::Int(80_000)));
}
