//! The connections waiting for a request, kept by the worker in one table:
//! new connections that have not sent a byte yet, and keep-alive
//! connections between two requests. A task sweeps it four times a second
//! to end the waits that timed out; shutdown gives the keep-alive ones a
//! short grace (a request they send meanwhile is answered, with
//! `Connection: close`, rather than lost to a close under a client that
//! was sending it); and
//! when the worker is at `MaxConnections`, the waits that have lasted
//! longest are ended to make room for a new client (`reclaim`), as nginx
//! closes idle keep-alive connections when it runs out of connections.
//!
//! A tokio timer plus a shutdown subscription per wait cost more than
//! everything else a busy keep-alive connection does between two requests
//! (the timer wheel, the clock, the `Notify` lock). Idle timeouts need no
//! such precision: a wait here ends between its limit and half a second
//! after it (nginx and lighttpd keep these timeouts coarse too), and
//! registering one is a slot in a vector plus two links, without reading
//! the clock.
//!
//! Each kind of wait is also kept in a list in the order the waits began
//! (links through the slots, so no allocation): the longest wait is the
//! head, found without a scan however many connections the worker holds.
//! A connection with a request in flight (streaming, long-polling,
//! tunnelling) is never in the table, so it can never be reclaimed.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;

/// How often deadlines are checked; also the clock's granularity here.
pub(crate) const SWEEP: Duration = Duration::from_millis(250);

/// How long a keep-alive connection waits for its next request once the
/// worker drains (reload, upgrade, stop). Closing it at once races a client
/// that is sending that request at the same moment: the request is then
/// lost (a reset, for a POST nothing a client may safely retry). Within
/// the grace the request is answered with `Connection: close`; a client
/// silent that long is not in the middle of sending one.
pub(crate) const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// No slot (end of a list, or of the free list).
const NONE: usize = usize::MAX;

/// What a connection is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Its first request: nothing has been read from it yet.
    Fresh = 0,
    /// Its next request, after answering at least one (keep-alive).
    Idle = 1,
}

enum Slot {
    Free { next: usize },
    Waiting(Wait),
}

struct Wait {
    deadline: Instant,
    kind: Kind,
    /// When the wait began (the sweep clock).
    since: Instant,
    /// Ended: no longer in its kind's list.
    over: bool,
    waker: Option<Waker>,
    /// Neighbours in its kind's list (older, newer).
    prev: usize,
    next: usize,
}

/// The oldest and newest wait of one kind.
#[derive(Clone, Copy)]
struct List {
    head: usize,
    tail: usize,
}

const EMPTY: List = List {
    head: NONE,
    tail: NONE,
};

pub(crate) struct IdleWaits {
    slots: RefCell<Vec<Slot>>,
    /// Head of the free-slot list.
    free: Cell<usize>,
    /// Live waits of each [`Kind`], oldest first.
    lists: Cell<[List; 2]>,
    /// The clock as of the last sweep.
    now: Cell<Instant>,
    shutting_down: Cell<bool>,
}

impl IdleWaits {
    pub fn new() -> IdleWaits {
        IdleWaits {
            slots: RefCell::new(Vec::new()),
            free: Cell::new(NONE),
            lists: Cell::new([EMPTY; 2]),
            now: Cell::new(Instant::now()),
            shutting_down: Cell::new(false),
        }
    }

