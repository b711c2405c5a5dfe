//! One worker process: a single-threaded event loop that accepts on the
//! inherited listening sockets, hands each connection to the request walk
//! (`walk.rs`), keeps within `MaxConnections`, sweeps the idle waits,
//! wakes parked connections (`park.rs`), and
//! shuts down when told to (letting requests in flight finish).

use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::core;
use crate::plugin::{Descriptors, Level};
use crate::server::idle;
use crate::server::park;
use crate::server::runtime::WorkerRt;
use crate::server::walk;

/// At `MaxConnections`, a new connection that has not sent a byte for
/// this long may be closed to make room: it is more likely a client that
/// holds a slot than one about to send its request.
const FRESH_GRACE: Duration = Duration::from_secs(3);

/// How long a nearly full worker waits before it accepts another client.
const CROWDED_PAUSE: Duration = Duration::from_millis(10);

/// How often a worker at `MaxConnections` says that it closes idle
/// connections (it may do so for every new client).
const RECLAIM_LOG_EVERY: Duration = Duration::from_secs(10);

/// How often a worker whose accepts fail (out of descriptors with none
/// to close) says so: it retries every 50 ms.
const ACCEPT_FAILED_LOG_EVERY: Duration = Duration::from_secs(10);

/// How many connections a worker must have lost since its peak (and at
/// least half of them) before it gives the freed memory back.
const TRIM_AFTER_FALL: usize = 1024;

/// How long a `MaxConnections` lowered by a shortage of descriptors stays
/// lowered after the last one, unless the open-file limit is raised
/// meanwhile: the worker's own connections ran it out, and were it to take
/// as many again, the client that took the last descriptor would get a 500.
const FDS_SHORT_FOR: Duration = Duration::from_secs(30);

impl WorkerRt {
    /// A connection began (accepted, or a background request's loopback).
    pub fn connection_opened(&self) {
        let active = self.active.get() + 1;
        self.active.set(active);
        if active > self.conn_peak.get() {
            self.conn_peak.set(active);
        }
    }

    /// A connection ended.
    pub fn connection_closed(&self) {
        self.connections_closed(1);
    }

    /// `n` connections ended (parked ones close without a task).
    pub fn connections_closed(&self, n: usize) {
        if n == 0 {
            return;
        }
        let was = self.active.get();
        self.active.set(was - n);
        let max = self.max_connections.get();
        if was >= max && was - n < max {
            self.room.notify_waiters();
        }
    }

    /// Give the heap's free memory back to the system after the worker's
    /// connections fell from a peak (a spike of clients gone): glibc's
    /// `malloc` returns only the top of its heap on its own, and what the
    /// connections freed below it stays resident. 15,000 idle connections
    /// held and released left a worker 12.3 MB more anonymous memory than
    /// before them; `malloc_trim` brought that to 1.6 MB. Called at each
    /// sweep; the trim (a walk over the heap's free chunks) runs only
    /// after such a fall, once it has stopped: a trim half way through a
    /// fall would leave what the rest of it freed resident (the peak is
    /// then the count the trim saw).
    fn trim_after_a_fall(&self) {
        let active = self.active.get();
        let peak = self.conn_peak.get();
        let falling = active < self.conn_swept.replace(active);
        if !falling && peak - active >= TRIM_AFTER_FALL && active <= peak / 2 {
            #[cfg(target_env = "gnu")]
            // SAFETY: malloc_trim has no preconditions.
            unsafe {
                libc::malloc_trim(0);
            }
            self.conn_peak.set(active);
        }
    }

