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
    /// The last id given, and the transforms watched.
    running: Mutex<(u64, Vec<Running>)>,
    wake: Condvar,
}

impl Watch {
    fn lock(&self) -> MutexGuard<'_, (u64, Vec<Running>)> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

static WATCH: Watch = Watch {
    running: Mutex::new((0, Vec::new())),
    wake: Condvar::new(),
};

/// Whether the watcher thread started, once per process.
static STARTED: OnceLock<Result<(), String>> = OnceLock::new();

fn watcher() {
    let mut running = WATCH.lock();
    loop {
        let now = Instant::now();
        for r in running.1.iter_mut() {
            if !r.stopped && r.deadline <= now {
                // SAFETY: watched, so not yet freed (see the module doc).
                unsafe { sys::axkit_xslt_stop(r.ctxt as *mut XsltTransformContext) };
                r.stopped = true;
            }
        }
        let next = running
            .1
            .iter()
            .filter(|r| !r.stopped)
            .map(|r| r.deadline)
            .min();
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
        running.0 += 1;
        let id = running.0;
        running.1.push(Running {
            id,
            ctxt: ctxt as usize,
            deadline,
            stopped: false,
        });
        drop(running);
        WATCH.wake.notify_one();
        Ok(Watched { id })
    }

    /// Stop watching; whether the transform was stopped at its deadline.
    pub(crate) fn finish(self) -> bool {
        self.unwatch()
    }

    fn unwatch(&self) -> bool {
        let mut running = WATCH.lock();
        let at = running.1.iter().position(|r| r.id == self.id);
        at.is_some_and(|at| running.1.swap_remove(at).stopped)
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.unwatch();
    }
}
