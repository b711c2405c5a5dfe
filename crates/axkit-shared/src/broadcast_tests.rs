//! Tests of the broadcast ring (order, wrapping, a reader left behind,
//! limits) and of waiting on an event loop (who gets which message, and
//! 10,000 waiters woken by one). Across processes it is tested with real
//! workers in the `shared` integration tests.

use std::os::fd::AsFd;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::*;

fn ring() -> Ring {
    let fd = SharedMemory::create(&spec(MIN_BUFFER)).unwrap();
    Ring::attach(SharedMemory::map(fd.as_fd()).unwrap()).unwrap()
}

fn read_all(r: &Ring, pos: &mut u64) -> Vec<(u64, Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    loop {
        let mut channel = Vec::with_capacity(MAX_CHANNEL);
        let mut data = Vec::with_capacity(r.max_message());
        match r.read(pos, &mut channel, &mut data).unwrap() {
            Some(seq) => out.push((seq, channel, data)),
            None => return out,
        }
    }
}

#[test]
fn the_ring_keeps_the_latest_messages_in_order() {
    let r = ring();
    let (mut pos, mut late) = (0, 0);
    for i in 0..2000u64 {
        let message = vec![b'm'; (i as usize * 37) % 3000];
        r.send(format!("c{}", i % 3).as_bytes(), &message).unwrap();
        let got = read_all(&r, &mut pos);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, i);
        assert_eq!(got[0].1, format!("c{}", i % 3).into_bytes());
        assert_eq!(got[0].2, message);
    }
    // A reader that never read: the ring went round, it lost the oldest
    // (its first sequence number says how many) and gets the rest in
    // order, up to the last.
    let got = read_all(&r, &mut late);
    assert_eq!(got.len() as u64 + got[0].0, 2000);
    assert!(got.len() > 10 && got.len() < 2000, "{}", got.len());
    assert!(got.windows(2).all(|w| w[1].0 == w[0].0 + 1));
    assert_eq!(got.last().unwrap().0, 1999);
}

#[test]
fn channels_and_messages_are_bounded() {
    let r = ring();
    assert_eq!(r.send(b"", b"x"), Err(Error::BadChannel));
    assert_eq!(r.send(&[b'c'; 256], b"x"), Err(Error::BadChannel));
    let max = r.max_message();
    assert_eq!(r.send(b"c", &vec![0; max + 1]), Err(Error::MessageTooBig));
    r.send(b"c", &vec![0; max]).unwrap();
}

/// One ring for the waiting tests: the bell thread of a process follows
/// the first ring it is started on.
fn shared_ring() -> Ring {
    static RING: OnceLock<Ring> = OnceLock::new();
    *RING.get_or_init(ring)
}

fn on_event_loop(f: impl std::future::Future<Output = ()>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&rt, f);
}

#[test]
fn a_waiter_gets_the_first_message_on_its_channel_after_it_began() {
    let r = shared_ring();
    on_event_loop(async move {
        let first = wait_on(r, b"news").unwrap();
        let other = wait_on(r, b"other").unwrap();
        r.send(b"news", b"one").unwrap();
        let second = wait_on(r, b"news").unwrap();
        let limit = Duration::from_secs(10);
        assert_eq!(tokio::time::timeout(limit, first).await.unwrap(), "one");
        r.send(b"news", b"two").unwrap();
        assert_eq!(tokio::time::timeout(limit, second).await.unwrap(), "two");
        // Not woken by another channel's messages.
        let quiet = tokio::time::timeout(Duration::from_millis(50), other).await;
        assert!(quiet.is_err());
        assert_eq!(wait_on(r, b"").err(), Some(Error::BadChannel));
    });
}

#[test]
fn ten_thousand_waiters_wake_on_one_message() {
    let r = shared_ring();
    on_event_loop(async move {
        let woken = Rc::new(Cell::new(0));
        let mut tasks = Vec::new();
        for _ in 0..10_000 {
            let w = wait_on(r, b"many").unwrap();
            let woken = woken.clone();
            tasks.push(tokio::task::spawn_local(async move {
                assert_eq!(w.await, "go");
                woken.set(woken.get() + 1);
            }));
        }
        let sent = Instant::now();
        r.send(b"many", b"go").unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(woken.get(), 10_000);
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "{:?}",
            sent.elapsed()
        );
        // Every waiter is gone from the map once served.
        HUB.with(|h| {
            let h = h.borrow();
            assert!(h
                .as_ref()
                .unwrap()
                .0
                .by_channel
                .borrow()
                .get(&b"many"[..])
                .is_none());
        });
    });
}

#[test]
fn a_loop_of_waits_misses_what_comes_between_two_but_a_subscription_does_not() {
    let r = shared_ring();
    on_event_loop(async move {
        let limit = Duration::from_secs(10);
        let mut sub = subscribe_on(r, b"loop", 8).unwrap();
        let first = wait_on(r, b"loop").unwrap();
        r.send(b"loop", b"1").unwrap();
        assert_eq!(tokio::time::timeout(limit, first).await.unwrap(), "1");
        // Between the first wait's end and the next one's start.
        r.send(b"loop", b"2").unwrap();
        let second = wait_on(r, b"loop").unwrap();
        r.send(b"loop", b"3").unwrap();
        assert_eq!(tokio::time::timeout(limit, second).await.unwrap(), "3");
        for m in ["1", "2", "3"] {
            assert_eq!(tokio::time::timeout(limit, sub.recv()).await.unwrap(), m);
        }
        assert_eq!(sub.dropped(), 0);
        assert_eq!(sub.channel(), b"loop");
    });
}

#[test]
fn a_full_subscription_drops_the_oldest_and_counts() {
    let r = shared_ring();
    on_event_loop(async move {
        let mut sub = subscribe_on(r, b"full", 3).unwrap();
        for i in 0..10 {
            r.send(b"full", format!("{i}").as_bytes()).unwrap();
        }
        // Delivered by this thread's event loop once the bell thread has
        // read them.
        let delivered = async {
            while sub.dropped() < 7 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), delivered)
            .await
            .unwrap();
        let got: Vec<_> = std::iter::from_fn(|| sub.try_recv()).collect();
        assert_eq!(got, ["7", "8", "9"]);
        assert_eq!(sub.dropped(), 7);
    });
}

#[test]
fn waiting_counts_waits_and_subscriptions_until_they_go() {
    let r = shared_ring();
    on_event_loop(async move {
        let before = waiting();
        let sub = subscribe_on(r, b"count", 4).unwrap();
        let w = wait_on(r, b"count").unwrap();
        let other = wait_on(r, b"count-other").unwrap();
        assert_eq!(waiting(), before + 3);
        r.send(b"count", b"x").unwrap();
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(10), w)
                .await
                .unwrap(),
            "x"
        );
        // The served wait is gone; the subscription stays until dropped.
        assert_eq!(waiting(), before + 2);
        drop(sub);
        drop(other);
        assert_eq!(waiting(), before);
    });
}
