//! The connections waiting for a request, kept by the worker in one table:
//! new connections that have not sent a byte yet, and keep-alive
//! connections between two requests. A task sweeps it four times a second
//! to end the waits that timed out and to park the ones that have lasted a
//! sweep; shutdown gives the keep-alive ones a short grace (a request they
//! send meanwhile is answered, with `Connection: close`, rather than lost
//! to a close under a client that was sending it); and
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
//! A wait is first *live*: its connection's task polls it beside the
//! socket's readiness, which costs nothing on a busy connection whose next
//! request comes within the sweep. One that outlasts a sweep is *parked*
//! (`park.rs`): its task ends and the slot keeps only a [`Parked`] record,
//! the socket and the little needed to rebuild the connection, in place,
//! so its deadline and its place in the lists (reclaim order) carry on. An
//! idle connection then costs its slot here, as nginx's costs its
//! `ngx_connection_t`, instead of a task, its future and tokio's
//! registration.
//!
//! Each kind of wait is also kept in a list in the order the waits began
//! (links through the slots, so no allocation): the longest wait is the
//! head, found without a scan however many connections the worker holds.
//! A connection with a request in flight (streaming, long-polling,
//! tunnelling) is never in the table, so it is never reclaimed here: only
//! a request its plugin marked reclaimable can be ended for a new client,
//! and that is `plugin/reclaim.rs`'s list.
//!
//! The same order spares the sweep a walk over every wait, which at tens
//! of thousands of idle connections a worker would cost a millisecond
//! and the cache's contents four times a second for nothing: the waits
//! to park are the ones begun two sweeps ago, found from the newest end;
//! and while every wait of a kind has the same limit (one
//! `KeepAliveTimeout`, one `HeaderTimeout`: the usual case) their
//! deadlines are in the same order, so the ones that timed out are found
//! from the oldest end. Only when servers with different limits have
//! mixed the order does the sweep walk the whole list.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;

use crate::server::metrics::ConnTrack;

/// How often deadlines are checked; also the clock's granularity here,
/// and how long a wait stays live before it is parked.
pub(crate) const SWEEP: Duration = Duration::from_millis(250);

/// How long a keep-alive connection waits for its next request once the
/// worker drains (reload, upgrade, stop). Closing it at once races a client
/// that is sending that request at the same moment: the request is then
/// lost (a reset, for a POST nothing a client may safely retry). Within
/// the grace the request is answered with `Connection: close`; a client
/// silent that long is not in the middle of sending one.
pub(crate) const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// No slot (end of a list, or of the free list).
const NONE: u32 = u32::MAX;

/// What a connection is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Its first request: nothing has been read from it yet.
    Fresh = 0,
    /// Its next request, after answering at least one (keep-alive).
    Idle = 1,
}

/// How a live wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// Timed out, reclaimed or drained: the connection closes.
    Over,
    /// Waited a sweep: the connection parks (it is still in its list).
    Park,
}

/// A parked connection: what rebuilds it when bytes arrive.
pub(crate) struct Parked {
    pub fd: OwnedFd,
    /// `ConnInfo::id`, kept so that logs and the console see one
    /// connection across its requests.
    pub id: u64,
    /// Requests answered on it (for `MaxKeepAliveRequests`).
    pub served: u32,
    /// The index of the listening socket that accepted it.
    pub listener: u16,
    /// Its entry in the metrics; dropping it counts the connection closed.
    pub track: ConnTrack,
}

enum Slot {
    Free { next: u32 },
    Waiting(Wait),
}

struct Wait {
    deadline: Instant,
    /// When the wait began (the sweep clock).
    since: Instant,
    /// How many sweeps had run when it began (`IdleWaits::sweeps`).
    born: u32,
    /// Neighbours in its kind's list (older, newer).
    prev: u32,
    next: u32,
    kind: Kind,
    state: State,
}

enum State {
    /// A task polls the wait. `end` Over: no longer in its kind's list.
    Live {
        waker: Option<Waker>,
        parkable: bool,
        end: Option<End>,
    },
    Parked(Parked),
}

