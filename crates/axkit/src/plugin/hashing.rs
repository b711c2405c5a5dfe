//! Slow CPU work that a request waits for, such as verifying a password
//! hash: it runs on tokio's blocking pool, never on the worker's event
//! loop, and at most as many jobs run at once as the machine has cores
//! (per process, so per worker). The others wait for a turn without
//! blocking anything. A hash that needs a lot of memory (Argon2 with
//! 64 MiB, say) then holds that memory only for the jobs that are
//! running. Without the bound, a burst of guesses from many addresses
//! would start up to 512 blocking threads, each holding its hash's
//! memory.
//!
//! [`run`] waits for as long as it takes. [`run_or_refuse`] is for work
//! that anyone can cause by sending a request: when `max_waiting` jobs are
//! already waiting, it returns [`QueueFull`] at once (a 503), so that a
//! flood gets refused quickly and the queue does not keep growing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use tokio::sync::{Semaphore, SemaphorePermit};

/// Jobs waiting for a turn.
static WAITING: AtomicUsize = AtomicUsize::new(0);

/// How many jobs run at once: the machine's cores.
pub fn slots() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn turns() -> &'static Semaphore {
    static TURNS: OnceLock<Semaphore> = OnceLock::new();
    TURNS.get_or_init(|| Semaphore::new(slots()))
}

/// [`run_or_refuse`]'s answer when too many jobs are waiting already.
#[derive(Debug, PartialEq, Eq)]
pub struct QueueFull;

/// One job counted as waiting for as long as this guard lives. A request
/// that is dropped while it waits (its client went away) stops counting.
struct Waiting;

impl Waiting {
    fn new() -> Waiting {
        WAITING.fetch_add(1, Ordering::Relaxed);
        Waiting
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        WAITING.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn turn() -> SemaphorePermit<'static> {
    let _waiting = Waiting::new();
    turns()
        .acquire()
        .await
        .expect("the semaphore is never closed")
}

/// Runs `f` on the pool. The job holds the permit, not the request: a
/// request dropped meanwhile does not free a turn while its hash still
/// runs. A panic in `f` carries on in the caller (the hook runner turns
/// it into a 500).
async fn on_pool<T: Send + 'static>(
    permit: SemaphorePermit<'static>,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let job = move || {
        let _permit = permit;
        f()
    };
    match tokio::task::spawn_blocking(job).await {
        Ok(done) => done,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("a job on the blocking pool did not run: {e}"),
        },
    }
}

/// Runs `f` on the blocking pool when it gets a turn.
pub async fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    on_pool(turn().await, f).await
}

/// Like [`run`], but when `max_waiting` jobs are already waiting for a
/// turn, returns `QueueFull` without running `f`.
pub async fn run_or_refuse<T: Send + 'static>(
    max_waiting: usize,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, QueueFull> {
    let permit = match turns().try_acquire() {
        Ok(permit) => permit,
        Err(_) if WAITING.load(Ordering::Relaxed) >= max_waiting => return Err(QueueFull),
        Err(_) => turn().await,
    };
    Ok(on_pool(permit, f).await)
}