    /// A new client arrived while the worker is at `MaxConnections`, or
    /// could not be accepted for want of descriptors (`why`): close the
    /// connections that have waited longest for a request (see
    /// `IdleWaits::reclaim`), a few at a time so that a burst of clients
    /// finds room too; when there are none, ask the oldest reclaimable
    /// requests (event streams, long polls: `Context::set_reclaimable`)
    /// to end, `at_least` of them, whose connections then close. Said in
    /// the log at most every [`RECLAIM_LOG_EVERY`]. Returns how many were
    /// closed or asked to end. When nothing could be (it all became busy
    /// meanwhile), a connection accepted at the limit is served one over
    /// it; the accept loop then waits for room. `at_least`: close that
    /// many if it can, more than one batch.
    fn make_room(&self, at_least: usize, why: impl FnOnce() -> String) -> usize {
        let batch = (self.max_connections.get() / 64).clamp(1, 32).max(at_least);
        let (closed, parked) = self.idle.reclaim(batch, FRESH_GRACE);
        self.connections_closed(parked);
        let ended = match closed {
            0 => self.reclaimable.ask_oldest(at_least),
            _ => 0,
        };
        if closed + ended == 0 {
            return 0;
        }
        let (idle, streams, last) = self.reclaimed.get();
        let (idle, streams) = (idle + closed as u64, streams + ended as u64);
        let now = std::time::Instant::now();
        if last.is_some_and(|t| now < t + RECLAIM_LOG_EVERY) {
            self.reclaimed.set((idle, streams, last));
            return closed + ended;
        }
        self.reclaimed.set((0, 0, Some(now)));
        let since = match last {
            Some(t) => format!(" in the last {}s", now.duration_since(t).as_secs()),
            None => String::new(),
        };
        let streams = match streams {
            0 => String::new(),
            n => format!(" and ended {n} reclaimable response(s) (event streams, long polls)"),
        };
        self.log(
            Level::Warn,
            &format!(
                "{}: closed {idle} idle connection(s){streams}{since} to make room for new clients",
                why()
            ),
        );
        closed + ended
    }

    /// Accept found no descriptor left below `MaxConnections`. When the
    /// worker's connections hold at least half of its open-file limit,
    /// they ran it out: for the next [`FDS_SHORT_FOR`] (from the last
    /// shortage) this worker serves at most seven eighths of the
    /// connections it holds (the rest of what they held is kept for the
    /// files and pipes of their requests, as the default MaxConnections
    /// keeps an eighth), and closes idle ones down to that, so that a new
    /// client finds a descriptor for its connection and one for its file.
    /// Else every client that took the last descriptor would get a 500.
    /// With fewer connections the descriptors went elsewhere (files and
    /// pipes, a limit lowered under the worker, the system's table full):
    /// a cap would free next to none of them, and once they are back it
    /// would have the worker serve a handful of clients at a time (one,
    /// after a shortage at no connection). Then `MaxConnections` stays as
    /// it is and only this client is made room for, as nginx only stops
    /// accepting for a moment. Returns how many connections to close now.
    fn out_of_descriptors(&self) -> usize {
        let active = self.active.get();
        let limit = Descriptors::open_file_limit();
        if active < limit / 2 {
            return 1;
        }
        self.short_of_fds
            .set(Some((std::time::Instant::now(), limit)));
        let ceiling = (active - active / 8).max(1);
        let max = self.max_connections.get();
        if ceiling < max {
            self.max_connections.set(ceiling);
            if self.crowded.get() != usize::MAX {
                self.crowded.set(ceiling - ceiling / 8);
            }
            self.log(
                Level::Warn,
                &format!(
                    "out of file descriptors at {active} connections, below MaxConnections ({max}): \
                     this worker now serves at most {ceiling} at once; raise the open-file limit \
                     or lower MaxConnections"
                ),
            );
        }
        active.saturating_sub(self.max_connections.get()) + 1
    }

    /// Accept failed with `e`, and nothing could be closed to make room:
    /// said in the log at most every [`ACCEPT_FAILED_LOG_EVERY`], with
    /// how many failed meanwhile, since the accept loop retries every
    /// 50 ms for as long as it lasts (descriptors held by files and
    /// pipes, or by requests that may not be cut short).
    fn accept_failed(&self, e: &std::io::Error) {
        let (unsaid, last) = self.accept_failures.get();
        let now = std::time::Instant::now();
        if last.is_some_and(|t| now < t + ACCEPT_FAILED_LOG_EVERY) {
            self.accept_failures.set((unsaid + 1, last));
            return;
        }
        self.accept_failures.set((0, Some(now)));
        let more = match (unsaid, last) {
            (1.., Some(t)) => format!(
                " (and {unsaid} more time(s) in the last {}s)",
                now.duration_since(t).as_secs()
            ),
            _ => String::new(),
        };
        self.log(Level::Error, &format!("accept: {e}{more}"));
    }