/// The oldest and newest wait of one kind.
#[derive(Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
    /// No wait in it has an earlier deadline than one before it. Taking
    /// waits out keeps that true; so does shutdown's cap on deadlines (a
    /// `min` with one instant), and an empty list is ordered again.
    ordered: bool,
}

const EMPTY: List = List {
    head: NONE,
    tail: NONE,
    ordered: true,
};

pub(crate) struct IdleWaits {
    slots: RefCell<Vec<Slot>>,
    /// Head of the free-slot list.
    free: Cell<u32>,
    /// Live waits of each [`Kind`], oldest first.
    lists: Cell<[List; 2]>,
    /// The clock as of the last sweep.
    now: Cell<Instant>,
    /// Sweeps run so far (wrapping): a wait that has seen two of them
    /// began before the first and has lasted the time between them.
    sweeps: Cell<u32>,
    shutting_down: Cell<bool>,
}

impl IdleWaits {
    pub fn new() -> IdleWaits {
        IdleWaits {
            slots: RefCell::new(Vec::new()),
            free: Cell::new(NONE),
            lists: Cell::new([EMPTY; 2]),
            now: Cell::new(Instant::now()),
            sweeps: Cell::new(0),
            shutting_down: Cell::new(false),
        }
    }

    /// A wait that ends `limit` from now (to within [`SWEEP`] twice), when
    /// reclaimed, or (an `Idle` one) [`DRAIN_GRACE`] after shutdown; and,
    /// when `parkable`, that asks to be parked once it has lasted a sweep.
    pub fn wait(&self, limit: Duration, kind: Kind, parkable: bool) -> IdleWait<'_> {
        let now = self.now.get();
        let limit = match kind {
            Kind::Idle if self.shutting_down.get() => limit.min(DRAIN_GRACE),
            _ => limit,
        };
        // The clock is a sweep old: add a sweep so no wait ends early.
        let wait = Wait {
            deadline: now + limit + SWEEP,
            since: now,
            born: self.sweeps.get(),
            prev: NONE,
            next: NONE,
            kind,
            state: State::Live {
                waker: None,
                parkable,
                end: None,
            },
        };
        let mut slots = self.slots.borrow_mut();
        let key = match self.free.get() {
            NONE => {
                slots.push(Slot::Waiting(wait));
                (slots.len() - 1) as u32
            }
            key => {
                if let Slot::Free { next } = slots[key as usize] {
                    self.free.set(next);
                }
                slots[key as usize] = Slot::Waiting(wait);
                key
            }
        };
        self.link(&mut slots, key, kind);
        IdleWait { waits: self, key }
    }

    /// End the waits whose deadline has passed, and ask the parkable live
    /// ones that have lasted a sweep to park. Returns how many parked
    /// connections were closed (their counts are the caller's to drop).
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        self.now.set(now);
        let sweeps = self.sweeps.get().wrapping_add(1);
        self.sweeps.set(sweeps);
        let mut slots = self.slots.borrow_mut();
        let mut closed = 0;
        for kind in [Kind::Fresh, Kind::Idle] {
            closed += self.end_expired(&mut slots, kind, now);
            self.ask_to_park(&mut slots, kind, sweeps);
        }
        closed
    }

    /// End the waits of `kind` whose deadline has passed: from the oldest
    /// until one has not, if the list is in deadline order; else all of
    /// it. Returns how many parked connections were closed.
    fn end_expired(&self, slots: &mut [Slot], kind: Kind, now: Instant) -> usize {
        let list = self.lists.get()[kind as usize];
        let mut closed = 0;
        let mut key = list.head;
        while let Some(Slot::Waiting(w)) = slots.get(key as usize) {
            let next = w.next;
            if w.deadline <= now {
                closed += usize::from(self.end(slots, key));
            } else if list.ordered {
                break;
            }
            key = next;
        }
        closed
    }

    /// Ask the parkable live waits of `kind` that two sweeps have seen
    /// to park. By `since` (the clock of the sweep before it began) every
    /// wait a sweep finds would look a sweep old, however young: under
    /// load that parked connections between two requests a millisecond
    /// apart. One seen by two sweeps has lasted the interval between
    /// them; an older one was asked by the sweep before, so the walk from
    /// the newest stops there.
    fn ask_to_park(&self, slots: &mut [Slot], kind: Kind, sweeps: u32) {
        let mut key = self.lists.get()[kind as usize].tail;
        while let Some(Slot::Waiting(w)) = slots.get_mut(key as usize) {
            let seen = sweeps.wrapping_sub(w.born);
            if seen > 2 {
                break;
            }
            if let (
                2,
                State::Live {
                    waker,
                    parkable: true,
                    end: end @ None,
                },
            ) = (seen, &mut w.state)
            {
                *end = Some(End::Park);
                if let Some(waker) = waker.take() {
                    waker.wake();
                }
            }
            key = w.prev;
        }
    }

    /// End every keep-alive wait within [`DRAIN_GRACE`], now and from now
    /// on. (A `min` with one instant keeps the lists' deadline order.)
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
    /// probably a client about to send its request). Returns how many, and
    /// how many of those were parked connections, closed here.
    pub fn reclaim(&self, most: usize, fresh_grace: Duration) -> (usize, usize) {
        let (mut ended, mut closed) = (0, 0);
        for kind in [Kind::Idle, Kind::Fresh] {
            while ended < most {
                let head = self.lists.get()[kind as usize].head;
                if head == NONE || (kind == Kind::Fresh && !self.waited(head, fresh_grace)) {
                    break;
                }
                closed += usize::from(self.end(&mut self.slots.borrow_mut(), head));
                ended += 1;
            }
        }
        (ended, closed)
    }

    /// Park the live wait `key`: its connection's task hands over `conn`
    /// and ends. The wait keeps its deadline and its place in its list.
    fn park(&self, key: u32, conn: Parked) {
        if let Slot::Waiting(w) = &mut self.slots.borrow_mut()[key as usize] {
            w.state = State::Parked(conn);
        }
    }

    /// Whether slot `key` holds the parked connection on `fd` (an event
    /// from the parking epoll names both, so a stale one is recognised).
    pub fn is_parked(&self, key: u32, fd: RawFd) -> bool {
        matches!(
            self.slots.borrow().get(key as usize),
            Some(Slot::Waiting(Wait { state: State::Parked(p), .. })) if p.fd.as_raw_fd() == fd
        )
    }

    /// Take the parked connection out of slot `key` (its wait is over),
    /// with the deadline its wait had.
    pub fn unpark(&self, key: u32) -> Option<(Parked, Instant)> {
        let mut slots = self.slots.borrow_mut();
        if !matches!(
            slots.get(key as usize),
            Some(Slot::Waiting(Wait {
                state: State::Parked(_),
                ..
            }))
        ) {
            return None;
        }
        self.unlink(&mut slots, key);
        match self.release(&mut slots, key) {
            Slot::Waiting(Wait {
                state: State::Parked(conn),
                deadline,
                ..
            }) => Some((conn, deadline)),
            _ => None,
        }
    }

    /// Whether the wait in slot `key` began at least `grace` ago.
    fn waited(&self, key: u32, grace: Duration) -> bool {
        match &self.slots.borrow()[key as usize] {
            Slot::Waiting(w) => w.since + grace <= self.now.get(),
            Slot::Free { .. } => false,
        }
    }

    /// End the wait in slot `key`, still in its list: a live one's task is
    /// woken to close its connection; a parked one is closed here (true).
    fn end(&self, slots: &mut [Slot], key: u32) -> bool {
        self.unlink(slots, key);
        let Slot::Waiting(w) = &mut slots[key as usize] else {
            return false;
        };
        match &mut w.state {
            State::Live { waker, end, .. } => {
                *end = Some(End::Over);
                if let Some(waker) = waker.take() {
                    waker.wake();
                }
                false
            }
            State::Parked(_) => {
                // Dropping the record closes the socket.
                drop(self.release(slots, key));
                true
            }
        }
    }

    /// Put slot `key` on the free list, returning what it held.
    fn release(&self, slots: &mut [Slot], key: u32) -> Slot {
        let free = Slot::Free {
            next: self.free.replace(key),
        };
        std::mem::replace(&mut slots[key as usize], free)
    }

    /// Append the wait in slot `key` to its kind's list (the newest).
    fn link(&self, slots: &mut [Slot], key: u32, kind: Kind) {
        let mut lists = self.lists.get();
        let list = &mut lists[kind as usize];
        let Slot::Waiting(w) = &mut slots[key as usize] else {
            return;
        };
        w.prev = list.tail;
        w.next = NONE;
        let deadline = w.deadline;
        match list.tail {
            NONE => list.head = key,
            tail => {
                if let Slot::Waiting(t) = &mut slots[tail as usize] {
                    t.next = key;
                    list.ordered &= t.deadline <= deadline;
                }
            }
        }
        list.tail = key;
        self.lists.set(lists);
    }

    /// Take the wait in slot `key` out of its kind's list.
    fn unlink(&self, slots: &mut [Slot], key: u32) {
        let Slot::Waiting(w) = &slots[key as usize] else {
            return;
        };
        let (prev, next, kind) = (w.prev, w.next, w.kind);
        let mut lists = self.lists.get();
        let list = &mut lists[kind as usize];
        match prev {
            NONE => list.head = next,
            p => {
                if let Slot::Waiting(p) = &mut slots[p as usize] {
                    p.next = next;
                }
            }
        }
        match next {
            NONE => list.tail = prev,
            n => {
                if let Slot::Waiting(n) = &mut slots[n as usize] {
                    n.prev = prev;
                }
            }
        }
        if list.head == NONE {
            list.ordered = true;
        }
        self.lists.set(lists);
    }
}

