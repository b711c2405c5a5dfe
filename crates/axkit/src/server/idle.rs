//! The deadlines of connections waiting for their next request, kept by
//! the worker in one table that a task sweeps four times a second.
//!
//! A tokio timer plus a shutdown subscription per wait cost more than
//! everything else a busy keep-alive connection does between two requests
//! (the timer wheel, the clock, the `Notify` lock). Idle timeouts need no
//! such precision: a wait here ends between its limit and half a second
//! after it (nginx and lighttpd keep these timeouts coarse too), and
//! registering one is a slot in a vector, without reading the clock.
//! Shutdown ends the waits that allow it at once.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;

/// How often deadlines are checked; also the clock's granularity here.
pub(crate) const SWEEP: Duration = Duration::from_millis(250);

enum Slot {
    Free { next: usize },
    Waiting(Wait),
}

struct Wait {
    deadline: Instant,
    /// Ends when the worker starts shutting down.
    on_shutdown: bool,
    over: bool,
    waker: Option<Waker>,
}

pub(crate) struct IdleWaits {
    slots: RefCell<Vec<Slot>>,
    /// Head of the free-slot list (`usize::MAX`: none).
    free: Cell<usize>,
    /// The clock as of the last sweep.
    now: Cell<Instant>,
    shutting_down: Cell<bool>,
}

impl IdleWaits {
    pub fn new() -> IdleWaits {
        IdleWaits {
            slots: RefCell::new(Vec::new()),
            free: Cell::new(usize::MAX),
            now: Cell::new(Instant::now()),
            shutting_down: Cell::new(false),
        }
    }

    /// A wait that ends `limit` from now (to within [`SWEEP`] twice), or at
    /// shutdown if `on_shutdown`.
    pub fn wait(&self, limit: Duration, on_shutdown: bool) -> IdleWait<'_> {
        // The clock is a sweep old: add a sweep so no wait ends early.
        let wait = Wait {
            deadline: self.now.get() + limit + SWEEP,
            on_shutdown,
            over: on_shutdown && self.shutting_down.get(),
            waker: None,
        };
        let mut slots = self.slots.borrow_mut();
        let key = match self.free.get() {
            usize::MAX => {
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
        IdleWait { waits: self, key }
    }

    /// End the waits whose deadline has passed.
    pub fn sweep(&self) {
        let now = Instant::now();
        self.now.set(now);
        self.end_where(|w| w.deadline <= now);
    }

    /// End every wait that allows it, now and from now on.
    pub fn shutdown(&self) {
        self.shutting_down.set(true);
        self.end_where(|w| w.on_shutdown);
    }

    fn end_where(&self, mut ends: impl FnMut(&Wait) -> bool) {
        for slot in self.slots.borrow_mut().iter_mut() {
            if let Slot::Waiting(w) = slot {
                if !w.over && ends(w) {
                    w.over = true;
                    if let Some(waker) = w.waker.take() {
                        waker.wake();
                    }
                }
            }
        }
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
        let mut w = waits.wait(Duration::from_secs(1), false);
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
    async fn shutdown_ends_only_waits_that_allow_it() {
        let waits = IdleWaits::new();
        let mut idle = waits.wait(Duration::from_secs(60), true);
        let mut first = waits.wait(Duration::from_secs(60), false);
        waits.shutdown();
        assert!(poll(&mut idle).is_ready());
        assert!(poll(&mut first).is_pending());
        let mut later = waits.wait(Duration::from_secs(60), true);
        assert!(poll(&mut later).is_ready());
    }

    #[tokio::test(start_paused = true)]
    async fn slots_are_reused() {
        let waits = IdleWaits::new();
        for _ in 0..100 {
            let a = waits.wait(Duration::from_secs(1), false);
            let b = waits.wait(Duration::from_secs(1), false);
            drop(a);
            drop(b);
        }
        assert_eq!(waits.slots.borrow().len(), 2);
    }
}
