//! Stopping a transform that runs past its deadline, from outside it: a
//! transform runs in C, where no timer of the caller reaches, and may be
//! running on the caller's event loop. One thread per process, started
//! with the first transform that has a deadline, watches the running
//! ones and stops each that passes its deadline (`axkit_xslt_stop` in the
//! shim: libxslt ends its sequences of instructions once the context's
//! state says stopped, and libxml2 ends an XPath evaluation at its next
//! step once past the operation limit it is given).
//!
//! A transform is watched from before it starts until before its context
//! is freed: the watcher touches a context only while holding the lock
//! the transform takes to be unwatched, so it never touches a freed one.

use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use crate::sys::{self, XsltTransformContext};
use crate::XmlError;

struct Running {
    id: u64,
    /// The transform's context, as an address (it is only dereferenced
    /// by the shim, under the lock, while the transform is watched).
    ctxt: usize,
    deadline: Instant,
    stopped: bool,
}

struct Watch {
    running: Mutex<Watching>,
    wake: Condvar,
}

struct Watching {
    /// The last id given.
    last_id: u64,
    transforms: Vec<Running>,
    /// When the watcher wakes next by itself (None: not until woken). A
    /// transform whose deadline is no earlier needs no wake-up: most end
    /// long before their deadline, and a futex wake and a thread's turn for
    /// each would cost more than the watch.
    wakes_at: Option<Instant>,
}

impl Watch {
    fn lock(&self) -> MutexGuard<'_, Watching> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

static WATCH: Watch = Watch {
    running: Mutex::new(Watching {
        last_id: 0,
        transforms: Vec::new(),
        wakes_at: None,
    }),
    wake: Condvar::new(),
};

/// Whether the watcher thread started, once per process.
static STARTED: OnceLock<Result<(), String>> = OnceLock::new();

fn watcher() {
    let mut running = WATCH.lock();
    loop {
        let now = Instant::now();
        for r in running.transforms.iter_mut() {
            if !r.stopped && r.deadline <= now {
                // SAFETY: watched, so not yet freed (see the module doc).
                unsafe { sys::axkit_xslt_stop(r.ctxt as *mut XsltTransformContext) };
                r.stopped = true;
            }
        }
        let next = running
            .transforms
            .iter()
            .filter(|r| !r.stopped)
            .map(|r| r.deadline)
            .min();
        running.wakes_at = next;
        running = match next {
            Some(at) => {
                let wait = at.saturating_duration_since(now);
                WATCH
                    .wake
                    .wait_timeout(running, wait)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
            None => WATCH
                .wake
                .wait(running)
                .unwrap_or_else(PoisonError::into_inner),
        };
    }
}

/// A transform being watched: [`finish`](Watched::finish) it (or drop
/// it) before its context is freed.
pub(crate) struct Watched {
    id: u64,
}

impl Watched {
    /// Watch the transform of `ctxt`, to be stopped at `deadline`.
    pub(crate) fn start(
        ctxt: *mut XsltTransformContext,
        deadline: Instant,
    ) -> Result<Watched, XmlError> {
        STARTED
            .get_or_init(|| {
                std::thread::Builder::new()
                    .name("axkit-xslt-deadline".into())
                    .spawn(watcher)
                    .map(drop)
                    .map_err(|e| format!("could not start the transforms' watch: {e}"))
            })
            .clone()
            .map_err(XmlError::new)?;
        let mut running = WATCH.lock();
        running.last_id += 1;
        let id = running.last_id;
        running.transforms.push(Running {
            id,
            ctxt: ctxt as usize,
            deadline,
            stopped: false,
        });
        let earlier = running.wakes_at.is_none_or(|at| deadline < at);
        if earlier {
            running.wakes_at = Some(deadline);
        }
        drop(running);
        if earlier {
            WATCH.wake.notify_one();
        }
        Ok(Watched { id })
    }

    /// Stop watching; whether the transform was stopped at its deadline.
    pub(crate) fn finish(self) -> bool {
        self.unwatch()
    }

    fn unwatch(&self) -> bool {
        let mut running = WATCH.lock();
        let at = running.transforms.iter().position(|r| r.id == self.id);
        at.is_some_and(|at| running.transforms.swap_remove(at).stopped)
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.unwatch();
    }
}