/// Resolves when the wait is over or asks to be parked; dropping it gives
/// the slot back.
pub(crate) struct IdleWait<'a> {
    waits: &'a IdleWaits,
    key: u32,
}

impl IdleWait<'_> {
    /// The slot's number (what the parking epoll's events carry).
    pub fn key(&self) -> u32 {
        self.key
    }

    /// When the wait ends unless bytes come first.
    pub fn deadline(&self) -> Instant {
        match &self.waits.slots.borrow()[self.key as usize] {
            Slot::Waiting(w) => w.deadline,
            Slot::Free { .. } => self.waits.now.get(),
        }
    }

    /// Turn this wait, which asked to park, into the parked connection
    /// `conn`: the slot stays taken until the connection wakes or closes.
    pub fn park(self, conn: Parked) {
        self.waits.park(self.key, conn);
        std::mem::forget(self);
    }
}

impl Future for IdleWait<'_> {
    type Output = End;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<End> {
        let mut slots = self.waits.slots.borrow_mut();
        match &mut slots[self.key as usize] {
            Slot::Waiting(Wait {
                state: State::Live { waker, end, .. },
                ..
            }) => match end {
                Some(end) => Poll::Ready(*end),
                None => {
                    match waker {
                        Some(old) if old.will_wake(cx.waker()) => {}
                        _ => *waker = Some(cx.waker().clone()),
                    }
                    Poll::Pending
                }
            },
            _ => Poll::Ready(End::Over),
        }
    }
}

