//! Responses that a worker at `MaxConnections` may end to make room for a
//! new client ([`Context::set_reclaimable`](super::Context::set_reclaimable)):
//! long-lived waits and streams that their client resumes by itself once
//! they end (an event stream, which `EventSource` reopens with
//! `Last-Event-ID`; a long poll, which the client sends again). Without
//! them a worker full of streams, which send heartbeats and never time
//! out, would serve no new client for as long as they last.
//!
//! Each worker keeps its marked requests in one list, oldest first: when
//! closing idle and silent connections frees nothing, the oldest is asked
//! to end ([`Reclaimable::ask_oldest`]), which wakes whatever its handler
//! waits on ([`Reclaim::asked`]); the handler ends its response as on a
//! drain, and the connection closes after it. A request that is not
//! marked costs nothing here: the mark lives in the request's state,
//! which a request without one never looks at.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use tokio::sync::Notify;

use crate::server::WorkerHandle;

/// A reclaimable request's side of the mark: whether the worker asked it
/// to end, and the wake-up for its waits. Cheap to clone.
#[derive(Clone)]
pub struct Reclaim {
    mark: Rc<Mark>,
}

struct Mark {
    asked: Cell<bool>,
    wake: Notify,
}

impl Reclaim {
    /// Whether the worker has asked this request to end.
    pub fn is_asked(&self) -> bool {
        self.mark.asked.get()
    }

    /// Resolves once the worker asks this request to end.
    pub async fn asked(&self) {
        // Registered before the flag is read: `notify_waiters` wakes a
        // `Notified` made before it, even one not polled yet.
        let woken = self.mark.wake.notified();
        if self.is_asked() {
            return;
        }
        woken.await;
    }
}

/// A worker's reclaimable requests, by age.
#[derive(Default)]
pub(crate) struct Reclaimable {
    /// Keyed by the order they were marked in: the first is the oldest.
    marks: RefCell<BTreeMap<u64, Rc<Mark>>>,
    next: Cell<u64>,
}

impl Reclaimable {
    /// Whether any request could be asked to end.
    pub fn is_empty(&self) -> bool {
        self.marks.borrow().is_empty()
    }

    /// Ask up to `most` of the oldest marked requests to end; they leave
    /// the list (a second new client asks the next one). Returns how many.
    pub fn ask_oldest(&self, most: usize) -> usize {
        let mut asked = 0;
        while asked < most {
            let Some((_, mark)) = self.marks.borrow_mut().pop_first() else {
                break;
            };
            mark.asked.set(true);
            mark.wake.notify_waiters();
            asked += 1;
        }
        asked
    }
}

/// Kept in a marked request's state: its mark, which leaves the worker's
/// list when the request ends (or an internal redirect clears the state).
pub(crate) struct Listed {
    pub reclaim: Reclaim,
    key: u64,
    worker: Rc<WorkerHandle>,
}

impl Listed {
    /// Put a new mark at the end of `worker`'s list.
    pub fn new(worker: &Rc<WorkerHandle>) -> Listed {
        let list = &worker.reclaimable;
        let key = list.next.get();
        list.next.set(key + 1);
        let mark = Rc::new(Mark {
            asked: Cell::new(false),
            wake: Notify::new(),
        });
        list.marks.borrow_mut().insert(key, mark.clone());
        Listed {
            reclaim: Reclaim { mark },
            key,
            worker: worker.clone(),
        }
    }
}

impl Drop for Listed {
    fn drop(&mut self) {
        self.worker.reclaimable.marks.borrow_mut().remove(&self.key);
    }
}