    /// A wait that ends `limit` from now (to within [`SWEEP`] twice), when
    /// reclaimed, or (an `Idle` one) [`DRAIN_GRACE`] after shutdown.
    pub fn wait(&self, limit: Duration, kind: Kind) -> IdleWait<'_> {
        let now = self.now.get();
        let limit = match kind {
            Kind::Idle if self.shutting_down.get() => limit.min(DRAIN_GRACE),
            _ => limit,
        };
        // The clock is a sweep old: add a sweep so no wait ends early.
        let wait = Wait {
            deadline: now + limit + SWEEP,
            kind,
            since: now,
            over: false,
            waker: None,
            prev: NONE,
            next: NONE,
        };
        let mut slots = self.slots.borrow_mut();
        let key = match self.free.get() {
            NONE => {
                slots.push(Slot::Waiting(wait));
                slots.len() - 1
            }
            key => {
                if let Slot::Free { next } = slots[key] {
                    self.free.set(next);
                }
                slots[key] = Slot::Waiting(wait);
                key
            }
        };
        self.link(&mut slots, key, kind);
        IdleWait { waits: self, key }
    }

    /// End the waits whose deadline has passed.
    pub fn sweep(&self) {
        let now = Instant::now();
        self.now.set(now);
        self.end_where(|w| w.deadline <= now);
    }

    /// End every keep-alive wait within [`DRAIN_GRACE`], now and from now
    /// on.
    pub fn shutdown(&self) {
        self.shutting_down.set(true);
        let cap = Instant::now() + DRAIN_GRACE;
        for slot in self.slots.borrow_mut().iter_mut() {
            if let Slot::Waiting(w) = slot {
                if w.kind == Kind::Idle {
                    w.deadline = w.deadline.min(cap);
                }
            }
        }
    }

    /// Whether [`reclaim`](Self::reclaim) would end a wait now.
    pub fn can_reclaim(&self, fresh_grace: Duration) -> bool {
        let [fresh, idle] = self.lists.get();
        if idle.head != NONE {
            return true;
        }
        fresh.head != NONE && self.waited(fresh.head, fresh_grace)
    }

    /// End up to `most` waits to free their connections, longest-waiting
    /// first: keep-alive connections, then new connections that have sent
    /// nothing for at least `fresh_grace` (one that has just connected is
    /// probably a client about to send its request). Returns how many.
    pub fn reclaim(&self, most: usize, fresh_grace: Duration) -> usize {
        let mut ended = 0;
        for kind in [Kind::Idle, Kind::Fresh] {
            while ended < most {
                let head = self.lists.get()[kind as usize].head;
                if head == NONE || (kind == Kind::Fresh && !self.waited(head, fresh_grace)) {
                    break;
                }
                self.end(&mut self.slots.borrow_mut(), head);
                ended += 1;
            }
        }
        ended
    }

    /// Whether the wait in slot `key` began at least `grace` ago.
    fn waited(&self, key: usize, grace: Duration) -> bool {
        match &self.slots.borrow()[key] {
            Slot::Waiting(w) => w.since + grace <= self.now.get(),
            Slot::Free { .. } => false,
        }
    }

    fn end_where(&self, mut ends: impl FnMut(&Wait) -> bool) {
        let mut slots = self.slots.borrow_mut();
        for key in 0..slots.len() {
            if matches!(&slots[key], Slot::Waiting(w) if !w.over && ends(w)) {
                self.end(&mut slots, key);
            }
        }
    }

    /// End the live wait in slot `key`: out of its list, its task woken.
    fn end(&self, slots: &mut [Slot], key: usize) {
        self.unlink(slots, key);
        if let Slot::Waiting(w) = &mut slots[key] {
            w.over = true;
            if let Some(waker) = w.waker.take() {
                waker.wake();
            }
        }
    }

    /// Append the wait in slot `key` to its kind's list (the newest).
    fn link(&self, slots: &mut [Slot], key: usize, kind: Kind) {
        let mut lists = self.lists.get();
        let list = &mut lists[kind as usize];
        if let Slot::Waiting(w) = &mut slots[key] {
            w.prev = list.tail;
            w.next = NONE;
        }
        match list.tail {
            NONE => list.head = key,
            tail => {
                if let Slot::Waiting(t) = &mut slots[tail] {
                    t.next = key;
                }
            }
        }
        list.tail = key;
        self.lists.set(lists);
    }

    /// Take the wait in slot `key` out of its kind's list.
    fn unlink(&self, slots: &mut [Slot], key: usize) {
        let Slot::Waiting(w) = &slots[key] else {
            return;
        };
        let (prev, next, kind) = (w.prev, w.next, w.kind);
        let mut lists = self.lists.get();
        let list = &mut lists[kind as usize];
        match prev {
            NONE => list.head = next,
            p => {
                if let Slot::Waiting(p) = &mut slots[p] {
                    p.next = next;
                }
            }
        }
        match next {
            NONE => list.tail = prev,
            n => {
                if let Slot::Waiting(n) = &mut slots[n] {
                    n.prev = prev;
                }
            }
        }
        self.lists.set(lists);
    }
}

/// Resolves when the wait is over; dropping it gives the slot back.
pub(crate) struct IdleWait<'a> {
    waits: &'a IdleWaits,
    key: usize,
}

impl Future for IdleWait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut slots = self.waits.slots.borrow_mut();
        match &mut slots[self.key] {
            Slot::Waiting(w) if w.over => Poll::Ready(()),
            Slot::Waiting(w) => {
                match &w.waker {
                    Some(old) if old.will_wake(cx.waker()) => {}
                    _ => w.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            Slot::Free { .. } => Poll::Ready(()),
        }
    }
}

