//! A worker's pool of connections to one database: at most `pool=N` of
//! them, opened on first need, each lent to one call (or transaction) at
//! a time and given back when it ends, so that a slow statement holds its
//! own connection and nobody else's. The worker is one thread: the pool is
//! an `Rc` with a `RefCell`, and waiting for a free connection suspends
//! only the caller.
//!
//! A connection that died while idle (the server restarted) is dropped
//! when next taken and a new one opened: the pool reconnects on its own.
//! One given up in the middle of a call (its timeout struck, or its
//! request went away) is never lent again: the connector abandons it (a
//! PostgreSQL connection asks the server to cancel the statement).

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Spec;
use crate::error::Error;

/// How to open, check and give up one kind of connection.
pub(crate) trait Connector: 'static {
    type Conn: 'static;

    /// Open a connection to `spec`'s database (the caller bounds the wait).
    async fn connect(&self, spec: &Spec) -> Result<Self::Conn, Error>;

    /// Whether an idle connection can still be used.
    fn alive(conn: &Self::Conn) -> bool;

    /// A connection given up in the middle of a call.
    fn abandon(conn: Self::Conn) {
        drop(conn);
    }
}

pub(crate) struct Pool<C: Connector> {
    pub spec: Spec,
    connector: C,
    idle: RefCell<Vec<C::Conn>>,
    /// One permit per connection that may be open.
    slots: Arc<Semaphore>,
}

impl<C: Connector> Pool<C> {
    pub fn new(spec: Spec, connector: C) -> Rc<Pool<C>> {
        let slots = Arc::new(Semaphore::new(spec.pool));
        Rc::new(Pool {
            spec,
            connector,
            idle: RefCell::new(Vec::new()),
            slots,
        })
    }

    /// `op`, bounded by the database's `timeout=`.
    pub async fn within<T>(&self, op: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
        match tokio::time::timeout(self.spec.timeout, op).await {
            Ok(result) => result,
            Err(_) => Err(Error::timeout(
                &self.spec.name,
                self.spec.kind,
                self.spec.timeout,
            )),
        }
    }

    /// Close every idle connection (after one turned out dead: the server
    /// probably restarted, and they are dead too).
    pub fn drop_idle(&self) {
        let idle = std::mem::take(&mut *self.idle.borrow_mut());
        drop(idle);
    }

    /// A connection of this pool: an idle one, or a new one when fewer
    /// than `pool=` are open, or the next one given back.
    pub async fn get(self: &Rc<Self>) -> Result<Pooled<C>, Error> {
        let slot = match self.slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => self
                .slots
                .clone()
                .acquire_owned()
                .await
                .expect("the pool's semaphore is never closed"),
        };
        loop {
            let idle = self.idle.borrow_mut().pop();
            match idle {
                Some(conn) if C::alive(&conn) => {
                    return Ok(Pooled {
                        pool: self.clone(),
                        conn: Some(conn),
                        busy: false,
                        _slot: slot,
                    });
                }
                Some(dead) => drop(dead),
                None => break,
            }
        }
        let conn = self.connector.connect(&self.spec).await?;
        Ok(Pooled {
            pool: self.clone(),
            conn: Some(conn),
            busy: false,
            _slot: slot,
        })
    }
}

/// A connection lent by a [`Pool`], given back on drop.
pub(crate) struct Pooled<C: Connector> {
    pool: Rc<Pool<C>>,
    conn: Option<C::Conn>,
    /// A call is under way: if this is dropped now, the connection is in
    /// an unknown state and is abandoned rather than given back.
    busy: bool,
    _slot: OwnedSemaphorePermit,
}

impl<C: Connector> Pooled<C> {
    pub fn spec(&self) -> &Spec {
        &self.pool.spec
    }

    pub fn pool(&self) -> &Rc<Pool<C>> {
        &self.pool
    }

    /// A call was given up half-way (see [`start`](Self::start)).
    pub fn is_busy(&self) -> bool {
        self.busy
    }

    /// The connection, for a call about to start: until
    /// [`done`](Self::done), dropping this abandons it.
    pub fn start(&mut self) -> &mut C::Conn {
        self.busy = true;
        self.conn
            .as_mut()
            .expect("a lent connection is there until taken")
    }

    /// The connection was closed by [`discard`](Self::discard) (or is
    /// taken out).
    pub fn is_discarded(&self) -> bool {
        self.conn.is_none()
    }

    /// The call ended with the connection in a known state.
    pub fn done(&mut self) {
        self.busy = false;
    }

    /// Take the connection out (to move it to a blocking thread); the
    /// slot stays taken until [`put`](Self::put) or drop. None when a call
    /// that had taken it was given up.
    pub fn take(&mut self) -> Option<C::Conn> {
        self.conn.take()
    }

    pub fn put(&mut self, conn: C::Conn) {
        self.conn = Some(conn);
    }

    /// Close the connection instead of giving it back (it broke).
    pub fn discard(&mut self) {
        self.conn = None;
        self.busy = false;
    }
}

impl<C: Connector> Drop for Pooled<C> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if self.busy {
            C::abandon(conn);
        } else if C::alive(&conn) {
            self.pool.idle.borrow_mut().push(conn);
        }
    }
}