    /// Back to the configured `MaxConnections` once descriptors have not
    /// run short for [`FDS_SHORT_FOR`], or at once when the open-file
    /// limit is above the one they ran short under (an operator raised
    /// it): a shortage may have been a moment's (a burst of CGI pipes),
    /// and a ceiling lowered for good would ratchet down with each one.
    /// Called at each sweep; the limit is read only while lowered.
    fn restore_after_shortage(&self) {
        let Some((at, limit)) = self.short_of_fds.get() else {
            return;
        };
        let raised = Descriptors::open_file_limit() > limit;
        if !raised && at.elapsed() < FDS_SHORT_FOR {
            return;
        }
        self.short_of_fds.set(None);
        let (max, crowded) = self.configured;
        self.max_connections.set(max);
        self.crowded.set(crowded);
        self.room.notify_waiters();
        self.log(
            Level::Info,
            &match raised {
                true => format!("the open-file limit was raised: MaxConnections back to {max}"),
                false => format!(
                    "descriptors have not run short for a while: MaxConnections back to {max}"
                ),
            },
        );
    }
}

/// Serve on `listeners` until told to stop, then let in-flight requests
/// finish for up to the configured ShutdownTimeout. The plugins' background
/// work starts first (`worker_start`); `ready` is called once the accept
/// loops run.
pub(crate) async fn serve(
    worker: Rc<WorkerRt>,
    listeners: Vec<std::net::TcpListener>,
    ready: impl FnOnce(),
) {
    worker.worker_start(&worker.view());
    // One worker says what the plugins' constructors saw, not each.
    if worker.view().index() == 0 {
        for w in &worker.plugin_warnings {
            worker.log(Level::Warn, w);
        }
    }
    for (index, listener) in listeners.into_iter().enumerate() {
        let listener = match listener
            .set_nonblocking(true)
            .and_then(|_| TcpListener::from_std(listener))
        {
            Ok(l) => l,
            Err(e) => {
                worker.log(Level::Crit, &format!("cannot use listening socket: {e}"));
                return;
            }
        };
        tokio::task::spawn_local(accept_loop(worker.clone(), listener, index));
    }
    // The idle clock starts now, not when the sweeper first runs (plugins
    // may have taken a while to start).
    worker.idle.sweep();
    tokio::task::spawn_local(sweep_idle(worker.clone()));
    tokio::task::spawn_local(park::wake_parked(worker.clone()));
    // The signal handlers go in before `ready`: from then on the master may
    // forward SIGUSR1, whose default action would kill the worker.
    // A task of its own: `run_until` polls the worker's main future on
    // every turn of the event loop, and the signal streams need not be
    // asked each time.
    let stop = tokio::task::spawn_local(wait_for_stop(worker.clone()));
    // The tasks just spawned make their first turn (their setup code is
    // mapped by then), and then the pages only starting needed go.
    tokio::task::yield_now().await;
    super::startup_pages::release();
    ready();
    let _ = stop.await;
    worker.shutting_down.set(true);
    worker.shutdown.notify_waiters();
    worker.idle.shutdown();
    let limit = *worker.config.global.get(&core::SHUTDOWN_TIMEOUT);
    let deadline = tokio::time::Instant::now() + limit;
    while worker.active.get() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if worker.active.get() > 0 {
        worker.log(
            Level::Warn,
            &format!(
                "shutdown timeout: closing {} connections",
                worker.active.get()
            ),
        );
    }
}