impl Drop for IdleWait<'_> {
    fn drop(&mut self) {
        let mut slots = self.waits.slots.borrow_mut();
        if matches!(&slots[self.key], Slot::Waiting(w) if !w.over) {
            self.waits.unlink(&mut slots, self.key);
        }
        slots[self.key] = Slot::Free {
            next: self.waits.free.get(),
        };
        self.waits.free.set(self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll(w: &mut IdleWait<'_>) -> Poll<()> {
        let mut cx = Context::from_waker(Waker::noop());
        Pin::new(w).poll(&mut cx)
    }

    #[tokio::test(start_paused = true)]
    async fn ends_after_its_limit_and_not_before() {
        let waits = IdleWaits::new();
        let mut w = waits.wait(Duration::from_secs(1), Kind::Fresh);
        for _ in 0..4 {
            tokio::time::advance(SWEEP).await;
            waits.sweep();
            assert!(poll(&mut w).is_pending());
        }
        tokio::time::advance(SWEEP).await;
        waits.sweep();
        assert!(poll(&mut w).is_ready());
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_only_keepalive_waits_after_a_grace() {
        let waits = IdleWaits::new();
        let mut idle = waits.wait(Duration::from_secs(60), Kind::Idle);
        let mut first = waits.wait(Duration::from_secs(60), Kind::Fresh);
        waits.shutdown();
        let mut later = waits.wait(Duration::from_secs(60), Kind::Idle);
        waits.sweep();
        assert!(poll(&mut idle).is_pending(), "a request may be on its way");
        assert!(poll(&mut later).is_pending());
        tokio::time::advance(DRAIN_GRACE + SWEEP).await;
        waits.sweep();
        assert!(poll(&mut idle).is_ready());
        assert!(poll(&mut later).is_ready());
        assert!(poll(&mut first).is_pending());
    }

    #[tokio::test(start_paused = true)]
    async fn slots_are_reused() {
        let waits = IdleWaits::new();
        for _ in 0..100 {
            let a = waits.wait(Duration::from_secs(1), Kind::Idle);
            let b = waits.wait(Duration::from_secs(1), Kind::Fresh);
            drop(a);
            drop(b);
        }
        assert_eq!(waits.slots.borrow().len(), 2);
        assert!(!waits.can_reclaim(Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn reclaims_the_longest_idle_first() {
        let waits = IdleWaits::new();
        let limit = Duration::from_secs(60);
        let mut a = waits.wait(limit, Kind::Idle);
        tokio::time::advance(SWEEP).await;
        waits.sweep();
        let mut b = waits.wait(limit, Kind::Idle);
        let mut c = waits.wait(limit, Kind::Idle);
        // A wait that ended by itself is out of the running.
        drop(b);
        b = waits.wait(limit, Kind::Idle);
        assert_eq!(waits.reclaim(2, Duration::ZERO), 2);
        assert!(poll(&mut a).is_ready());
        assert!(poll(&mut c).is_ready());
        assert!(poll(&mut b).is_pending());
        assert_eq!(waits.reclaim(5, Duration::ZERO), 1);
        assert!(poll(&mut b).is_ready());
        assert_eq!(waits.reclaim(5, Duration::ZERO), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn new_connections_get_a_grace_period() {
        let waits = IdleWaits::new();
        let grace = Duration::from_secs(2);
        let mut fresh = waits.wait(Duration::from_secs(60), Kind::Fresh);
        assert!(!waits.can_reclaim(grace));
        assert_eq!(waits.reclaim(10, grace), 0);
        // A keep-alive connection goes before any new one.
        let mut idle = waits.wait(Duration::from_secs(60), Kind::Idle);
        assert!(waits.can_reclaim(grace));
        assert_eq!(waits.reclaim(10, grace), 1);
        assert!(poll(&mut idle).is_ready());
        assert!(poll(&mut fresh).is_pending());
        tokio::time::advance(grace).await;
        waits.sweep();
        assert!(waits.can_reclaim(grace));
        assert_eq!(waits.reclaim(10, grace), 1);
        assert!(poll(&mut fresh).is_ready());
        // Timed-out and reclaimed waits are both out of the lists.
        let mut late = waits.wait(Duration::from_secs(1), Kind::Idle);
        tokio::time::advance(Duration::from_secs(2)).await;
        waits.sweep();
        assert!(poll(&mut late).is_ready());
        assert!(!waits.can_reclaim(Duration::ZERO));
    }
}