impl Drop for IdleWait<'_> {
    fn drop(&mut self) {
        let mut slots = self.waits.slots.borrow_mut();
        if !matches!(
            &slots[self.key as usize],
            Slot::Waiting(Wait {
                state: State::Live {
                    end: Some(End::Over),
                    ..
                },
                ..
            })
        ) {
            self.waits.unlink(&mut slots, self.key);
        }
        self.waits.release(&mut slots, self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll(w: &mut IdleWait<'_>) -> Poll<End> {
        let mut cx = Context::from_waker(Waker::noop());
        Pin::new(w).poll(&mut cx)
    }

    #[tokio::test(start_paused = true)]
    async fn ends_after_its_limit_and_not_before() {
        let waits = IdleWaits::new();
        let mut w = waits.wait(Duration::from_secs(1), Kind::Fresh, false);
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
        let mut idle = waits.wait(Duration::from_secs(60), Kind::Idle, false);
        let mut first = waits.wait(Duration::from_secs(60), Kind::Fresh, false);
        waits.shutdown();
        let mut later = waits.wait(Duration::from_secs(60), Kind::Idle, false);
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
    async fn waits_with_different_limits_each_end_on_time() {
        let waits = IdleWaits::new();
        let ordered = |w: &IdleWaits| w.lists.get()[Kind::Idle as usize].ordered;
        let mut long = waits.wait(Duration::from_secs(60), Kind::Idle, false);
        let mut short = waits.wait(Duration::from_secs(1), Kind::Idle, false);
        assert!(!ordered(&waits));
        tokio::time::advance(Duration::from_secs(1) + SWEEP).await;
        waits.sweep();
        assert_eq!(poll(&mut short), Poll::Ready(End::Over));
        assert!(
            poll(&mut long).is_pending(),
            "older, but with a later deadline"
        );
        drop((long, short));
        assert!(ordered(&waits), "an empty list is in order again");
        // In order, the sweep stops at the first wait that has not timed
        // out, and still ends every one that has.
        let mut a = waits.wait(Duration::from_secs(1), Kind::Idle, false);
        tokio::time::advance(SWEEP).await;
        waits.sweep();
        let mut b = waits.wait(Duration::from_secs(1), Kind::Idle, false);
        assert!(ordered(&waits));
        tokio::time::advance(Duration::from_secs(1)).await;
        waits.sweep();
        assert_eq!(poll(&mut a), Poll::Ready(End::Over));
        assert!(poll(&mut b).is_pending());
        tokio::time::advance(SWEEP).await;
        waits.sweep();
        assert_eq!(poll(&mut b), Poll::Ready(End::Over));
    }

    #[tokio::test(start_paused = true)]
    async fn slots_are_reused() {
        let waits = IdleWaits::new();
        for _ in 0..100 {
            let a = waits.wait(Duration::from_secs(1), Kind::Idle, false);
            let b = waits.wait(Duration::from_secs(1), Kind::Fresh, false);
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
        let mut a = waits.wait(limit, Kind::Idle, false);
        tokio::time::advance(SWEEP).await;
        waits.sweep();
        let mut b = waits.wait(limit, Kind::Idle, false);
        let mut c = waits.wait(limit, Kind::Idle, false);
        // A wait that ended by itself is out of the running.
        drop(b);
        b = waits.wait(limit, Kind::Idle, false);
        assert_eq!(waits.reclaim(2, Duration::ZERO).0, 2);
        assert!(poll(&mut a).is_ready());
        assert!(poll(&mut c).is_ready());
        assert!(poll(&mut b).is_pending());
        assert_eq!(waits.reclaim(5, Duration::ZERO).0, 1);
        assert!(poll(&mut b).is_ready());
        assert_eq!(waits.reclaim(5, Duration::ZERO).0, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn new_connections_get_a_grace_period() {
        let waits = IdleWaits::new();
        let grace = Duration::from_secs(2);
        let mut fresh = waits.wait(Duration::from_secs(60), Kind::Fresh, false);
        assert!(!waits.can_reclaim(grace));
        assert_eq!(waits.reclaim(10, grace).0, 0);
        // A keep-alive connection goes before any new one.
        let mut idle = waits.wait(Duration::from_secs(60), Kind::Idle, false);
        assert!(waits.can_reclaim(grace));
        assert_eq!(waits.reclaim(10, grace).0, 1);
        assert!(poll(&mut idle).is_ready());
        assert!(poll(&mut fresh).is_pending());
        tokio::time::advance(grace).await;
        waits.sweep();
        assert!(waits.can_reclaim(grace));
        assert_eq!(waits.reclaim(10, grace).0, 1);
        assert!(poll(&mut fresh).is_ready());
        // Timed-out and reclaimed waits are both out of the lists.
        let mut late = waits.wait(Duration::from_secs(1), Kind::Idle, false);
        tokio::time::advance(Duration::from_secs(2)).await;
        waits.sweep();
        assert!(poll(&mut late).is_ready());
        assert!(!waits.can_reclaim(Duration::ZERO));
    }

    /// A parked connection's record, on a descriptor of its own.
    fn record() -> Parked {
        Parked {
            fd: std::fs::File::open("/dev/null").unwrap().into(),
            id: 1,
            served: 1,
            listener: 0,
            track: ConnTrack::none(),
        }
    }

    /// Park `w` (which asked to) with a fresh record: its slot and fd.
    fn park(w: IdleWait<'_>) -> (u32, RawFd) {
        let conn = record();
        let (key, fd) = (w.key(), conn.fd.as_raw_fd());
        w.park(conn);
        (key, fd)
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_that_began_since_the_last_sweep_is_not_parked() {
        let waits = IdleWaits::new();
        waits.sweep();
        tokio::time::advance(SWEEP - Duration::from_millis(1)).await;
        let mut w = waits.wait(Duration::from_secs(60), Kind::Idle, true);
        tokio::time::advance(Duration::from_millis(1)).await;
        waits.sweep();
        assert!(poll(&mut w).is_pending(), "it began a millisecond ago");
        tokio::time::advance(SWEEP).await;
        waits.sweep();
        assert_eq!(poll(&mut w), Poll::Ready(End::Park));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_parks_after_a_sweep_and_keeps_its_deadline() {
        let waits = IdleWaits::new();
        let mut w = waits.wait(Duration::from_secs(1), Kind::Idle, true);
        let mut unparkable = waits.wait(Duration::from_secs(1), Kind::Idle, false);
        waits.sweep();
        assert!(poll(&mut w).is_pending(), "not before a sweep has passed");
        tokio::time::advance(SWEEP).await;
        assert_eq!(waits.sweep(), 0);
        assert_eq!(poll(&mut w), Poll::Ready(End::Park));
        assert!(poll(&mut unparkable).is_pending());
        let (key, fd) = park(w);
        assert!(waits.is_parked(key, fd));
        assert!(
            !waits.is_parked(key, fd + 1),
            "an event for another fd is stale"
        );
        for _ in 0..3 {
            tokio::time::advance(SWEEP).await;
            assert_eq!(waits.sweep(), 0);
        }
        tokio::time::advance(SWEEP).await;
        assert_eq!(waits.sweep(), 1, "the parked connection timed out");
        assert!(!waits.is_parked(key, fd));
        assert_eq!(poll(&mut unparkable), Poll::Ready(End::Over));
        drop(unparkable);
        // Both slots are free again.
        let _a = waits.wait(Duration::from_secs(1), Kind::Fresh, true);
        let _b = waits.wait(Duration::from_secs(1), Kind::Fresh, true);
        assert_eq!(waits.slots.borrow().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn parked_connections_are_reclaimed_in_order_and_woken() {
        let waits = IdleWaits::new();
        let limit = Duration::from_secs(60);
        let a = waits.wait(limit, Kind::Idle, true);
        let mut b = waits.wait(limit, Kind::Idle, true);
        tokio::time::advance(SWEEP).await;
        waits.sweep();
        let c = waits.wait(limit, Kind::Idle, true);
        let (ka, fa) = park(a);
        tokio::time::advance(SWEEP).await;
        waits.sweep();
        let (kc, fc) = park(c);
        // `b` asked to park but its task has not run yet: it keeps its
        // place between the two parked ones.
        assert_eq!(waits.reclaim(1, Duration::ZERO), (1, 1));
        assert!(!waits.is_parked(ka, fa));
        assert_eq!(waits.reclaim(1, Duration::ZERO), (1, 0));
        assert_eq!(poll(&mut b), Poll::Ready(End::Over));
        // Woken by its bytes: out of the table, so never reclaimed.
        let (woken, _) = waits.unpark(kc).expect("parked");
        assert_eq!(woken.fd.as_raw_fd(), fc);
        assert!(waits.unpark(kc).is_none());
        assert!(!waits.can_reclaim(Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_closes_parked_keepalive_connections_after_the_grace() {
        let waits = IdleWaits::new();
        let idle = waits.wait(Duration::from_secs(60), Kind::Idle, true);
        let fresh = waits.wait(Duration::from_secs(60), Kind::Fresh, true);
        tokio::time::advance(SWEEP).await;
        waits.sweep();
        let (ki, fi) = park(idle);
        let (kf, ff) = park(fresh);
        waits.shutdown();
        assert_eq!(waits.sweep(), 0);
        tokio::time::advance(DRAIN_GRACE + SWEEP).await;
        assert_eq!(waits.sweep(), 1);
        assert!(!waits.is_parked(ki, fi));
        assert!(
            waits.is_parked(kf, ff),
            "a new connection keeps its HeaderTimeout"
        );
    }
}