/// Wait for SIGTERM/SIGINT, or for the master to go away (our stdin, a pipe
/// from the master, reaches EOF). SIGUSR1 reopens logs meanwhile. The
/// handlers are installed by the call itself, before the first poll.
fn wait_for_stop(worker: Rc<WorkerRt>) -> impl Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let signals = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::user_defined1()),
        signal(SignalKind::hangup()),
    );
    async move {
        let (Ok(mut term), Ok(mut int), Ok(mut usr1), Ok(mut hup)) = signals else {
            worker.log(Level::Crit, "cannot install signal handlers");
            return;
        };
        let master_gone = async {
            if std::env::var_os(super::WORKER_ENV).is_none() {
                return std::future::pending::<()>().await;
            }
            super::wait_for_eof_on_stdin().await
        };
        tokio::pin!(master_gone);
        loop {
            tokio::select! {
                _ = term.recv() => return,
                _ = int.recv() => return,
                _ = &mut master_gone => return,
                _ = usr1.recv() => worker.reopen_logs(),
                // A worker ignores SIGHUP: reloading is the master's job.
                _ = hup.recv() => {}
            }
        }
    }
}

/// End the idle waits whose time is up, for as long as the worker runs.
async fn sweep_idle(worker: Rc<WorkerRt>) {
    let mut tick = tokio::time::interval(idle::SWEEP);
    loop {
        tick.tick().await;
        let closed = worker.idle.sweep();
        worker.connections_closed(closed);
        worker.trim_after_a_fall();
        worker.restore_after_shortage();
    }
}

/// Whether `e` says the process (EMFILE) or the system (ENFILE) has no
/// descriptor left.
fn no_descriptor_left(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

async fn accept_loop(worker: Rc<WorkerRt>, listener: TcpListener, index: usize) {
    let bound = listener
        .local_addr()
        .ok()
        .filter(|a| !a.ip().is_unspecified());
    // One subscription for the loop's life: shutdown happens once.
    let notified = worker.shutdown.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    loop {
        if worker.shutting_down.get() {
            return;
        }
        let max = worker.max_connections.get();
        if worker.active.get() >= max
            && !worker.idle.can_reclaim(FRESH_GRACE)
            && worker.reclaimable.is_empty()
        {
            // Full, and every connection is busy (or has only just
            // connected) with a request that may not be cut short: the
            // kernel queues new clients for the other workers, or for us
            // once one of ours closes or goes idle.
            // The sweep interval bounds how late an idle one is noticed.
            let room = worker.room.notified();
            tokio::select! {
                _ = &mut notified => return,
                _ = room => {}
                _ = tokio::time::sleep(idle::SWEEP) => {}
            }
            continue;
        }
        if worker.active.get() >= worker.crowded.get() {
            // Nearly full (under an eighth of MaxConnections free): leave
            // the next clients to the other workers, which the same
            // listener wakes, so that the server fills all its workers
            // before one starts closing idle connections to make room
            // (nginx's `ngx_accept_disabled`). It still takes one client
            // per pause, so a server whose workers are all this full
            // keeps accepting.
            tokio::select! {
                _ = &mut notified => return,
                _ = tokio::time::sleep(CROWDED_PAUSE) => {}
            }
        }
        tokio::select! {
            biased;
            _ = &mut notified => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if worker.active.get() >= max {
                        worker.make_room(1, || format!("MaxConnections ({max}) reached"));
                    }
                    // Counted here, not when the task first runs: this
                    // loop may accept several before that.
                    worker.connection_opened();
                    tokio::task::spawn_local(walk::serve(worker.clone(), stream, peer, index, bound));
                }
                Err(e) => {
                    // Out of descriptors below MaxConnections (set above
                    // what the open-file limit leaves, or the descriptors
                    // went to files and pipes): idle connections make
                    // room, as at MaxConnections, else no new client would
                    // ever be served again. A live one closes when its
                    // task runs: let it, then accept again.
                    if no_descriptor_left(&e) {
                        let excess = worker.out_of_descriptors();
                        let why = || {
                            let max = worker.max_connections.get();
                            format!("out of file descriptors (MaxConnections now {max}) (accept: {e})")
                        };
                        if worker.make_room(excess, why) > 0 {
                            tokio::task::yield_now().await;
                            continue;
                        }
                    }
                    // Nothing to close, or out of memory: back off rather
                    // than spin.
                    worker.accept_failed(&e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}
